package ingresstest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/ingress"
)

// ErrHold, returned by a Policy, leaves the message unsettled (see Recorder.Settle).
var ErrHold = errors.New("hold")

// Policy decides a message's settlement from the message and its index in arrival order:
// the error Settle gets, or ErrHold to leave it unsettled.
type Policy func(m ingress.Message, i int) error

// Recorder runs a source under a Handler that records its messages and states and settles
// each message as its Policy says; a nil Policy settles every message with nil. Kinds use it
// for their own tests beside the suite.
type Recorder struct {
	src    ingress.Source
	cancel context.CancelFunc
	done   chan error
	policy Policy

	mu      sync.Mutex
	msgs    []ingress.Message
	settles []ingress.Settle // of the held messages, by index
	states  []ingress.State
	errs    []error
	changed chan struct{} // receives when a message or state arrives
}

// Go runs src under a new Recorder until the test ends or Stop is called.
func Go(t testing.TB, src ingress.Source, policy Policy) *Recorder {
	ctx, cancel := context.WithCancel(context.Background())
	r := &Recorder{src: src, cancel: cancel, done: make(chan error, 1), policy: policy, changed: make(chan struct{}, 1)}
	go func() { r.done <- src.Run(ctx, r) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

// Start runs src under a new Recorder (see Go) and waits until it reports Running.
func Start(t testing.TB, src ingress.Source, policy Policy) *Recorder {
	t.Helper()
	r := Go(t, src, policy)
	r.WaitState(t, ingress.Running, 0)
	return r
}

// Handle implements ingress.Handler.
func (r *Recorder) Handle(ctx context.Context, m ingress.Message, settle ingress.Settle) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	i := len(r.msgs)
	r.msgs = append(r.msgs, cloneMessage(m))
	r.settles = append(r.settles, nil)
	r.mu.Unlock()
	var err error
	if r.policy != nil {
		err = r.policy(m, i)
	}
	if errors.Is(err, ErrHold) {
		r.mu.Lock()
		r.settles[i] = settle
		r.mu.Unlock()
	} else {
		settle(err)
	}
	r.signal()
	return nil
}

// State implements ingress.Handler.
func (r *Recorder) State(s ingress.State, err error) {
	r.mu.Lock()
	r.states = append(r.states, s)
	r.errs = append(r.errs, err)
	r.mu.Unlock()
	r.signal()
}

func (r *Recorder) signal() {
	select {
	case r.changed <- struct{}{}:
	default:
	}
}

// Settle settles the held message of index i with err.
func (r *Recorder) Settle(t testing.TB, i int, err error) {
	t.Helper()
	r.mu.Lock()
	settle := r.settles[i]
	r.settles[i] = nil
	r.mu.Unlock()
	if settle == nil {
		t.Fatalf("message %d is not held", i)
	}
	settle(err)
}

func cloneMessage(m ingress.Message) ingress.Message {
	m.Body = slices.Clone(m.Body)
	m.Headers = maps.Clone(m.Headers)
	return m
}

// Received returns the messages received so far, in arrival order.
func (r *Recorder) Received() []ingress.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

// States returns the states reported so far, and their errors.
func (r *Recorder) States() ([]ingress.State, []error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.states), slices.Clone(r.errs)
}

// LastState returns the last state reported, "" if none.
func (r *Recorder) LastState() ingress.State {
	s, _ := r.States()
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// until waits until cond holds, at most wait, and fails t otherwise with what(). A source
// that returns first fails t too, unless cond holds then.
func (r *Recorder) until(t testing.TB, cond func() bool, what func() string) {
	t.Helper()
	deadline := time.After(wait)
	for !cond() {
		select {
		case <-r.changed:
		case err := <-r.done:
			r.done <- err
			if !cond() {
				t.Fatalf("%s; the source returned: %v", what(), err)
			}
		case <-deadline:
			t.Fatalf("%s after %v", what(), wait)
		}
	}
}

// WaitFor waits until at least n messages arrived and returns the first n.
func (r *Recorder) WaitFor(t testing.TB, n int) []ingress.Message {
	t.Helper()
	r.until(t, func() bool { return len(r.Received()) >= n },
		func() string { return fmt.Sprintf("received %d messages, want %d", len(r.Received()), n) })
	return r.Received()[:n]
}

// WaitState waits until the source reported s as its from-th state or later, and returns the
// index of that report.
func (r *Recorder) WaitState(t testing.TB, s ingress.State, from int) int {
	t.Helper()
	at := -1
	r.until(t, func() bool {
		states, _ := r.States()
		if i := slices.Index(states[min(from, len(states)):], s); i >= 0 {
			at = from + i
			return true
		}
		return false
	}, func() string {
		states, errs := r.States()
		return fmt.Sprintf("source did not report %s (states %v, errors %v)", s, states, errs)
	})
	return at
}

// WaitError waits until the source reported a state with an error that is target (by
// errors.Is), and returns that error.
func (r *Recorder) WaitError(t testing.TB, target error) error {
	t.Helper()
	var found error
	r.until(t, func() bool {
		_, errs := r.States()
		for _, err := range errs {
			if errors.Is(err, target) {
				found = err
				return true
			}
		}
		return false
	}, func() string {
		states, errs := r.States()
		return fmt.Sprintf("source reported no error that is %v (states %v, errors %v)", target, states, errs)
	})
	return found
}

// Wait waits until Run returns, and returns its error.
func (r *Recorder) Wait(t testing.TB) error {
	t.Helper()
	select {
	case err := <-r.done:
		r.done <- err
		return err
	case <-time.After(wait):
		t.Fatalf("Run did not return within %v", wait)
		return nil
	}
}

// Stop cancels the source and waits for Run to return nil.
func (r *Recorder) Stop(t testing.TB) {
	t.Helper()
	r.cancel()
	if err := r.Wait(t); err != nil {
		t.Errorf("Run after cancel: %v", err)
	}
}
