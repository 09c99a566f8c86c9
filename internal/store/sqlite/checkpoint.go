package sqlite

import (
	"context"
	"database/sql"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// checkpointer copies the write-ahead log into the database in the background, on a
// connection of its own: after commits were made durable (see kick), and at most once per
// checkpointInterval, it runs a PASSIVE checkpoint, which runs beside the writer rather than
// stalling it.
//
// The log starts over from its beginning only when a write transaction begins with all of it
// copied, which a busy writer rarely lets happen: it appends while the checkpoint copies. So
// once the log holds restartFrames frames, the checkpointer asks the writer to copy the rest
// itself before its next transaction (see restart); most of the log is copied by then, so
// that costs the writer little.
//
// A checkpoint grows the database file by the pages it copies, so while the disk is full
// (space says so) it checkpoints nothing: the space a reserve gave back is for the deletes
// the writer appends to the log. A checkpoint under way when the disk fills finishes before
// the reserve is given back (see exhausted).
//
// The Store and Ceiling both write through it, so the ceiling pays for checkpoints exactly
// as the store does.
type checkpointer struct {
	db     *sql.DB // holds the checkpointer's one connection
	logger *slog.Logger
	// space is the disk's full state; nil means the disk is never taken to be full.
	space Space
	// mu is held by each checkpoint, and while space is told that the disk is full.
	mu sync.Mutex
	// wake tells run that commits were made durable.
	wake chan struct{}
	// restartWAL asks the writer to finish a checkpoint before its next transaction.
	restartWAL atomic.Bool
	// done is closed when run returns.
	done chan struct{}
}

// newCheckpointer returns a checkpointer of the database at path on the disk whose full
// state space keeps (nil for none). Its connection is made on the first checkpoint; run
// starts it.
func newCheckpointer(path string, space Space, logger *slog.Logger) (*checkpointer, error) {
	db, err := sql.Open("sqlite", writerDSN(path))
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(1)
	return &checkpointer{db: db, logger: logger, space: space, wake: make(chan struct{}, 1), done: make(chan struct{})}, nil
}

// kick tells the checkpointer that commits were made durable. It never blocks.
func (c *checkpointer) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// restart reports whether the writer should finish a checkpoint before its next
// transaction, and clears the request.
func (c *checkpointer) restart() bool { return c.restartWAL.Swap(false) }

// run checkpoints until stop is closed, then closes c.done.
func (c *checkpointer) run(stop <-chan struct{}) {
	defer close(c.done)
	ctx := context.Background()
	for {
		select {
		case <-c.wake:
		case <-stop:
			return
		}
		if frames, ok := c.checkpoint(ctx, c.db); ok && frames >= restartFrames {
			c.restartWAL.Store(true)
		}
		select {
		case <-time.After(checkpointInterval):
		case <-stop:
			return
		}
	}
}

// checkpoint runs a PASSIVE checkpoint on conn, unless the disk is full, and returns the
// length of the log in frames. ok is false when it did not checkpoint.
func (c *checkpointer) checkpoint(ctx context.Context, conn querier) (frames int, ok bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.space != nil && c.space.Full() {
		return 0, false
	}
	var busy, copied int
	if err := conn.QueryRowContext(ctx, "PRAGMA wal_checkpoint(PASSIVE)").Scan(&busy, &frames, &copied); err != nil {
		// The next checkpoint copies what this one did not; only a growing log tells.
		c.logger.Warn("store checkpoint failed", "err", err)
		return 0, false
	}
	return frames, true
}

// exhausted tells space of err, a failed commit, once no checkpoint is under way: one that
// started before the disk filled must not take the space the reserve gives back. It reports
// whether err says that the disk is full.
func (c *checkpointer) exhausted(err error) bool {
	if c.space == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.space.Exhausted(err)
}

// close closes the checkpointer's connection; run must have returned or never started.
func (c *checkpointer) close() error { return c.db.Close() }

// restartLog finishes a checkpoint on the writer's connection conn when the checkpointer asked
// for it, so that the write-ahead log starts over with the transaction conn begins next.
func (c *checkpointer) restartLog(ctx context.Context, conn querier) {
	if c.restart() {
		c.checkpoint(ctx, conn)
	}
}
