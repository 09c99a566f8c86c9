package postgres

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/store"
)

// Ingress state (store.Ingress): source and mapping definitions, which change rarely, the
// sources' dead letters, and the ids of applied messages, recorded for every message.

var _ store.Ingress = (*Store)(nil)

// ViewIngress implements store.Ingress: fn reads one snapshot, as View does.
func (s *Store) ViewIngress(ctx context.Context, fn func(store.IngressReader) error) error {
	return s.view(ctx, "ingress view", func(tx pgx.Tx) error {
		return fn(&ingressReader{q: txQuerier{ctx: ctx, tx: tx}})
	})
}

// UpdateIngress implements store.Ingress. fn runs on the writer goroutine like any Update's
// fn, inside its own savepoint of a group-committed transaction, and may change twins and emit
// events beside ingress state; it all commits or none of it.
func (s *Store) UpdateIngress(ctx context.Context, fn func(store.IngressWriter) error) error {
	return s.update(ctx, func(store.Writer) error {
		return fn(&ingressWriter{writer: &s.w, ir: ingressReader{q: &s.w}})
	})
}

// ingressReader implements store.IngressReader over q.
type ingressReader struct {
	q querier
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
	t, err := parseTime(created)
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
	t, err := parseTime(created)
	if err != nil {
		return store.Mapping{}, fmt.Errorf("parse creation time of mapping %q: %w", m.Name, err)
	}
	m.Definition, m.Created = def, t
	return m, nil
}

func scanSourceDeadLetter(sc scanner) (store.SourceDeadLetter, error) {
	var (
		d        store.SourceDeadLetter
		id       int64
		attempts int32
		at       string
		body     []byte
	)
	if err := sc.Scan(&id, &d.Source, &d.Reason, &attempts, &at, &body); err != nil {
		return store.SourceDeadLetter{}, err
	}
	d.ID, d.Attempts = uint64(id), int(attempts)
	t, err := parseTime(at)
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

// Source implements store.IngressReader.
func (r *ingressReader) Source(name string) (store.Source, error) {
	return one(r.q, fmt.Sprintf("source %q", name), scanSource, "SELECT "+sourceColumns+" FROM sources WHERE name = $1", name)
}

// Sources implements store.IngressReader.
func (r *ingressReader) Sources() ([]store.Source, error) {
	return list(r.q, "sources", scanSource, "SELECT "+sourceColumns+" FROM sources ORDER BY name")
}

// Mapping implements store.IngressReader.
func (r *ingressReader) Mapping(name string) (store.Mapping, error) {
	return one(r.q, fmt.Sprintf("mapping %q", name), scanMapping, "SELECT "+mappingColumns+" FROM mappings WHERE name = $1", name)
}

// Mappings implements store.IngressReader.
func (r *ingressReader) Mappings() ([]store.Mapping, error) {
	return list(r.q, "mappings", scanMapping, "SELECT "+mappingColumns+" FROM mappings ORDER BY name")
}

// SourceDeadLetter implements store.IngressReader.
func (r *ingressReader) SourceDeadLetter(source string, id uint64) (store.SourceDeadLetter, error) {
	return one(r.q, fmt.Sprintf("dead letter %d of source %q", id, source), scanSourceDeadLetter,
		"SELECT "+sourceDeadLetterColumns+" FROM source_dead_letters WHERE source = $1 AND id = $2", source, int64(id))
}

// SourceDeadLetters implements store.IngressReader.
func (r *ingressReader) SourceDeadLetters(source string, after uint64, n int) ([]store.SourceDeadLetter, error) {
	return list(r.q, fmt.Sprintf("dead letters of source %q", source), scanSourceDeadLetter,
		"SELECT "+sourceDeadLetterColumns+" FROM source_dead_letters WHERE source = $1 AND id > $2 ORDER BY id LIMIT $3",
		source, int64(after), limit(n))
}

// CountSourceDeadLetters implements store.IngressReader.
func (r *ingressReader) CountSourceDeadLetters(source string) (int, error) {
	n, err := value[int64](r.q, fmt.Sprintf("count dead letters of source %q", source),
		"SELECT count(*) FROM source_dead_letters WHERE source = $1", source)
	return int(n), err
}

// MessageRecorded implements store.IngressReader.
func (r *ingressReader) MessageRecorded(source, id string, at time.Time) (bool, error) {
	return value[bool](r.q, fmt.Sprintf("look for message %q of source %q", id, source),
		"SELECT EXISTS (SELECT 1 FROM source_messages WHERE source = $1 AND id = $2 AND expires > $3)",
		source, id, at.UnixMilli())
}

// ingressWriter implements store.IngressWriter on the writer goroutine: twin changes through
// the writer, ingress state through ir, which reads the writer's transaction, all inside the
// current fn's savepoint.
type ingressWriter struct {
	*writer
	ir ingressReader
}

var _ store.IngressWriter = (*ingressWriter)(nil)

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
	err := e.put("INSERT INTO sources ("+sourceColumns+") VALUES ($1, $2, $3)"+
		" ON CONFLICT (name) DO UPDATE SET config = excluded.config",
		src.Name, blob(src.Config), formatTime(src.Created))
	if err != nil {
		return fmt.Errorf("put source %q: %w", src.Name, err)
	}
	e.touch(genSources)
	return nil
}

// DeleteSource implements store.IngressWriter.
func (e *ingressWriter) DeleteSource(name string) error {
	if err := e.change(fmt.Sprintf("delete source %q", name), "DELETE FROM sources WHERE name = $1", name); err != nil {
		return err
	}
	if err := e.put("DELETE FROM source_dead_letters WHERE source = $1", name); err != nil {
		return fmt.Errorf("delete dead letters of source %q: %w", name, err)
	}
	if err := e.put("DELETE FROM source_messages WHERE source = $1", name); err != nil {
		return fmt.Errorf("delete message records of source %q: %w", name, err)
	}
	e.touch(genSources)
	return nil
}

// PutMapping implements store.IngressWriter.
func (e *ingressWriter) PutMapping(m store.Mapping) error {
	err := e.put("INSERT INTO mappings ("+mappingColumns+") VALUES ($1, $2, $3, $4)"+
		" ON CONFLICT (name) DO UPDATE SET source = excluded.source, definition = excluded.definition",
		m.Name, m.Source, blob(m.Definition), formatTime(m.Created))
	if err != nil {
		return fmt.Errorf("put mapping %q: %w", m.Name, err)
	}
	e.touch(genMappings)
	return nil
}

// DeleteMapping implements store.IngressWriter.
func (e *ingressWriter) DeleteMapping(name string) error {
	if err := e.change(fmt.Sprintf("delete mapping %q", name), "DELETE FROM mappings WHERE name = $1", name); err != nil {
		return err
	}
	e.touch(genMappings)
	return nil
}

// RecordMessage implements store.IngressWriter with one upsert, which changes no row when an
// unexpired record exists. Two nodes recording the same message meet on its row: the second
// waits for the first to commit, then finds its record.
func (e *ingressWriter) RecordMessage(r store.MessageRecord) error {
	tag, err := e.exec("INSERT INTO source_messages (source, id, expires) VALUES ($1, $2, $3)"+
		" ON CONFLICT (source, id) DO UPDATE SET expires = excluded.expires WHERE source_messages.expires <= $4",
		r.Source, r.ID, r.Expires.UnixMilli(), r.Time.UnixMilli())
	if err != nil {
		return fmt.Errorf("record message %q of source %q: %w", r.ID, r.Source, err)
	}
	if tag.RowsAffected() == 0 {
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
	id, err := value[int64](e.writer, fmt.Sprintf("add dead letter of message %q to source %q", m.ID, d.Source),
		"INSERT INTO source_dead_letters (source, reason, attempts, time, message) VALUES ($1, $2, $3, $4, $5) RETURNING id",
		d.Source, d.Reason, d.Attempts, formatTime(d.Time), body)
	return uint64(id), err
}

// DeleteSourceDeadLetter implements store.IngressWriter.
func (e *ingressWriter) DeleteSourceDeadLetter(source string, id uint64) error {
	return e.change(fmt.Sprintf("delete dead letter %d of source %q", id, source),
		"DELETE FROM source_dead_letters WHERE source = $1 AND id = $2", source, int64(id))
}

// PruneMessages implements store.IngressWriter, oldest expiry first.
func (e *ingressWriter) PruneMessages(before time.Time, max int) (int, error) {
	if max <= 0 {
		return 0, nil
	}
	tag, err := e.exec("DELETE FROM source_messages WHERE (source, id) IN"+
		" (SELECT source, id FROM source_messages WHERE expires <= $1 ORDER BY expires LIMIT $2)",
		before.UnixMilli(), max)
	if err != nil {
		return 0, fmt.Errorf("prune message records: %w", err)
	}
	return int(tag.RowsAffected()), nil
}
