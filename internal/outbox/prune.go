package outbox

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"time"

	"github.com/twinflow/twinflow/internal/store"
)

// Defaults for PrunerConfig's zero values.
const (
	DefaultRetention     = 7 * 24 * time.Hour
	DefaultPruneInterval = time.Minute
	// pruneBatch bounds the records one transaction deletes, so pruning never holds the
	// writer for long.
	pruneBatch = 10_000
)

// PrunerConfig configures a Pruner.
type PrunerConfig struct {
	// Retention is how long the log keeps a record after its commit, even once every relay is
	// past it (so it can be replayed). Default DefaultRetention.
	Retention time.Duration
	// Interval is the time between two prunes. Default DefaultPruneInterval.
	Interval time.Duration
	// Consumers are the in-process readers of the log that keep no cursor in the store (the
	// graph index): each returns the Seq of the newest record it is done with, and no record
	// after the smallest of them is pruned, however old. A consumer that is not reading yet
	// (an index being built) returns 0, which holds back every record.
	Consumers []func() uint64
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Pruner trims the change log: a record goes once every endpoint's cursor, every consumer
// cursor in the store (store.DeliveryReader.ConsumerCursors, such as propagation's) and every
// one of PrunerConfig.Consumers is past it and the retention has passed since its commit. The
// newest record always stays.
//
// So no reader of the log misses a record: a consumer reads on from where it is, and the log
// still holds every record after it. The retention alone cannot promise that, as a consumer
// may fall behind by more than the retention.
type Pruner struct {
	cfg    PrunerConfig
	st     Store
	logger *slog.Logger
}

// NewPruner returns a pruner of st's log.
func NewPruner(cfg PrunerConfig, st Store, logger *slog.Logger) (*Pruner, error) {
	if cfg.Retention < 0 || cfg.Interval < 0 {
		return nil, fmt.Errorf("pruner config: retention %v and interval %v must not be negative", cfg.Retention, cfg.Interval)
	}
	if cfg.Retention == 0 {
		cfg.Retention = DefaultRetention
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
			p.logger.Error("prune change log", slog.Any("err", err))
		case n > 0:
			p.logger.Info("pruned change log", slog.Int("records", n))
		}
	}
}

// Prune deletes every record due now and returns how many it deleted.
func (p *Pruner) Prune(ctx context.Context) (int, error) {
	before := p.cfg.Now().Add(-p.cfg.Retention)
	total := 0
	for {
		// Consumers only move forward: what they report now stays done with.
		held := uint64(math.MaxInt64)
		for _, done := range p.cfg.Consumers {
			held = min(held, done())
		}
		var n int
		err := p.st.UpdateDelivery(ctx, func(w store.DeliveryWriter) error {
			eps, err := w.Endpoints()
			if err != nil {
				return err
			}
			through := held
			for _, ep := range eps {
				c, err := w.Cursor(ep.Name)
				if err != nil {
					return err
				}
				through = min(through, c)
			}
			consumers, err := w.ConsumerCursors()
			if err != nil {
				return err
			}
			for _, c := range consumers {
				through = min(through, c)
			}
			n, err = w.PruneLog(through, before, pruneBatch)
			return err
		})
		if err != nil {
			return total, fmt.Errorf("prune log: %w", err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}
