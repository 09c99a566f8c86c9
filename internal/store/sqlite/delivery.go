package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twinflow/twinflow/internal/store"
)

// Delivery state (store.Delivery) lives in the tables of schema version 2. It is written far
// less often than twins (a cursor moves once per delivered batch), so its statements are not
// kept prepared: each runs as text on the writer's connection, or on a View's transaction.

var _ store.Delivery = (*Store)(nil)

// ViewDelivery implements store.Delivery: fn reads one read transaction, as View does.
func (s *Store) ViewDelivery(ctx context.Context, fn func(store.DeliveryReader) error) error {
	if !s.enter(&s.active) {
		return store.ErrClosed
	}
	defer s.active.Done()
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin delivery view: %w", err)
	}
	// A read transaction has nothing to commit; rolling back just ends it.
	defer func() { _ = tx.Rollback() }()
	return fn(&deliveryReader{ctx: ctx, q: tx})
}

// UpdateDelivery implements store.Delivery. fn runs on the writer goroutine like any Update's fn,
// inside its own savepoint of a group-committed transaction; it commits durably or not at
// all.
func (s *Store) UpdateDelivery(ctx context.Context, fn func(store.DeliveryWriter) error) error {
	return s.Update(ctx, func(store.Writer) error {
		return fn(&deliveryWriter{deliveryReader: deliveryReader{ctx: s.w.ctx, q: s.conn}, w: &s.w})
	})
}

// querier is a *sql.Tx (in a View), the writer's *sql.Conn or the checkpointer's *sql.DB.
type querier interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// deliveryReader implements store.DeliveryReader over q.
type deliveryReader struct {
	ctx context.Context
	q   querier
}

var _ store.DeliveryReader = (*deliveryReader)(nil)

const (
	endpointColumns   = "name, config, created"
	routeColumns      = "id, endpoint, filter"
	deadLetterColumns = "id, endpoint, seq, reason, attempts, time, event"
)

func scanEndpoint(sc scanner) (store.Endpoint, error) {
	var (
		e       store.Endpoint
		config  []byte
		created string
	)
	if err := sc.Scan(&e.Name, &config, &created); err != nil {
		return store.Endpoint{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, created)
	if err != nil {
		return store.Endpoint{}, fmt.Errorf("parse creation time of endpoint %q: %w", e.Name, err)
	}
	e.Config, e.Created = config, t
	return e, nil
}

func scanRoute(sc scanner) (store.Route, error) {
	var r store.Route
	err := sc.Scan(&r.ID, &r.EndpointName, &r.Filter)
	return r, err
}

func scanDeadLetter(sc scanner) (store.DeadLetter, error) {
	var (
		d    store.DeadLetter
		at   string
		body []byte
	)
	if err := sc.Scan(&d.ID, &d.Endpoint, &d.Seq, &d.Reason, &d.Attempts, &at, &body); err != nil {
		return store.DeadLetter{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return store.DeadLetter{}, fmt.Errorf("parse time of dead letter %d: %w", d.ID, err)
	}
	if err := json.Unmarshal(body, &d.Event); err != nil {
		return store.DeadLetter{}, fmt.Errorf("decode event of dead letter %d: %w", d.ID, err)
	}
	d.Time = t
	return d, nil
}

// deliveryOne runs a single-row query and scans its row. A missing row is store.ErrNotFound,
// described by what.
func deliveryOne[T any](r *deliveryReader, what string, scan func(scanner) (T, error), query string, args ...any) (T, error) {
	v, err := scan(r.q.QueryRowContext(r.ctx, query, args...))
	if errors.Is(err, sql.ErrNoRows) {
		var zero T
		return zero, fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	if err != nil {
		var zero T
		return zero, fmt.Errorf("read %s: %w", what, err)
	}
	return v, nil
}

// deliveryList runs a query and scans every row it returns.
func deliveryList[T any](r *deliveryReader, what string, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	rows, err := r.q.QueryContext(r.ctx, query, args...)
	if err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	defer rows.Close()
	var vs []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("list %s: %w", what, err)
		}
		vs = append(vs, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("list %s: %w", what, err)
	}
	return vs, nil
}

// Endpoint implements store.DeliveryReader.
func (r *deliveryReader) Endpoint(name string) (store.Endpoint, error) {
	return deliveryOne(r, fmt.Sprintf("endpoint %q", name), scanEndpoint,
		"SELECT "+endpointColumns+" FROM endpoints WHERE name = ?", name)
}

// Endpoints implements store.DeliveryReader.
func (r *deliveryReader) Endpoints() ([]store.Endpoint, error) {
	return deliveryList(r, "endpoints", scanEndpoint, "SELECT "+endpointColumns+" FROM endpoints ORDER BY name")
}

// Route implements store.DeliveryReader.
func (r *deliveryReader) Route(id string) (store.Route, error) {
	return deliveryOne(r, fmt.Sprintf("route %q", id), scanRoute,
		"SELECT "+routeColumns+" FROM routes WHERE id = ?", id)
}

// Routes implements store.DeliveryReader.
func (r *deliveryReader) Routes(after string, limit int) ([]store.Route, error) {
	return deliveryList(r, "routes", scanRoute,
		"SELECT "+routeColumns+" FROM routes WHERE id > ? ORDER BY id LIMIT ?", after, noLimit(limit))
}

// CountRoutes implements store.DeliveryReader.
func (r *deliveryReader) CountRoutes() (int, error) {
	var n int
	if err := r.q.QueryRowContext(r.ctx, "SELECT count(*) FROM routes").Scan(&n); err != nil {
		return 0, fmt.Errorf("count routes: %w", err)
	}
	return n, nil
}

// Cursor implements store.DeliveryReader.
func (r *deliveryReader) Cursor(endpoint string) (uint64, error) {
	return deliveryOne(r, fmt.Sprintf("cursor of endpoint %q", endpoint), scanUint,
		"SELECT cursor FROM endpoints WHERE name = ?", endpoint)
}

// ConsumerCursor implements store.DeliveryReader.
func (r *deliveryReader) ConsumerCursor(name string) (uint64, error) {
	return deliveryOne(r, fmt.Sprintf("cursor of log consumer %q", name), scanUint,
		"SELECT cursor FROM log_consumers WHERE name = ?", name)
}

// ConsumerCursors implements store.DeliveryReader.
func (r *deliveryReader) ConsumerCursors() (map[string]uint64, error) {
	type consumer struct {
		name   string
		cursor uint64
	}
	cs, err := deliveryList(r, "log consumers", func(sc scanner) (consumer, error) {
		var (
			c consumer
			n int64
		)
		err := sc.Scan(&c.name, &n)
		c.cursor = uint64(n)
		return c, err
	}, "SELECT name, cursor FROM log_consumers")
	if err != nil {
		return nil, err
	}
	out := make(map[string]uint64, len(cs))
	for _, c := range cs {
		out[c.name] = c.cursor
	}
	return out, nil
}

func scanUint(sc scanner) (uint64, error) {
	var n int64
	err := sc.Scan(&n)
	return uint64(n), err
}

// DeadLetter implements store.DeliveryReader.
func (r *deliveryReader) DeadLetter(endpoint string, id uint64) (store.DeadLetter, error) {
	return deliveryOne(r, fmt.Sprintf("dead letter %d of endpoint %q", id, endpoint), scanDeadLetter,
		"SELECT "+deadLetterColumns+" FROM dead_letters WHERE endpoint = ? AND id = ?", endpoint, int64(id))
}

// DeadLetters implements store.DeliveryReader.
func (r *deliveryReader) DeadLetters(endpoint string, after uint64, limit int) ([]store.DeadLetter, error) {
	return deliveryList(r, fmt.Sprintf("dead letters of endpoint %q", endpoint), scanDeadLetter,
		"SELECT "+deadLetterColumns+" FROM dead_letters WHERE endpoint = ? AND id > ? ORDER BY id LIMIT ?",
		endpoint, int64(after), noLimit(limit))
}

// CountDeadLetters implements store.DeliveryReader.
func (r *deliveryReader) CountDeadLetters(endpoint string) (int, error) {
	var n int
	err := r.q.QueryRowContext(r.ctx, "SELECT count(*) FROM dead_letters WHERE endpoint = ?", endpoint).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count dead letters of endpoint %q: %w", endpoint, err)
	}
	return n, nil
}

// LogTime implements store.DeliveryReader from the log's clock marks.
func (r *deliveryReader) LogTime(seq uint64) (time.Time, error) {
	ms, err := deliveryOne(r, fmt.Sprintf("commit time of record %d", seq), scanUint,
		"SELECT ms FROM log_clock WHERE seq <= ? ORDER BY seq DESC LIMIT 1", int64(seq))
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(int64(ms)), nil
}

// LogSeqAt implements store.DeliveryReader from the log's clock marks.
func (r *deliveryReader) LogSeqAt(t time.Time) (uint64, error) {
	var seq int64
	err := r.q.QueryRowContext(r.ctx,
		"SELECT coalesce((SELECT min(seq) FROM log_clock WHERE ms >= ?), (SELECT coalesce(max(seq), 0) + 1 FROM log))",
		t.UnixMilli()).Scan(&seq)
	if err != nil {
		return 0, fmt.Errorf("find the log record at %s: %w", t.Format(time.RFC3339Nano), err)
	}
	return uint64(seq), nil
}

// deliveryWriter implements store.DeliveryWriter on the writer goroutine. Its changes run inside
// the current fn's savepoint, opened by w.
type deliveryWriter struct {
	deliveryReader
	w *writer
}

var _ store.DeliveryWriter = (*deliveryWriter)(nil)

// exec runs a change inside the fn's savepoint; see writer.execIn.
func (e *deliveryWriter) exec(query string, args ...any) (sql.Result, error) {
	return e.w.execIn(e.q, query, args...)
}

// change runs a change that must hit a row; see writer.changeIn.
func (e *deliveryWriter) change(what string, query string, args ...any) error {
	return e.w.changeIn(e.q, what, query, args...)
}

// execIn runs a change on q, the writer's connection, inside the current fn's savepoint,
// opening it first if needed, unless a full disk refuses it (see admit). Other errors are
// storage failures: they also break the batch, as the writer's own statements do.
func (w *writer) execIn(q querier, query string, args ...any) (sql.Result, error) {
	if err := w.admit(query, false); err != nil {
		return nil, err
	}
	if !w.savepoint {
		if _, err := w.stmts[stmtSavepoint].ExecContext(w.ctx); err != nil {
			return nil, w.fail(fmt.Errorf("open savepoint: %w", err))
		}
		w.savepoint = true
	}
	res, err := q.ExecContext(w.ctx, query, args...)
	if err != nil {
		return nil, w.fail(err)
	}
	return res, nil
}

// changeIn runs a change on q that must hit a row; none is store.ErrNotFound, described by
// what.
func (w *writer) changeIn(q querier, what string, query string, args ...any) error {
	res, err := w.execIn(q, query, args...)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return w.fail(fmt.Errorf("%s: %w", what, err))
	}
	if n == 0 {
		return fmt.Errorf("%s: %w", what, store.ErrNotFound)
	}
	return nil
}

// PutEndpoint implements store.DeliveryWriter. The writer's next Seq less one is the newest
// record, counting those emitted earlier in this transaction.
func (e *deliveryWriter) PutEndpoint(ep store.Endpoint) error {
	_, err := e.exec("INSERT INTO endpoints (name, config, created, cursor) VALUES (?, ?, ?, ?)"+
		" ON CONFLICT (name) DO UPDATE SET config = excluded.config",
		ep.Name, []byte(ep.Config), ep.Created.UTC().Format(time.RFC3339Nano), int64(e.w.seq-1))
	if err != nil {
		return fmt.Errorf("put endpoint %q: %w", ep.Name, err)
	}
	return nil
}

// DeleteEndpoint implements store.DeliveryWriter.
func (e *deliveryWriter) DeleteEndpoint(name string) error {
	if err := e.change(fmt.Sprintf("delete endpoint %q", name), "DELETE FROM endpoints WHERE name = ?", name); err != nil {
		return err
	}
	if _, err := e.exec("DELETE FROM dead_letters WHERE endpoint = ?", name); err != nil {
		return fmt.Errorf("delete dead letters of endpoint %q: %w", name, err)
	}
	return nil
}

// PutRoute implements store.DeliveryWriter.
func (e *deliveryWriter) PutRoute(r store.Route) error {
	_, err := e.exec("INSERT INTO routes ("+routeColumns+") VALUES (?, ?, ?)"+
		" ON CONFLICT (id) DO UPDATE SET endpoint = excluded.endpoint, filter = excluded.filter",
		r.ID, r.EndpointName, r.Filter)
	if err != nil {
		return fmt.Errorf("put route %q: %w", r.ID, err)
	}
	return nil
}

// DeleteRoute implements store.DeliveryWriter.
func (e *deliveryWriter) DeleteRoute(id string) error {
	return e.change(fmt.Sprintf("delete route %q", id), "DELETE FROM routes WHERE id = ?", id)
}

// SetCursor implements store.DeliveryWriter.
func (e *deliveryWriter) SetCursor(endpoint string, seq uint64) error {
	return e.change(fmt.Sprintf("set cursor of endpoint %q", endpoint),
		"UPDATE endpoints SET cursor = ? WHERE name = ?", int64(seq), endpoint)
}

// SetConsumerCursor implements store.DeliveryWriter.
func (e *deliveryWriter) SetConsumerCursor(name string, seq uint64) error {
	_, err := e.exec("INSERT INTO log_consumers (name, cursor) VALUES (?, ?)"+
		" ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor", name, int64(seq))
	if err != nil {
		return fmt.Errorf("set cursor of log consumer %q: %w", name, err)
	}
	return nil
}

// DeleteConsumerCursor implements store.DeliveryWriter.
func (e *deliveryWriter) DeleteConsumerCursor(name string) error {
	return e.change(fmt.Sprintf("delete cursor of log consumer %q", name), "DELETE FROM log_consumers WHERE name = ?", name)
}

// AddDeadLetter implements store.DeliveryWriter.
func (e *deliveryWriter) AddDeadLetter(d store.DeadLetter) (uint64, error) {
	body, err := json.Marshal(d.Event)
	if err != nil {
		return 0, fmt.Errorf("encode dead letter of event %q: %w", d.Event.ID, err)
	}
	res, err := e.exec("INSERT INTO dead_letters (endpoint, seq, reason, attempts, time, event) VALUES (?, ?, ?, ?, ?, ?)",
		d.Endpoint, int64(d.Seq), d.Reason, d.Attempts, d.Time.UTC().Format(time.RFC3339Nano), body)
	if err != nil {
		return 0, fmt.Errorf("add dead letter of event %q to endpoint %q: %w", d.Event.ID, d.Endpoint, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, e.w.fail(fmt.Errorf("add dead letter of event %q: %w", d.Event.ID, err))
	}
	return uint64(id), nil
}

// DeleteDeadLetter implements store.DeliveryWriter.
func (e *deliveryWriter) DeleteDeadLetter(endpoint string, id uint64) error {
	return e.change(fmt.Sprintf("delete dead letter %d of endpoint %q", id, endpoint),
		"DELETE FROM dead_letters WHERE endpoint = ? AND id = ?", endpoint, int64(id))
}

// pruneLogBounds selects the first record of the log and the last PruneLog may delete, given
// through (?1), before in Unix milliseconds (?2) and max (?3). It reads min(seq) and max(seq)
// each in a subquery of its own: SQLite looks a lone min or max up in the primary key, but
// scans the whole log for the two in one select, which held the writer for half a second
// once the log held a million records.
const pruneLogBounds = `
SELECT first,
       min(?1, last - 1, coalesce((SELECT min(seq) FROM log_clock WHERE ms >= ?2), last + 1) - 1, first + ?3 - 1)
FROM (SELECT coalesce((SELECT min(seq) FROM log), 0) AS first, coalesce((SELECT max(seq) FROM log), 0) AS last)`

// PruneLog implements store.DeliveryWriter. It deletes a prefix of the log: records up to the
// smallest of through, the newest record less one, the last record committed before before,
// and the oldest record plus max less one. Clock marks older than the first kept record go
// too, except the one that dates it.
func (e *deliveryWriter) PruneLog(through uint64, before time.Time, max int) (int, error) {
	if max <= 0 {
		return 0, nil
	}
	var first, limit int64
	err := e.q.QueryRowContext(e.ctx, pruneLogBounds, int64(through), before.UnixMilli(), max).Scan(&first, &limit)
	if err != nil {
		return 0, e.w.fail(fmt.Errorf("find log records to prune: %w", err))
	}
	if first == 0 || limit < first {
		return 0, nil
	}
	res, err := e.exec("DELETE FROM log WHERE seq <= ?", limit)
	if err != nil {
		return 0, fmt.Errorf("prune log through %d: %w", limit, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, e.w.fail(fmt.Errorf("prune log through %d: %w", limit, err))
	}
	// The tail must not hand out what the log no longer holds, including the records of a
	// batch that committed before this transaction but is acknowledged (pushed to the tail)
	// after it. Should this transaction roll back, reading the records from the database
	// instead costs only time.
	e.w.tail.DropThrough(uint64(limit))
	_, err = e.exec("DELETE FROM log_clock WHERE seq < (SELECT max(seq) FROM log_clock WHERE seq <= ?)", limit+1)
	if err != nil {
		return 0, fmt.Errorf("prune log clock through %d: %w", limit, err)
	}
	return int(n), nil
}
