package postgres

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// CeilingConfig configures a Ceiling measurement.
type CeilingConfig struct {
	// Store names the database and the schema to measure in: the schema must not exist yet,
	// or be empty; Ceiling leaves it behind for the caller to drop.
	Store Config
	// Twins are stored before the measurement starts.
	Twins []store.Twin
	// Next returns the row of the next twin write (an existing twin with its new ETag and
	// document) and the event it emits. It is called by the writing goroutines, one at a
	// time, so it should hand out rows prepared in advance.
	Next func() (store.Twin, event.Event)
	// Batch is the number of writes per transaction; 0 means 64.
	Batch int
	// Conns is the number of connections writing transactions side by side; 0 means 2: while
	// one transaction waits for its commit, the next one's rows are already sent.
	Conns int
	// Duration is how long to write.
	Duration time.Duration
}

// CeilingResult is what a Ceiling measurement wrote.
type CeilingResult struct {
	Batch, Conns int
	// Writes counts the twin writes committed, Elapsed the time from the first transaction's
	// start to the last commit's end, and Transactions the commits.
	Writes, Transactions int
	Elapsed              time.Duration
}

// WritesPerSecond returns the twin writes committed per second.
func (r CeilingResult) WritesPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Writes) / r.Elapsed.Seconds()
}

// Ceiling measures the most twin writes per second the database can commit for this store:
// the same rows an Update that patches a twin writes (the twin row replaced, one log record
// appended by the store's own statement, which takes its Seqs from the head row, marks the
// log clock and notifies the other nodes), with the same durability (synchronous commit),
// and with the best batching: every transaction is full and is sent in one round trip, and
// Conns connections write side by side, so that one transaction's rows are written while the
// one before it waits for its commit at the head row.
//
// It leaves out everything else a Store does: no savepoint per Update, no twin read and no
// ETag check, no goroutine hand-off per write, no in-memory log tail. So nothing the Store
// does can beat it. (A transaction locks its twins in id order, which a Store cannot do for
// Updates that read before they write; that only helps the ceiling.)
func Ceiling(ctx context.Context, cfg CeilingConfig, logger *slog.Logger) (CeilingResult, error) {
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	if cfg.Conns <= 0 {
		cfg.Conns = 2
	}
	res := CeilingResult{Batch: cfg.Batch, Conns: cfg.Conns}
	if cfg.Next == nil || len(cfg.Twins) == 0 || cfg.Duration <= 0 {
		return res, errors.New("ceiling: twins, Next and a duration are required")
	}
	// A store creates the schema, its tables and their indexes, and stores the twins; then
	// it steps aside.
	s, err := New(cfg.Store, logger)
	if err != nil {
		return res, fmt.Errorf("ceiling: create the schema: %w", err)
	}
	for start := 0; start < len(cfg.Twins); start += 1000 {
		err = s.Update(ctx, func(w store.Writer) error {
			for _, t := range cfg.Twins[start:min(start+1000, len(cfg.Twins))] {
				if err := w.PutTwin(t); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return res, errors.Join(fmt.Errorf("ceiling: store the twins: %w", err), s.Close())
		}
	}
	if err := s.Close(); err != nil {
		return res, fmt.Errorf("ceiling: close the store: %w", err)
	}
	cfg.Store, _ = cfg.Store.withDefaults() // New checked it
	pc, err := poolConfig(cfg.Store)
	if err != nil {
		return res, err
	}
	cc := pc.ConnConfig
	conns := make([]*pgx.Conn, cfg.Conns)
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.Close(context.WithoutCancel(ctx))
			}
		}
	}()
	for i := range conns {
		if conns[i], err = pgx.ConnectConfig(ctx, cc); err != nil {
			return res, fmt.Errorf("ceiling: connect: %w", err)
		}
	}

	var (
		mu           sync.Mutex // serialises Next
		writes, txns atomic.Int64
		wg           sync.WaitGroup
		errs         = make([]error, len(conns))
	)
	channel := channelOf(cfg.Store.Schema)
	start := time.Now()
	deadline := start.Add(cfg.Duration)
	for i, c := range conns {
		wg.Go(func() {
			twins := make([]store.Twin, cfg.Batch)
			events := make([][]byte, cfg.Batch)
			depths := make([]int32, cfg.Batch)
			for time.Now().Before(deadline) && ctx.Err() == nil {
				mu.Lock()
				for j := range cfg.Batch {
					var e event.Event
					twins[j], e = cfg.Next()
					raw, err := encodeEvent(&e)
					if err != nil {
						mu.Unlock()
						errs[i] = fmt.Errorf("ceiling: encode event: %w", err)
						return
					}
					events[j], depths[j] = raw, int32(e.Depth)
				}
				mu.Unlock()
				// Transactions side by side lock their twins in one order, so they queue
				// behind each other instead of deadlocking.
				slices.SortFunc(twins, func(a, b store.Twin) int { return strings.Compare(a.ID, b.ID) })
				b := &pgx.Batch{}
				b.Queue("BEGIN")
				for _, t := range twins {
					b.Queue("INSERT INTO twins (id, model_id, etag, doc) VALUES ($1, $2, $3, $4)"+
						" ON CONFLICT (id) DO UPDATE SET model_id = excluded.model_id, etag = excluded.etag, doc = excluded.doc",
						t.ID, t.ModelID, t.ETag, []byte(t.Doc))
				}
				b.Queue(appendLog, cfg.Batch, 0, events, depths, channel)
				b.Queue("COMMIT")
				if err := c.SendBatch(ctx, b).Close(); err != nil {
					errs[i] = fmt.Errorf("ceiling: write a transaction: %w", err)
					return
				}
				writes.Add(int64(cfg.Batch))
				txns.Add(1)
			}
		})
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	res.Writes, res.Transactions = int(writes.Load()), int(txns.Load())
	return res, errors.Join(errs...)
}
