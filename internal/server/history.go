package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twinflow/twinflow/internal/api"
	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/history"
	historysqlite "github.com/twinflow/twinflow/internal/history/sqlite"
	"github.com/twinflow/twinflow/internal/store"
)

// recorder is the data history half of a server: the history store in the data directory and
// the writer that keeps it current with the change log.
type recorder struct {
	store     *historysqlite.Store
	writer    *history.Writer
	retention time.Duration // in effect: the configured one, or the default
}

// newRecorder opens the history store in dataDir and builds its writer of log, or returns
// nil when cfg turns history off.
func newRecorder(cfg config.History, dataDir, serviceID string, log store.Log, logger *slog.Logger) (*recorder, error) {
	if !cfg.On() {
		return nil, nil
	}
	st, err := historysqlite.Open(historysqlite.Config{Dir: dataDir, Tables: history.Tables{
		Properties: cfg.Tables.Properties, TwinLifecycle: cfg.Tables.TwinLifecycle, RelationshipLifecycle: cfg.Tables.RelationshipLifecycle,
	}})
	if err != nil {
		return nil, fmt.Errorf("open the history store in %s: %w", dataDir, err)
	}
	w, err := history.New(history.Config{ServiceID: serviceID, SkipRemovals: cfg.SkipRemovals, Retention: cfg.Retention}, log, st, logger)
	if err != nil {
		st.Close()
		return nil, err
	}
	retention := cfg.Retention
	if retention == 0 {
		retention = history.DefaultRetention
	}
	return &recorder{store: st, writer: w, retention: retention}, nil
}

// cursor returns the Seq through which history is written, 0 until the writer has read its
// cursor: the change log's pruner keeps every record after it.
func (h *recorder) cursor() uint64 { return h.writer.Status().Cursor }

// run writes history until ctx ends.
func (h *recorder) run(ctx context.Context) error {
	if err := h.writer.Run(ctx); ctx.Err() == nil {
		return fmt.Errorf("write history: %w", err)
	}
	return nil
}

// close closes the history store; run must have returned.
func (h *recorder) close() error { return h.store.Close() }

// api returns what the API serves history from.
func (h *recorder) api(models func() *dtdl.ModelSet) *api.History {
	return &api.History{Store: h.store, Retention: h.retention, Models: models, Status: h.status}
}

// status reports the writer's progress and the store's tables for GET /history/status.
func (h *recorder) status(ctx context.Context) (api.HistoryStatus, error) {
	ws := h.writer.Status()
	stats, err := h.store.Stats(ctx)
	if err != nil {
		return api.HistoryStatus{}, err
	}
	out := api.HistoryStatus{
		Cursor: ws.Cursor, Last: ws.Last, LagEvents: ws.LagEvents, LagSeconds: ws.LagTime.Seconds(),
		Tables: make(map[string]int64, len(stats.Tables)), Bytes: stats.Bytes, Retention: h.retention.String(),
	}
	for _, t := range stats.Tables {
		out.Tables[t.Name] = t.Rows
	}
	if ws.Err != nil {
		out.LastError = ws.Err.Error()
	}
	return out, nil
}
