package mqtt

import (
	"errors"
	"slices"
	"sync"
	"testing"

	"github.com/twinflow/twinflow/internal/ingress"
)

// ackLog records the PUBACKs an acks sends.
type ackLog struct {
	mu   sync.Mutex
	sent []int
}

func (l *ackLog) ack(i int) func() {
	return func() {
		l.mu.Lock()
		l.sent = append(l.sent, i)
		l.mu.Unlock()
	}
}

func (l *ackLog) get() []int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.sent)
}

// TestAcksInOrder settles messages out of order: PUBACKs go out in arrival order, each once
// every earlier message is settled; a failure stops them and closes failed; after the stop,
// settlements do nothing.
func TestAcksInOrder(t *testing.T) {
	a := newAcks()
	var log ackLog
	settles := make([]ingress.Settle, 6)
	for i := range settles {
		settles[i] = a.add(log.ack(i))
	}
	settles[2](nil)
	settles[1](nil)
	a.flush() // what run does when woken
	if got := log.get(); len(got) != 0 {
		t.Fatalf("sent %v before message 0 was settled", got)
	}
	settles[0](nil)
	settles[0](nil) // a second settlement does nothing
	a.flush()
	if got := log.get(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("sent %v, want [0 1 2]", got)
	}
	settles[4](nil)
	settles[3](errors.New("store unavailable"))
	select {
	case <-a.failed:
	default:
		t.Fatal("failed not closed after a settlement with an error")
	}
	settles[5](nil)
	a.flush()
	stop := make(chan struct{})
	close(stop)
	a.run(stop)
	if got := log.get(); !slices.Equal(got, []int{0, 1, 2}) {
		t.Fatalf("sent %v, want nothing from the failed message on", got)
	}
	late := a.add(log.ack(6))
	late(nil)
	if got := log.get(); len(got) != 3 {
		t.Errorf("sent %v after the stop", got)
	}
}

// TestAcksFlushOnStop sends the PUBACKs due when stopped, even if run was not woken yet.
func TestAcksFlushOnStop(t *testing.T) {
	a := newAcks()
	var log ackLog
	s0, s1 := a.add(log.ack(0)), a.add(log.ack(1))
	s0(nil)
	s1(nil)
	stop := make(chan struct{})
	close(stop)
	a.run(stop)
	if got := log.get(); !slices.Equal(got, []int{0, 1}) {
		t.Errorf("sent %v, want [0 1]", got)
	}
}
