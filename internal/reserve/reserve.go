// Package reserve keeps a reserve of disk space in a data directory, so that a full disk
// does not also stop the deletes that would make room on it.
//
// A Reserve is a file of Config.Size bytes allocated on the disk (not sparse) in the data
// directory. When a write fails because the disk is full, Exhausted deletes the file and the
// Reserve is Full: while it is, the owners of the data directory refuse every write that
// would grow their data and let only deletes through, which commit in the space the file gave
// back. Run watches the disk while it is full; once there is room for the file and as much
// again (an operator freed space), it allocates the file anew and the Reserve is no longer
// Full.
//
// Deleting data inside a database seldom makes its file smaller, so deletes alone do not end
// the full state: space must be freed on the disk itself (or the disk grown).
package reserve

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// FileName is the reserve file's name in the data directory.
const FileName = "twinflow.reserve"

// Defaults for Config's zero values.
const (
	// DefaultSize is room for many thousands of deletes, each with its change log record,
	// and for the checkpoints that copy them into the database.
	DefaultSize = 8 << 20
	// DefaultInterval is how often Run tries to allocate the file again while the disk is
	// full.
	DefaultInterval = time.Second
)

// Config configures a Reserve.
type Config struct {
	// Dir is the data directory; it must exist.
	Dir string
	// Size is the reserve file's size in bytes; 0 means DefaultSize.
	Size int64
	// Interval is how often Run tries to allocate the file again while the disk is full;
	// 0 means DefaultInterval.
	Interval time.Duration
}

// Reserve is the reserve file of a data directory and the disk's full state. Its methods are
// safe for concurrent use; Run must run for a full disk to be noticed when it has room
// again.
type Reserve struct {
	cfg    Config
	path   string
	logger *slog.Logger

	// full is the disk's state; fileMu serialises the changes of the file and of full.
	full   atomic.Bool
	fileMu sync.Mutex
	// wake tells Run that the disk became full.
	wake chan struct{}
}

// New returns the Reserve of cfg.Dir, allocating its file (or the rest of it) now. A disk
// too full for it does not fail New: the Reserve starts Full, without a file to give back.
func New(cfg Config, logger *slog.Logger) (*Reserve, error) {
	if cfg.Dir == "" {
		return nil, errors.New("disk reserve config: dir: must be set")
	}
	switch {
	case cfg.Size == 0:
		cfg.Size = DefaultSize
	case cfg.Size < 0:
		return nil, fmt.Errorf("disk reserve config: size: %d is negative", cfg.Size)
	}
	switch {
	case cfg.Interval == 0:
		cfg.Interval = DefaultInterval
	case cfg.Interval < 0:
		return nil, fmt.Errorf("disk reserve config: interval: %v is negative", cfg.Interval)
	}
	r := &Reserve{cfg: cfg, path: filepath.Join(cfg.Dir, FileName), logger: logger, wake: make(chan struct{}, 1)}
	err := r.allocate(cfg.Size)
	switch {
	case errors.Is(err, syscall.ENOSPC):
		r.full.Store(true)
		r.wake <- struct{}{}
		logger.Error("the disk is full: only deletes are accepted until space is freed; the disk reserve could not be allocated",
			slog.String("path", r.path), slog.Int64("bytes", cfg.Size))
	case err != nil:
		return nil, err
	}
	return r, nil
}

// Full reports whether the disk is full: from a write that failed for lack of space until
// Run has allocated the reserve file again.
func (r *Reserve) Full() bool { return r.full.Load() }

// Exhausted reports whether err, the failure of a write, says that the disk is full (it
// wraps syscall.ENOSPC). If it does and the Reserve was not Full, the Reserve becomes Full
// and deletes its file, giving its space to the deletes that follow.
func (r *Reserve) Exhausted(err error) bool {
	if !errors.Is(err, syscall.ENOSPC) {
		return false
	}
	r.fileMu.Lock()
	defer r.fileMu.Unlock()
	if r.full.Load() {
		return true
	}
	r.full.Store(true)
	rmErr := os.Remove(r.path)
	if rmErr != nil && !errors.Is(rmErr, os.ErrNotExist) {
		r.logger.Error("cannot release the disk reserve", slog.String("path", r.path), slog.Any("err", rmErr))
	}
	r.logger.Error("the disk is full: only deletes are accepted until space is freed; the disk reserve is released for them",
		slog.String("path", r.path), slog.Int64("bytes", r.cfg.Size), slog.Any("err", err))
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return true
}

// Run watches the disk while the Reserve is Full, every Config.Interval, until ctx ends;
// then it returns nil. Once the reserve file and as much again fit on the disk, it allocates
// the file and the Reserve is no longer Full.
func (r *Reserve) Run(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		}
		tick := time.NewTicker(r.cfg.Interval)
		for !r.refill() {
			select {
			case <-ctx.Done():
				tick.Stop()
				return nil
			case <-tick.C:
			}
		}
		tick.Stop()
	}
}

// refill allocates the reserve file again if the disk has room for twice its size, and then
// ends the full state; it reports whether the Reserve is no longer Full. Twice, because a disk
// with room for the file alone would be full again at once.
func (r *Reserve) refill() bool {
	r.fileMu.Lock()
	defer r.fileMu.Unlock()
	if !r.full.Load() {
		return true
	}
	ok, err := room(r.cfg.Dir, 2*r.cfg.Size)
	if err == nil && ok {
		err = r.allocate(r.cfg.Size)
	}
	if err != nil {
		if !errors.Is(err, syscall.ENOSPC) {
			r.logger.Warn("cannot allocate the disk reserve", slog.String("path", r.path), slog.Any("err", err))
		}
		return false
	}
	if !ok {
		return false
	}
	r.full.Store(false)
	r.logger.Info("disk space returned: writes are accepted again; the disk reserve is allocated",
		slog.String("path", r.path), slog.Int64("bytes", r.cfg.Size))
	return true
}

// allocate makes the reserve file hold size bytes allocated on the disk. When the disk has
// no room for them it removes the file, so that a partly allocated file holds no space, and
// returns an error wrapping syscall.ENOSPC.
func (r *Reserve) allocate(size int64) error {
	f, err := os.OpenFile(r.path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return fmt.Errorf("open the disk reserve: %w", err)
	}
	err = allocateFile(f, size)
	if cerr := f.Close(); err == nil && cerr != nil {
		err = cerr
	}
	if err != nil {
		if errors.Is(err, syscall.ENOSPC) {
			_ = os.Remove(r.path) // nothing more to do if it cannot go: the next try will tell
		}
		return fmt.Errorf("allocate %d bytes of disk reserve in %s: %w", size, r.path, err)
	}
	return nil
}
