package mqtt

import (
	"sync"

	"github.com/twinflow/twinflow/internal/ingress"
)

// acks acknowledges the QoS 1 messages of one connection. MQTT requires a client to send its
// PUBACKs in the order the PUBLISH packets arrived (3.1.1 §4.6, 5 §4.6), and an
// acknowledged message is gone from the broker, so a message is acknowledged once it and
// every message received before it on the connection were settled with nil. A message
// settled with an error stops the acknowledgements: it and all that follow it stay
// unacknowledged, and failed is closed so that the source drops the connection, after which
// the broker sends them again.
//
// Settle only marks the message and wakes run, which sends the PUBACKs, so that settling
// never waits for the network.
type acks struct {
	mu sync.Mutex
	// queue holds the unacknowledged messages in the order they arrived.
	queue  []*delivery
	closed bool

	wake     chan struct{}
	failed   chan struct{}
	failOnce sync.Once
	done     chan struct{}
}

// delivery is one QoS 1 message waiting for its acknowledgement.
type delivery struct {
	// ack sends the message's PUBACK.
	ack     func()
	settled bool
	err     error
}

func newAcks() *acks {
	return &acks{wake: make(chan struct{}, 1), failed: make(chan struct{}), done: make(chan struct{})}
}

// add queues a message received now, whose PUBACK ack sends, and returns its Settle.
func (a *acks) add(ack func()) ingress.Settle {
	d := &delivery{ack: ack}
	a.mu.Lock()
	a.queue = append(a.queue, d)
	a.mu.Unlock()
	return func(err error) { a.settle(d, err) }
}

// settle records d's settlement; after close it does nothing.
func (a *acks) settle(d *delivery, err error) {
	a.mu.Lock()
	if a.closed || d.settled {
		a.mu.Unlock()
		return
	}
	d.settled, d.err = true, err
	a.mu.Unlock()
	if err != nil {
		a.failOnce.Do(func() { close(a.failed) })
		return
	}
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// run sends the PUBACKs that became due until stop is closed; then it ignores later
// settlements, sends the PUBACKs due by then, and closes done.
func (a *acks) run(stop <-chan struct{}) {
	defer close(a.done)
	for {
		select {
		case <-a.wake:
			a.flush()
		case <-stop:
			a.mu.Lock()
			a.closed = true
			a.mu.Unlock()
			a.flush()
			return
		}
	}
}

// flush sends the PUBACKs of the longest run of messages settled with nil at the head of the
// queue. Only run calls it, so PUBACKs go out in queue order.
func (a *acks) flush() {
	a.mu.Lock()
	n := 0
	for n < len(a.queue) && a.queue[n].settled && a.queue[n].err == nil {
		n++
	}
	due := make([]*delivery, n)
	copy(due, a.queue)
	clear(a.queue[:n])
	a.queue = a.queue[n:]
	a.mu.Unlock()
	for _, d := range due {
		d.ack()
	}
}
