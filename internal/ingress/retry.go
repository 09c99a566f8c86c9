package ingress

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// RedeliveryDelay is how long a source waits before it gives a message settled with an error
// back to its broker (JetStream Nak, AMQP requeue or release) or rewinds to it (Kafka): long
// enough that a failure the Handler could not overcome (a store that is down) does not spin,
// and short enough that the message comes back promptly. A source that stops first gives the
// message back at once.
const RedeliveryDelay = time.Second

// The bounds of a zero Backoff.
const (
	DefaultMinBackoff = 250 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
)

// Backoff spaces a source's attempts to reach its broker: the waits double from Min up to
// Max, each drawn at random from its upper half so that sources that lost one broker do not
// come back in step. The zero Backoff goes from DefaultMinBackoff to DefaultMaxBackoff. A
// Backoff is used by one goroutine.
type Backoff struct {
	Min, Max time.Duration
	attempts int
}

// Next returns the wait before the next attempt, and counts the attempt.
func (b *Backoff) Next() time.Duration {
	lo, hi := b.Min, b.Max
	if lo <= 0 {
		lo = DefaultMinBackoff
	}
	if hi <= 0 {
		hi = DefaultMaxBackoff
	}
	d := lo
	for i := 0; i < b.attempts && d < hi; i++ {
		d *= 2
	}
	d = min(d, hi)
	b.attempts++
	return d/2 + rand.N(d/2+1)
}

// Wait waits for Next's duration and reports true, or reports false as soon as ctx ends.
func (b *Backoff) Wait(ctx context.Context) bool {
	t := time.NewTimer(b.Next())
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// Reset starts again from Min, once an attempt succeeded.
func (b *Backoff) Reset() { b.attempts = 0 }

// StateReporter passes a source's states to its Handler one at a time, and a state only when
// it differs from the last one or comes with an error, so that a source can report from its
// run loop and its client's callbacks alike.
type StateReporter struct {
	Handler Handler

	mu   sync.Mutex
	last State
}

// Set reports s, with the error that caused it.
func (r *StateReporter) Set(s State, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if s == r.last && err == nil {
		return
	}
	r.last = s
	r.Handler.State(s, err)
}
