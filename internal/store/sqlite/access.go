package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/logtail"
)

// reader implements store.Reader over prepared statements: the writer's own, or, in a View,
// the read pool's statements adopted by the View's transaction on first use.
type reader struct {
	ctx context.Context
	// tx is the View's read transaction; nil in the writer, whose statements run on its
	// connection directly.
	tx    *sql.Tx
	stmts []*sql.Stmt
	// txStmts caches the statements adopted by tx.
	txStmts [numReadStmts]*sql.Stmt
	// failure is the first storage error a statement returned (not a missing entity). The
	// writer uses it to abandon a batch whose transaction may be broken.
	failure error
}

var _ store.Reader = (*reader)(nil)

// stmt returns the statement id ready to run in r's transaction.
func (r *reader) stmt(id stmtID) *sql.Stmt {
	if r.tx == nil {
		return r.stmts[id]
	}
	if s := r.txStmts[id]; s != nil {
		return s
	}
	s := r.tx.StmtContext(r.ctx, r.stmts[id])
	r.txStmts[id] = s
	return s
}

// fail records err as a storage failure and returns it.
func (r *reader) fail(err error) error {
	if r.failure == nil {
		r.failure = err
	}
	return err
}

// scanner is a *sql.Row or *sql.Rows.
type scanner interface {
	Scan(dest ...any) error
}

// noLimit turns the Reader convention for "no limit" into SQLite's.
func noLimit(limit int) int {
	if limit <= 0 {
		return -1
	}
	return limit
}

func scanModel(sc scanner) (store.Model, error) {
	var (
		m      store.Model
		def    []byte
		upload string
	)
	if err := sc.Scan(&m.ID, &def, &upload, &m.Decommissioned); err != nil {
		return store.Model{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, upload)
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
		rel store.Relationship
		doc []byte
	)
	if err := sc.Scan(&rel.SourceID, &rel.ID, &rel.Name, &rel.TargetID, &rel.ETag, &doc); err != nil {
		return store.Relationship{}, err
	}
	rel.Doc = doc
	return rel, nil
}

func scanRecord(sc scanner) (event.Record, error) {
	var (
		rec event.Record
		buf []byte
	)
	var depth int
	if err := sc.Scan(&rec.Seq, &buf, &depth); err != nil {
		return event.Record{}, err
	}
	if err := decodeEvent(buf, &rec.Event); err != nil {
		return event.Record{}, fmt.Errorf("decode log record %d: %w", rec.Seq, err)
	}
	rec.Event.Depth = depth
	return rec, nil
}

// one runs the single-row query id and scans its row with scan. A missing row is
// store.ErrNotFound, described by what.
func one[T any](r *reader, what string, scan func(scanner) (T, error), id stmtID, args ...any) (T, error) {
	v, err := scan(r.stmt(id).QueryRowContext(r.ctx, args...))
	if errors.Is(err, sql.ErrNoRows) {
		var zero T
		return zero, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		var zero T
		return zero, r.fail(fmt.Errorf("read %s: %w", what, err))
	}
	return v, nil
}

// list runs the query id and scans every row it returns with scan.
func list[T any](r *reader, what string, scan func(scanner) (T, error), id stmtID, args ...any) ([]T, error) {
	rows, err := r.stmt(id).QueryContext(r.ctx, args...)
	if err != nil {
		return nil, r.fail(fmt.Errorf("list %s: %w", what, err))
	}
	defer rows.Close()
	var vs []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, r.fail(fmt.Errorf("list %s: %w", what, err))
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		return nil, r.fail(fmt.Errorf("list %s: %w", what, err))
	}
	return vs, nil
}

// Model implements store.Reader.
func (r *reader) Model(id string) (store.Model, error) {
	return one(r, fmt.Sprintf("model %q", id), scanModel, stmtModel, id)
}

// Models implements store.Reader.
func (r *reader) Models(after string, limit int) ([]store.Model, error) {
	return list(r, "models", scanModel, stmtModels, after, noLimit(limit))
}

// Twin implements store.Reader.
func (r *reader) Twin(id string) (store.Twin, error) {
	t, err := scanTwin(r.stmt(stmtTwin).QueryRowContext(r.ctx, id))
	if err == nil {
		return t, nil
	}
	// Twin is the hot read of every patch; only describe the twin on failure.
	if errors.Is(err, sql.ErrNoRows) {
		return store.Twin{}, fmt.Errorf("twin %q: %w", id, store.ErrNotFound)
	}
	return store.Twin{}, r.fail(fmt.Errorf("read twin %q: %w", id, err))
}

// Twins implements store.Reader.
func (r *reader) Twins(after string, limit int) ([]store.Twin, error) {
	return list(r, "twins", scanTwin, stmtTwins, after, noLimit(limit))
}

// Relationship implements store.Reader.
func (r *reader) Relationship(sourceID, id string) (store.Relationship, error) {
	return one(r, fmt.Sprintf("relationship %q of twin %q", id, sourceID), scanRelationship,
		stmtRelationship, sourceID, id)
}

// Relationships implements store.Reader.
func (r *reader) Relationships(sourceID, name string, after string, limit int) ([]store.Relationship, error) {
	what := fmt.Sprintf("relationships of twin %q", sourceID)
	if name == "" {
		return list(r, what, scanRelationship, stmtRelationships, sourceID, after, noLimit(limit))
	}
	return list(r, what, scanRelationship, stmtRelationshipsNamed, sourceID, name, after, noLimit(limit))
}

// IncomingRelationships implements store.Reader.
func (r *reader) IncomingRelationships(targetID string, after string, limit int) ([]store.Relationship, error) {
	afterSource, afterID, _ := strings.Cut(after, "\x00")
	return list(r, fmt.Sprintf("relationships to twin %q", targetID), scanRelationship,
		stmtIncoming, targetID, afterSource, afterID, noLimit(limit))
}

// HasRelationships implements store.Reader.
func (r *reader) HasRelationships(twinID string) (bool, error) {
	var has bool
	if err := r.stmt(stmtHasRelationships).QueryRowContext(r.ctx, twinID).Scan(&has); err != nil {
		return false, r.fail(fmt.Errorf("look for relationships of twin %q: %w", twinID, err))
	}
	return has, nil
}

// CountTwins implements store.Reader. It reads a counter kept by triggers, so it costs the
// same for any number of twins.
func (r *reader) CountTwins() (int, error) {
	var n int
	if err := r.stmt(stmtCountTwins).QueryRowContext(r.ctx).Scan(&n); err != nil {
		return 0, r.fail(fmt.Errorf("count twins: %w", err))
	}
	return n, nil
}

// writer implements store.Writer for one fn at a time, inside the writer goroutine's batch
// transaction. It opens the fn's savepoint before its first change, so a fn that only reads
// costs no savepoint.
type writer struct {
	reader
	// savepoint reports whether the current fn's savepoint is open.
	savepoint bool
	// seq is the Seq the next emitted record gets.
	seq uint64
	// buf holds the JSON form of the event being emitted.
	buf []byte
	// cache holds twins as the open transaction sees them; touched lists the twins the
	// current fn put, which leave the cache if its changes are rolled back.
	cache   twinCache
	touched []string
	// states lists what the current fn's puts and deletes left behind, oldest first, for the
	// records it emits (see Emit); pending holds the records emitted in the open transaction,
	// in Seq order, for the log's in-memory tail.
	states  []entityState
	pending []store.Change
	// latest indexes states by entity for settle, when a fn wrote many.
	latest map[stateKey]int
	// tail is the Store's, from which PruneLog drops what it deletes.
	tail *logtail.Tail
	// clock is the time, in Unix milliseconds, of the log clock's newest mark.
	clock int64
	// full is set for a batch begun while the disk is full: then only deletes run (see
	// admit). deleted records that the current fn deleted something; refused, the error of
	// the first change it was refused.
	full    bool
	deleted bool
	refused error
}

// entityState is what a put or delete left of a twin (key is its id) or of a relationship
// (key is "<source>/relationships/<id>"); nil pointers mean deleted.
type entityState struct {
	key    string
	isTwin bool
	twin   *store.Twin
	rel    *store.Relationship
}

// settle gives each record the fn emitted, pending[from:], the state the fn left its subject
// in, once the fn succeeded. A fn that writes many entities (a bulk load) gets an index of its
// states, so that settling costs time in proportion to its records, not their square.
func (w *writer) settle(from int) {
	emitted := w.pending[from:]
	if len(emitted)*len(w.states) <= settleScan {
		for i := range emitted {
			c := &emitted[i]
			c.Known, c.Twin, c.Relationship = w.stateOf(&c.Event)
		}
		return
	}
	if w.latest == nil {
		w.latest = make(map[stateKey]int)
	}
	clear(w.latest)
	for i := range w.states {
		w.latest[stateKey{w.states[i].key, w.states[i].isTwin}] = i
	}
	for i := range emitted {
		c := &emitted[i]
		isTwin, ok := subjectKind(c.Event.Type)
		if !ok {
			continue
		}
		if j, found := w.latest[stateKey{c.Event.Subject, isTwin}]; found {
			st := &w.states[j]
			c.Known, c.Twin, c.Relationship = true, st.twin, st.rel
		}
	}
}

// settleScan is the most states times records settle compares one by one.
const settleScan = 4096

// stateKey identifies an entity in the states of a fn.
type stateKey struct {
	key    string
	isTwin bool
}

// subjectKind reports whether events of type typ are about a twin (true) or a relationship
// (false); ok is false for events about neither.
func subjectKind(typ string) (isTwin, ok bool) {
	switch typ {
	case event.TwinCreate, event.TwinUpdate, event.TwinDelete:
		return true, true
	case event.RelationshipCreate, event.RelationshipUpdate, event.RelationshipDelete:
		return false, true
	}
	return false, false
}

// stateOf returns the state the current fn's newest put or delete of e's subject left, if it
// made one.
func (w *writer) stateOf(e *event.Event) (known bool, twin *store.Twin, rel *store.Relationship) {
	isTwin, ok := subjectKind(e.Type)
	if !ok {
		return false, nil, nil
	}
	for i := len(w.states) - 1; i >= 0; i-- {
		st := &w.states[i]
		if st.key == e.Subject && st.isTwin == isTwin {
			return true, st.twin, st.rel
		}
	}
	return false, nil, nil
}

var _ store.Writer = (*writer)(nil)

// admit returns nil when the change statement text may run, and otherwise the error that
// refuses it: while the disk is full, only a DELETE runs, and an Emit (emit) after one, so that
// entities can still be deleted with the events of their deletion. A refused change touches
// nothing, not even the savepoint, and fails the fn however it handles the error.
func (w *writer) admit(text string, emit bool) error {
	switch {
	case !w.full, emit && w.deleted:
		return nil
	case strings.HasPrefix(text, "DELETE "):
		w.deleted = true
		return nil
	}
	if w.refused == nil {
		w.refused = fmt.Errorf("the disk is full; until space is freed only deletes are written: %w", store.ErrFull)
	}
	return w.refused
}

// exec runs the change statement id inside the fn's savepoint, unless a full disk refuses it
// (see admit).
func (w *writer) exec(id stmtID, args ...any) (sql.Result, error) {
	if err := w.admit(stmtText[id], id == stmtEmit); err != nil {
		return nil, err
	}
	if !w.savepoint {
		if _, err := w.stmts[stmtSavepoint].ExecContext(w.ctx); err != nil {
			return nil, w.fail(fmt.Errorf("open savepoint: %w", err))
		}
		w.savepoint = true
	}
	res, err := w.stmts[id].ExecContext(w.ctx, args...)
	if err != nil {
		return nil, w.fail(err)
	}
	return res, nil
}

// remove runs the delete statement id; no deleted row is store.ErrNotFound, described by what.
func (w *writer) remove(what string, id stmtID, args ...any) error {
	res, err := w.exec(id, args...)
	if err != nil {
		return fmt.Errorf("delete %s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return w.fail(fmt.Errorf("delete %s: %w", what, err))
	}
	if n == 0 {
		return fmt.Errorf("delete %s: %w", what, store.ErrNotFound)
	}
	return nil
}

// PutModel implements store.Writer.
func (w *writer) PutModel(m store.Model) error {
	_, err := w.exec(stmtPutModel, m.ID, []byte(m.Definition), m.UploadTime.Format(time.RFC3339Nano), m.Decommissioned)
	if err != nil {
		return fmt.Errorf("put model %q: %w", m.ID, err)
	}
	return nil
}

// DeleteModel implements store.Writer.
func (w *writer) DeleteModel(id string) error {
	return w.remove(fmt.Sprintf("model %q", id), stmtDeleteModel, id)
}

// Twin implements store.Reader, from the writer's twin cache when it can.
func (w *writer) Twin(id string) (store.Twin, error) {
	if t, ok := w.cache.get(id); ok {
		return t, nil
	}
	t, err := w.reader.Twin(id)
	if err != nil {
		return t, err
	}
	cached := t
	cached.Doc = bytes.Clone(t.Doc)
	w.cache.put(cached)
	return t, nil
}

// PutTwin implements store.Writer.
func (w *writer) PutTwin(t store.Twin) error {
	if err := w.putTwin(t); err != nil {
		w.cache.drop(t.ID)
		return fmt.Errorf("put twin %q: %w", t.ID, err)
	}
	// The cache and the log's tail share the copy; neither modifies it.
	t.Doc = bytes.Clone(t.Doc)
	w.cache.put(t)
	w.touched = append(w.touched, t.ID)
	w.states = append(w.states, entityState{key: t.ID, isTwin: true, twin: &t})
	return nil
}

// putTwin replaces twin t's row, or inserts it when there is none.
func (w *writer) putTwin(t store.Twin) error {
	res, err := w.exec(stmtUpdateTwin, t.ID, t.ModelID, t.ETag, []byte(t.Doc))
	if err != nil {
		return err
	}
	n, err := res.RowsAffected()
	if err != nil {
		return w.fail(err)
	}
	if n == 0 {
		_, err = w.exec(stmtInsertTwin, t.ID, t.ModelID, t.ETag, []byte(t.Doc))
	}
	return err
}

// CreateTwin implements store.Writer. The twin does not go into the cache: a bulk load would
// only evict the twins that Updates keep patching.
func (w *writer) CreateTwin(t store.Twin) error {
	res, err := w.exec(stmtCreateTwin, t.ID, t.ModelID, t.ETag, []byte(t.Doc))
	if err != nil {
		return fmt.Errorf("create twin %q: %w", t.ID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return w.fail(fmt.Errorf("create twin %q: %w", t.ID, err))
	}
	if n == 0 {
		return fmt.Errorf("create twin %q: %w", t.ID, store.ErrExists)
	}
	t.Doc = bytes.Clone(t.Doc)
	w.states = append(w.states, entityState{key: t.ID, isTwin: true, twin: &t})
	return nil
}

// DeleteTwin implements store.Writer.
func (w *writer) DeleteTwin(id string) error {
	w.cache.drop(id)
	if err := w.remove(fmt.Sprintf("twin %q", id), stmtDeleteTwin, id); err != nil {
		return err
	}
	w.states = append(w.states, entityState{key: id, isTwin: true})
	return nil
}

// PutRelationship implements store.Writer.
func (w *writer) PutRelationship(rel store.Relationship) error {
	_, err := w.exec(stmtPutRelationship, rel.SourceID, rel.ID, rel.Name, rel.TargetID, rel.ETag, []byte(rel.Doc))
	if err != nil {
		return fmt.Errorf("put relationship %q of twin %q: %w", rel.ID, rel.SourceID, err)
	}
	rel.Doc = bytes.Clone(rel.Doc)
	w.states = append(w.states, entityState{key: event.RelationshipSubject(rel.SourceID, rel.ID), rel: &rel})
	return nil
}

// CreateRelationship implements store.Writer.
func (w *writer) CreateRelationship(rel store.Relationship, sourceModel, targetModel string) error {
	res, err := w.exec(stmtCreateRelationship, rel.SourceID, rel.ID, rel.Name, rel.TargetID, rel.ETag, []byte(rel.Doc),
		sourceModel, targetModel)
	if err != nil {
		return fmt.Errorf("create relationship %q of twin %q: %w", rel.ID, rel.SourceID, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return w.fail(fmt.Errorf("create relationship %q of twin %q: %w", rel.ID, rel.SourceID, err))
	}
	if n == 0 {
		// Nothing was written; tell the two reasons apart.
		_, err := w.Relationship(rel.SourceID, rel.ID)
		switch {
		case err == nil:
			return fmt.Errorf("create relationship %q of twin %q: %w", rel.ID, rel.SourceID, store.ErrExists)
		case errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("create relationship %q of twin %q: twin %q with model %s or twin %q with model %s: %w",
				rel.ID, rel.SourceID, rel.SourceID, sourceModel, rel.TargetID, targetModel, store.ErrNotFound)
		default:
			return err
		}
	}
	rel.Doc = bytes.Clone(rel.Doc)
	w.states = append(w.states, entityState{key: event.RelationshipSubject(rel.SourceID, rel.ID), rel: &rel})
	return nil
}

// DeleteRelationship implements store.Writer.
func (w *writer) DeleteRelationship(sourceID, id string) error {
	if err := w.remove(fmt.Sprintf("relationship %q of twin %q", id, sourceID), stmtDeleteRelationship, sourceID, id); err != nil {
		return err
	}
	w.states = append(w.states, entityState{key: event.RelationshipSubject(sourceID, id)})
	return nil
}

// Emit implements store.Writer. The record gets the next Seq; the single writer makes that
// gap-free and in commit order. e.Data must be valid JSON. e.Depth goes in a column of its
// own, beside the event's JSON.
func (w *writer) Emit(e event.Event) error {
	buf, err := appendEvent(w.buf[:0], &e)
	if err != nil {
		return fmt.Errorf("emit event %q: %w", e.ID, err)
	}
	// The driver copies a bound value, so buf can be reused for the next event.
	w.buf = buf
	if _, err := w.exec(stmtEmit, int64(w.seq), buf, e.Depth); err != nil {
		return fmt.Errorf("emit event %q: %w", e.ID, err)
	}
	ev := e
	ev.Data = bytes.Clone(e.Data)
	w.pending = append(w.pending, store.Change{Record: event.Record{Seq: w.seq, Event: ev}})
	w.seq++
	return nil
}
