package outbox

import (
	"context"
	"fmt"
	"sync"

	"github.com/twinflow/twinflow/internal/store"
)

// cursorWriter makes a relay's progress durable in the background, so the next batch goes out
// while the previous one's cursor commits: delivery latency does not include a store fsync.
// At most one transaction is in flight; progress reported meanwhile is merged into the next
// one. Each transaction stores a cursor together with the dead letters of the batches it
// covers, so the cursor never passes an event that was neither accepted nor dead-lettered
// durably. After a crash the relay resumes from the last stored cursor: the destination sees
// again at most the batches that were in flight.
type cursorWriter struct {
	st       Store
	endpoint string
	// stored is called after a transaction with the dead letters it stored.
	stored func(dead []store.DeadLetter)

	// tx serialises transactions.
	tx sync.Mutex
	// mu guards the fields below.
	mu      sync.Mutex
	through uint64
	dead    []store.DeadLetter
	dirty   bool
	err     error
	wake    chan struct{}
}

func newCursorWriter(st Store, endpoint string, stored func([]store.DeadLetter)) *cursorWriter {
	return &cursorWriter{st: st, endpoint: endpoint, stored: stored, wake: make(chan struct{}, 1)}
}

// advance records that the relay is done with every record up to through, dead-lettering
// dead on the way.
func (c *cursorWriter) advance(through uint64, dead []store.DeadLetter) {
	c.mu.Lock()
	c.through = through
	c.dead = append(c.dead, dead...)
	c.dirty = true
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// failure returns the first failed transaction's error, nil if none failed. A transaction
// cut short by its context is not a failure: its progress waits for the next flush.
func (c *cursorWriter) failure() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// run stores progress as it is reported until ctx ends. It does not store what is left then;
// call flush after it returned.
func (c *cursorWriter) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		if err := c.flush(ctx); err != nil {
			return
		}
	}
}

// flush stores the progress reported so far and returns after it is durable (or failed).
func (c *cursorWriter) flush(ctx context.Context) error {
	c.tx.Lock()
	defer c.tx.Unlock()
	c.mu.Lock()
	if c.err != nil || !c.dirty {
		err := c.err
		c.mu.Unlock()
		return err
	}
	through, dead := c.through, c.dead
	c.dead, c.dirty = nil, false
	c.mu.Unlock()

	err := c.st.UpdateDelivery(ctx, func(w store.DeliveryWriter) error {
		if err := addDeadLetters(w, dead); err != nil {
			return err
		}
		return w.SetCursor(c.endpoint, through)
	})
	if err != nil {
		err = fmt.Errorf("advance cursor of endpoint %q to %d: %w", c.endpoint, through, err)
		c.mu.Lock()
		// Keep the progress for a later flush; newer progress, if any, covers this cursor.
		if !c.dirty {
			c.through = through
		}
		c.dead = append(dead, c.dead...)
		c.dirty = true
		if c.err == nil && ctx.Err() == nil {
			c.err = err
		}
		c.mu.Unlock()
		return err
	}
	c.stored(dead)
	return nil
}

// set stores the cursor seq at once, after the progress reported before it: a replay.
func (c *cursorWriter) set(ctx context.Context, seq uint64) error {
	if err := c.flush(ctx); err != nil {
		return err
	}
	c.tx.Lock()
	defer c.tx.Unlock()
	err := c.st.UpdateDelivery(ctx, func(w store.DeliveryWriter) error { return w.SetCursor(c.endpoint, seq) })
	if err != nil {
		return fmt.Errorf("rewind endpoint %q to %d: %w", c.endpoint, seq, err)
	}
	return nil
}
