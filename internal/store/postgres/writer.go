package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/logtail"
)

// writer implements store.Writer for one fn at a time, inside the writer goroutine's batch
// transaction, on its own connection.
//
// Statements are queued and sent in one round trip (a pipeline) by flush, only when a
// statement's answer is needed: the batch's BEGIN and each fn's SAVEPOINT go out with the
// fn's first statement that returns something, and the puts, whose result nobody waits for,
// go out with the next such statement, of this fn or a later one, or with the commit. So an
// Update that reads a twin and puts it costs one round trip, shared with the puts of the
// Update before it. A fn whose statements are still unsent when it returns is pending: it
// succeeded so far, but if one of its statements fails when sent, it fails after all, and is
// rolled back to its savepoint (see flush) while the fns after it are sent again. A failing
// statement thus fails its own fn, even if the fn ignores the error, and no other. Events are
// not statements: the batch's records are appended to the log by the commit (see appendLog).
type writer struct {
	reader
	ctx        context.Context
	conn       *pgx.Conn
	connConfig *pgx.ConnConfig // to connect again after the connection broke
	logger     *slog.Logger

	// b holds the queued statements and handlers what to do with each one's result.
	b        pgx.Batch
	handlers []handler
	// begun reports whether the batch's BEGIN is queued or sent.
	begun bool
	// cur is the fn running, nil between fns; pending are the fns that returned with
	// statements not yet sent, oldest first.
	cur     *fnState
	pending []*fnState
	// savepoint reports whether the current fn's SAVEPOINT is queued, savepointSent whether
	// it was sent. mark is the length the queue had before the fn queued its SAVEPOINT (and
	// the batch's BEGIN, if markBegan), to forget the fn while nothing of it was sent.
	savepoint, savepointSent bool
	mark                     int
	markBegan                bool
	// broken is the first failed statement of the current fn, which fails it.
	broken error
	// failure dooms the whole batch: its connection or transaction failed outside any fn.
	failure error

	// records are the batch's records in emit order, without their Seqs until the commit;
	// events and depths are their columns for appendLog.
	records []store.Change
	events  [][]byte
	depths  []int32
	// twins is how many twins the batch's fns added (less those deleted), counting the fns
	// whose statements all succeeded.
	twins int64
	// states lists what the current fn's puts and deletes left behind, oldest first, for the
	// records it emits (see settle); latest indexes them when there are many.
	states []entityState
	latest map[stateKey]int
	// tail is the Store's, from which PruneLog drops what it deletes.
	tail *logtail.Tail
	// touched marks, by kind, the configuration the batch changes: 1 for each kind whose
	// generation its commit bumps (see touch).
	touched [numGenKinds]int64
}

// fnState is the state of one fn of the batch.
type fnState struct {
	req *request
	// from and to delimit its records, records[from:to]; to is set when it returns.
	from, to int
	// twins is how many twins its statements added, as far as their results came back.
	twins int64
}

// handler says what to do with one queued statement's result.
type handler struct {
	// owner is the fn the statement belongs to; nil for the batch's own statements.
	owner *fnState
	// savepoint marks the owner's SAVEPOINT.
	savepoint bool
	// rows, when set, is called for each row the statement returns.
	rows func(pgx.Rows) error
	// tag, when set, receives the statement's command tag.
	tag *pgconn.CommandTag
	// fail, when set, describes the statement's failure to its fn.
	fail func(error) error
}

var _ store.Writer = (*writer)(nil)

// controlStatements are the transaction control statements the writer queues. They are
// prepared when the writer connects (see prepareControl): a statement not yet prepared is
// prepared before its batch is sent, and PostgreSQL refuses to prepare anything in a
// transaction that a failed statement aborted, which is where a rollback to a savepoint is
// sent.
var controlStatements = []string{
	"BEGIN", "COMMIT", "SAVEPOINT fn", "RELEASE SAVEPOINT fn", "ROLLBACK TO SAVEPOINT fn",
}

// prepareControl prepares the controlStatements on conn, each named by its text, which is how
// a batch finds them.
func prepareControl(ctx context.Context, conn *pgx.Conn) error {
	for _, sql := range controlStatements {
		if _, err := conn.Prepare(ctx, sql, sql); err != nil {
			return fmt.Errorf("prepare %q: %w", sql, err)
		}
	}
	return nil
}

// usable returns the error that keeps the current fn from running more statements.
func (w *writer) usable() error {
	if w.failure != nil {
		return w.failure
	}
	return w.broken
}

// queueBatch queues one of the batch's own statements, h's owner left nil.
func (w *writer) queueBatch(h handler, sql string, args ...any) {
	w.b.Queue(sql, args...)
	w.handlers = append(w.handlers, h)
}

// enqueue queues a statement of the current fn, after the batch's BEGIN and the fn's
// SAVEPOINT if they are not queued yet.
func (w *writer) enqueue(sql string, args []any, h handler) {
	if !w.savepoint {
		w.mark, w.markBegan = len(w.handlers), !w.begun
		if !w.begun {
			w.queueBatch(handler{}, "BEGIN")
			w.begun = true
		}
		w.queueBatch(handler{owner: w.cur, savepoint: true}, "SAVEPOINT fn")
		w.savepoint = true
	}
	h.owner = w.cur
	w.queueBatch(h, sql, args...)
}

// send sends the queued statements in one round trip and hands each result to its handler.
// It returns the index of the first statement that failed, with its error, or -1. The queue
// is left as it was.
func (w *writer) send() (int, error) {
	br := w.conn.SendBatch(w.ctx, &w.b)
	failed, first := -1, error(nil)
	for i, h := range w.handlers {
		var err error
		if h.rows != nil {
			var rows pgx.Rows
			if rows, err = br.Query(); err == nil {
				for err == nil && rows.Next() {
					err = h.rows(rows)
				}
				rows.Close()
				if err == nil {
					err = rows.Err()
				}
			}
		} else {
			var tag pgconn.CommandTag
			tag, err = br.Exec()
			if h.tag != nil {
				*h.tag = tag
			}
		}
		if err != nil && first == nil {
			failed, first = i, err
		}
	}
	if err := br.Close(); err != nil && first == nil {
		failed, first = len(w.handlers)-1, err
	}
	return failed, first
}

// clearQueue empties the queue.
func (w *writer) clearQueue() {
	clear(w.handlers)
	w.b.QueuedQueries, w.handlers = w.b.QueuedQueries[:0], w.handlers[:0]
}

// flush sends the queued statements. When they all succeed, every pending fn is done. When
// one fails, it returns the error, and:
//   - if the connection broke, the statement was the batch's own or a SAVEPOINT, or the
//     failure was not the server's, the batch is doomed (failure);
//   - if it was the current fn's, the fn is broken: it fails when it returns;
//   - if it was a pending fn's, that fn fails now: the batch rolls back to its savepoint
//     (which is the newest, for the pipeline skipped everything after the failure, its
//     RELEASE included) and sends the statements of the fns after it again.
func (w *writer) flush() error {
	for len(w.handlers) > 0 {
		k, err := w.send()
		if w.savepoint {
			w.savepointSent = true
		}
		if err == nil {
			w.settlePending(len(w.pending))
			w.clearQueue()
			return nil
		}
		h := w.handlers[k]
		if h.fail != nil {
			err = h.fail(err)
		}
		switch {
		case w.conn.IsClosed():
			w.failure = fmt.Errorf("store connection: %w", err)
		case h.owner == nil || h.savepoint || pgCode(err) == "":
			// A failure that is not the server's (decoding a result) leaves the server going
			// on after it: only dooming the batch keeps the fns after it from running twice.
			w.failure = err
		case h.owner == w.cur:
			w.settlePending(len(w.pending))
			if w.broken == nil {
				w.broken = err
			}
		}
		if w.failure != nil || h.owner == w.cur {
			w.clearQueue()
			return err
		}
		// A pending fn failed. Those before it are done; the statements after the failed
		// one were skipped, and those of later fns go again after the rollback.
		i := slices.Index(w.pending, h.owner)
		if i < 0 {
			w.failure = fmt.Errorf("a statement of no pending fn failed: %w", err)
			w.clearQueue()
			return err
		}
		w.settlePending(i)
		w.retract(h.owner, err)
		queries, handlers := slices.Clone(w.b.QueuedQueries[k+1:]), slices.Clone(w.handlers[k+1:])
		w.clearQueue()
		w.queueBatch(handler{}, "ROLLBACK TO SAVEPOINT fn")
		w.queueBatch(handler{}, "RELEASE SAVEPOINT fn")
		for j, q := range queries {
			if handlers[j].owner != h.owner {
				w.b.QueuedQueries = append(w.b.QueuedQueries, q)
				w.handlers = append(w.handlers, handlers[j])
			}
		}
	}
	return nil
}

// settlePending takes the first n pending fns as done: their statements all succeeded.
func (w *writer) settlePending(n int) {
	for _, st := range w.pending[:n] {
		w.twins += st.twins
	}
	clear(w.pending[:n])
	w.pending = w.pending[n:]
}

// retract fails the pending fn st with err after the fact: its records leave the batch.
func (w *writer) retract(st *fnState, err error) {
	if st.req.err == nil && st.req.panicked == nil {
		st.req.err = err
	}
	n := st.to - st.from
	clear(w.records[st.from:st.to])
	w.records = slices.Delete(w.records, st.from, st.to)
	w.events = slices.Delete(w.events, st.from, st.to)
	w.depths = slices.Delete(w.depths, st.from, st.to)
	w.pending = slices.DeleteFunc(w.pending, func(p *fnState) bool { return p == st })
	for _, p := range w.pending {
		if p.from >= st.to {
			p.from, p.to = p.from-n, p.to-n
		}
	}
	if w.cur != nil && w.cur.from >= st.to {
		w.cur.from -= n
	}
}

// query implements querier: it sends the queued statements with this one.
func (w *writer) query(sql string, args []any, each func(pgx.Rows) error) error {
	if err := w.usable(); err != nil {
		return err
	}
	w.enqueue(sql, args, handler{rows: each})
	if err := w.flush(); err != nil {
		return err
	}
	// A failure of an earlier fn's statement may have kept this one from running.
	return w.usable()
}

// put queues a change whose result nobody waits for; its failure shows when it is sent, and
// fails the fn.
func (w *writer) put(sql string, args ...any) error {
	if err := w.usable(); err != nil {
		return err
	}
	w.enqueue(sql, args, handler{})
	return nil
}

// exec runs a change now and returns its command tag.
func (w *writer) exec(sql string, args ...any) (pgconn.CommandTag, error) {
	if err := w.usable(); err != nil {
		return pgconn.CommandTag{}, err
	}
	var tag pgconn.CommandTag
	w.enqueue(sql, args, handler{tag: &tag})
	if err := w.flush(); err != nil {
		return tag, err
	}
	return tag, w.usable()
}

// change runs a change that must hit a row; none is store.ErrNotFound, described by what.
func (w *writer) change(what string, sql string, args ...any) error {
	tag, err := w.exec(sql, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

// CountTwins implements store.Reader: the committed count and the batch's changes to it,
// the current fn's included.
func (w *writer) CountTwins() (int, error) {
	// The batch's puts are counted as their results come back, which is at the latest with
	// the count's own.
	n, err := w.reader.CountTwins()
	return n + int(w.twins+w.cur.twins), err
}

// lockModel takes a transaction-level advisory lock on a model id, held until the commit.
const lockModel = "SELECT pg_advisory_xact_lock(hashtextextended('twinflow model ' || $1, 0))"

// Model implements store.Reader in a Writer: it locks the model's id before it reads the row
// (FOR UPDATE, as Twin does), in the same round trip. A row lock alone locks nothing when the
// model does not exist yet, so two nodes adding one model would both find it missing and both
// add it; with the id locked, the second waits for the first's commit and finds it.
func (w *writer) Model(id string) (store.Model, error) {
	if err := w.usable(); err != nil {
		return store.Model{}, err
	}
	w.enqueue(lockModel, []any{id}, handler{rows: func(pgx.Rows) error { return nil }})
	return w.reader.Model(id)
}

// PutModel implements store.Writer. Like every write of configuration, it bumps its kind's
// generation when the batch commits (see Store.Generations).
func (w *writer) PutModel(m store.Model) error {
	err := w.put("INSERT INTO models ("+modelColumns+") VALUES ($1, $2, $3, $4)"+
		" ON CONFLICT (id) DO UPDATE SET definition = excluded.definition,"+
		" upload_time = excluded.upload_time, decommissioned = excluded.decommissioned",
		m.ID, blob(m.Definition), formatTime(m.UploadTime), m.Decommissioned)
	if err != nil {
		return fmt.Errorf("put model %q: %w", m.ID, err)
	}
	w.touch(genModels)
	return nil
}

// DeleteModel implements store.Writer.
func (w *writer) DeleteModel(id string) error {
	if err := w.change(fmt.Sprintf("delete model %q", id), "DELETE FROM models WHERE id = $1", id); err != nil {
		return err
	}
	w.touch(genModels)
	return nil
}

// putTwin upserts a twin; it returns whether the row is new (xmax is 0 only in a row this
// statement inserted).
const putTwin = "INSERT INTO twins (" + twinColumns + ") VALUES ($1, $2, $3, $4)" +
	" ON CONFLICT (id) DO UPDATE SET model_id = excluded.model_id, etag = excluded.etag, doc = excluded.doc" +
	" RETURNING xmax = 0"

// PutTwin implements store.Writer. The upsert is queued: it goes out with the fn's next
// statement or at its end.
func (w *writer) PutTwin(t store.Twin) error {
	if err := w.usable(); err != nil {
		return fmt.Errorf("put twin %q: %w", t.ID, err)
	}
	// The queue and the log's tail keep the copy; the caller may reuse t.Doc.
	t.Doc = bytes.Clone(t.Doc)
	st := w.cur
	w.enqueue(putTwin, []any{t.ID, t.ModelID, t.ETag, blob(t.Doc)}, handler{rows: func(rows pgx.Rows) error {
		var inserted bool
		if err := rows.Scan(&inserted); err != nil {
			return err
		}
		if inserted {
			st.twins++
		}
		return nil
	}})
	w.states = append(w.states, entityState{key: t.ID, isTwin: true, twin: &t})
	return nil
}

// replaceTwin replaces a twin whose ETag is $5, and fails with division_by_zero (22012)
// when there is none, so that the failure reaches the fn the way any failing statement's
// does (see flush), whenever the statement is sent.
const replaceTwin = "WITH u AS (UPDATE twins SET model_id = $2, etag = $3, doc = $4 WHERE id = $1 AND etag = $5 RETURNING 1)" +
	" SELECT 1 / count(*)::int FROM u"

// ReplaceTwin implements store.TwinReplacer: the conditional update is queued like PutTwin's
// upsert, and goes out with the fn's next statement or at its end; a twin whose ETag is not
// etag (or which is gone) fails the fn, and so the Update, with store.ErrConflict, as does a
// deadlock with another node's transaction that PostgreSQL broke by failing this statement.
func (w *writer) ReplaceTwin(t store.Twin, etag string) error {
	if err := w.usable(); err != nil {
		return fmt.Errorf("replace twin %q: %w", t.ID, err)
	}
	t.Doc = bytes.Clone(t.Doc)
	id := t.ID
	w.enqueue(replaceTwin, []any{t.ID, t.ModelID, t.ETag, blob(t.Doc), etag}, handler{
		rows: func(pgx.Rows) error { return nil },
		fail: func(err error) error {
			switch pgCode(err) {
			case "22012":
				return fmt.Errorf("replace twin %q: %w: its ETag is no longer %s (%w)", id, store.ErrConflict, etag, err)
			case "40P01":
				// Another node's transaction and this one each waited for a row the other
				// held; PostgreSQL broke the deadlock by failing this statement. Nothing of the
				// fn is kept, and preparing it again may well succeed.
				return fmt.Errorf("replace twin %q: %w: %w", id, store.ErrConflict, err)
			}
			return err
		},
	})
	w.states = append(w.states, entityState{key: t.ID, isTwin: true, twin: &t})
	return nil
}

var _ store.TwinReplacer = (*writer)(nil)

// CreateTwin implements store.Writer.
func (w *writer) CreateTwin(t store.Twin) error {
	tag, err := w.exec("INSERT INTO twins ("+twinColumns+") VALUES ($1, $2, $3, $4) ON CONFLICT (id) DO NOTHING",
		t.ID, t.ModelID, t.ETag, blob(t.Doc))
	if err != nil {
		return fmt.Errorf("create twin %q: %w", t.ID, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("create twin %q: %w", t.ID, store.ErrExists)
	}
	w.cur.twins++
	t.Doc = bytes.Clone(t.Doc)
	w.states = append(w.states, entityState{key: t.ID, isTwin: true, twin: &t})
	return nil
}

// DeleteTwin implements store.Writer.
func (w *writer) DeleteTwin(id string) error {
	if err := w.change(fmt.Sprintf("delete twin %q", id), "DELETE FROM twins WHERE id = $1", id); err != nil {
		return err
	}
	w.cur.twins--
	w.states = append(w.states, entityState{key: id, isTwin: true})
	return nil
}

// PutRelationship implements store.Writer.
func (w *writer) PutRelationship(r store.Relationship) error {
	r.Doc = bytes.Clone(r.Doc)
	err := w.put("INSERT INTO relationships ("+relationshipColumns+") VALUES ($1, $2, $3, $4, $5, $6)"+
		" ON CONFLICT (source_id, id) DO UPDATE SET name = excluded.name, target_id = excluded.target_id,"+
		" etag = excluded.etag, doc = excluded.doc",
		r.SourceID, r.ID, r.Name, r.TargetID, r.ETag, blob(r.Doc))
	if err != nil {
		return fmt.Errorf("put relationship %q of twin %q: %w", r.ID, r.SourceID, err)
	}
	w.states = append(w.states, entityState{key: event.RelationshipSubject(r.SourceID, r.ID), rel: &r})
	return nil
}

// CreateRelationship implements store.Writer. It checks both twins and inserts in one
// statement, taking a share lock on both twins so that neither changes model or goes away
// before the commit.
func (w *writer) CreateRelationship(r store.Relationship, sourceModel, targetModel string) error {
	tag, err := w.exec("INSERT INTO relationships ("+relationshipColumns+")"+
		" SELECT $1, $2, $3, $4, $5, $6"+
		" WHERE EXISTS (SELECT 1 FROM twins WHERE id = $1 AND model_id = $7 FOR SHARE)"+
		" AND EXISTS (SELECT 1 FROM twins WHERE id = $4 AND model_id = $8 FOR SHARE)"+
		" ON CONFLICT (source_id, id) DO NOTHING",
		r.SourceID, r.ID, r.Name, r.TargetID, r.ETag, blob(r.Doc), sourceModel, targetModel)
	if err != nil {
		return fmt.Errorf("create relationship %q of twin %q: %w", r.ID, r.SourceID, err)
	}
	if tag.RowsAffected() == 0 {
		// Nothing was written; tell the two reasons apart.
		_, err := w.Relationship(r.SourceID, r.ID)
		switch {
		case err == nil:
			return fmt.Errorf("create relationship %q of twin %q: %w", r.ID, r.SourceID, store.ErrExists)
		case errors.Is(err, store.ErrNotFound):
			return fmt.Errorf("create relationship %q of twin %q: twin %q with model %s or twin %q with model %s: %w",
				r.ID, r.SourceID, r.SourceID, sourceModel, r.TargetID, targetModel, store.ErrNotFound)
		default:
			return err
		}
	}
	r.Doc = bytes.Clone(r.Doc)
	w.states = append(w.states, entityState{key: event.RelationshipSubject(r.SourceID, r.ID), rel: &r})
	return nil
}

// DeleteRelationship implements store.Writer.
func (w *writer) DeleteRelationship(sourceID, id string) error {
	err := w.change(fmt.Sprintf("delete relationship %q of twin %q", id, sourceID),
		"DELETE FROM relationships WHERE source_id = $1 AND id = $2", sourceID, id)
	if err != nil {
		return err
	}
	w.states = append(w.states, entityState{key: event.RelationshipSubject(sourceID, id)})
	return nil
}

// Emit implements store.Writer. The record waits in memory for the commit, which gives the
// batch's records their Seqs (see appendLog). e.Data must be valid JSON.
func (w *writer) Emit(e event.Event) error {
	if err := w.usable(); err != nil {
		return fmt.Errorf("emit event %q: %w", e.ID, err)
	}
	buf, err := encodeEvent(&e)
	if err != nil {
		return fmt.Errorf("emit event %q: %w", e.ID, err)
	}
	e.Data = bytes.Clone(e.Data)
	w.records = append(w.records, store.Change{Record: event.Record{Event: e}})
	w.events = append(w.events, buf)
	w.depths = append(w.depths, int32(e.Depth))
	return nil
}

// entityState is what a put or delete left of a twin (key is its id) or of a relationship
// (key is its event subject); nil pointers mean deleted.
type entityState struct {
	key    string
	isTwin bool
	twin   *store.Twin
	rel    *store.Relationship
}

// stateKey identifies an entity in the states of a fn.
type stateKey struct {
	key    string
	isTwin bool
}

// settleScan is the most states times records settle compares one by one.
const settleScan = 4096

// settle gives each record the fn emitted, records[from:], the state the fn left its
// subject in, once the fn succeeded. A fn that writes many entities gets an index of its
// states, so that settling costs time in proportion to its records, not their square.
func (w *writer) settle(from int) {
	emitted := w.records[from:]
	if len(emitted) == 0 || len(w.states) == 0 {
		return
	}
	if len(emitted)*len(w.states) > settleScan {
		if w.latest == nil {
			w.latest = make(map[stateKey]int)
		}
		clear(w.latest)
		for i := range w.states {
			w.latest[stateKey{w.states[i].key, w.states[i].isTwin}] = i
		}
	}
	for i := range emitted {
		c := &emitted[i]
		isTwin, ok := subjectKind(c.Event.Type)
		if !ok {
			continue
		}
		j := -1
		if len(emitted)*len(w.states) > settleScan {
			if k, found := w.latest[stateKey{c.Event.Subject, isTwin}]; found {
				j = k
			}
		} else {
			for k := len(w.states) - 1; k >= 0; k-- {
				if w.states[k].key == c.Event.Subject && w.states[k].isTwin == isTwin {
					j = k
					break
				}
			}
		}
		if j >= 0 {
			st := &w.states[j]
			c.Known, c.Twin, c.Relationship = true, st.twin, st.rel
		}
	}
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
