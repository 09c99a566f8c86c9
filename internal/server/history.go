package server

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinflow/twinflow/internal/api"
	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/history"
	historypg "github.com/twinflow/twinflow/internal/history/postgres"
	historysqlite "github.com/twinflow/twinflow/internal/history/sqlite"
	"github.com/twinflow/twinflow/internal/lease"
	"github.com/twinflow/twinflow/internal/reserve"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
)

// recorder is the data history half of a server: the history store (in the data directory,
// or in PostgreSQL) and the writer that keeps it current with the change log.
type recorder struct {
	store     history.Store
	writer    *history.Writer
	retention time.Duration // in effect: the configured one, or the default
	writes    prometheus.Histogram
	// leases runs the writer of a shared history store (in PostgreSQL) on one node at a
	// time; held is true while it runs here. A node's own history store (in its data
	// directory) is written by its own writer, nil leases.
	leases *leases
	held   atomic.Bool
}

// newRecorder opens the history store, in PostgreSQL when cfg names a database and in
// dataDir otherwise, where it heeds space (see spaceStore), and builds its writer of log,
// which for a store in PostgreSQL, shared by the nodes, runs while leases holds the history
// lease; it returns nil when cfg turns history off.
func newRecorder(ctx context.Context, cfg config.History, dataDir string, space *reserve.Reserve, serviceID string, log store.Log,
	leases *leases, logger *slog.Logger) (*recorder, error) {
	if !cfg.On() {
		return nil, nil
	}
	tables := history.Tables{
		Properties: cfg.Tables.Properties, TwinLifecycle: cfg.Tables.TwinLifecycle,
		RelationshipLifecycle: cfg.Tables.RelationshipLifecycle, Telemetry: cfg.Tables.Telemetry,
		Anomalies: cfg.Tables.Anomalies,
	}
	var (
		st  history.Store
		err error
	)
	if cfg.DSN != "" {
		st, err = historypg.Open(ctx, historypg.Config{DSN: cfg.DSN, Schema: cfg.Schema, Tables: tables})
		if err != nil {
			// The DSN may hold a password: the error names the database only as configured.
			return nil, fmt.Errorf("open the history store in PostgreSQL (history.dsn): %w", err)
		}
		logger.Info("history kept in PostgreSQL", slog.String("schema", cmp.Or(cfg.Schema, historypg.DefaultSchema)))
	} else {
		hs, err := historysqlite.Open(historysqlite.Config{Dir: dataDir, Tables: tables})
		if err != nil {
			return nil, fmt.Errorf("open the history store in %s: %w", dataDir, err)
		}
		st = spaceStore{Store: hs, space: space}
	}
	if cfg.DSN == "" {
		leases = nil
	}
	h := &recorder{store: st, retention: cfg.Retention, leases: leases, writes: prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "twinflow", Subsystem: "history", Name: "write_seconds",
		Help:    "Time to commit one batch of history rows with the writer's cursor.",
		Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
	})}
	if h.retention == 0 {
		h.retention = history.DefaultRetention
	}
	h.writer, err = history.New(history.Config{
		ServiceID: serviceID, SkipRemovals: cfg.SkipRemovals, RecordTelemetry: cfg.Telemetry, Retention: cfg.Retention,
		ObserveWrite: func(_ int, took time.Duration) { h.writes.Observe(took.Seconds()) },
	}, log, st, logger)
	if err != nil {
		st.Close()
		return nil, err
	}
	return h, nil
}

// register registers the history metrics with reg:
//
//	twinflow_history_rows_written_total  rows written since the start
//	twinflow_history_skipped_total       records or properties whose rows could not be derived
//	twinflow_history_lag_events          change log records not yet in history
//	twinflow_history_lag_seconds         age of the oldest of them
//	twinflow_history_write_seconds       time to commit a batch of rows (histogram)
func (h *recorder) register(reg prometheus.Registerer) error {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "twinflow", Subsystem: "history", Name: name, Help: help}
	}
	for _, c := range []prometheus.Collector{
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("rows_written_total", "History rows written since the start.")),
			func() float64 { return float64(h.writer.Status().Rows) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts(opts("skipped_total", "Change log records or properties whose history rows could not be derived.")),
			func() float64 { return float64(h.writer.Status().Skipped) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("lag_events", "Change log records not yet in history.")),
			func() float64 { return float64(h.writer.Status().LagEvents) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("lag_seconds", "Age of the oldest change log record not yet in history.")),
			func() float64 { return h.writer.Status().LagTime.Seconds() }),
		h.writes,
	} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("register history metrics: %w", err)
		}
	}
	return nil
}

// cursor returns the Seq through which history is written, 0 until the writer has read its
// cursor: the change log's pruner keeps every record after it.
func (h *recorder) cursor() uint64 { return h.writer.Status().Cursor }

// run writes history until ctx ends; into a shared store, whenever this node holds the
// history lease.
func (h *recorder) run(ctx context.Context) error {
	if h.leases == nil {
		if err := h.writer.Run(ctx); ctx.Err() == nil {
			return fmt.Errorf("write history: %w", err)
		}
		return nil
	}
	err := h.leases.Hold(ctx, historyLease, func(ctx context.Context, _ lease.Grant) error {
		h.held.Store(true)
		defer h.held.Store(false)
		return h.writer.Run(ctx)
	})
	if err != nil && ctx.Err() == nil && !errors.Is(err, lease.ErrStopped) {
		return fmt.Errorf("write history: %w", err)
	}
	return nil
}

// close closes the history store; run must have returned.
func (h *recorder) close() error { return h.store.Close() }

// api returns what the API serves history from.
//
// The API caches graphs of the past for as long as the writer says it wrote nothing into
// them, which only a node's own writer can say: for a shared store, which another node's
// writer may write, it caches none.
func (h *recorder) api(models func() *dtdl.ModelSet) *api.History {
	a := &api.History{Store: h.store, Retention: h.retention, Models: models, Status: h.status}
	if h.leases == nil {
		a.Changes = h.writer
	}
	return a
}

// status reports the writer's progress and the store's tables for GET /history/status, and
// the node that writes a shared store. When another node writes it, the cursor is the
// store's.
func (h *recorder) status(ctx context.Context) (api.HistoryStatus, error) {
	ws := h.writer.Status()
	stats, err := h.store.Stats(ctx)
	if err != nil {
		return api.HistoryStatus{}, err
	}
	owner, here := "", true
	if h.leases != nil {
		if owner, here, err = h.leases.Owner(ctx, historyLease); err != nil {
			return api.HistoryStatus{}, err
		}
	}
	if h.leases != nil && !h.held.Load() && !here {
		if ws.Cursor, err = h.store.Cursor(ctx); err != nil {
			return api.HistoryStatus{}, err
		}
		ws.LagEvents, ws.LagTime = 0, 0
		if ws.Last > ws.Cursor {
			ws.LagEvents = ws.Last - ws.Cursor
		}
	}
	out := api.HistoryStatus{
		Cursor: ws.Cursor, Last: ws.Last, LagEvents: ws.LagEvents, LagSeconds: ws.LagTime.Seconds(),
		Tables: make(map[string]int64, len(stats.Tables)), Bytes: stats.Bytes, Retention: h.retention.String(),
		Owner: owner,
	}
	for _, t := range stats.Tables {
		out.Tables[t.Name] = t.Rows
	}
	if ws.Err != nil {
		out.LastError = ws.Err.Error()
	}
	if !stats.RolledUpTo.IsZero() {
		out.RolledUpTo = stats.RolledUpTo.Format(time.RFC3339Nano)
	}
	if !ws.CheckpointedTo.IsZero() {
		out.CheckpointedTo = ws.CheckpointedTo.Format(time.RFC3339Nano)
	}
	return out, nil
}

// spaceStore is a history store in the data directory, beside the twin store: it must not
// take the space a full disk keeps for deletes. While space is Full it refuses Write, Rollup
// and Checkpoint, which grow the database, with an error wrapping store.ErrFull, and it tells space
// of the writes that fail for lack of room. The history writer keeps a refused batch and
// retries it with backoff, its cursor where it was, and reports the error in
// GET /history/status; Prune, which deletes, goes on. Reads pass through.
type spaceStore struct {
	*historysqlite.Store
	space *reserve.Reserve
}

var _ history.Checkpointer = spaceStore{}

// Checkpoint implements history.Checkpointer: like Rollup, it grows the database.
func (s spaceStore) Checkpoint(ctx context.Context, upTo time.Time) (bool, error) {
	if s.space.Full() {
		return false, fmt.Errorf("checkpoint history: the disk is full, and until space is freed history waits: %w", store.ErrFull)
	}
	done, err := s.Store.Checkpoint(ctx, upTo)
	return done, s.full(err)
}

// Write implements history.Store.
func (s spaceStore) Write(ctx context.Context, rows *history.Rows, through uint64) error {
	if s.space.Full() {
		return fmt.Errorf("write history rows through %d: the disk is full, and until space is freed history waits: %w", through, store.ErrFull)
	}
	return s.full(s.Store.Write(ctx, rows, through))
}

// Rollup implements history.Store.
func (s spaceStore) Rollup(ctx context.Context, upTo time.Time) (bool, error) {
	if s.space.Full() {
		return false, fmt.Errorf("roll history up: the disk is full, and until space is freed history waits: %w", store.ErrFull)
	}
	done, err := s.Store.Rollup(ctx, upTo)
	return done, s.full(err)
}

// full returns err, marked as store.ErrFull and told to space when it says the disk is full.
func (s spaceStore) full(err error) error {
	if err == nil || !sqlite.DiskFull(err) {
		return err
	}
	if !errors.Is(err, store.ErrFull) {
		err = fmt.Errorf("%w: %w", store.ErrFull, err)
	}
	s.space.Exhausted(err)
	return err
}
