package server

import (
	"cmp"
	"context"
	"errors"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/graph"
)

// SnapshotFile is the name of the graph index's snapshot in the data directory.
const SnapshotFile = "index.snapshot"

// snapshotCheck is how often the snapshotter looks whether the index has applied enough
// records since the last snapshot to write the next.
const snapshotCheck = 5 * time.Second

// snapshotShare bounds the time spent writing snapshots in the background: after a write
// that took d, the next waits at least snapshotShare*d, so that under a heavy load of writes
// (a bulk import) snapshots take at most a tenth of a CPU.
const snapshotShare = 10

// snapshotter saves the graph index to its snapshot file and loads it back at start (see
// graph.OpenSnapshot), so that a start replays the change log from the snapshot instead of
// reading every twin and relationship from the store.
//
// Each node keeps the snapshot of its own index in its own data directory, also when nodes
// share a PostgreSQL store: the snapshot is checked against the store's log and models when
// loaded, so one that no longer fits (the log was pruned past it by another node's pruner,
// which does not know this node's snapshot, or the models changed) is not used and the index
// is built from the store instead.
type snapshotter struct {
	path   string
	every  uint64
	logger *slog.Logger
	// seq is the seq of the snapshot on disk, math.MaxUint64 while there is none: the log's
	// pruner keeps every record after it, which loading the snapshot replays (see held).
	seq atomic.Uint64
}

// newSnapshotter returns the snapshotter of the snapshot in dataDir, or nil when cfg turns
// snapshots off. It reads the header of the snapshot on disk, if any, so that the pruner
// keeps the records after it from the start, and removes the temporary files of snapshots
// whose writing a crash cut short.
func newSnapshotter(cfg config.Index, dataDir string, logger *slog.Logger) *snapshotter {
	if !cfg.SnapshotsOn() {
		return nil
	}
	s := &snapshotter{
		path:   filepath.Join(dataDir, SnapshotFile),
		every:  uint64(cmp.Or(cfg.SnapshotRecords, config.DefaultSnapshotRecords)),
		logger: logger,
	}
	s.seq.Store(math.MaxUint64)
	if seq, err := graph.SnapshotSeq(s.path); err == nil {
		s.seq.Store(seq)
	}
	temps, _ := filepath.Glob(s.path + graph.SnapshotTempSuffix + "*") // the pattern is valid
	for _, name := range temps {
		if err := os.Remove(name); err != nil {
			logger.Warn("graph index: remove a snapshot cut short", slog.String("path", name), slog.Any("err", err))
		}
	}
	return s
}

// held returns the seq after which the log must keep every record for the snapshot on disk
// (a pruner consumer, see outbox.PrunerConfig.Consumers): the records after the snapshot's
// seq, which loading it replays, and the one at its seq, by which loading recognises the log.
func (s *snapshotter) held() uint64 {
	seq := s.seq.Load()
	if seq == math.MaxUint64 || seq == 0 {
		return seq
	}
	return seq - 1
}

// open returns the index loaded from the snapshot, or nil when there is none or it cannot be
// used, saying why in the log; an unusable snapshot is removed.
func (s *snapshotter) open(ctx context.Context, load func(path string) (*graph.Index, error)) *graph.Index {
	start := time.Now()
	idx, err := load(s.path)
	switch {
	case err == nil:
		s.logger.Info("graph index loaded from its snapshot", slog.String("path", s.path),
			slog.Uint64("seq", idx.Applied()), slog.Duration("took", time.Since(start)))
		return idx
	case errors.Is(err, os.ErrNotExist):
		s.logger.Info("graph index: no snapshot; building it from the store", slog.String("path", s.path))
		return nil
	case ctx.Err() != nil:
		return nil
	}
	s.logger.Warn("graph index: snapshot not used; building it from the store", slog.String("path", s.path), slog.Any("reason", err))
	if errors.Is(err, graph.ErrBadSnapshot) {
		if err := os.Remove(s.path); err != nil && !errors.Is(err, os.ErrNotExist) {
			s.logger.Warn("graph index: remove the unusable snapshot", slog.Any("err", err))
		} else {
			s.seq.Store(math.MaxUint64)
		}
	}
	return nil
}

// save writes idx's snapshot when it has applied records since the snapshot on disk, and
// returns how long that took.
func (s *snapshotter) save(idx *graph.Index, why string) time.Duration {
	if seq := s.seq.Load(); seq != math.MaxUint64 && idx.Applied() <= seq {
		return 0
	}
	start := time.Now()
	seq, err := idx.SaveSnapshot(s.path)
	took := time.Since(start)
	if err != nil {
		s.logger.Error("graph index: write the snapshot", slog.Any("err", err))
		return took
	}
	s.seq.Store(seq)
	s.logger.Info("graph index snapshot written", slog.String("why", why), slog.Uint64("seq", seq),
		slog.Duration("took", took))
	return took
}

// run writes idx's snapshot in the background whenever it has applied s.every records since
// the last one, one at a time and no sooner than snapshotShare times the last write's
// duration after it, until ctx ends.
func (s *snapshotter) run(ctx context.Context, idx *graph.Index) {
	tick := time.NewTicker(snapshotCheck)
	defer tick.Stop()
	var next time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		seq := s.seq.Load()
		if (seq == math.MaxUint64 || idx.Applied() >= seq+s.every) && !time.Now().Before(next) {
			took := s.save(idx, "records applied")
			next = time.Now().Add(snapshotShare * took)
		}
	}
}
