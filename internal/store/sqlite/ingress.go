package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"time"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/store"
)

// Ingress state (store.Ingress) lives in the tables of schema version 5. Definitions and dead
// letters change rarely, so their statements run as text like delivery state's; recording a
// message id happens for every applied message and has a prepared statement
// (stmtRecordMessage).

var _ store.Ingress = (*Store)(nil)

// ViewIngress implements store.Ingress: fn reads one read transaction, as View does.
func (s *Store) ViewIngress(ctx context.Context, fn func(store.IngressReader) error) error {
	if !s.enter(&s.active) {
		return store.ErrClosed
	}
	defer s.active.Done()
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin ingress view: %w", err)
	}
	// A read transaction has nothing to commit; rolling back just ends it.
	defer func() { _ = tx.Rollback() }()
	return fn(&ingressReader{ctx: ctx, q: tx})
}

// UpdateIngress implements store.Ingress. fn runs on the writer goroutine like any Update's
// fn, inside its own savepoint of a group-committed transaction, and may change twins and emit
// events beside ingress state; it all commits durably or not at all.
func (s *Store) UpdateIngress(ctx context.Context, fn func(store.IngressWriter) error) error {
	return s.Update(ctx, func(store.Writer) error {
		return fn(&ingressWriter{writer: &s.w, ir: ingressReader{ctx: s.w.ctx, q: s.conn}})
	})
}

// ingressReader implements store.IngressReader over q.
type ingressReader struct {
	ctx context.Context
	q   querier
}

var _ store.IngressReader = (*ingressReader)(nil)

const (
	sourceColumns           = "name, config, created"
	mappingColumns          = "name, source, definition, created"
	sourceDeadLetterColumns = "id, source, reason, attempts, time, message"
)

// messageJSON is how a dead letter's message is stored.
type messageJSON struct {
	ID      string            `json:"id,omitempty"`
	Topic   string            `json:"topic,omitempty"`
	Key     string            `json:"key,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    []byte            `json:"body,omitempty"`
	Time    time.Time         `json:"time"`
	Order   string            `json:"order,omitempty"`
}

func scanSource(sc scanner) (store.Source, error) {
	var (
		src     store.Source
		config  []byte
		created string
	)
	if err := sc.Scan(&src.Name, &config, &created); err != nil {
		return store.Source{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, created)
	if err != nil {
		return store.Source{}, fmt.Errorf("parse creation time of source %q: %w", src.Name, err)
	}
	src.Config, src.Created = config, t
	return src, nil
}

func scanMapping(sc scanner) (store.Mapping, error) {
	var (
		m       store.Mapping
		def     []byte
		created string
	)
	if err := sc.Scan(&m.Name, &m.Source, &def, &created); err != nil {
		return store.Mapping{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, created)
	if err != nil {
		return store.Mapping{}, fmt.Errorf("parse creation time of mapping %q: %w", m.Name, err)
	}
	m.Definition, m.Created = def, t
	return m, nil
}

func scanSourceDeadLetter(sc scanner) (store.SourceDeadLetter, error) {
	var (
		d    store.SourceDeadLetter
		at   string
		body []byte
	)
	if err := sc.Scan(&d.ID, &d.Source, &d.Reason, &d.Attempts, &at, &body); err != nil {
		return store.SourceDeadLetter{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return store.SourceDeadLetter{}, fmt.Errorf("parse time of source dead letter %d: %w", d.ID, err)
	}
	var m messageJSON
	if err := json.Unmarshal(body, &m); err != nil {
		return store.SourceDeadLetter{}, fmt.Errorf("decode message of source dead letter %d: %w", d.ID, err)
	}
	d.Time = t
	d.Message = ingress.Message{ID: m.ID, Topic: m.Topic, Key: m.Key, Headers: m.Headers, Body: m.Body, Time: m.Time, Order: m.Order}
	return d, nil
}

// ingressOne runs a single-row query and scans its row. A missing row is store.ErrNotFound,
// described by what.
func ingressOne[T any](r *ingressReader, what string, scan func(scanner) (T, error), query string, args ...any) (T, error) {
	return deliveryOne(&deliveryReader{ctx: r.ctx, q: r.q}, what, scan, query, args...)
}

// ingressList runs a query and scans every row it returns.
func ingressList[T any](r *ingressReader, what string, scan func(scanner) (T, error), query string, args ...any) ([]T, error) {
	return deliveryList(&deliveryReader{ctx: r.ctx, q: r.q}, what, scan, query, args...)
}

// Source implements store.IngressReader.
func (r *ingressReader) Source(name string) (store.Source, error) {
	return ingressOne(r, fmt.Sprintf("source %q", name), scanSource,
		"SELECT "+sourceColumns+" FROM sources WHERE name = ?", name)
}

// Sources implements store.IngressReader.
func (r *ingressReader) Sources() ([]store.Source, error) {
	return ingressList(r, "sources", scanSource, "SELECT "+sourceColumns+" FROM sources ORDER BY name")
}

// Mapping implements store.IngressReader.
func (r *ingressReader) Mapping(name string) (store.Mapping, error) {
	return ingressOne(r, fmt.Sprintf("mapping %q", name), scanMapping,
		"SELECT "+mappingColumns+" FROM mappings WHERE name = ?", name)
}

// Mappings implements store.IngressReader.
func (r *ingressReader) Mappings() ([]store.Mapping, error) {
	return ingressList(r, "mappings", scanMapping, "SELECT "+mappingColumns+" FROM mappings ORDER BY name")
}

// SourceDeadLetter implements store.IngressReader.
func (r *ingressReader) SourceDeadLetter(source string, id uint64) (store.SourceDeadLetter, error) {
	return ingressOne(r, fmt.Sprintf("dead letter %d of source %q", id, source), scanSourceDeadLetter,
		"SELECT "+sourceDeadLetterColumns+" FROM source_dead_letters WHERE source = ? AND id = ?", source, int64(id))
}

// SourceDeadLetters implements store.IngressReader.
func (r *ingressReader) SourceDeadLetters(source string, after uint64, limit int) ([]store.SourceDeadLetter, error) {
	return ingressList(r, fmt.Sprintf("dead letters of source %q", source), scanSourceDeadLetter,
		"SELECT "+sourceDeadLetterColumns+" FROM source_dead_letters WHERE source = ? AND id > ? ORDER BY id LIMIT ?",
		source, int64(after), noLimit(limit))
}

// CountSourceDeadLetters implements store.IngressReader.
func (r *ingressReader) CountSourceDeadLetters(source string) (int, error) {
	var n int
	err := r.q.QueryRowContext(r.ctx, "SELECT count(*) FROM source_dead_letters WHERE source = ?", source).Scan(&n)
	if err != nil {
		return 0, fmt.Errorf("count dead letters of source %q: %w", source, err)
	}
	return n, nil
}

// MessageRecorded implements store.IngressReader.
func (r *ingressReader) MessageRecorded(source, id string, at time.Time) (bool, error) {
	var recorded bool
	err := r.q.QueryRowContext(r.ctx,
		"SELECT EXISTS (SELECT 1 FROM source_messages WHERE source = ? AND id = ? AND expires > ?)",
		source, id, at.UnixMilli()).Scan(&recorded)
	if err != nil {
		return false, fmt.Errorf("look for message %q of source %q: %w", id, source, err)
	}
	return recorded, nil
}

// ingressWriter implements store.IngressWriter on the writer goroutine: twin changes through
// the writer, ingress state through ir on the writer's connection, all inside the current
// fn's savepoint.
type ingressWriter struct {
	*writer
	ir ingressReader
}

var _ store.IngressWriter = (*ingressWriter)(nil)

// The store.IngressReader methods read through ir, on the writer's connection, so they see
// the open transaction's changes.

// Source implements store.IngressReader.
func (e *ingressWriter) Source(name string) (store.Source, error) { return e.ir.Source(name) }

// Sources implements store.IngressReader.
func (e *ingressWriter) Sources() ([]store.Source, error) { return e.ir.Sources() }

// Mapping implements store.IngressReader.
func (e *ingressWriter) Mapping(name string) (store.Mapping, error) { return e.ir.Mapping(name) }

// Mappings implements store.IngressReader.
func (e *ingressWriter) Mappings() ([]store.Mapping, error) { return e.ir.Mappings() }

// SourceDeadLetter implements store.IngressReader.
func (e *ingressWriter) SourceDeadLetter(source string, id uint64) (store.SourceDeadLetter, error) {
	return e.ir.SourceDeadLetter(source, id)
}

// SourceDeadLetters implements store.IngressReader.
func (e *ingressWriter) SourceDeadLetters(source string, after uint64, limit int) ([]store.SourceDeadLetter, error) {
	return e.ir.SourceDeadLetters(source, after, limit)
}

// CountSourceDeadLetters implements store.IngressReader.
func (e *ingressWriter) CountSourceDeadLetters(source string) (int, error) {
	return e.ir.CountSourceDeadLetters(source)
}

// MessageRecorded implements store.IngressReader.
func (e *ingressWriter) MessageRecorded(source, id string, at time.Time) (bool, error) {
	return e.ir.MessageRecorded(source, id, at)
}

// PutSource implements store.IngressWriter.
func (e *ingressWriter) PutSource(src store.Source) error {
	_, err := e.execIn(e.ir.q, "INSERT INTO sources ("+sourceColumns+") VALUES (?, ?, ?)"+
		" ON CONFLICT (name) DO UPDATE SET config = excluded.config",
		src.Name, []byte(src.Config), src.Created.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("put source %q: %w", src.Name, err)
	}
	return nil
}

// DeleteSource implements store.IngressWriter.
func (e *ingressWriter) DeleteSource(name string) error {
	if err := e.changeIn(e.ir.q, fmt.Sprintf("delete source %q", name), "DELETE FROM sources WHERE name = ?", name); err != nil {
		return err
	}
	if _, err := e.execIn(e.ir.q, "DELETE FROM source_dead_letters WHERE source = ?", name); err != nil {
		return fmt.Errorf("delete dead letters of source %q: %w", name, err)
	}
	if _, err := e.execIn(e.ir.q, "DELETE FROM source_messages WHERE source = ?", name); err != nil {
		return fmt.Errorf("delete message records of source %q: %w", name, err)
	}
	return nil
}

// PutMapping implements store.IngressWriter.
func (e *ingressWriter) PutMapping(m store.Mapping) error {
	_, err := e.execIn(e.ir.q, "INSERT INTO mappings ("+mappingColumns+") VALUES (?, ?, ?, ?)"+
		" ON CONFLICT (name) DO UPDATE SET source = excluded.source, definition = excluded.definition",
		m.Name, m.Source, []byte(m.Definition), m.Created.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("put mapping %q: %w", m.Name, err)
	}
	return nil
}

// DeleteMapping implements store.IngressWriter.
func (e *ingressWriter) DeleteMapping(name string) error {
	return e.changeIn(e.ir.q, fmt.Sprintf("delete mapping %q", name), "DELETE FROM mappings WHERE name = ?", name)
}

// RecordMessage implements store.IngressWriter with one prepared upsert, which changes no row
// when an unexpired record exists.
func (e *ingressWriter) RecordMessage(r store.MessageRecord) error {
	res, err := e.exec(stmtRecordMessage, r.Source, r.ID, r.Expires.UnixMilli(), r.Time.UnixMilli())
	if err != nil {
		return fmt.Errorf("record message %q of source %q: %w", r.ID, r.Source, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return e.fail(fmt.Errorf("record message %q of source %q: %w", r.ID, r.Source, err))
	}
	if n == 0 {
		return fmt.Errorf("record message %q of source %q: %w", r.ID, r.Source, store.ErrDuplicate)
	}
	return nil
}

// AddSourceDeadLetter implements store.IngressWriter.
func (e *ingressWriter) AddSourceDeadLetter(d store.SourceDeadLetter) (uint64, error) {
	m := d.Message
	body, err := json.Marshal(messageJSON{ID: m.ID, Topic: m.Topic, Key: m.Key, Headers: m.Headers, Body: m.Body, Time: m.Time, Order: m.Order})
	if err != nil {
		return 0, fmt.Errorf("encode dead letter of message %q: %w", m.ID, err)
	}
	res, err := e.execIn(e.ir.q, "INSERT INTO source_dead_letters (source, reason, attempts, time, message) VALUES (?, ?, ?, ?, ?)",
		d.Source, d.Reason, d.Attempts, d.Time.UTC().Format(time.RFC3339Nano), body)
	if err != nil {
		return 0, fmt.Errorf("add dead letter of message %q to source %q: %w", m.ID, d.Source, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, e.fail(fmt.Errorf("add dead letter of message %q: %w", m.ID, err))
	}
	return uint64(id), nil
}

// DeleteSourceDeadLetter implements store.IngressWriter.
func (e *ingressWriter) DeleteSourceDeadLetter(source string, id uint64) error {
	return e.changeIn(e.ir.q, fmt.Sprintf("delete dead letter %d of source %q", id, source),
		"DELETE FROM source_dead_letters WHERE source = ? AND id = ?", source, int64(id))
}

// PruneMessages implements store.IngressWriter, oldest expiry first.
func (e *ingressWriter) PruneMessages(before time.Time, max int) (int, error) {
	if max <= 0 {
		return 0, nil
	}
	res, err := e.execIn(e.ir.q, "DELETE FROM source_messages WHERE (source, id) IN"+
		" (SELECT source, id FROM source_messages WHERE expires <= ? ORDER BY expires LIMIT ?)",
		before.UnixMilli(), max)
	if err != nil {
		return 0, fmt.Errorf("prune message records: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return 0, e.fail(fmt.Errorf("prune message records: %w", err))
	}
	return int(n), nil
}
