package ingress

import (
	"errors"
	"slices"
	"sync"
	"testing"
	"time"
)

// settlements records what a Pending did with its deliveries.
type settlements struct {
	mu             sync.Mutex
	acked, givenUp []int
}

func (s *settlements) ack(m int)      { s.mu.Lock(); s.acked = append(s.acked, m); s.mu.Unlock() }
func (s *settlements) giveBack(m int) { s.mu.Lock(); s.givenUp = append(s.givenUp, m); s.mu.Unlock() }

func (s *settlements) snapshot() (acked, givenBack []int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.acked), slices.Clone(s.givenUp)
}

func TestPendingSettles(t *testing.T) {
	var s settlements
	p := NewPending(s.ack, s.giveBack)
	settles := make([]Settle, 6)
	for i := range settles {
		settles[i] = p.Add(i)
	}
	settles[0](nil)
	settles[0](nil) // a second Settle does nothing
	settles[2](nil)
	settles[3](errors.New("store down"))
	if acked, given := s.snapshot(); !slices.Equal(acked, []int{0, 2}) || len(given) != 0 {
		t.Fatalf("acked %v, given back %v; want [0 2] and none yet", acked, given)
	}
	if n := p.Len(); n != 4 {
		t.Errorf("Len = %d, want 4", n)
	}
	// The delivery settled with an error comes back after RedeliveryDelay.
	deadline := time.Now().Add(RedeliveryDelay + 5*time.Second)
	for {
		if _, given := s.snapshot(); slices.Equal(given, []int{3}) {
			break
		}
		if time.Now().After(deadline) {
			_, given := s.snapshot()
			t.Fatalf("given back %v after the delay, want [3]", given)
		}
		time.Sleep(10 * time.Millisecond)
	}
	settles[4](errors.New("stopping")) // waiting for its delay when Close comes
	p.Close()
	settles[1](nil) // after Close: does nothing
	p.Add(9)(nil)
	acked, given := s.snapshot()
	if !slices.Equal(acked, []int{0, 2}) || !slices.Equal(given, []int{3, 1, 4, 5}) {
		t.Errorf("acked %v, given back %v; want [0 2] and [3 1 4 5] (Close in order)", acked, given)
	}
}
