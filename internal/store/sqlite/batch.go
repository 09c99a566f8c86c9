package sqlite

import "fmt"

// run is the writer goroutine: it takes the Updates waiting in s.reqs, up to MaxBatch at a
// time, and commits each batch in one transaction. It returns when s.reqs is closed and
// drained.
func (s *Store) run() {
	defer close(s.done)
	batch := make([]*request, 0, s.cfg.MaxBatch)
	for req := range s.reqs {
		batch = append(batch[:0], req)
	fill:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case req, ok := <-s.reqs:
				if !ok {
					break fill
				}
				batch = append(batch, req)
			default:
				break fill
			}
		}
		s.commit(batch)
		for i, req := range batch {
			batch[i] = nil
			req.done <- struct{}{}
		}
	}
}

// commit runs batch in one transaction and sets each request's outcome. The log's Last
// advances, and log readers wake, only after the commit.
func (s *Store) commit(batch []*request) {
	w := &s.w
	first := w.seq
	err := s.transact(batch)
	if err != nil {
		w.seq = first
		// The transaction may be open still; a failed rollback leaves nothing more to undo.
		_, _ = w.stmts[stmtRollback].ExecContext(w.ctx)
		s.logger.Error("store batch failed", "updates", len(batch), "err", err)
		for _, req := range batch {
			if req.panicked == nil {
				req.err = err
			}
		}
		return
	}
	s.batches.Add(1)
	s.batched.Add(uint64(len(batch)))
	if w.seq == first {
		return
	}
	s.last.Store(w.seq - 1)
	s.notifyMu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.notifyMu.Unlock()
}

// transact begins a transaction, applies every request in batch and commits. An error means
// storage failed and the transaction must be rolled back; fn errors are the requests' own.
func (s *Store) transact(batch []*request) error {
	w := &s.w
	if _, err := w.stmts[stmtBegin].ExecContext(w.ctx); err != nil {
		return fmt.Errorf("begin transaction: %w", err)
	}
	for _, req := range batch {
		if err := req.ctx.Err(); err != nil {
			req.err = err
			continue
		}
		if err := s.apply(req); err != nil {
			return err
		}
	}
	if _, err := w.stmts[stmtCommit].ExecContext(w.ctx); err != nil {
		return fmt.Errorf("commit transaction: %w", err)
	}
	return nil
}

// apply runs req's fn inside its savepoint. fn's error (or panic) rolls back to the savepoint
// and becomes req's outcome; the returned error is a storage failure that breaks the batch.
func (s *Store) apply(req *request) (broken error) {
	w := &s.w
	first := w.seq
	w.savepoint, w.failure = false, nil
	s.call(req)
	if w.failure != nil {
		return w.failure
	}
	if !w.savepoint {
		// fn changed nothing, so there is nothing to keep or undo.
		return nil
	}
	if req.err != nil || req.panicked != nil {
		w.seq = first
		if _, err := w.stmts[stmtRollbackTo].ExecContext(w.ctx); err != nil {
			return fmt.Errorf("roll back to savepoint: %w", err)
		}
	}
	if _, err := w.stmts[stmtRelease].ExecContext(w.ctx); err != nil {
		return fmt.Errorf("release savepoint: %w", err)
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
