package sqlite

import (
	"fmt"
	"time"

	"github.com/twinflow/twinflow/internal/store"
)

// committed is a batch whose transaction committed, waiting for the fsync that makes it
// durable.
type committed struct {
	batch []*request
	// last is the newest Seq in the log once this batch is durable.
	last uint64
	// changes are the batch's records, for the log's in-memory tail.
	changes []store.Change
}

// batch is the transaction the writer goroutine is filling.
type batch struct {
	reqs []*request
	// first is the Seq the batch's first record gets.
	first uint64
	// err is the storage failure that dooms the transaction, if any.
	err error
}

// run is the writer goroutine. It begins a transaction with the first waiting Update and adds
// every Update that arrives, each in its own savepoint, until MaxBatch is reached or the sync
// goroutine is ready for more; then it commits and hands the batch over. So while one batch is
// being fsync'd the next one fills, and each fsync covers every Update that arrived during the
// previous one. With Config.NoSync it commits whenever no Update is waiting. run returns when
// s.reqs is closed and drained.
func (s *Store) run() {
	defer close(s.syncs)
	// syncing reports whether a batch handed to the sync goroutine may still be unanswered.
	syncing := false
	for req := range s.reqs {
		b := s.begin()
		s.add(b, req)
	gather:
		for len(b.reqs) < s.cfg.MaxBatch {
			select {
			case req, ok := <-s.reqs:
				if !ok {
					break gather
				}
				s.add(b, req)
				continue
			default:
			}
			if !syncing {
				break
			}
			select {
			case req, ok := <-s.reqs:
				if !ok {
					break gather
				}
				s.add(b, req)
			case <-s.synced:
				syncing = false
			}
		}
		c := s.commit(b)
		if s.cfg.NoSync {
			s.acknowledge(c, nil)
			continue
		}
		s.syncs <- c
		syncing = true
	}
}

// begin starts a batch's transaction. A failure to begin dooms the batch.
func (s *Store) begin() *batch {
	b := &batch{first: s.w.seq}
	select {
	case b.reqs = <-s.spare:
	default:
		b.reqs = make([]*request, 0, s.cfg.MaxBatch)
	}
	if err := s.failure.Load(); err != nil {
		b.err = *err
		return b
	}
	s.w.full = s.cfg.Space != nil && s.cfg.Space.Full()
	s.ckpt.restartLog(s.w.ctx, s.conn)
	if _, err := s.w.stmts[stmtBegin].ExecContext(s.w.ctx); err != nil {
		b.err = fmt.Errorf("begin transaction: %w", err)
	}
	return b
}

// add runs req's fn in b, unless b is doomed or req's context has ended.
func (s *Store) add(b *batch, req *request) {
	b.reqs = append(b.reqs, req)
	if b.err != nil {
		return
	}
	if err := req.ctx.Err(); err != nil {
		req.err = err
		return
	}
	b.err = s.apply(req)
}

// commit commits b, or rolls it back if it is doomed, and sets the outcome of each request
// whose fn succeeded.
func (s *Store) commit(b *batch) committed {
	w := &s.w
	clock := w.clock
	if now := time.Now().UnixMilli(); b.err == nil && w.seq > b.first && now != clock {
		if _, err := w.stmts[stmtMarkClock].ExecContext(w.ctx, int64(b.first), now); err != nil {
			b.err = fmt.Errorf("mark the log's clock: %w", err)
		}
		clock = now
	}
	if b.err == nil {
		if _, err := w.stmts[stmtCommit].ExecContext(w.ctx); err != nil {
			b.err = fmt.Errorf("commit transaction: %w", err)
		}
	}
	changes := w.pending
	w.pending = make([]store.Change, 0, cap(changes))
	if b.err != nil {
		if DiskFull(b.err) {
			b.err = fmt.Errorf("%w: %w", store.ErrFull, b.err)
			s.ckpt.exhausted(b.err)
		}
		changes = nil
		w.seq = b.first
		w.cache.clear()
		// The transaction may be open still; a failed rollback leaves nothing more to undo.
		_, _ = w.stmts[stmtRollback].ExecContext(w.ctx)
		s.logger.Error("store batch failed", "updates", len(b.reqs), "err", b.err)
		for _, req := range b.reqs {
			if req.panicked == nil {
				req.err = b.err
			}
		}
	} else {
		w.clock = clock
		s.batches.Add(1)
		s.batched.Add(uint64(len(b.reqs)))
	}
	return committed{batch: b.reqs, last: w.seq - 1, changes: changes}
}

// syncLoop is the sync goroutine: it fsyncs the write-ahead log for every committed batch
// waiting (one fsync covers all of them, and every batch committed before it), then advances
// the log's Last, wakes log readers and answers the batches' callers. It returns when s.syncs
// is closed and drained.
func (s *Store) syncLoop() {
	defer close(s.done)
	syncGroups(s.syncs, s.syncWAL, func(group []committed, err error) {
		for i, c := range group {
			s.acknowledge(c, err)
			group[i] = committed{}
		}
		select {
		case s.synced <- struct{}{}:
		default:
		}
	})
}

// syncGroups is the loop of a sync goroutine, shared by the Store and Ceiling: it takes a
// value from in together with every value already waiting behind it, calls sync once for
// the group (one fsync makes every commit before it durable) and hands the group with
// sync's error to done, which may reuse the slice only until it returns. It returns when in
// is closed and drained.
func syncGroups[T any](in <-chan T, sync func() error, done func(group []T, err error)) {
	var group []T
	for v := range in {
		group = append(group[:0], v)
	drain:
		for {
			select {
			case v, ok := <-in:
				if !ok {
					break drain
				}
				group = append(group, v)
			default:
				break drain
			}
		}
		done(group, sync())
	}
}

// syncWAL makes every commit so far durable. Commits run with synchronous=NORMAL, so SQLite
// has written their frames to the write-ahead log (and synced it before any checkpoint) but not
// fsync'd it; an fsync of the log file through a descriptor of our own does that. SQLite locks
// the database and its shared-memory file, never the log file, so this descriptor cannot
// disturb its POSIX locks. A failed fsync leaves the durability of every commit since the
// last good one unknown, so it fails the store for good (see Failed).
func (s *Store) syncWAL() error {
	if err := s.failure.Load(); err != nil {
		return *err
	}
	start := time.Now()
	err := syncData(s.wal)
	s.fsyncs.Add(1)
	s.fsyncNanos.Add(uint64(time.Since(start)))
	if err != nil {
		err = fmt.Errorf("%w: sync write-ahead log: %w", store.ErrFailed, err)
		s.failure.Store(&err)
		close(s.failed)
		s.logger.Error("store failed: an fsync of the write-ahead log failed, so which commits reached the disk is unknown; every later Update fails", "err", err)
	}
	return err
}

// acknowledge answers the callers of c, failing those whose fn succeeded with err if it is
// not nil, and otherwise advances the log's Last to c.last, waking log readers.
func (s *Store) acknowledge(c committed, err error) {
	if err == nil && c.last > s.last.Load() {
		s.tail.Push(c.changes)
		s.last.Store(c.last)
		s.notifyMu.Lock()
		close(s.changed)
		s.changed = make(chan struct{})
		s.notifyMu.Unlock()
	}
	for i, req := range c.batch {
		if err != nil && req.err == nil {
			req.err = err
		}
		c.batch[i] = nil
		req.done <- struct{}{}
	}
	select {
	case s.spare <- c.batch[:0]:
	default:
	}
	if err == nil {
		s.ckpt.kick()
	}
}

// apply runs req's fn inside its savepoint. fn's error (or panic) rolls back to the savepoint
// and becomes req's outcome; the returned error is a storage failure that breaks the batch.
func (s *Store) apply(req *request) (broken error) {
	w := &s.w
	first, emitted := w.seq, len(w.pending)
	clear(w.states)
	w.savepoint, w.failure, w.touched, w.states = false, nil, w.touched[:0], w.states[:0]
	w.deleted, w.refused = false, nil
	s.call(req)
	if w.failure != nil {
		return w.failure
	}
	if w.refused != nil && req.err == nil && req.panicked == nil {
		// fn went on without a change the full disk refused it: it must not commit half.
		req.err = w.refused
	}
	if !w.savepoint {
		// fn changed nothing, so there is nothing to keep or undo.
		return nil
	}
	if req.err != nil || req.panicked != nil {
		w.seq = first
		clear(w.pending[emitted:])
		w.pending = w.pending[:emitted]
		for _, id := range w.touched {
			w.cache.drop(id)
		}
		if _, err := w.stmts[stmtRollbackTo].ExecContext(w.ctx); err != nil {
			return fmt.Errorf("roll back to savepoint: %w", err)
		}
	}
	if _, err := w.stmts[stmtRelease].ExecContext(w.ctx); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
	}
	if req.err == nil && req.panicked == nil {
		w.settle(emitted)
	}
	return nil
}

// call runs req's fn with the writer and records its error, or its panic, in req.
func (s *Store) call(req *request) {
	defer func() {
		if v := recover(); v != nil {
			req.panicked = v
		}
	}()
	req.err = req.fn(&s.w)
}
