// Package ingresstest is the contract suite of the ingress.Source seam. Every source kind runs
// it against its real broker: Run(t, broker) checks delivery, ordering, the message fields, and
// for brokers that keep messages, settling: what was settled is not delivered again after a
// restart, and what was not settled (or was settled with an error) is.
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

// Broker is a source kind's test set-up against a real broker.
type Broker struct {
	// NewSource returns a source of the kind for test t. Within one test every call returns a
	// source with the same configuration, so a second source resumes the durable subscription
	// (session, consumer, group, queue) of the first; different tests get different ones.
	NewSource func(t *testing.T) ingress.Source
	// Publish sends msgs for the source of test t, in order, and returns once the broker
	// holds them. For a push source (HTTP) it may return before they are handled.
	Publish func(t *testing.T, msgs []Outgoing)
	// Durable reports whether the broker keeps messages for a stopped source and delivers the
	// unsettled ones again when it restarts. Push sources are not durable.
	Durable bool
	// Headers reports whether Outgoing.Headers reach Message.Headers (MQTT 3.1.1 has none).
	Headers bool
	// IDs reports whether Outgoing.ID reaches Message.ID.
	IDs bool
}

// Outgoing is a message a test publishes.
type Outgoing struct {
	// Device is the sequence the message belongs to; the broker set-up publishes the
	// messages of one device so that their order is kept (one topic, subject or key).
	Device  string
	ID      string
	Headers map[string]string
	Body    []byte
}

// wait bounds every wait of the suite for something the broker should do.
const wait = 20 * time.Second

// Run runs the contract suite against b.
func Run(t *testing.T, b Broker) {
	t.Run("DeliversInOrder", func(t *testing.T) { testDeliversInOrder(t, b) })
	t.Run("StopsWhenCancelled", func(t *testing.T) { testStops(t, b) })
	if b.Durable {
		t.Run("SettledNotRedelivered", func(t *testing.T) { testSettledNotRedelivered(t, b) })
		t.Run("ErrorRedelivers", func(t *testing.T) { testErrorRedelivers(t, b) })
	}
}

// messages returns n messages of device, with ids "<device>-<i>", a header and a JSON body
// holding the device and i.
func messages(device string, n int) []Outgoing {
	out := make([]Outgoing, n)
	for i := range out {
		out[i] = Outgoing{
			Device:  device,
			ID:      fmt.Sprintf("%s-%d", device, i),
			Headers: map[string]string{"seq": fmt.Sprint(i)},
			Body:    fmt.Appendf(nil, `{"device":%q,"seq":%d}`, device, i),
		}
	}
	return out
}

func testDeliversInOrder(t *testing.T, b Broker) {
	r := start(t, b, nil)
	devices := []string{"d1", "d2", "d3"}
	var want []Outgoing
	for _, d := range devices {
		want = append(want, messages(d, 20)...)
	}
	// Interleave the devices, as concurrent devices publish.
	sent := make([]Outgoing, 0, len(want))
	for i := range 20 {
		for j := range devices {
			sent = append(sent, want[j*20+i])
		}
	}
	b.Publish(t, sent)
	got := r.waitFor(t, len(sent))
	byDevice := map[string][]ingress.Message{}
	orders := map[string]string{}
	for _, m := range got {
		var out *Outgoing
		for i := range sent {
			if string(sent[i].Body) == string(m.Body) {
				out = &sent[i]
			}
		}
		if out == nil {
			t.Fatalf("received a message that was not sent: %q", m.Body)
		}
		if o, ok := orders[out.Device]; ok && o != m.Order {
			t.Errorf("device %s: messages with Orders %q and %q; want one", out.Device, o, m.Order)
		}
		orders[out.Device] = m.Order
		if m.Order == "" {
			t.Errorf("message %q: empty Order", m.Body)
		}
		if m.Topic == "" {
			t.Errorf("message %q: empty Topic", m.Body)
		}
		if m.Time.IsZero() {
			t.Errorf("message %q: zero Time", m.Body)
		}
		if b.IDs && m.ID != out.ID {
			t.Errorf("message %q: ID %q, want %q", m.Body, m.ID, out.ID)
		}
		if b.Headers {
			for k, v := range out.Headers {
				if m.Headers[k] != v {
					t.Errorf("message %q: header %q = %q, want %q (headers %v)", m.Body, k, m.Headers[k], v, m.Headers)
				}
			}
		}
		byDevice[out.Device] = append(byDevice[out.Device], m)
	}
	for _, d := range devices {
		ms := byDevice[d]
		if len(ms) != 20 {
			t.Errorf("device %s: %d messages, want 20", d, len(ms))
			continue
		}
		for i, m := range ms {
			if want := messages(d, 20)[i].Body; string(m.Body) != string(want) {
				t.Errorf("device %s: message %d is %q, want %q (order lost)", d, i, m.Body, want)
				break
			}
		}
	}
	r.stop(t)
}

func testStops(t *testing.T, b Broker) {
	r := start(t, b, nil)
	r.stop(t)
	if s := r.lastState(); s != ingress.Stopped {
		t.Errorf("last state after cancel = %q, want %q", s, ingress.Stopped)
	}
}

// testSettledNotRedelivered settles the first half of a device's messages, holds the rest,
// stops the source, publishes more while it is stopped, and starts it again: the unsettled
// and the new messages arrive, the settled ones do not.
func testSettledNotRedelivered(t *testing.T, b Broker) {
	sent := messages("d1", 20)
	r := start(t, b, func(m ingress.Message, i int) error {
		if i < 10 {
			return nil
		}
		return errHold
	})
	b.Publish(t, sent[:15])
	r.waitFor(t, 15)
	r.stop(t)

	b.Publish(t, sent[15:])
	r2 := start(t, b, nil)
	// A settled message delivered again would come before the others of its device.
	got := r2.waitFor(t, 10)
	r2.stop(t)
	var bodies []string
	for _, m := range got {
		bodies = append(bodies, string(m.Body))
	}
	var want []string
	for _, o := range sent[10:] {
		want = append(want, string(o.Body))
	}
	if !slices.Equal(bodies, want) {
		t.Errorf("after restart received\n%v\nwant the 5 unsettled and the 5 new ones, in order:\n%v", bodies, want)
	}
}

// testErrorRedelivers settles a message with an error: after a restart it is delivered again.
// Every delivery of it fails before the restart, as a source may deliver it again itself.
func testErrorRedelivers(t *testing.T, b Broker) {
	sent := messages("d1", 3)
	r := start(t, b, func(m ingress.Message, i int) error {
		if string(m.Body) == string(sent[1].Body) {
			return errors.New("store unavailable")
		}
		return nil
	})
	b.Publish(t, sent)
	r.waitFor(t, 3)
	r.stop(t)

	r2 := start(t, b, nil)
	got := r2.waitFor(t, 1)
	r2.stop(t)
	if string(got[0].Body) != string(sent[1].Body) {
		t.Errorf("after restart first message is %q, want the one settled with an error, %q", got[0].Body, sent[1].Body)
	}
}

// errHold, returned by a policy, leaves the message unsettled.
var errHold = errors.New("hold")

// run is a source running under a recording Handler.
type run struct {
	src    ingress.Source
	cancel context.CancelFunc
	done   chan error
	// policy decides each message's settlement from the message and its index in arrival
	// order; nil settles every message with nil.
	policy func(m ingress.Message, i int) error

	mu       sync.Mutex
	msgs     []ingress.Message
	states   []ingress.State
	running  chan struct{}
	arrived  chan struct{}
	gotState bool
}

// start runs a new source of b and waits until it reports Running.
func start(t *testing.T, b Broker, policy func(m ingress.Message, i int) error) *run {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	r := &run{
		src: b.NewSource(t), cancel: cancel, done: make(chan error, 1), policy: policy,
		running: make(chan struct{}), arrived: make(chan struct{}, 1),
	}
	go func() { r.done <- r.src.Run(ctx, r) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	select {
	case <-r.running:
	case err := <-r.done:
		r.done <- err
		t.Fatalf("source stopped before it was running: %v", err)
	case <-time.After(wait):
		t.Fatalf("source not running after %v (states %v)", wait, r.allStates())
	}
	return r
}

// Handle implements ingress.Handler.
func (r *run) Handle(ctx context.Context, m ingress.Message, settle ingress.Settle) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	r.mu.Lock()
	i := len(r.msgs)
	r.msgs = append(r.msgs, cloneMessage(m))
	r.mu.Unlock()
	select {
	case r.arrived <- struct{}{}:
	default:
	}
	var err error
	if r.policy != nil {
		err = r.policy(m, i)
	}
	if !errors.Is(err, errHold) {
		settle(err)
	}
	return nil
}

// State implements ingress.Handler.
func (r *run) State(s ingress.State, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.states = append(r.states, s)
	if s == ingress.Running && !r.gotState {
		r.gotState = true
		close(r.running)
	}
}

func cloneMessage(m ingress.Message) ingress.Message {
	m.Body = slices.Clone(m.Body)
	m.Headers = maps.Clone(m.Headers)
	return m
}

func (r *run) received() []ingress.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.msgs)
}

func (r *run) allStates() []ingress.State {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.states)
}

func (r *run) lastState() ingress.State {
	s := r.allStates()
	if len(s) == 0 {
		return ""
	}
	return s[len(s)-1]
}

// waitFor waits until at least n messages arrived and returns the first n.
func (r *run) waitFor(t *testing.T, n int) []ingress.Message {
	t.Helper()
	deadline := time.After(wait)
	for {
		if got := r.received(); len(got) >= n {
			return got[:n]
		}
		select {
		case <-r.arrived:
		case <-deadline:
			t.Fatalf("received %d messages after %v, want %d", len(r.received()), wait, n)
		}
	}
}

// stop cancels the source and waits for Run to return nil.
func (r *run) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		r.done <- err
		if err != nil {
			t.Errorf("Run after cancel: %v", err)
		}
	case <-time.After(wait):
		t.Fatalf("Run did not return %v after cancel", wait)
	}
}
