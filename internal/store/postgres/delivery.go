package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/store"
)

// Delivery state (store.Delivery) is written far less often than twins: a cursor moves once
// per delivered batch.

var _ store.Delivery = (*Store)(nil)

// ViewDelivery implements store.Delivery: fn reads one snapshot, as View does.
func (s *Store) ViewDelivery(ctx context.Context, fn func(store.DeliveryReader) error) error {
	return s.view(ctx, "delivery view", func(tx pgx.Tx) error {
		return fn(&deliveryReader{q: txQuerier{ctx: ctx, tx: tx}})
	})
}

// UpdateDelivery implements store.Delivery. fn runs on the writer goroutine like any
// Update's fn, inside its own savepoint of a group-committed transaction.
func (s *Store) UpdateDelivery(ctx context.Context, fn func(store.DeliveryWriter) error) error {
	return s.update(ctx, func(store.Writer) error {
		return fn(&deliveryWriter{deliveryReader: deliveryReader{q: &s.w}, w: &s.w})
	})
}

// deliveryReader implements store.DeliveryReader over q.
type deliveryReader struct {
	q querier
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
	t, err := parseTime(created)
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
		d        store.DeadLetter
		id, seq  int64
		attempts int32
		at       string
		body     []byte
	)
	if err := sc.Scan(&id, &d.Endpoint, &seq, &d.Reason, &attempts, &at, &body); err != nil {
		return store.DeadLetter{}, err
	}
	d.ID, d.Seq, d.Attempts = uint64(id), uint64(seq), int(attempts)
	t, err := parseTime(at)
	if err != nil {
		return store.DeadLetter{}, fmt.Errorf("parse time of dead letter %d: %w", d.ID, err)
	}
	if err := json.Unmarshal(body, &d.Event); err != nil {
		return store.DeadLetter{}, fmt.Errorf("decode event of dead letter %d: %w", d.ID, err)
	}
	d.Time = t
	return d, nil
}

func scanUint(sc scanner) (uint64, error) {
	var n int64
	err := sc.Scan(&n)
	return uint64(n), err
}

// Endpoint implements store.DeliveryReader.
func (r *deliveryReader) Endpoint(name string) (store.Endpoint, error) {
	return one(r.q, fmt.Sprintf("endpoint %q", name), scanEndpoint,
		"SELECT "+endpointColumns+" FROM endpoints WHERE name = $1", name)
}

// Endpoints implements store.DeliveryReader.
func (r *deliveryReader) Endpoints() ([]store.Endpoint, error) {
	return list(r.q, "endpoints", scanEndpoint, "SELECT "+endpointColumns+" FROM endpoints ORDER BY name")
}

// Route implements store.DeliveryReader.
func (r *deliveryReader) Route(id string) (store.Route, error) {
	return one(r.q, fmt.Sprintf("route %q", id), scanRoute, "SELECT "+routeColumns+" FROM routes WHERE id = $1", id)
}

// Routes implements store.DeliveryReader.
func (r *deliveryReader) Routes(after string, n int) ([]store.Route, error) {
	return list(r.q, "routes", scanRoute,
		"SELECT "+routeColumns+" FROM routes WHERE id > $1 ORDER BY id LIMIT $2", after, limit(n))
}

// CountRoutes implements store.DeliveryReader.
func (r *deliveryReader) CountRoutes() (int, error) {
	n, err := value[int64](r.q, "count routes", "SELECT count(*) FROM routes")
	return int(n), err
}

// Cursor implements store.DeliveryReader.
func (r *deliveryReader) Cursor(endpoint string) (uint64, error) {
	return one(r.q, fmt.Sprintf("cursor of endpoint %q", endpoint), scanUint,
		"SELECT cursor FROM endpoints WHERE name = $1", endpoint)
}

// ConsumerCursor implements store.DeliveryReader.
func (r *deliveryReader) ConsumerCursor(name string) (uint64, error) {
	return one(r.q, fmt.Sprintf("cursor of log consumer %q", name), scanUint,
		"SELECT cursor FROM log_consumers WHERE name = $1", name)
}

// ConsumerCursors implements store.DeliveryReader.
func (r *deliveryReader) ConsumerCursors() (map[string]uint64, error) {
	out := map[string]uint64{}
	err := r.q.query("SELECT name, cursor FROM log_consumers", nil, func(rows pgx.Rows) error {
		var (
			name   string
			cursor int64
		)
		err := rows.Scan(&name, &cursor)
		out[name] = uint64(cursor)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list log consumers: %w", err)
	}
	return out, nil
}

// DeadLetter implements store.DeliveryReader.
func (r *deliveryReader) DeadLetter(endpoint string, id uint64) (store.DeadLetter, error) {
	return one(r.q, fmt.Sprintf("dead letter %d of endpoint %q", id, endpoint), scanDeadLetter,
		"SELECT "+deadLetterColumns+" FROM dead_letters WHERE endpoint = $1 AND id = $2", endpoint, int64(id))
}

// DeadLetters implements store.DeliveryReader.
func (r *deliveryReader) DeadLetters(endpoint string, after uint64, n int) ([]store.DeadLetter, error) {
	return list(r.q, fmt.Sprintf("dead letters of endpoint %q", endpoint), scanDeadLetter,
		"SELECT "+deadLetterColumns+" FROM dead_letters WHERE endpoint = $1 AND id > $2 ORDER BY id LIMIT $3",
		endpoint, int64(after), limit(n))
}

// CountDeadLetters implements store.DeliveryReader.
func (r *deliveryReader) CountDeadLetters(endpoint string) (int, error) {
	n, err := value[int64](r.q, fmt.Sprintf("count dead letters of endpoint %q", endpoint),
		"SELECT count(*) FROM dead_letters WHERE endpoint = $1", endpoint)
	return int(n), err
}

// LogTime implements store.DeliveryReader from the log's clock marks.
func (r *deliveryReader) LogTime(seq uint64) (time.Time, error) {
	ms, err := one(r.q, fmt.Sprintf("commit time of record %d", seq), scanUint,
		"SELECT ms FROM log_clock WHERE seq <= $1 ORDER BY seq DESC LIMIT 1", int64(seq))
	if err != nil {
		return time.Time{}, err
	}
	return time.UnixMilli(int64(ms)), nil
}

// LogSeqAt implements store.DeliveryReader from the log's clock marks.
func (r *deliveryReader) LogSeqAt(t time.Time) (uint64, error) {
	seq, err := value[int64](r.q, fmt.Sprintf("find the log record at %s", t.Format(time.RFC3339Nano)),
		"SELECT coalesce((SELECT min(seq) FROM log_clock WHERE ms >= $1), (SELECT seq + 1 FROM head))", t.UnixMilli())
	return uint64(seq), err
}

// deliveryWriter implements store.DeliveryWriter on the writer goroutine, inside the current
// fn's savepoint.
type deliveryWriter struct {
	deliveryReader
	w *writer
}

var _ store.DeliveryWriter = (*deliveryWriter)(nil)

// PutEndpoint implements store.DeliveryWriter. A new endpoint's cursor is the newest record,
// counting those emitted earlier in this batch: it locks the head until the commit, so that
// no other node appends between the newest record it reads and this batch's own. (Reading the
// head sends the earlier fns' statements, so the batch's records counted are final.) Holding
// the head for the rest of the batch makes other nodes' commits wait for it; endpoints are
// created rarely.
func (e *deliveryWriter) PutEndpoint(ep store.Endpoint) error {
	head, err := value[int64](e.w, "lock the log's head", "SELECT seq FROM head FOR UPDATE")
	if err != nil {
		return fmt.Errorf("put endpoint %q: %w", ep.Name, err)
	}
	err = e.w.put("INSERT INTO endpoints (name, config, created, cursor) VALUES ($1, $2, $3, $4)"+
		" ON CONFLICT (name) DO UPDATE SET config = excluded.config",
		ep.Name, blob(ep.Config), formatTime(ep.Created), head+int64(len(e.w.records)))
	if err != nil {
		return fmt.Errorf("put endpoint %q: %w", ep.Name, err)
	}
	e.w.touch(genEndpoints)
	return nil
}

// DeleteEndpoint implements store.DeliveryWriter.
func (e *deliveryWriter) DeleteEndpoint(name string) error {
	if err := e.w.change(fmt.Sprintf("delete endpoint %q", name), "DELETE FROM endpoints WHERE name = $1", name); err != nil {
		return err
	}
	if err := e.w.put("DELETE FROM dead_letters WHERE endpoint = $1", name); err != nil {
		return fmt.Errorf("delete dead letters of endpoint %q: %w", name, err)
	}
	e.w.touch(genEndpoints)
	return nil
}

// PutRoute implements store.DeliveryWriter.
func (e *deliveryWriter) PutRoute(r store.Route) error {
	err := e.w.put("INSERT INTO routes ("+routeColumns+") VALUES ($1, $2, $3)"+
		" ON CONFLICT (id) DO UPDATE SET endpoint = excluded.endpoint, filter = excluded.filter",
		r.ID, r.EndpointName, r.Filter)
	if err != nil {
		return fmt.Errorf("put route %q: %w", r.ID, err)
	}
	e.w.touch(genRoutes)
	return nil
}

// DeleteRoute implements store.DeliveryWriter.
func (e *deliveryWriter) DeleteRoute(id string) error {
	if err := e.w.change(fmt.Sprintf("delete route %q", id), "DELETE FROM routes WHERE id = $1", id); err != nil {
		return err
	}
	e.w.touch(genRoutes)
	return nil
}

// SetCursor implements store.DeliveryWriter.
func (e *deliveryWriter) SetCursor(endpoint string, seq uint64) error {
	return e.w.change(fmt.Sprintf("set cursor of endpoint %q", endpoint),
		"UPDATE endpoints SET cursor = $1 WHERE name = $2", int64(seq), endpoint)
}

// SetConsumerCursor implements store.DeliveryWriter.
func (e *deliveryWriter) SetConsumerCursor(name string, seq uint64) error {
	err := e.w.put("INSERT INTO log_consumers (name, cursor) VALUES ($1, $2)"+
		" ON CONFLICT (name) DO UPDATE SET cursor = excluded.cursor", name, int64(seq))
	if err != nil {
		return fmt.Errorf("set cursor of log consumer %q: %w", name, err)
	}
	return nil
}

// DeleteConsumerCursor implements store.DeliveryWriter.
func (e *deliveryWriter) DeleteConsumerCursor(name string) error {
	return e.w.change(fmt.Sprintf("delete cursor of log consumer %q", name), "DELETE FROM log_consumers WHERE name = $1", name)
}

// AddDeadLetter implements store.DeliveryWriter.
func (e *deliveryWriter) AddDeadLetter(d store.DeadLetter) (uint64, error) {
	body, err := json.Marshal(d.Event)
	if err != nil {
		return 0, fmt.Errorf("encode dead letter of event %q: %w", d.Event.ID, err)
	}
	id, err := value[int64](e.w, fmt.Sprintf("add dead letter of event %q to endpoint %q", d.Event.ID, d.Endpoint),
		"INSERT INTO dead_letters (endpoint, seq, reason, attempts, time, event) VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
		d.Endpoint, int64(d.Seq), d.Reason, d.Attempts, formatTime(d.Time), body)
	return uint64(id), err
}

// DeleteDeadLetter implements store.DeliveryWriter.
func (e *deliveryWriter) DeleteDeadLetter(endpoint string, id uint64) error {
	return e.w.change(fmt.Sprintf("delete dead letter %d of endpoint %q", id, endpoint),
		"DELETE FROM dead_letters WHERE endpoint = $1 AND id = $2", endpoint, int64(id))
}

// pruneLogBounds selects the first record of the log and the last PruneLog may delete, given
// through ($1), before in Unix milliseconds ($2) and max ($3).
const pruneLogBounds = `
SELECT first, least($1, last - 1, coalesce((SELECT min(seq) FROM log_clock WHERE ms >= $2), last + 1) - 1, first + $3 - 1)
FROM (SELECT coalesce((SELECT min(seq) FROM log), 0) AS first, (SELECT seq FROM head) AS last) AS b`

// PruneLog implements store.DeliveryWriter. It deletes a prefix of the log: records up to the
// smallest of through, the newest record less one, the last record committed before before,
// and the oldest record plus max less one. Clock marks older than the first kept record go
// too, except the one that dates it. Records this batch emits are appended at its commit and
// are never pruned by it.
func (e *deliveryWriter) PruneLog(through uint64, before time.Time, max int) (int, error) {
	if max <= 0 {
		return 0, nil
	}
	var first, last int64
	err := e.w.query(pruneLogBounds, []any{int64(through), before.UnixMilli(), int64(max)}, func(rows pgx.Rows) error {
		return rows.Scan(&first, &last)
	})
	if err != nil {
		return 0, fmt.Errorf("find log records to prune: %w", err)
	}
	if first == 0 || last < first {
		return 0, nil
	}
	tag, err := e.w.exec("DELETE FROM log WHERE seq <= $1", last)
	if err != nil {
		return 0, fmt.Errorf("prune log through %d: %w", last, err)
	}
	// The tail must not hand out what the log no longer holds. Should this transaction roll
	// back, reading the records from the database instead costs only time.
	e.w.tail.DropThrough(uint64(last))
	err = e.w.put("DELETE FROM log_clock WHERE seq < (SELECT max(seq) FROM log_clock WHERE seq <= $1)", last+1)
	if err != nil {
		return 0, fmt.Errorf("prune log clock through %d: %w", last, err)
	}
	return int(tag.RowsAffected()), nil
}
