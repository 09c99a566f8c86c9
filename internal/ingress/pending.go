package ingress

import (
	"maps"
	"slices"
	"sync"
	"time"
)

// Pending keeps the messages a broker source handed to its Handler and has not settled at its
// broker yet, and settles each at most once: a source whose broker settles message by message
// (JetStream acks, AMQP acknowledgements) registers every delivery with Add, passes the Settle
// it returns to the Handler, and calls Close when it stops. M is the broker's delivery.
//
// Settle(nil) acknowledges the delivery at once. Settle(err) gives it back to the broker after
// RedeliveryDelay, so a failure does not spin. Close gives back at once, in the order they were
// added, every delivery not acknowledged yet, including those waiting for their delay; a Settle
// after Close does nothing. ack and giveBack run under Pending's lock, so an acknowledgement
// that won the race with Close was handed to the broker's client before Close returns; they
// must not wait for the broker.
type Pending[M any] struct {
	ack, giveBack func(M)

	mu     sync.Mutex
	next   uint64
	msgs   map[uint64]*pendingMsg[M]
	closed bool
}

type pendingMsg[M any] struct {
	m     M
	timer *time.Timer // set once settled with an error
}

// NewPending returns a Pending that settles deliveries with ack and giveBack.
func NewPending[M any](ack, giveBack func(M)) *Pending[M] {
	return &Pending[M]{ack: ack, giveBack: giveBack, msgs: map[uint64]*pendingMsg[M]{}}
}

// Add registers m, handed over next, and returns its Settle.
func (p *Pending[M]) Add(m M) Settle {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := p.next
	p.next++
	if !p.closed {
		p.msgs[n] = &pendingMsg[M]{m: m}
	}
	return func(err error) { p.settle(n, err) }
}

func (p *Pending[M]) settle(n uint64, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	pm := p.msgs[n]
	if pm == nil || pm.timer != nil {
		return
	}
	if err == nil {
		delete(p.msgs, n)
		p.ack(pm.m)
		return
	}
	pm.timer = time.AfterFunc(RedeliveryDelay, func() {
		p.mu.Lock()
		defer p.mu.Unlock()
		if p.msgs[n] == pm {
			delete(p.msgs, n)
			p.giveBack(pm.m)
		}
	})
}

// Len returns the number of deliveries neither acknowledged nor given back.
func (p *Pending[M]) Len() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.msgs)
}

// Close gives back every delivery neither acknowledged nor given back yet, in the order they
// were added; Settles after Close, and Adds, do nothing.
func (p *Pending[M]) Close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return
	}
	p.closed = true
	for _, n := range slices.Sorted(maps.Keys(p.msgs)) {
		pm := p.msgs[n]
		if pm.timer != nil {
			pm.timer.Stop()
		}
		p.giveBack(pm.m)
	}
	clear(p.msgs)
}
