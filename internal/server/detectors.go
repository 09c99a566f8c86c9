package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/detector"
	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/lease"
)

// detectorLease is the lease under which the detectors score the change log: on a store the
// nodes share, one node scores for all of them.
const detectorLease = "detectors"

// lateIndex is the graph index the detectors' queries run on, once Run has built it.
type lateIndex struct{ g *lateGraph }

// Read implements detector.Index: it waits for the index to be built.
func (l lateIndex) Read(ctx context.Context, fn func(*graph.Reader) error) error {
	idx, err := l.g.built(ctx)
	if err != nil {
		return err
	}
	return idx.Read(ctx, fn)
}

// newDetectors builds the anomaly detector service over st, with its metrics in reg, and
// creates or replaces the detectors cfg declares. hist is the history store backtests read,
// nil when history is off.
func newDetectors(ctx context.Context, cfg config.Config, st mainStore, serviceID string, g *lateGraph, hist history.Store,
	reg prometheus.Registerer, logger *slog.Logger) (*detector.Service, error) {
	metrics, err := detector.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	svc, err := detector.New(detector.Config{ServiceID: serviceID}, st, lateIndex{g}, hist, metrics, logger)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, name := range sortedKeys(cfg.Detectors) {
		if _, err := svc.Put(ctx, name, cfg.Detectors[name]); err != nil {
			errs = append(errs, fmt.Errorf("detectors.%s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("apply config: %w", err)
	}
	return svc, nil
}

// runDetectors scores the change log with the detectors until ctx ends: on a store the nodes
// share, while this node holds the detectors' lease; on the embedded store, which no other
// node uses, throughout.
func (s *Server) runDetectors(ctx context.Context) error {
	if s.cfg.Store.DSN == "" {
		s.detectors.Run(ctx)
		return nil
	}
	err := s.leases.Hold(ctx, detectorLease, func(ctx context.Context, _ lease.Grant) error {
		s.detectors.Run(ctx)
		return nil
	})
	if err != nil && ctx.Err() == nil && !errors.Is(err, lease.ErrStopped) {
		return fmt.Errorf("run detectors: %w", err)
	}
	return nil
}
