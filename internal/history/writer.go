package history

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twinflow/twinflow/internal/store"
)

// Defaults for Config's zero values.
const (
	DefaultMaxBatch      = 4096
	DefaultRetention     = 30 * 24 * time.Hour
	DefaultPruneInterval = time.Hour
	DefaultPruneBatch    = 10000
	DefaultMinBackoff    = 100 * time.Millisecond
	DefaultMaxBackoff    = 30 * time.Second
	DefaultRollupEvery   = 2 * time.Second
	DefaultRollupDelay   = 10 * time.Second
)

// Config configures a Writer.
type Config struct {
	// ServiceID, when set, replaces the event source as every row's ServiceId.
	ServiceID string
	// SkipRemovals leaves property removals out of history, as ADT does unless its
	// recordPropertyAndItemRemovals is set. twinflow records them by default, because
	// rebuilding the graph as of a past time (Store.AsOf) needs them.
	SkipRemovals bool
	// RecordTelemetry records telemetry messages in the telemetry table; ADT records none.
	RecordTelemetry bool
	// MaxBatch is the most log records turned into rows and written in one transaction: a
	// writer takes every record available up to it. Default DefaultMaxBatch.
	MaxBatch int
	// Retention is how long rows are kept, counted from their TimeStamp (processing time);
	// negative keeps them for ever. Default DefaultRetention.
	Retention time.Duration
	// PruneInterval is the time between retention passes; PruneBatch the most rows one
	// pruning transaction deletes. Defaults DefaultPruneInterval and DefaultPruneBatch.
	PruneInterval time.Duration
	PruneBatch    int
	// RollupEvery is the time between roll-up passes, each of which rolls the rows up to
	// RollupDelay ago in the store's short steps (Store.Rollup), unless the writer is
	// further behind (see Writer.Rollup). The delay keeps rows arriving below the watermark
	// rare: they are merged into the roll-ups as they are written, which costs more.
	// Defaults DefaultRollupEvery and DefaultRollupDelay.
	RollupEvery, RollupDelay time.Duration
	// MinBackoff and MaxBackoff bound the wait before retrying a failed read or write; it
	// doubles from one to the other. Defaults DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// ObserveWrite, when set, is told the rows and the duration of every successful Store.Write,
	// on the writer's goroutine.
	ObserveWrite func(rows int, took time.Duration)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// withDefaults returns cfg with zero fields set to their defaults, or every invalid field.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	positiveInt := func(name string, v *int, def int) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0:
			errs = append(errs, fmt.Errorf("%s: %d is negative", name, *v))
		}
	}
	positiveDur := func(name string, v *time.Duration, def time.Duration) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0:
			errs = append(errs, fmt.Errorf("%s: %v is negative", name, *v))
		}
	}
	positiveInt("maxBatch", &cfg.MaxBatch, DefaultMaxBatch)
	positiveInt("pruneBatch", &cfg.PruneBatch, DefaultPruneBatch)
	positiveDur("pruneInterval", &cfg.PruneInterval, DefaultPruneInterval)
	positiveDur("minBackoff", &cfg.MinBackoff, DefaultMinBackoff)
	positiveDur("maxBackoff", &cfg.MaxBackoff, DefaultMaxBackoff)
	positiveDur("rollupEvery", &cfg.RollupEvery, DefaultRollupEvery)
	positiveDur("rollupDelay", &cfg.RollupDelay, DefaultRollupDelay)
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		errs = append(errs, fmt.Errorf("maxBackoff: %v is less than minBackoff %v", cfg.MaxBackoff, cfg.MinBackoff))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, errors.Join(errs...)
}

// Status is a snapshot of a Writer's progress.
type Status struct {
	// Cursor is the Seq through which the log is in history; Last the log's newest Seq.
	Cursor, Last uint64
	// LagEvents is Last - Cursor. LagTime is how long ago the oldest record not yet in
	// history was committed, as far as the writer knows: 0 when caught up.
	LagEvents uint64
	LagTime   time.Duration
	// Rows counts the rows written since Run started; Skipped the records (or properties)
	// whose rows could not be derived, which are logged.
	Rows, Skipped uint64
	// Err is the last failure to read the log or to write, nil once a write succeeds again.
	Err error
	// RolledUpTo is how far the store's roll-ups go at least: the time the last roll-up pass
	// since Run started rolled up to; zero before the first.
	RolledUpTo time.Time
}

// Writer keeps history current with the change log: it reads the log from the cursor the
// Store keeps, derives each record's rows (Derive) and writes them with the new cursor in one
// Store.Write per batch, so history holds every record's rows exactly once, whenever it
// crashes. It also prunes rows past the retention, and drives the store's roll-ups.
//
// A Writer is started once by Run; Status is safe to call at any time.
type Writer struct {
	cfg    Config
	opts   Options
	log    store.Log
	clog   store.ChangeLog // log as a ChangeLog, nil when it is not one
	st     Store
	logger *slog.Logger

	mu     sync.Mutex
	status Status
	// pending is the commit time of the first record after the cursor, when known.
	behind time.Time
}

// New returns a Writer of the records of log into st. When log is a store.ChangeLog the
// writer uses the states it knows; otherwise every sub-property patch is replayed on the
// value history holds. logger may be nil.
func New(cfg Config, log store.Log, st Store, logger *slog.Logger) (*Writer, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("history writer config: %w", err)
	}
	if log == nil || st == nil {
		return nil, errors.New("history writer: a log and a store are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	w := &Writer{
		cfg: cfg, opts: Options{ServiceID: cfg.ServiceID, RecordRemovals: !cfg.SkipRemovals, RecordTelemetry: cfg.RecordTelemetry, Now: cfg.Now},
		log: log, st: st, logger: logger.With("component", "history"),
	}
	w.clog, _ = log.(store.ChangeLog)
	return w, nil
}

// Status returns the writer's progress.
func (w *Writer) Status() Status {
	w.mu.Lock()
	defer w.mu.Unlock()
	s := w.status
	s.Last = w.log.Last()
	if s.Last > s.Cursor {
		s.LagEvents = s.Last - s.Cursor
		if !w.behind.IsZero() {
			s.LagTime = max(0, w.cfg.Now().Sub(w.behind))
		}
	}
	return s
}

// Run writes history until ctx ends, then returns ctx's error after its pruning and roll-up
// goroutines exited. It returns another error only when the cursor cannot be read at start; failures
// later are logged, reported by Status and retried with backoff.
func (w *Writer) Run(ctx context.Context) error {
	cursor, err := w.st.Cursor(ctx)
	if err != nil {
		return fmt.Errorf("start history writer: %w", err)
	}
	w.mu.Lock()
	w.status.Cursor = cursor
	w.mu.Unlock()
	var wg sync.WaitGroup
	defer wg.Wait()
	if w.cfg.Retention > 0 {
		wg.Go(func() { w.pruneLoop(ctx) })
	}
	wg.Go(func() { w.rollupLoop(ctx) })
	var rows Rows
	backoff := w.cfg.MinBackoff
	for {
		through, err := w.step(ctx, cursor, &rows)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err != nil {
			w.mu.Lock()
			w.status.Err = err
			w.mu.Unlock()
			w.logger.Warn("history write failed; retrying", "cursor", cursor, "backoff", backoff, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, w.cfg.MaxBackoff)
			continue
		}
		backoff = w.cfg.MinBackoff
		cursor = through
	}
}

// step reads the records after cursor that are available (waiting for one), writes their
// rows with the cursor through the last of them, and returns that cursor.
func (w *Writer) step(ctx context.Context, cursor uint64, rows *Rows) (uint64, error) {
	changes, err := w.read(ctx, cursor)
	if err != nil {
		return cursor, fmt.Errorf("read change log after %d: %w", cursor, err)
	}
	if first := changes[0].Seq; first != cursor+1 {
		w.logger.Warn("history missed change log records that were pruned before it read them",
			"from", cursor+1, "to", first-1)
	}
	w.noteBehind(changes[0].Event.Time)
	rows.Reset()
	prior := Overlay(rows, func(id, relID, key string) (PropertyEvent, bool, error) {
		return w.st.Latest(ctx, id, relID, key)
	})
	var skipped uint64
	for _, ch := range changes {
		if err := Derive(ch, w.opts, prior, rows); err != nil {
			skipped++
			w.logger.Warn("history rows of a change log record skipped", "seq", ch.Seq, "err", err)
		}
	}
	through := changes[len(changes)-1].Seq
	start := time.Now()
	if err := w.st.Write(ctx, rows, through); err != nil {
		return cursor, err
	}
	if w.cfg.ObserveWrite != nil {
		w.cfg.ObserveWrite(rows.Len(), time.Since(start))
	}
	w.mu.Lock()
	w.status.Cursor = through
	w.status.Rows += uint64(rows.Len())
	w.status.Skipped += skipped
	w.status.Err = nil
	w.behind = time.Time{}
	w.mu.Unlock()
	return through, nil
}

// noteBehind records when the oldest record not yet written was committed.
func (w *Writer) noteBehind(eventTime string) {
	t, err := time.Parse(time.RFC3339Nano, eventTime)
	if err != nil {
		return
	}
	w.mu.Lock()
	if w.behind.IsZero() {
		w.behind = t
	}
	w.mu.Unlock()
}

// read returns the records after cursor, up to MaxBatch, with their states when the log
// knows them.
func (w *Writer) read(ctx context.Context, cursor uint64) ([]store.Change, error) {
	if w.clog != nil {
		return w.clog.ReadChanges(ctx, cursor, w.cfg.MaxBatch)
	}
	recs, err := w.log.Read(ctx, cursor, w.cfg.MaxBatch)
	if err != nil {
		return nil, err
	}
	changes := make([]store.Change, len(recs))
	for i, r := range recs {
		changes[i].Record = r
	}
	return changes, nil
}

// pruneLoop deletes rows past the retention every PruneInterval, in transactions of
// PruneBatch rows, until ctx ends.
func (w *Writer) pruneLoop(ctx context.Context) {
	tick := time.NewTicker(w.cfg.PruneInterval)
	defer tick.Stop()
	for {
		if err := w.Prune(ctx); err != nil && ctx.Err() == nil {
			w.logger.Warn("history pruning failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Prune deletes the rows past the retention now, and returns after the last transaction.
func (w *Writer) Prune(ctx context.Context) error {
	if w.cfg.Retention < 0 {
		return nil
	}
	before := w.cfg.Now().Add(-w.cfg.Retention)
	total := 0
	for {
		n, err := w.st.Prune(ctx, before, w.cfg.PruneBatch)
		total += n
		if err != nil {
			return fmt.Errorf("prune history before %s: %w", before.Format(time.RFC3339), err)
		}
		if n < w.cfg.PruneBatch {
			break
		}
	}
	if total > 0 {
		w.logger.Info("history pruned", "rows", total, "before", before)
	}
	return nil
}

// rollupLoop rolls history up every RollupEvery until ctx ends.
func (w *Writer) rollupLoop(ctx context.Context) {
	tick := time.NewTicker(w.cfg.RollupEvery)
	defer tick.Stop()
	for {
		if err := w.Rollup(ctx); err != nil && ctx.Err() == nil {
			w.logger.Warn("history roll-up failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// Rollup rolls the store's rows up to RollupDelay ago, one short Store.Rollup step after
// another, and returns after the last. It does nothing while the writer is behind by more
// than RollupDelay, or by as yet unknown records: catching up goes first, and the rows it
// writes would otherwise fall below the watermark, which costs more.
func (w *Writer) Rollup(ctx context.Context) error {
	upTo := w.cfg.Now().Add(-w.cfg.RollupDelay)
	w.mu.Lock()
	pending, behind := w.log.Last() > w.status.Cursor, w.behind
	w.mu.Unlock()
	if pending && (behind.IsZero() || behind.Before(upTo)) {
		return nil
	}
	for {
		done, err := w.st.Rollup(ctx, upTo)
		if err != nil {
			return err
		}
		if done {
			break
		}
	}
	w.mu.Lock()
	if upTo.After(w.status.RolledUpTo) {
		w.status.RolledUpTo = upTo
	}
	w.mu.Unlock()
	return nil
}
