package postgres

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/store"
)

// Detectors (store.Detectors): a detector's states are written once per batch of the change
// log it scores, in the same transaction as its cursor and the events it raises.

var _ store.Detectors = (*Store)(nil)

// ViewDetectors implements store.Detectors: fn reads one snapshot, as View does.
func (s *Store) ViewDetectors(ctx context.Context, fn func(store.DetectorReader) error) error {
	return s.view(ctx, "detectors view", func(tx pgx.Tx) error {
		return fn(&detectorReader{q: txQuerier{ctx: ctx, tx: tx}})
	})
}

// UpdateDetectors implements store.Detectors. fn runs on the writer goroutine like any
// Update's fn, inside its own savepoint of a group-committed transaction, and its detector,
// cursor, twin and event writes commit together or not at all.
func (s *Store) UpdateDetectors(ctx context.Context, fn func(store.DetectorWriter) error) error {
	return s.update(ctx, func(store.Writer) error {
		return fn(&detectorWriter{writer: &s.w, detectorReader: detectorReader{q: &s.w}})
	})
}

// detectorReader implements store.DetectorReader over q.
type detectorReader struct {
	q querier
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
	return one(r.q, fmt.Sprintf("detector %q", name), scanDetector,
		"SELECT "+detectorColumns+" FROM detectors WHERE name = $1", name)
}

// Detectors implements store.DetectorReader.
func (r *detectorReader) Detectors(after string, n int) ([]store.Detector, error) {
	return list(r.q, "detectors", scanDetector,
		"SELECT "+detectorColumns+" FROM detectors WHERE name > $1 ORDER BY name LIMIT $2", after, limit(n))
}

// DetectorStates implements store.DetectorReader.
func (r *detectorReader) DetectorStates(detector string) ([]store.DetectorState, error) {
	return list(r.q, fmt.Sprintf("states of detector %q", detector), scanDetectorState,
		"SELECT "+detectorStateColumns+" FROM detector_states WHERE detector = $1 ORDER BY twin, property", detector)
}

// ConsumerCursor implements store.DetectorReader.
func (r *detectorReader) ConsumerCursor(name string) (uint64, error) {
	return (&deliveryReader{q: r.q}).ConsumerCursor(name)
}

// detectorWriter implements store.DetectorWriter on the writer goroutine: the writer's own
// methods for twins, relationships, models and events, and detector changes inside the same
// savepoint.
type detectorWriter struct {
	*writer
	detectorReader
}

var _ store.DetectorWriter = (*detectorWriter)(nil)

// delivery returns the delivery writer of the same savepoint, for consumer cursors.
func (d *detectorWriter) delivery() *deliveryWriter {
	return &deliveryWriter{deliveryReader: deliveryReader{q: d.q}, w: d.writer}
}

// ConsumerCursor implements store.DetectorReader; the writer reads its own writes.
func (d *detectorWriter) ConsumerCursor(name string) (uint64, error) {
	return d.detectorReader.ConsumerCursor(name)
}

// PutDetector implements store.DetectorWriter.
func (d *detectorWriter) PutDetector(det store.Detector) error {
	err := d.put("INSERT INTO detectors ("+detectorColumns+") VALUES ($1, $2, $3)"+
		" ON CONFLICT (name) DO UPDATE SET config = excluded.config",
		det.Name, blob(det.Config), det.Created.UTC().Format(time.RFC3339Nano))
	if err != nil {
		return fmt.Errorf("put detector %q: %w", det.Name, err)
	}
	return nil
}

// DeleteDetector implements store.DetectorWriter.
func (d *detectorWriter) DeleteDetector(name string) error {
	if err := d.change(fmt.Sprintf("delete detector %q", name), "DELETE FROM detectors WHERE name = $1", name); err != nil {
		return err
	}
	return d.DeleteDetectorStates(name)
}

// PutDetectorState implements store.DetectorWriter.
func (d *detectorWriter) PutDetectorState(s store.DetectorState) error {
	err := d.put("INSERT INTO detector_states ("+detectorStateColumns+") VALUES ($1, $2, $3, $4)"+
		" ON CONFLICT (detector, twin, property) DO UPDATE SET state = excluded.state",
		s.Detector, s.Twin, s.Property, blob(s.State))
	if err != nil {
		return fmt.Errorf("put state of detector %q for %s.%s: %w", s.Detector, s.Twin, s.Property, err)
	}
	return nil
}

// DeleteDetectorStates implements store.DetectorWriter.
func (d *detectorWriter) DeleteDetectorStates(detector string) error {
	if err := d.put("DELETE FROM detector_states WHERE detector = $1", detector); err != nil {
		return fmt.Errorf("delete states of detector %q: %w", detector, err)
	}
	return nil
}

// DeleteDetectorTwin implements store.DetectorWriter.
func (d *detectorWriter) DeleteDetectorTwin(detector, twin string) error {
	if err := d.put("DELETE FROM detector_states WHERE detector = $1 AND twin = $2", detector, twin); err != nil {
		return fmt.Errorf("delete states of detector %q for twin %q: %w", detector, twin, err)
	}
	return nil
}

// SetConsumerCursor implements store.DetectorWriter.
func (d *detectorWriter) SetConsumerCursor(name string, seq uint64) error {
	return d.delivery().SetConsumerCursor(name, seq)
}

// DeleteConsumerCursor implements store.DetectorWriter.
func (d *detectorWriter) DeleteConsumerCursor(name string) error {
	return d.delivery().DeleteConsumerCursor(name)
}
