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
	DefaultLinger        = 100 * time.Millisecond
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
	// rebuilding the graph as of a past time (Store.Past) needs them.
	SkipRemovals bool
	// RecordTelemetry records telemetry messages in the telemetry table; ADT records none.
	RecordTelemetry bool
	// MaxBatch is the most log records turned into rows and written in one transaction: a
	// writer takes every record available up to it. Default DefaultMaxBatch.
	MaxBatch int
	// Linger is the least time between two reads of the log while the last read was not
	// full: under load the writer waits that long to gather records into fewer, larger
	// transactions, since each commit costs an fsync that the twin store's commits contend
	// with. An idle writer reads at once, so a lone change still reaches history quickly.
	// Default DefaultLinger; negative reads as soon as a transaction ends.
	Linger time.Duration
	// Retention is how long rows are kept, counted from their TimeStamp (processing time);
	// negative keeps them for ever. Default DefaultRetention.
	Retention time.Duration
	// PruneInterval is the time between retention passes; PruneBatch the most rows one
	// pruning transaction deletes. Defaults: DefaultPruneInterval, or a tenth of a Retention
	// shorter than ten of them (at least 1 s); DefaultPruneBatch.
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
	if cfg.Linger == 0 {
		cfg.Linger = DefaultLinger
	}
	positiveDur("minBackoff", &cfg.MinBackoff, DefaultMinBackoff)
	positiveDur("maxBackoff", &cfg.MaxBackoff, DefaultMaxBackoff)
	positiveDur("rollupEvery", &cfg.RollupEvery, DefaultRollupEvery)
	positiveDur("rollupDelay", &cfg.RollupDelay, DefaultRollupDelay)
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
	}
	// A retention shorter than ten intervals is pruned ten times per retention, so the rows
	// never outlive it by more than a tenth.
	pruneEvery := DefaultPruneInterval
	if cfg.Retention > 0 {
		pruneEvery = min(pruneEvery, max(cfg.Retention/10, time.Second))
	}
	positiveDur("pruneInterval", &cfg.PruneInterval, pruneEvery)
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
	// CheckpointedTo is how far the store's checkpoints go at least (see Checkpointer): the
	// time up to which the last checkpoint pass since Run started built every checkpoint
	// due; zero before the first, and for a store that keeps none.
	CheckpointedTo time.Time
}

// Writer keeps history current with the change log: it reads the log from the cursor the
// Store keeps, derives each record's rows (Derive) and writes them with the new cursor in one
// Store.Write per batch, so history holds every record's rows exactly once, whenever it
// crashes. It also prunes rows past the retention, and drives the store's roll-ups.
//
// Reading and deriving run on one goroutine and writing on another, one batch apart: while
// the store commits a batch, the next is derived. A batch's rows may need the values of the
// batch before it, which may not be committed yet, so the deriving goroutine remembers the
// newest rows it derived (newestRows) and asks the store only for older ones.
//
// Run runs a Writer, once at a time; Status is safe to call at any time.
type Writer struct {
	cfg    Config
	opts   Options
	log    store.Log
	clog   store.ChangeLog // log as a ChangeLog, nil when it is not one
	st     Store
	logger *slog.Logger

	mu     sync.Mutex
	status Status
	// newest is the deriving goroutine's memory of the newest row of each property.
	newest newestRows
	// behind holds the commit time of the first record of each batch read and not yet
	// written, oldest first, when known.
	behind []time.Time
	// writes counts the Writes since New; oldest holds the oldest time of the twin,
	// relationship and property rows of each of the last len(oldest), Write n at
	// n % len(oldest), the zero time for a Write of none (see PastChanged).
	writes uint64
	oldest [pastMarks]time.Time
}

// pastMarks is the number of Writes whose oldest row time a Writer remembers for
// PastChanged: at its batches of up to DefaultMaxBatch records, some minutes of full load.
const pastMarks = 1024

// newestRowsMax bounds the properties whose newest rows a Writer remembers: with a few
// hundred bytes a row, some tens of megabytes.
const newestRowsMax = 1 << 17

// batch is the rows of the records after one cursor, through another.
type batch struct {
	rows    Rows
	through uint64
	skipped uint64
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
	w.newest.max = newestRowsMax
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
		if len(w.behind) > 0 {
			s.LagTime = max(0, w.cfg.Now().Sub(w.behind[0]))
		}
	}
	return s
}

// Run writes history until ctx ends, then returns ctx's error after its goroutines (deriving,
// pruning, rolling up) exited. Failures, reading the cursor at start as well as later, are
// logged, reported by Status and retried with backoff: a database that is away for a while
// delays history, and stops nothing.
//
// Run may be called again once it returned, as a node that lost the lease on history and
// regained it does: it starts again from the cursor the Store keeps, which another writer
// may have moved meanwhile, and forgets the rows it derived before.
func (w *Writer) Run(ctx context.Context) error {
	cursor, err := w.startCursor(ctx)
	if err != nil {
		return err
	}
	w.mu.Lock()
	w.status.Cursor = cursor
	w.behind = nil
	w.mu.Unlock()
	// Only the deriving goroutine uses newest, and none runs now.
	w.newest.rows = nil
	var wg sync.WaitGroup
	defer wg.Wait()
	if w.cfg.Retention > 0 {
		wg.Go(func() { w.pruneLoop(ctx) })
	}
	wg.Go(func() { w.rollupLoop(ctx) })
	// Two batches circulate: the deriver fills one from free while the writer writes the
	// other, and hands it back through free once it is written.
	free, full := make(chan *batch, 2), make(chan *batch)
	free <- new(batch)
	free <- new(batch)
	wg.Go(func() { w.derive(ctx, cursor, free, full) })
	for {
		var b *batch
		select {
		case <-ctx.Done():
			return ctx.Err()
		case b = <-full:
		}
		if err := w.write(ctx, b); err != nil {
			return err
		}
		free <- b
	}
}

// startCursor reads the cursor Run starts from, retrying with backoff until it is read or ctx
// ends.
func (w *Writer) startCursor(ctx context.Context) (uint64, error) {
	backoff := w.cfg.MinBackoff
	for {
		cursor, err := w.st.Cursor(ctx)
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
		if err == nil {
			return cursor, nil
		}
		w.fail(fmt.Errorf("read the history cursor: %w", err), 0, backoff)
		if !sleep(ctx, backoff) {
			return 0, ctx.Err()
		}
		backoff = min(2*backoff, w.cfg.MaxBackoff)
	}
}

// derive reads the log after cursor batch by batch until ctx ends, derives each batch's
// rows into a batch from free and sends it on full. Between reads it lingers (Config.Linger)
// unless the last read was full; a failed read is retried with backoff.
func (w *Writer) derive(ctx context.Context, cursor uint64, free chan *batch, full chan<- *batch) {
	var (
		lastFull bool // the last read returned MaxBatch records
		lastRead time.Time
		backoff  = w.cfg.MinBackoff
	)
	for {
		var b *batch
		select {
		case <-ctx.Done():
			return
		case b = <-free:
		}
		if !lastFull {
			if !sleep(ctx, time.Until(lastRead.Add(w.cfg.Linger))) {
				return
			}
		}
		changes, err := w.read(ctx, cursor)
		lastRead = time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			w.fail(fmt.Errorf("read change log after %d: %w", cursor, err), cursor, backoff)
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, w.cfg.MaxBackoff)
			free <- b // free has room: b came from it
			continue
		}
		backoff = w.cfg.MinBackoff
		if first := changes[0].Seq; first != cursor+1 {
			w.logger.Warn("history missed change log records that were pruned before it read them",
				"from", cursor+1, "to", first-1)
		}
		w.noteBehind(changes[0].Event.Time)
		w.fill(ctx, b, changes)
		lastFull = len(changes) == w.cfg.MaxBatch
		cursor = b.through
		select {
		case <-ctx.Done():
			return
		case full <- b:
		}
	}
}

// fill derives the rows of changes into b. Values not in b's own rows come from the rows
// remembered (which hold every row of the batch before, written or not), then from the store.
func (w *Writer) fill(ctx context.Context, b *batch, changes []store.Change) {
	b.rows.Reset()
	b.skipped = 0
	latest := func(id, relID, key string) (PropertyEvent, bool, error) {
		if r, ok := w.newest.get(id, relID, key); ok {
			return r, true, nil
		}
		return w.st.Latest(ctx, id, relID, key)
	}
	prior := Overlay(&b.rows, latest)
	for _, ch := range changes {
		if err := Derive(ch, w.opts, prior, &b.rows); err != nil {
			b.skipped++
			w.logger.Warn("history rows of a change log record skipped", "seq", ch.Seq, "err", err)
		}
	}
	b.through = changes[len(changes)-1].Seq
	w.newest.add(b.rows.Properties)
}

// newestRows remembers the newest property row the writer derived for each property, up to
// a bound, so that deriving records whose states the log no longer holds (a writer catching
// up) seldom asks the store for the row before: a patch without sourceTime keeps the one its
// property had, and a sub-property patch starts from the property's value. Rows enter in
// log order, each batch's after it is derived, so every row remembered is the newest the
// store has, or will have once the batches before are written.
type newestRows struct {
	max  int
	rows map[propertyKey]PropertyEvent
}

// propertyKey names one property of a twin, or of one of its relationships.
type propertyKey struct{ id, relationshipID, key string }

func (n *newestRows) get(id, relID, key string) (PropertyEvent, bool) {
	r, ok := n.rows[propertyKey{id, relID, key}]
	return r, ok
}

// add remembers rows, forgetting everything first when they would pass the bound.
func (n *newestRows) add(rows []PropertyEvent) {
	if n.rows == nil || len(n.rows)+len(rows) > n.max {
		n.rows = make(map[propertyKey]PropertyEvent, min(n.max, 2*len(rows)))
	}
	for _, r := range rows {
		n.rows[propertyKey{r.ID, r.RelationshipID, r.Key}] = r
	}
}

// write writes b's rows with its cursor, retrying with backoff until it succeeds or ctx
// ends (then it returns ctx's error).
func (w *Writer) write(ctx context.Context, b *batch) error {
	backoff := w.cfg.MinBackoff
	for {
		start := time.Now()
		err := w.st.Write(ctx, &b.rows, b.through)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if err == nil {
			if w.cfg.ObserveWrite != nil {
				w.cfg.ObserveWrite(b.rows.Len(), time.Since(start))
			}
			oldest := b.rows.oldest()
			w.mu.Lock()
			w.writes++
			w.oldest[w.writes%pastMarks] = oldest
			w.status.Cursor = b.through
			w.status.Rows += uint64(b.rows.Len())
			w.status.Skipped += b.skipped
			w.status.Err = nil
			if len(w.behind) > 0 {
				w.behind = w.behind[1:]
			}
			w.mu.Unlock()
			return nil
		}
		w.fail(err, b.through, backoff)
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, w.cfg.MaxBackoff)
	}
}

// fail records and logs a failure that will be retried after backoff.
func (w *Writer) fail(err error, cursor uint64, backoff time.Duration) {
	w.mu.Lock()
	w.status.Err = err
	w.mu.Unlock()
	w.logger.Warn("history write failed; retrying", "cursor", cursor, "backoff", backoff, "err", err)
}

// sleep waits for d, and reports false if ctx ended first.
func sleep(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// noteBehind records the commit time of the first record of a batch read: the time that
// batch's records have been waiting, until it is written. A batch whose time cannot be read
// counts as just committed.
func (w *Writer) noteBehind(eventTime string) {
	t, err := time.Parse(time.RFC3339Nano, eventTime)
	if err != nil {
		t = w.cfg.Now()
	}
	w.mu.Lock()
	w.behind = append(w.behind, t)
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

// rollupLoop rolls history up, and checkpoints it, every RollupEvery until ctx ends.
func (w *Writer) rollupLoop(ctx context.Context) {
	tick := time.NewTicker(w.cfg.RollupEvery)
	defer tick.Stop()
	for {
		if err := w.Rollup(ctx); err != nil && ctx.Err() == nil {
			w.logger.Warn("history roll-up failed", "err", err)
		}
		if err := w.Checkpoint(ctx); err != nil && ctx.Err() == nil {
			w.logger.Warn("history checkpoint failed", "err", err)
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
	if w.behindSince(upTo) {
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

// Checkpoint takes the store's checkpoints up to RollupDelay ago, if it keeps any (see
// Checkpointer), one step after another, and returns after the last. Like Rollup, it does
// nothing while the writer is behind: a row written below a checkpoint's time invalidates it.
func (w *Writer) Checkpoint(ctx context.Context) error {
	cp, ok := w.st.(Checkpointer)
	if !ok {
		return nil
	}
	upTo := w.cfg.Now().Add(-w.cfg.RollupDelay)
	if w.behindSince(upTo) {
		return nil
	}
	for {
		done, err := cp.Checkpoint(ctx, upTo)
		if err != nil {
			return err
		}
		if done {
			break
		}
	}
	w.mu.Lock()
	if upTo.After(w.status.CheckpointedTo) {
		w.status.CheckpointedTo = upTo
	}
	w.mu.Unlock()
	return nil
}

// behindSince reports whether the writer has records to write from before upTo, or records
// of a time it does not know yet.
func (w *Writer) behindSince(upTo time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.log.Last() <= w.status.Cursor {
		return false
	}
	return len(w.behind) == 0 || w.behind[0].Before(upTo)
}

// Mark returns a mark of the Writes so far, for PastChanged.
func (w *Writer) Mark() uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes
}

// PastChanged reports whether a Write after mark (see Mark) may have changed the store's
// Past at t: whether one wrote a row at or before t, or so many Writes followed that the
// writer no longer knows. Only the writer writes rows, and pruning changes no Past it
// keeps, so a Past at t read after taking mark holds while PastChanged is false.
func (w *Writer) PastChanged(mark uint64, t time.Time) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.writes-mark >= pastMarks {
		return true
	}
	for n := mark + 1; n <= w.writes; n++ {
		if o := w.oldest[n%pastMarks]; !o.IsZero() && !o.After(t) {
			return true
		}
	}
	return false
}
