package postgres

import (
	"context"
	"errors"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/store"
)

// appendLog appends a batch's records to the log and gives them their Seqs, just before the
// batch commits: $1 records, whose events and depths are $3 and $4, and $2 twins more.
//
// The UPDATE of the one head row is what makes the log gap-free and commit-ordered across
// nodes. A BIGSERIAL would hand out Seqs at INSERT time, and transactions then commit in
// another order than their Seqs: a reader following seq > cursor could read 11 while 10 is
// still uncommitted and never look back. Here the Seqs are taken from head.seq, whose row
// lock the transaction holds from this statement until its commit is visible: another
// transaction appending to the log (on any node) waits at this UPDATE, then, under READ
// COMMITTED, re-reads the row as the first one left it, and takes the Seqs after its. So
// transactions that append commit one after another in Seq order, every visible record has
// every lower Seq visible too, and a reader that saw Seq n will find n+1 next when it is
// committed. The lock is held only from here to the commit, one statement and the commit's
// flush, not for the whole batch.
//
// The same statement advances the log clock (ms never goes back, whatever the clocks of the
// nodes, so that it grows with Seq), marks it in log_clock when it moved, and notifies the
// listeners of other nodes (NOTIFY is delivered at commit) with the new head.
const appendLog = `
WITH h AS (
	UPDATE head SET seq = seq + $1, twins = twins + $2, prev_ms = ms,
		ms = greatest(ms, (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
	RETURNING seq, ms, prev_ms
), l AS (
	INSERT INTO log (seq, event, depth)
	SELECT h.seq - $1 + r.n, r.event, r.depth
	FROM h, unnest($3::bytea[], $4::integer[]) WITH ORDINALITY AS r (event, depth, n)
), c AS (
	INSERT INTO log_clock (seq, ms) SELECT h.seq - $1 + 1, h.ms FROM h WHERE h.ms > h.prev_ms
)
SELECT h.seq FROM h, pg_notify($5, h.seq::text) AS n`

// run is the writer goroutine. It begins a batch with the first waiting Update and adds every
// Update already waiting, up to MaxBatch, each in its own savepoint; then it commits. Updates
// that arrive during a commit wait for the next batch, so one commit's flush serves all of
// them. run returns when s.reqs is closed and drained.
func (s *Store) run() {
	defer close(s.done)
	batch := make([]*request, 0, s.cfg.MaxBatch)
	for req := range s.reqs {
		s.begin()
		batch = append(batch[:0], req)
		s.apply(req)
	gather:
		for len(batch) < s.cfg.MaxBatch {
			select {
			case req, ok := <-s.reqs:
				if !ok {
					break gather
				}
				batch = append(batch, req)
				s.apply(req)
			default:
				break gather
			}
		}
		s.commit(batch)
		clear(batch)
	}
}

// begin prepares the writer for a batch, connecting again if the connection broke.
func (s *Store) begin() {
	w := &s.w
	w.failure, w.begun, w.twins, w.touched = nil, false, 0, [numGenKinds]int64{}
	if !w.conn.IsClosed() {
		return
	}
	ctx, cancel := context.WithTimeout(w.ctx, s.cfg.StatementTimeout)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, w.connConfig)
	if err != nil {
		w.failure = fmt.Errorf("connect store writer: %w", err)
		return
	}
	if err := prepareControl(ctx, conn); err != nil {
		w.failure = errors.Join(fmt.Errorf("connect store writer: %w", err), conn.Close(ctx))
		return
	}
	w.conn = conn
}

// apply runs req's fn inside its savepoint, unless the batch is doomed or req's context has
// ended. fn's error, panic or failed statement rolls back to the savepoint and becomes req's
// outcome. A fn that returns with statements unsent is pending (see writer.flush).
func (s *Store) apply(req *request) {
	w := &s.w
	if w.failure != nil {
		return
	}
	if err := req.ctx.Err(); err != nil {
		req.err = err
		return
	}
	cur := &fnState{req: req, from: len(w.records)}
	clear(w.states)
	w.cur, w.states, w.savepoint, w.savepointSent, w.broken = cur, w.states[:0], false, false, nil
	s.call(req)
	w.cur = nil
	if w.failure != nil {
		return
	}
	cur.to = len(w.records)
	if req.err == nil && req.panicked == nil && w.broken == nil {
		w.settle(cur.from)
		if !w.savepoint {
			// It ran no statement: it is done.
			return
		}
		w.queueBatch(handler{owner: cur}, "RELEASE SAVEPOINT fn")
		w.pending = append(w.pending, cur)
		return
	}
	if req.err == nil && req.panicked == nil {
		req.err = w.broken
	}
	clear(w.records[cur.from:])
	w.records, w.events, w.depths = w.records[:cur.from], w.events[:cur.from], w.depths[:cur.from]
	switch {
	case !w.savepoint:
	case !w.savepointSent:
		// Nothing of the fn reached the server: forget it.
		clear(w.handlers[w.mark:])
		w.b.QueuedQueries, w.handlers = w.b.QueuedQueries[:w.mark], w.handlers[:w.mark]
		if w.markBegan {
			w.begun = false
		}
	default:
		// Everything queued is the fn's: the statements before went out with its own.
		w.clearQueue()
		w.queueBatch(handler{}, "ROLLBACK TO SAVEPOINT fn")
		w.queueBatch(handler{}, "RELEASE SAVEPOINT fn")
		w.broken = nil
		if err := w.flush(); err != nil && w.failure == nil {
			w.failure = fmt.Errorf("roll back to savepoint: %w", err)
		}
	}
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

// commit appends the batch's records to the log and commits, or rolls back if the batch is
// doomed; then it advances the log and answers every request.
func (s *Store) commit(batch []*request) {
	w := &s.w
	// The pending fns' statements go first, on their own: one of them may still fail, and
	// their results complete the count of twins.
	// Between fns, a statement that fails is a pending fn's, which flush fails on its own,
	// or the batch's, which dooms it.
	if w.failure == nil {
		_ = w.flush()
	}
	n := len(w.records)
	var (
		head    int64
		gens    generations
		touched = w.touched != [numGenKinds]int64{}
	)
	if w.failure == nil && (w.begun || n > 0 || w.twins != 0 || touched) {
		if !w.begun {
			w.queueBatch(handler{}, "BEGIN")
			w.begun = true
		}
		switch {
		case n > 0:
			w.queueBatch(handler{rows: func(rows pgx.Rows) error { return rows.Scan(&head) }},
				appendLog, int64(n), w.twins, w.events, w.depths, s.channel)
		case w.twins != 0:
			w.queueBatch(handler{}, "UPDATE head SET twins = twins + $1", w.twins)
		}
		if touched {
			w.queueBatch(handler{rows: func(rows pgx.Rows) error { return scanGenerations(rows, &gens) }},
				bumpGenerations, w.touched[0], w.touched[1], w.touched[2], w.touched[3], w.touched[4], s.channel)
		}
		w.queueBatch(handler{}, "COMMIT")
		w.savepoint = false
		if err := w.flush(); err != nil && w.failure == nil {
			w.failure = fmt.Errorf("commit: %w", err)
		}
	}
	if err := w.failure; err != nil {
		w.clearQueue()
		clear(w.pending)
		w.pending = w.pending[:0]
		if !w.conn.IsClosed() {
			// The transaction may be open still; a failed rollback leaves nothing more to undo.
			_, _ = w.conn.Exec(w.ctx, "ROLLBACK")
		}
		s.logger.Error("store batch failed", "updates", len(batch), "err", err)
		for _, req := range batch {
			if req.err == nil && req.panicked == nil {
				req.err = err
			}
		}
	} else {
		s.batches.Add(1)
		s.batched.Add(uint64(len(batch)))
		if n > 0 {
			first := uint64(head) - uint64(n) + 1
			for i := range w.records {
				w.records[i].Seq = first + uint64(i)
			}
			s.tail.Push(w.records)
			s.advance(uint64(head))
		}
		if touched {
			s.advanceGenerations(gens)
		}
	}
	// The tail keeps the records; the next batch gets a slice of its own.
	w.records = make([]store.Change, 0, cap(w.records))
	clear(w.events)
	w.events, w.depths = w.events[:0], w.depths[:0]
	for _, req := range batch {
		req.done <- struct{}{}
	}
}
