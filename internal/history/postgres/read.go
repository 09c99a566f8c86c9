package postgres

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/history"
)

const propColumns = `"Seq", "TimeStamp", "SourceTimeStamp", "SourceTimeStampNanos", "ServiceId", "Id", "ModelId", "Key",
	"Value", "RelationshipId", "RelationshipTarget", "Action"`

func scanProp(row pgx.Row) (history.PropertyEvent, error) {
	var (
		r     history.PropertyEvent
		seq   int64
		src   *time.Time
		nanos *int16
		value []byte
	)
	if err := row.Scan(&seq, &r.TimeStamp, &src, &nanos, &r.ServiceID, &r.ID, &r.ModelID, &r.Key, &value,
		&r.RelationshipID, &r.RelationshipTarget, &r.Action); err != nil {
		return r, err
	}
	r.Seq, r.TimeStamp, r.Value = uint64(seq), r.TimeStamp.UTC(), compact(value)
	if src != nil {
		r.SourceTimeStamp = src.UTC()
		if nanos != nil {
			r.SourceTimeStamp = r.SourceTimeStamp.Add(time.Duration(*nanos))
		}
	}
	return r, nil
}

// compact returns a copy of the jsonb text v without the spaces PostgreSQL puts in it
// (inside objects and arrays only).
func compact(v []byte) json.RawMessage {
	if len(v) > 0 && v[0] != '{' && v[0] != '[' {
		return json.RawMessage(bytes.Clone(v))
	}
	var b bytes.Buffer
	b.Grow(len(v))
	if err := json.Compact(&b, v); err != nil {
		return json.RawMessage(bytes.Clone(v))
	}
	return json.RawMessage(b.Bytes())
}

// Select implements history.Store.
func (s *Store) Select(ctx context.Context, q history.Selection) iter.Seq2[history.PropertyEvent, error] {
	return func(yield func(history.PropertyEvent, error) bool) {
		fail := func(err error) { yield(history.PropertyEvent{}, fmt.Errorf("select history of %q: %w", q.ID, err)) }
		if q.ID == "" {
			fail(errors.New("a twin id is required"))
			return
		}
		var b strings.Builder
		args := []any{q.ID}
		arg := func(v any) string {
			args = append(args, v)
			return "$" + strconv.Itoa(len(args))
		}
		b.WriteString(`SELECT ` + propColumns + ` FROM ` + s.prop + ` WHERE "Id" = $1`)
		if q.Key != "" {
			b.WriteString(` AND "Key" = ` + arg(q.Key))
		}
		if q.RelationshipID != "" || !q.AllRelationships {
			b.WriteString(` AND "RelationshipId" = ` + arg(q.RelationshipID))
		}
		if !q.From.IsZero() {
			b.WriteString(` AND "TimeStamp" >= ` + arg(q.From))
		}
		if !q.To.IsZero() {
			b.WriteString(` AND "TimeStamp" < ` + arg(q.To))
		}
		if q.After != "" {
			p, err := history.ParseContinuation(q.After)
			if err != nil {
				fail(err)
				return
			}
			b.WriteString(` AND ("TimeStamp", "Seq", "Key") > (` + arg(time.Unix(0, p.TimeStamp)) + `, ` +
				arg(int64(p.Seq)) + `, ` + arg(p.Key) + `)`)
		}
		b.WriteString(` ORDER BY "TimeStamp", "Seq", "Key"`)
		if q.Limit > 0 {
			b.WriteString(` LIMIT ` + arg(q.Limit))
		}
		rows, err := s.pool.Query(ctx, b.String(), args...)
		if err != nil {
			fail(err)
			return
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanProp(rows)
			if err != nil {
				fail(err)
				return
			}
			if !yield(r, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			fail(err)
		}
	}
}

// Latest implements history.Store.
func (s *Store) Latest(ctx context.Context, id, relationshipID, key string) (history.PropertyEvent, bool, error) {
	r, err := scanProp(s.pool.QueryRow(ctx, `SELECT `+propColumns+` FROM `+s.prop+`
		WHERE "Id" = $1 AND "Key" = $2 AND "RelationshipId" = $3 ORDER BY "TimeStamp" DESC, "Seq" DESC LIMIT 1`,
		id, key, relationshipID))
	if errors.Is(err, pgx.ErrNoRows) {
		return history.PropertyEvent{}, false, nil
	}
	if err != nil {
		return history.PropertyEvent{}, false, fmt.Errorf("read latest %q of %q: %w", key, id, err)
	}
	return r, true, nil
}

// Aggregate implements history.Store, reading one snapshot (a repeatable read transaction):
// buckets by date_bin from the epoch, the whole hours the roll-ups cover from them, the
// rest from raw rows. The bucket width is taken to the microsecond.
func (s *Store) Aggregate(ctx context.Context, q history.Aggregation) ([]history.Bucket, error) {
	if q.Interval < time.Microsecond || q.From.IsZero() || q.To.IsZero() || q.Key == "" {
		return nil, errors.New("aggregate history: key, from, to and an interval of at least a microsecond are required")
	}
	var out []history.Bucket
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) (err error) {
			out, err = s.aggregate(ctx, tx, q)
			return err
		})
	if err != nil {
		return nil, fmt.Errorf("aggregate history of %q: %w", q.Key, err)
	}
	return out, nil
}

// Past implements history.Store, reading one snapshot of the database (a repeatable read
// transaction). JIT compilation is off for it: its statements cost too little per row for
// the compiled code to repay its compilation (about 1.5 s of a 3.7 s read of 2.5 million
// property rows).
func (s *Store) Past(ctx context.Context, at time.Time) (history.Past, error) {
	var p history.Past
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) (err error) {
			if _, err := tx.Exec(ctx, `SET LOCAL jit = off`); err != nil {
				return fmt.Errorf("turn JIT off: %w", err)
			}
			p, err = s.past(ctx, tx, at)
			return err
		})
	if err != nil {
		return history.Past{}, fmt.Errorf("rebuild graph as of %s: %w", at.Format(time.RFC3339Nano), err)
	}
	return p, nil
}

func (s *Store) past(ctx context.Context, tx pgx.Tx, at time.Time) (history.Past, error) {
	type twinAt struct {
		created, newest int64
		model           string
		members         []history.Member
	}
	type relKey struct{ source, id string }
	type relAt struct {
		created int64
		rel     history.PastRelationship
		members []history.Member
	}
	twins := map[string]*twinAt{}
	rels := map[relKey]*relAt{}
	var past history.Past
	var relOrder []relKey

	var (
		id, action, model, name, target, relID, key string
		seq                                         int64
		value                                       []byte
	)
	rows, _ := tx.Query(ctx, `SELECT DISTINCT ON ("TwinId") "TwinId", "Seq", "Action", "ModelId" FROM `+s.twin+`
		WHERE "TimeStamp" <= $1 ORDER BY "TwinId", "Seq" DESC`, at)
	_, err := pgx.ForEachRow(rows, []any{&id, &seq, &action, &model}, func() error {
		if action == history.LifecycleCreate {
			twins[id] = &twinAt{created: seq, newest: seq}
			past.Twins = append(past.Twins, history.PastTwin{ID: id, ModelID: model})
		}
		return nil
	})
	if err != nil {
		return history.Past{}, fmt.Errorf("read twin lifecycle: %w", err)
	}
	var k relKey
	rows, _ = tx.Query(ctx, `SELECT DISTINCT ON ("Source", "RelationshipId") "Source", "RelationshipId", "Seq", "Action", "Name", "Target"
		FROM `+s.rel+` WHERE "TimeStamp" <= $1 ORDER BY "Source", "RelationshipId", "Seq" DESC`, at)
	_, err = pgx.ForEachRow(rows, []any{&k.source, &k.id, &seq, &action, &name, &target}, func() error {
		if action == history.LifecycleCreate {
			rels[k] = &relAt{created: seq, rel: history.PastRelationship{SourceID: k.source, ID: k.id, Name: name, TargetID: target}}
			relOrder = append(relOrder, k)
		}
		return nil
	})
	if err != nil {
		return history.Past{}, fmt.Errorf("read relationship lifecycle: %w", err)
	}
	rows, _ = tx.Query(ctx, `SELECT DISTINCT ON ("Id", "RelationshipId", "Key") "Id", "RelationshipId", "Key", "Seq", "Action", "Value", "ModelId"
		FROM `+s.prop+` WHERE "TimeStamp" <= $1 ORDER BY "Id", "RelationshipId", "Key", "Seq" DESC`, at)
	_, err = pgx.ForEachRow(rows, []any{&id, &relID, &key, &seq, &action, &value, &model}, func() error {
		m := history.Member{Key: key, Seq: uint64(seq)}
		if action == history.ActionUpdate {
			m.Value = compact(value)
		}
		if relID == "" {
			t := twins[id]
			if t == nil {
				return nil
			}
			if model != "" && seq > t.newest {
				t.model, t.newest = model, seq
			}
			t.members = append(t.members, m)
			return nil
		}
		if r := rels[relKey{id, relID}]; r != nil {
			r.members = append(r.members, m)
		}
		return nil
	})
	if err != nil {
		return history.Past{}, fmt.Errorf("read properties: %w", err)
	}
	for i, pt := range past.Twins {
		t := twins[pt.ID]
		if t.model != "" {
			past.Twins[i].ModelID = t.model
		}
		past.Twins[i].Properties = history.AppendProperties(nil, t.members, uint64(t.created))
	}
	for _, k := range relOrder {
		r := rels[k]
		r.rel.Properties = history.AppendProperties(nil, r.members, uint64(r.created))
		past.Relationships = append(past.Relationships, r.rel)
	}
	return past, nil
}
