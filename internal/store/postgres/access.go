package postgres

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// querier runs a query and calls each for every row it returns: a View's transaction
// (txQuerier) or the writer, which sends its queued statements first.
type querier interface {
	query(sql string, args []any, each func(pgx.Rows) error) error
}

// txQuerier is the querier of a read transaction.
type txQuerier struct {
	ctx context.Context
	tx  pgx.Tx
}

func (q txQuerier) query(sql string, args []any, each func(pgx.Rows) error) error {
	rows, err := q.tx.Query(q.ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// scanner is a row: pgx.Rows or pgx.Row.
type scanner interface {
	Scan(dest ...any) error
}

// one runs a query of at most one row and scans it with scan. No row is store.ErrNotFound,
// described by what.
func one[T any](q querier, what string, scan func(scanner) (T, error), sql string, args ...any) (T, error) {
	var (
		v     T
		found bool
	)
	err := q.query(sql, args, func(rows pgx.Rows) error {
		var err error
		v, err = scan(rows)
		found = true
		return err
	})
	var zero T
	if err != nil {
		return zero, fmt.Errorf("read %s: %w", what, err)
	}
	if !found {
		return zero, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return v, nil
}

// list runs a query and scans every row it returns with scan.
func list[T any](q querier, what string, scan func(scanner) (T, error), sql string, args ...any) ([]T, error) {
	var vs []T
	err := q.query(sql, args, func(rows pgx.Rows) error {
		v, err := scan(rows)
		vs = append(vs, v)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	return vs, nil
}

// value runs a query of exactly one row of one column, described by what.
func value[T any](q querier, what string, sql string, args ...any) (T, error) {
	return one(q, what, func(sc scanner) (T, error) {
		var v T
		err := sc.Scan(&v)
		return v, err
	}, sql, args...)
}

// limit turns the Reader convention for "no limit" into PostgreSQL's: LIMIT NULL.
func limit(n int) any {
	if n <= 0 {
		return nil
	}
	return n
}

// The column lists every read of an entity selects, in the order scan functions expect.
const (
	modelColumns        = "id, definition, upload_time, decommissioned"
	twinColumns         = "id, model_id, etag, doc"
	relationshipColumns = "source_id, id, name, target_id, etag, doc"
	logColumns          = "seq, event, depth"
)

// blob returns b for a bytea column: never nil, which would be NULL.
func blob(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// parseTime parses a time the store wrote with formatTime.
func parseTime(s string) (time.Time, error) { return time.Parse(time.RFC3339Nano, s) }

// formatTime formats t to the nanosecond, as the contract hands times back.
func formatTime(t time.Time) string { return t.UTC().Format(time.RFC3339Nano) }

func scanModel(sc scanner) (store.Model, error) {
	var (
		m      store.Model
		def    []byte
		upload string
	)
	if err := sc.Scan(&m.ID, &def, &upload, &m.Decommissioned); err != nil {
		return store.Model{}, err
	}
	t, err := parseTime(upload)
	if err != nil {
		return store.Model{}, fmt.Errorf("parse upload time of model %q: %w", m.ID, err)
	}
	m.Definition, m.UploadTime = def, t
	return m, nil
}

func scanTwin(sc scanner) (store.Twin, error) {
	var (
		t   store.Twin
		doc []byte
	)
	if err := sc.Scan(&t.ID, &t.ModelID, &t.ETag, &doc); err != nil {
		return store.Twin{}, err
	}
	t.Doc = doc
	return t, nil
}

func scanRelationship(sc scanner) (store.Relationship, error) {
	var (
		r   store.Relationship
		doc []byte
	)
	if err := sc.Scan(&r.SourceID, &r.ID, &r.Name, &r.TargetID, &r.ETag, &doc); err != nil {
		return store.Relationship{}, err
	}
	r.Doc = doc
	return r, nil
}

func scanRecord(sc scanner) (event.Record, error) {
	var (
		seq   int64
		buf   []byte
		depth int32
	)
	if err := sc.Scan(&seq, &buf, &depth); err != nil {
		return event.Record{}, err
	}
	return decodeRecord(seq, buf, depth)
}

// reader implements store.Reader over q: a View's transaction, or the writer's.
type reader struct {
	q querier
	// lock follows every read of one entity: " FOR UPDATE" in a Writer (see writer.Twin).
	lock string
	// ctx and tx are the View's, for scans; tx is nil in a Writer.
	ctx context.Context
	tx  pgx.Tx
}

var _ store.Reader = (*reader)(nil)

// Model implements store.Reader.
func (r *reader) Model(id string) (store.Model, error) {
	return one(r.q, fmt.Sprintf("model %q", id), scanModel,
		"SELECT "+modelColumns+" FROM models WHERE id = $1"+r.lock, id)
}

// Models implements store.Reader.
func (r *reader) Models(after string, n int) ([]store.Model, error) {
	return list(r.q, "models", scanModel,
		"SELECT "+modelColumns+" FROM models WHERE id > $1 ORDER BY id LIMIT $2", after, limit(n))
}

// Twin implements store.Reader. In a Writer it reads the twin FOR UPDATE: the row stays
// locked until the batch commits, so an Update on another node that reads the same twin waits
// for this one and then reads what it wrote. That makes the twin service's read, ETag check
// and put, inside one fn, atomic across nodes, at the price of one row lock per twin read,
// where SERIALIZABLE would cost predicate locks on every read and fail whole batches on
// conflict. This Store's own Updates never wait for each other's locks: they share the
// writer's transaction.
func (r *reader) Twin(id string) (store.Twin, error) {
	return one(r.q, fmt.Sprintf("twin %q", id), scanTwin, "SELECT "+twinColumns+" FROM twins WHERE id = $1"+r.lock, id)
}

// Twins implements store.Reader.
func (r *reader) Twins(after string, n int) ([]store.Twin, error) {
	return list(r.q, "twins", scanTwin,
		"SELECT "+twinColumns+" FROM twins WHERE id > $1 ORDER BY id LIMIT $2", after, limit(n))
}

// TwinsOf implements store.MultiReader, in one statement.
func (r *reader) TwinsOf(ids []string) ([]store.Twin, error) {
	return list(r.q, "twins", scanTwin, "SELECT "+twinColumns+" FROM twins WHERE id = ANY($1)"+r.lock, ids)
}

// RelationshipsOf implements store.MultiReader, in one statement.
func (r *reader) RelationshipsOf(sourceIDs, ids []string) ([]store.Relationship, error) {
	if len(sourceIDs) != len(ids) {
		return nil, fmt.Errorf("read relationships: %d source ids for %d ids", len(sourceIDs), len(ids))
	}
	return list(r.q, "relationships", scanRelationship, "SELECT "+relationshipColumns+" FROM relationships"+
		" WHERE (source_id, id) IN (SELECT * FROM unnest($1::text[], $2::text[]))"+r.lock, sourceIDs, ids)
}

var _ store.MultiReader = (*reader)(nil)

// Relationship implements store.Reader; in a Writer it locks the row, as Twin does.
func (r *reader) Relationship(sourceID, id string) (store.Relationship, error) {
	return one(r.q, fmt.Sprintf("relationship %q of twin %q", id, sourceID), scanRelationship,
		"SELECT "+relationshipColumns+" FROM relationships WHERE source_id = $1 AND id = $2"+r.lock, sourceID, id)
}

// Relationships implements store.Reader.
func (r *reader) Relationships(sourceID, name string, after string, n int) ([]store.Relationship, error) {
	what := fmt.Sprintf("relationships of twin %q", sourceID)
	if name == "" {
		return list(r.q, what, scanRelationship, "SELECT "+relationshipColumns+
			" FROM relationships WHERE source_id = $1 AND id > $2 ORDER BY id LIMIT $3", sourceID, after, limit(n))
	}
	return list(r.q, what, scanRelationship, "SELECT "+relationshipColumns+
		" FROM relationships WHERE source_id = $1 AND name = $2 AND id > $3 ORDER BY id LIMIT $4",
		sourceID, name, after, limit(n))
}

// IncomingRelationships implements store.Reader.
func (r *reader) IncomingRelationships(targetID string, after string, n int) ([]store.Relationship, error) {
	afterSource, afterID, _ := strings.Cut(after, "\x00")
	return list(r.q, fmt.Sprintf("relationships to twin %q", targetID), scanRelationship, "SELECT "+relationshipColumns+
		" FROM relationships WHERE target_id = $1 AND (source_id, id) > ($2, $3) ORDER BY source_id, id LIMIT $4",
		targetID, afterSource, afterID, limit(n))
}

// HasRelationships implements store.Reader.
func (r *reader) HasRelationships(twinID string) (bool, error) {
	return value[bool](r.q, fmt.Sprintf("look for relationships of twin %q", twinID),
		"SELECT EXISTS (SELECT 1 FROM relationships WHERE source_id = $1)"+
			" OR EXISTS (SELECT 1 FROM relationships WHERE target_id = $1)", twinID)
}

// CountTwins implements store.Reader. It reads the count the head row keeps, so it costs the
// same for any number of twins.
func (r *reader) CountTwins() (int, error) {
	n, err := value[int64](r.q, "count twins", "SELECT twins FROM head")
	return int(n), err
}
