package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// CeilingConfig configures a Ceiling measurement.
type CeilingConfig struct {
	// Dir is the data directory to create the database in; it must not hold one yet.
	Dir string
	// Twins are stored before the measurement starts.
	Twins []store.Twin
	// Next returns the row of the next twin write (an existing twin with its new ETag and
	// document) and the event it emits. It is called on the writing goroutine, so it should
	// hand out rows prepared in advance: its cost counts against the ceiling.
	Next func() (store.Twin, event.Event)
	// Batch is the number of writes per transaction; 0 means 64. A writer committing larger
	// transactions commits more rows per second, so an upper bound for a store serving N
	// concurrent clients uses at least N.
	Batch int
	// Duration is how long to write; Writes, when positive, stops after that many writes
	// instead.
	Duration time.Duration
	Writes   int
}

// CeilingResult is what a Ceiling measurement wrote.
type CeilingResult struct {
	Batch int
	// Writes counts the twin writes made durable, Elapsed the time from the first commit's
	// start to the last fsync's end.
	Writes  int
	Elapsed time.Duration
	// Transactions and Syncs count the commits and the fsyncs that made them durable.
	Transactions, Syncs int
}

// WritesPerSecond returns the twin writes made durable per second.
func (r CeilingResult) WritesPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Writes) / r.Elapsed.Seconds()
}

// Ceiling measures the most twin writes per second this store's database can make durable
// on this machine: the same rows an Update that patches a twin writes (the twin row
// replaced, one change log record appended as the store encodes it, the log's clock marked
// once per transaction), with the store's own durability mechanism (WAL with
// synchronous=NORMAL, the write-ahead log fdatasync'd by a goroutine of its own while the
// next transaction is written, checkpoints by the same checkpointer), and with the best
// batching: every transaction is full, and transactions are written back to back while
// earlier ones wait for their fsync.
//
// It leaves out everything else a Store does: no savepoint per Update, no twin read, no
// cache, no in-memory log tail and no goroutine hand-off per write. So nothing the Store does
// can beat it, and a Store's Update rate over the ceiling says how much of the database's
// capacity its own mechanism leaves unused.
func Ceiling(ctx context.Context, cfg CeilingConfig, logger *slog.Logger) (res CeilingResult, err error) {
	if cfg.Batch <= 0 {
		cfg.Batch = 64
	}
	if cfg.Next == nil || len(cfg.Twins) == 0 || (cfg.Duration <= 0 && cfg.Writes <= 0) {
		return res, errors.New("ceiling: twins, Next and a duration or a number of writes are required")
	}
	res.Batch = cfg.Batch
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return res, fmt.Errorf("create ceiling directory: %w", err)
	}
	path, err := filepath.Abs(filepath.Join(cfg.Dir, FileName))
	if err != nil {
		return res, fmt.Errorf("locate database: %w", err)
	}
	c, err := openCeiling(ctx, path, logger)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, c.close()) }()
	if err := c.seed(cfg.Twins); err != nil {
		return res, err
	}
	var (
		seq uint64
		buf []byte
	)
	return c.write(cfg.Batch, cfg.Writes, cfg.Duration, func(n int) error {
		var err error
		buf, err = c.commit(cfg.Next, n, &seq, buf)
		return err
	})
}

// ceiling is an open Ceiling measurement: the writer's connection and statements, the
// write-ahead log file its sync goroutine fsyncs, and the checkpointer.
type ceiling struct {
	// ctx ends the measurement; exec runs the statements and cannot end, as the Store's.
	ctx, exec context.Context
	writerConn
	// clock is the time, in Unix milliseconds, of the log clock's newest mark.
	clock int64
	wal   *os.File
	ckpt  *checkpointer
	stop  chan struct{}
}

// openCeiling creates the store's schema in the database at path and opens it as the
// Store's writer does.
func openCeiling(ctx context.Context, path string, logger *slog.Logger) (*ceiling, error) {
	c := &ceiling{ctx: ctx, exec: context.WithoutCancel(ctx), stop: make(chan struct{})}
	if err := c.open(path, logger); err != nil {
		return nil, errors.Join(fmt.Errorf("open ceiling database %s: %w", path, err), c.close())
	}
	go c.ckpt.run(c.stop)
	return c, nil
}

func (c *ceiling) open(path string, logger *slog.Logger) error {
	var err error
	if c.writerConn, err = openWriter(c.ctx, path); err != nil {
		return err
	}
	if c.wal, err = os.OpenFile(path+"-wal", os.O_RDWR, 0); err != nil {
		return fmt.Errorf("open write-ahead log: %w", err)
	}
	c.ckpt, err = newCheckpointer(path, nil, logger)
	return err
}

// close stops the checkpointer and closes what open opened.
func (c *ceiling) close() error {
	var errs []error
	if c.ckpt != nil {
		close(c.stop)
		<-c.ckpt.done
		errs = append(errs, c.ckpt.close())
	}
	if c.wal != nil {
		errs = append(errs, c.wal.Close())
	}
	return errors.Join(append(errs, c.writerConn.close())...)
}

// seed inserts twins in transactions of a thousand and makes them durable.
func (c *ceiling) seed(twins []store.Twin) error {
	for start := 0; start < len(twins); start += 1000 {
		if _, err := c.stmts[stmtBegin].ExecContext(c.exec); err != nil {
			return fmt.Errorf("begin seeding: %w", err)
		}
		for _, t := range twins[start:min(start+1000, len(twins))] {
			if _, err := c.stmts[stmtInsertTwin].ExecContext(c.exec, t.ID, t.ModelID, t.ETag, []byte(t.Doc)); err != nil {
				_, _ = c.stmts[stmtRollback].ExecContext(c.exec)
				return fmt.Errorf("seed twin %q: %w", t.ID, err)
			}
		}
		if _, err := c.stmts[stmtCommit].ExecContext(c.exec); err != nil {
			return fmt.Errorf("commit seeding: %w", err)
		}
	}
	if err := syncData(c.wal); err != nil {
		return fmt.Errorf("sync seeded twins: %w", err)
	}
	return nil
}

// write commits full transactions of batch writes with commit until duration has passed or
// writes writes are done (whichever of the two is positive), and returns once every commit is
// durable.
func (c *ceiling) write(batch, writes int, duration time.Duration, commit func(n int) error) (CeilingResult, error) {
	res := CeilingResult{Batch: batch}
	var (
		durable  atomic.Int64
		syncs    atomic.Int64
		syncErr  atomic.Pointer[error]
		commits  = make(chan int, syncQueue)
		syncDone = make(chan struct{})
	)
	go func() {
		defer close(syncDone)
		syncGroups(commits, func() error { return syncData(c.wal) }, func(group []int, err error) {
			if err != nil {
				syncErr.CompareAndSwap(nil, &err)
				return
			}
			syncs.Add(1)
			for _, n := range group {
				durable.Add(int64(n))
			}
			c.ckpt.kick()
		})
	}()
	start := time.Now()
	end := start.Add(duration)
	var err error
	for written := 0; err == nil && c.ctx.Err() == nil; {
		if writes > 0 && written >= writes || writes <= 0 && !time.Now().Before(end) {
			break
		}
		n := batch
		if writes > 0 {
			n = min(n, writes-written)
		}
		if err = commit(n); err == nil {
			written += n
			res.Transactions++
			commits <- n
		}
	}
	close(commits)
	<-syncDone
	res.Elapsed = time.Since(start)
	res.Writes, res.Syncs = int(durable.Load()), int(syncs.Load())
	if p := syncErr.Load(); p != nil {
		err = errors.Join(err, fmt.Errorf("sync write-ahead log: %w", *p))
	}
	return res, errors.Join(err, c.ctx.Err())
}

// commit writes one transaction of n twin writes with the store's statements, the log's
// clock marked as the store marks it, and returns the event buffer for reuse.
func (c *ceiling) commit(next func() (store.Twin, event.Event), n int, seq *uint64, buf []byte) ([]byte, error) {
	c.ckpt.restartLog(c.exec, c.conn)
	st := c.stmts
	if _, err := st[stmtBegin].ExecContext(c.exec); err != nil {
		return buf, fmt.Errorf("begin: %w", err)
	}
	first := *seq + 1
	for range n {
		t, e := next()
		if _, err := st[stmtUpdateTwin].ExecContext(c.exec, t.ID, t.ModelID, t.ETag, []byte(t.Doc)); err != nil {
			_, _ = st[stmtRollback].ExecContext(c.exec)
			return buf, fmt.Errorf("update twin %q: %w", t.ID, err)
		}
		var err error
		if buf, err = appendEvent(buf[:0], &e); err != nil {
			_, _ = st[stmtRollback].ExecContext(c.exec)
			return buf, fmt.Errorf("encode event: %w", err)
		}
		*seq++
		if _, err := st[stmtEmit].ExecContext(c.exec, int64(*seq), buf, 0); err != nil {
			_, _ = st[stmtRollback].ExecContext(c.exec)
			return buf, fmt.Errorf("append log record: %w", err)
		}
	}
	if now := time.Now().UnixMilli(); now != c.clock {
		if _, err := st[stmtMarkClock].ExecContext(c.exec, int64(first), now); err != nil {
			_, _ = st[stmtRollback].ExecContext(c.exec)
			return buf, fmt.Errorf("mark the log's clock: %w", err)
		}
		c.clock = now
	}
	if _, err := st[stmtCommit].ExecContext(c.exec); err != nil {
		return buf, fmt.Errorf("commit: %w", err)
	}
	return buf, nil
}

// InsertCeilingConfig configures an InsertCeiling measurement.
type InsertCeilingConfig struct {
	// Dir is the data directory to create the database in; it must not hold one yet.
	Dir string
	// Rows is the number of rows to insert, and Next returns them one by one: a twin or a
	// relationship (exactly one of the two set) with the event its creation emits. It is
	// called on the writing goroutine, so it should hand out rows prepared ahead (by another
	// goroutine, say): its cost counts against the ceiling.
	Rows int
	Next func() InsertRow
	// Batch is the number of rows per transaction; 0 means 10,000.
	Batch int
}

// InsertRow is a row of an InsertCeiling: a new twin or relationship and its Create event.
type InsertRow struct {
	Twin         *store.Twin
	Relationship *store.Relationship
	Event        event.Event
}

// InsertCeiling measures the most new twins and relationships per second this store's
// database can make durable on this machine, as Ceiling does for twin updates: the rows a bulk
// load writes (each twin or relationship inserted, one change log record appended as the
// store encodes it, the log's clock marked once per transaction) with the store's durability
// mechanism and checkpoints, in full transactions written back to back while earlier ones wait
// for their fsync. It leaves out everything else a load through the Store does: no check that
// the entity is new or that a relationship's twins exist, no savepoint, no in-memory tail.
func InsertCeiling(ctx context.Context, cfg InsertCeilingConfig, logger *slog.Logger) (res CeilingResult, err error) {
	if cfg.Batch <= 0 {
		cfg.Batch = 10_000
	}
	if cfg.Next == nil || cfg.Rows <= 0 {
		return res, errors.New("insert ceiling: rows and Next are required")
	}
	res.Batch = cfg.Batch
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return res, fmt.Errorf("create ceiling directory: %w", err)
	}
	path, err := filepath.Abs(filepath.Join(cfg.Dir, FileName))
	if err != nil {
		return res, fmt.Errorf("locate database: %w", err)
	}
	c, err := openCeiling(ctx, path, logger)
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, c.close()) }()
	insertRel, err := c.conn.PrepareContext(ctx, "INSERT INTO relationships ("+relationshipColumns+") VALUES (?, ?, ?, ?, ?, ?)")
	if err != nil {
		return res, fmt.Errorf("prepare relationship insert: %w", err)
	}
	defer insertRel.Close()
	var (
		seq uint64
		buf []byte
	)
	return c.write(cfg.Batch, cfg.Rows, 0, func(n int) error {
		var err error
		buf, err = c.insert(cfg.Next, insertRel, n, &seq, buf)
		return err
	})
}

// insert writes one transaction of n new rows, the log's clock marked as the store marks it,
// and returns the event buffer for reuse.
func (c *ceiling) insert(next func() InsertRow, insertRel *sql.Stmt, n int, seq *uint64, buf []byte) ([]byte, error) {
	c.ckpt.restartLog(c.exec, c.conn)
	st := c.stmts
	if _, err := st[stmtBegin].ExecContext(c.exec); err != nil {
		return buf, fmt.Errorf("begin: %w", err)
	}
	rollback := func(err error) ([]byte, error) {
		_, _ = st[stmtRollback].ExecContext(c.exec)
		return buf, err
	}
	first := *seq + 1
	for range n {
		row := next()
		var err error
		switch {
		case row.Twin != nil:
			t := row.Twin
			_, err = st[stmtInsertTwin].ExecContext(c.exec, t.ID, t.ModelID, t.ETag, []byte(t.Doc))
		case row.Relationship != nil:
			r := row.Relationship
			_, err = insertRel.ExecContext(c.exec, r.SourceID, r.ID, r.Name, r.TargetID, r.ETag, []byte(r.Doc))
		default:
			err = errors.New("a row with neither a twin nor a relationship")
		}
		if err != nil {
			return rollback(fmt.Errorf("insert row: %w", err))
		}
		if buf, err = appendEvent(buf[:0], &row.Event); err != nil {
			return rollback(fmt.Errorf("encode event: %w", err))
		}
		*seq++
		if _, err := st[stmtEmit].ExecContext(c.exec, int64(*seq), buf, 0); err != nil {
			return rollback(fmt.Errorf("append log record: %w", err))
		}
	}
	if now := time.Now().UnixMilli(); now != c.clock {
		if _, err := st[stmtMarkClock].ExecContext(c.exec, int64(first), now); err != nil {
			return rollback(fmt.Errorf("mark the log's clock: %w", err))
		}
		c.clock = now
	}
	if _, err := st[stmtCommit].ExecContext(c.exec); err != nil {
		return buf, fmt.Errorf("commit: %w", err)
	}
	return buf, nil
}
