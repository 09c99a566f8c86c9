// Package runner applies the messages of ingress sources to twins. This file holds the
// pruner of the de-duplication records the runner writes.
package runner

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twinflow/twinflow/internal/store"
)

// Defaults of the de-duplication window and its pruning.
const (
	// DefaultDedupWindow is how long a message id is remembered after the message was
	// applied: a message delivered again within it is recognised and not applied twice.
	// Brokers redeliver within seconds to minutes (an MQTT session resumed, a consumer group
	// rebalanced); an hour covers a restart of twinflow or of the broker.
	DefaultDedupWindow = time.Hour
	// DefaultPruneInterval is the time between two prunes of expired message ids.
	DefaultPruneInterval = time.Minute
	// pruneBatch bounds the records one transaction deletes, so pruning never holds the
	// writer for long.
	pruneBatch = 10_000
)

// PrunerConfig configures a Pruner.
type PrunerConfig struct {
	// Interval is the time between two prunes. Default DefaultPruneInterval.
	Interval time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Pruner deletes the message ids whose de-duplication window has passed, so the store keeps
// only the ids of the last window's messages.
type Pruner struct {
	cfg    PrunerConfig
	st     store.Ingress
	logger *slog.Logger
}

// NewPruner returns a pruner of st's message records.
func NewPruner(cfg PrunerConfig, st store.Ingress, logger *slog.Logger) (*Pruner, error) {
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("message pruner config: interval %v is negative", cfg.Interval)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultPruneInterval
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Pruner{cfg: cfg, st: st, logger: logger}, nil
}

// Run prunes every Interval until ctx ends, then returns nil. Failures are logged and retried
// at the next interval.
func (p *Pruner) Run(ctx context.Context) error {
	t := time.NewTicker(p.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		n, err := p.Prune(ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case err != nil:
			p.logger.Error("prune message ids", slog.Any("err", err))
		case n > 0:
			p.logger.Debug("pruned message ids", slog.Int("ids", n))
		}
	}
}

// Prune deletes every message record expired now and returns how many it deleted.
func (p *Pruner) Prune(ctx context.Context) (int, error) {
	now := p.cfg.Now()
	total := 0
	for {
		var n int
		err := p.st.UpdateIngress(ctx, func(w store.IngressWriter) error {
			var err error
			n, err = w.PruneMessages(now, pruneBatch)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("prune message ids: %w", err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}
