package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"time"

	"github.com/twinflow/twinflow/internal/store"
)

// Detectors (store.Detectors) live in the tables of schema version 7. Like delivery state,
// their statements are not kept prepared: a detector's states are written once per batch of
// the change log it scores.

var _ store.Detectors = (*Store)(nil)

// ViewDetectors implements store.Detectors: fn reads one read transaction, as View does.
func (s *Store) ViewDetectors(ctx context.Context, fn func(store.DetectorReader) error) error {
	if !s.enter(&s.active) {
		return store.ErrClosed
	}
	defer s.active.Done()
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin detectors view: %w", err)
	}
	// A read transaction has nothing to commit; rolling back just ends it.
	defer func() { _ = tx.Rollback() }()
	return fn(&detectorReader{deliveryReader{ctx: ctx, q: tx}})
}

// UpdateDetectors implements store.Detectors. fn runs on the writer goroutine like any
// Update's fn, inside its own savepoint of a group-committed transaction, and its detector,
// cursor, twin and event writes commit together or not at all.
func (s *Store) UpdateDetectors(ctx context.Context, fn func(store.DetectorWriter) error) error {
	return s.Update(ctx, func(store.Writer) error {
		return fn(&detectorWriter{writer: &s.w, detectorReader: detectorReader{deliveryReader{ctx: s.w.ctx, q: s.conn}}})
	})
}

// detectorReader implements store.DetectorReader. It runs its queries as the delivery reader
// does.
type detectorReader struct {
	d deliveryReader
}

var _ store.DetectorReader = (*detectorReader)(nil)

const (
	detectorColumns      = "name, config, created"
	detectorStateColumns = "detector, twin, property, state"
)

func scanDetector(sc scanner) (store.Detector, error) {
	var (
		d       store.Detector
		config  []byte
		created string
	)
	if err := sc.Scan(&d.Name, &config, &created); err != nil {
		return store.Detector{}, err
	}
	t, err := time.Parse(time.RFC3339Nano, created)
	if err != nil {
		return store.Detector{}, fmt.Errorf("parse creation time of detector %q: %w", d.Name, err)
	}
	d.Config, d.Created = config, t
	return d, nil
}

func scanDetectorState(sc scanner) (store.DetectorState, error) {
	var s store.DetectorState
	err := sc.Scan(&s.Detector, &s.Twin, &s.Property, &s.State)
	return s, err
}

// Detector implements store.DetectorReader.
func (r *detectorReader) Detector(name string) (store.Detector, error) {
	return deliveryOne(&r.d, fmt.Sprintf("detector %q", name), scanDetector,
		"SELECT "+detectorColumns+" FROM detectors WHERE name = ?", name)
}

// Detectors implements store.DetectorReader.
func (r *detectorReader) Detectors(after string, limit int) ([]store.Detector, error) {
	return deliveryList(&r.d, "detectors", scanDetector,
		"SELECT "+detectorColumns+" FROM detectors WHERE name > ? ORDER BY name LIMIT ?", after, noLimit(limit))
}

// DetectorStates implements store.DetectorReader.
func (r *detectorReader) DetectorStates(detector string) ([]store.DetectorState, error) {
	return deliveryList(&r.d, fmt.Sprintf("states of detector %q", detector), scanDetectorState,
		"SELECT "+detectorStateColumns+" FROM detector_states WHERE detector = ? ORDER BY twin, property", detector)
}

// ConsumerCursor implements store.DetectorReader.
func (r *detectorReader) ConsumerCursor(name string) (uint64, error) {
	return r.d.ConsumerCursor(name)
}

// detectorWriter implements store.DetectorWriter on the writer goroutine: the writer's own
// methods for twins, relationships, models and events, and detector changes inside the same
// savepoint.
type detectorWriter struct {
	*writer
	detectorReader
}

var _ store.DetectorWriter = (*detectorWriter)(nil)

// changes returns the writer of detector changes: they run inside the fn's savepoint, and
// their errors are storage failures that also break the batch, as the delivery writer's do.
func (d *detectorWriter) changes() *deliveryWriter {
	return &deliveryWriter{deliveryReader: d.d, w: d.writer}
}

// ConsumerCursor implements store.DetectorReader; the writer reads its own writes.
func (d *detectorWriter) ConsumerCursor(name string) (uint64, error) {
	return d.d.ConsumerCursor(name)
}

// PutDetector implements store.DetectorWriter.
func (d *detectorWriter) PutDetector(det store.Detector) error {
	_, err := d.changes().exec("INSERT INTO detectors ("+detectorColumns+") VALUES (?, ?, ?)"+
		" ON CONFLICT (name) DO UPDATE SET config = excluded.config",
		det.Name, []byte(det.Config), det.Created.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("put detector %q: %w", det.Name, err)
	}
	return nil
}

// DeleteDetector implements store.DetectorWriter.
func (d *detectorWriter) DeleteDetector(name string) error {
	if err := d.changes().change(fmt.Sprintf("delete detector %q", name), "DELETE FROM detectors WHERE name = ?", name); err != nil {
		return err
	}
	return d.DeleteDetectorStates(name)
}

// PutDetectorState implements store.DetectorWriter.
func (d *detectorWriter) PutDetectorState(s store.DetectorState) error {
	_, err := d.changes().exec("INSERT INTO detector_states ("+detectorStateColumns+") VALUES (?, ?, ?, ?)"+
		" ON CONFLICT (detector, twin, property) DO UPDATE SET state = excluded.state",
		s.Detector, s.Twin, s.Property, s.State)
	if err != nil {
		return fmt.Errorf("put state of detector %q for %s.%s: %w", s.Detector, s.Twin, s.Property, err)
	}
	return nil
}

// DeleteDetectorStates implements store.DetectorWriter.
func (d *detectorWriter) DeleteDetectorStates(detector string) error {
	if _, err := d.changes().exec("DELETE FROM detector_states WHERE detector = ?", detector); err != nil {
		return fmt.Errorf("delete states of detector %q: %w", detector, err)
	}
	return nil
}

// DeleteDetectorTwin implements store.DetectorWriter.
func (d *detectorWriter) DeleteDetectorTwin(detector, twin string) error {
	if _, err := d.changes().exec("DELETE FROM detector_states WHERE detector = ? AND twin = ?", detector, twin); err != nil {
		return fmt.Errorf("delete states of detector %q for twin %q: %w", detector, twin, err)
	}
	return nil
}

// SetConsumerCursor implements store.DetectorWriter.
func (d *detectorWriter) SetConsumerCursor(name string, seq uint64) error {
	return d.changes().SetConsumerCursor(name, seq)
}

// DeleteConsumerCursor implements store.DetectorWriter.
func (d *detectorWriter) DeleteConsumerCursor(name string) error {
	return d.changes().DeleteConsumerCursor(name)
}
