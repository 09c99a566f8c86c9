// Package ingresstest is the contract suite of the ingress.Source seam. Every source kind runs
// it against its real broker: Run(t, broker) checks delivery, ordering, the message fields, and
// for brokers that keep messages, settling: what was settled is not delivered again after a
// restart, and what was not settled (or was settled with an error) is.
package ingresstest

import (
	"errors"
	"fmt"
	"slices"
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
	r := Start(t, b.NewSource(t), nil)
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
	got := r.WaitFor(t, len(sent))
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
	r.Stop(t)
}

func testStops(t *testing.T, b Broker) {
	r := Start(t, b.NewSource(t), nil)
	r.Stop(t)
	if s := r.LastState(); s != ingress.Stopped {
		t.Errorf("last state after cancel = %q, want %q", s, ingress.Stopped)
	}
}

// testSettledNotRedelivered settles the first half of a device's messages, holds the rest,
// stops the source, publishes more while it is stopped, and starts it again: the unsettled
// and the new messages arrive, the settled ones do not.
func testSettledNotRedelivered(t *testing.T, b Broker) {
	sent := messages("d1", 20)
	r := Start(t, b.NewSource(t), func(m ingress.Message, i int) error {
		if i < 10 {
			return nil
		}
		return ErrHold
	})
	b.Publish(t, sent[:15])
	r.WaitFor(t, 15)
	r.Stop(t)

	b.Publish(t, sent[15:])
	r2 := Start(t, b.NewSource(t), nil)
	// A settled message delivered again would come before the others of its device.
	got := r2.WaitFor(t, 10)
	r2.Stop(t)
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
	r := Start(t, b.NewSource(t), func(m ingress.Message, i int) error {
		if string(m.Body) == string(sent[1].Body) {
			return errors.New("store unavailable")
		}
		return nil
	})
	b.Publish(t, sent)
	r.WaitFor(t, 3)
	r.Stop(t)

	r2 := Start(t, b.NewSource(t), nil)
	got := r2.WaitFor(t, 1)
	r2.Stop(t)
	if string(got[0].Body) != string(sent[1].Body) {
		t.Errorf("after restart first message is %q, want the one settled with an error, %q", got[0].Body, sent[1].Body)
	}
}
