// Package sinktest is the contract suite of the sink.Sink seam. Every sink runs it against
// its real destination: the test supplies a Harness that builds a sink and a Receiver reading
// back what arrived, and Run checks order, every CloudEvents attribute the binding carries,
// data bytes, batches, Close, and the error kinds the technology can show. A sink that is a
// sink.Publisher also gets the Publish cases: batches pipelined as the relay pipelines them,
// what an Ack returning nil promises, and Acks lost with the connection.
package sinktest

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink"
)

// Receiver reads back the events that arrived at one destination, decoded from the
// protocol's CloudEvents binding.
type Receiver interface {
	// Receive returns the next n events in arrival order, waiting until they arrived or ctx
	// ended.
	Receive(ctx context.Context, n int) ([]event.Event, error)
}

// Harness builds sinks for one technology. New is required; each call must use a fresh
// destination (a unique queue, subject, topic or server) so tests do not see each other's
// events.
type Harness struct {
	// New returns a sink and the Receiver of everything it delivers.
	New func(t *testing.T) (sink.Sink, Receiver)
	// Proxied, if set, is New with the sink reaching its destination through a TCP proxy:
	// it calls proxy with the destination's host:port and connects the sink to the address
	// returned (the Receiver connects directly). The suite cuts the proxy to check that Send
	// fails with a retryable error while the destination is unreachable, and succeeds again
	// on the same sink afterwards. For a sink.Publisher it also holds back the destination's
	// answers, to check that no Ack returns nil before they arrive and that every Ack fails
	// when the connection is cut while they are held.
	Proxied func(t *testing.T, proxy func(target string) string) (sink.Sink, Receiver)
	// Reject, if set, returns a sink whose destination refuses the events (an unknown
	// exchange, a 400 answer): Send must fail with a permanent error.
	Reject func(t *testing.T) sink.Sink
	// Timeout bounds each wait of the suite; zero means 20 seconds.
	Timeout time.Duration
	// LargeBatch is the number of events the large-batch case sends at once; zero means
	// 2,500. A destination that drops messages for a slow reader beyond a queue limit
	// (Mosquitto keeps 1,000 per subscriber) needs fewer.
	LargeBatch int
}

// Run runs the contract suite.
func Run(t *testing.T, h Harness) {
	if h.Timeout == 0 {
		h.Timeout = 20 * time.Second
	}
	if h.LargeBatch == 0 {
		h.LargeBatch = 2500
	}
	t.Run("OrderAndAttributes", func(t *testing.T) { testOrderAndAttributes(t, h) })
	t.Run("BatchesInOrder", func(t *testing.T) { testBatchesInOrder(t, h) })
	t.Run("LargeBatch", func(t *testing.T) { testLargeBatch(t, h) })
	t.Run("EmptyBatch", func(t *testing.T) { testEmptyBatch(t, h) })
	t.Run("SendAfterClose", func(t *testing.T) { testSendAfterClose(t, h) })
	t.Run("CanceledContext", func(t *testing.T) { testCanceledContext(t, h) })
	if h.Reject != nil {
		t.Run("Rejected", func(t *testing.T) { testRejected(t, h) })
	}
	if h.Proxied != nil {
		t.Run("Outage", func(t *testing.T) { testOutage(t, h) })
	}
	t.Run("Publish", func(t *testing.T) { testPublish(t, h) })
}

// Events returns n events of every kind twinflow emits, with ids prefix-0 ... prefix-(n-1),
// every optional and extension attribute used somewhere, a twin id that is not ASCII and has a space, and
// compact JSON data, so that data must arrive byte for byte.
func Events(prefix string, n int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		id := prefix + "-" + strconv.Itoa(i)
		twin := "twin-" + strconv.Itoa(i%7)
		if i%7 == 6 {
			twin = "twin-ü 6" // not ASCII, with a space: header encodings must keep it
		}
		tp := fmt.Sprintf("00-%032x-%016x-01", i+1, i+1)
		ts := fmt.Sprintf("congo=t61rcWkgMzE,rojo=%016x", i+1)
		switch i % 4 {
		case 0:
			out[i] = event.Event{ID: id, Source: "twinflow.test", SpecVersion: event.SpecVersion,
				Type: event.TwinUpdate, Subject: twin, Time: "2026-11-25T10:00:00.1234567Z",
				DataContentType: "application/json", TraceParent: tp, TraceState: ts,
				Data: json.RawMessage(`{"modelId":"dtmi:example:Room;1","patch":[{"value":` + strconv.Itoa(i) + `,"path":"/temperature","op":"replace"}]}`)}
		case 1:
			out[i] = event.Event{ID: id, Source: "twinflow.test", SpecVersion: event.SpecVersion,
				Type: event.RelationshipCreate, Subject: twin + "/relationships/rel-" + strconv.Itoa(i),
				Time: "2026-11-25T10:00:01.0000000Z", DataContentType: "application/json",
				Data: json.RawMessage(`{"$relationshipId":"rel-` + strconv.Itoa(i) + `","$sourceId":"` + twin + `","$targetId":"t2","$relationshipName":"contains","note":"ünïcode \"quoted\""}`)}
		case 2:
			out[i] = event.Event{ID: id, Source: "twinflow.test/digitaltwins/" + twin, SpecVersion: event.SpecVersion,
				Type: event.Telemetry, Subject: "thermostat", DataContentType: "application/json",
				DataSchema: "dtmi:example:Thermostat;1", TraceParent: tp, TraceState: ts,
				TelemetrySourceTime: fmt.Sprintf("2026-11-25T09:59:%02d.123456789+01:00", i%60),
				Data:                json.RawMessage(`{"temperature":21.5,"seq":` + strconv.Itoa(i) + `}`)}
		default:
			out[i] = event.Event{ID: id, Source: "twinflow.test", SpecVersion: event.SpecVersion,
				Type: event.TwinDelete, Subject: twin, Time: "2026-11-25T10:00:02.0000000Z",
				DataContentType: "application/json",
				Data:            json.RawMessage(`{"$dtId":"` + twin + `","$etag":"W/\"e\"","$metadata":{"$model":"dtmi:example:Room;1"}}`)}
		}
	}
	return out
}

// Equal reports how got differs from want, attribute by attribute, or "" if it does not.
func Equal(got, want event.Event) string {
	var diff string
	check := func(name, g, w string) {
		if g != w {
			diff += fmt.Sprintf(" %s=%q, want %q;", name, g, w)
		}
	}
	check("id", got.ID, want.ID)
	check("source", got.Source, want.Source)
	check("specversion", got.SpecVersion, want.SpecVersion)
	check("type", got.Type, want.Type)
	check("subject", got.Subject, want.Subject)
	check("time", got.Time, want.Time)
	check("datacontenttype", got.DataContentType, want.DataContentType)
	check("dataschema", got.DataSchema, want.DataSchema)
	check("traceparent", got.TraceParent, want.TraceParent)
	check("tracestate", got.TraceState, want.TraceState)
	check("telemetrySourceTime", got.TelemetrySourceTime, want.TelemetrySourceTime)
	check("data", string(got.Data), string(want.Data))
	return diff
}

func (h Harness) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), h.Timeout)
	t.Cleanup(cancel)
	return ctx
}

func newSink(t *testing.T, h Harness) (sink.Sink, Receiver) {
	s, rcv := h.New(t)
	t.Cleanup(func() { _ = s.Close() })
	return s, rcv
}

func expect(t *testing.T, h Harness, rcv Receiver, want []event.Event) {
	t.Helper()
	got, err := rcv.Receive(h.ctx(t), len(want))
	if err != nil {
		t.Fatalf("receive %d events: %v", len(want), err)
	}
	if len(got) != len(want) {
		t.Fatalf("received %d events, want %d", len(got), len(want))
	}
	for i := range want {
		if d := Equal(got[i], want[i]); d != "" {
			t.Errorf("event %d (%s):%s", i, want[i].ID, d)
		}
	}
}

func testOrderAndAttributes(t *testing.T, h Harness) {
	s, rcv := newSink(t, h)
	events := Events("order", 40)
	if err := s.Send(h.ctx(t), events); err != nil {
		t.Fatalf("Send: %v", err)
	}
	expect(t, h, rcv, events)
}

func testBatchesInOrder(t *testing.T, h Harness) {
	s, rcv := newSink(t, h)
	events := Events("batches", 25)
	for _, batch := range [][]event.Event{events[:1], events[1:11], events[11:12], events[12:]} {
		if err := s.Send(h.ctx(t), batch); err != nil {
			t.Fatalf("Send: %v", err)
		}
	}
	expect(t, h, rcv, events)
}

// testLargeBatch sends more events in one batch than a client usually keeps in flight.
func testLargeBatch(t *testing.T, h Harness) {
	s, rcv := newSink(t, h)
	events := Events("large", h.LargeBatch)
	if err := s.Send(h.ctx(t), events); err != nil {
		t.Fatalf("Send: %v", err)
	}
	expect(t, h, rcv, events)
}

func testEmptyBatch(t *testing.T, h Harness) {
	s, rcv := newSink(t, h)
	if err := s.Send(h.ctx(t), nil); err != nil {
		t.Fatalf("Send(nil) = %v, want nil", err)
	}
	events := Events("empty", 1)
	if err := s.Send(h.ctx(t), events); err != nil {
		t.Fatalf("Send: %v", err)
	}
	// The first event to arrive must be the one sent after the empty batch.
	expect(t, h, rcv, events)
}

func testSendAfterClose(t *testing.T, h Harness) {
	s, _ := h.New(t)
	if err := s.Send(h.ctx(t), Events("close", 2)); err != nil {
		t.Fatalf("Send: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := s.Send(h.ctx(t), Events("after-close", 1)); err == nil {
		t.Fatal("Send after Close = nil, want an error")
	}
}

func testCanceledContext(t *testing.T, h Harness) {
	s, rcv := newSink(t, h)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	if err := s.Send(ctx, Events("canceled", 3)); err == nil {
		t.Fatal("Send with a canceled context = nil, want an error")
	}
	// The sink stays usable.
	events := Events("after-cancel", 3)
	if err := sendRetrying(h.ctx(t), s, events); err != nil {
		t.Fatalf("Send: %v", err)
	}
	expectSuffix(t, h, rcv, events)
}

// expectSuffix receives until the events of want have all arrived in order, allowing
// anything before the first of them (a canceled Send may have delivered some events) and
// duplicates of a batch in flight.
func expectSuffix(t *testing.T, h Harness, rcv Receiver, want []event.Event) {
	t.Helper()
	ctx := h.ctx(t)
	next := 0
	for next < len(want) {
		got, err := rcv.Receive(ctx, 1)
		if err != nil {
			t.Fatalf("receive: got %d of %d events: %v", next, len(want), err)
		}
		e := got[0]
		switch {
		case e.ID == want[next].ID:
			if d := Equal(e, want[next]); d != "" {
				t.Errorf("event %s:%s", e.ID, d)
			}
			next++
		case indexOf(want[:next], e.ID) >= 0:
			// A duplicate from a batch sent again: allowed.
		case next > 0:
			t.Fatalf("unexpected event %s after %s", e.ID, want[next-1].ID)
		}
	}
}

func indexOf(events []event.Event, id string) int {
	for i := range events {
		if events[i].ID == id {
			return i
		}
	}
	return -1
}

// sendRetrying sends like the relay does: again, after a short pause, until it succeeds or
// ctx ends; a permanent error stops it.
func sendRetrying(ctx context.Context, s sink.Sink, events []event.Event) error {
	for {
		attempt, cancel := context.WithTimeout(ctx, 3*time.Second)
		err := s.Send(attempt, events)
		cancel()
		if err == nil || sink.IsPermanent(err) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last error: %v)", ctx.Err(), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func testRejected(t *testing.T, h Harness) {
	s := h.Reject(t)
	t.Cleanup(func() { _ = s.Close() })
	err := s.Send(h.ctx(t), Events("rejected", 2))
	if err == nil {
		t.Fatal("Send to a refusing destination = nil, want a permanent error")
	}
	if !sink.IsPermanent(err) {
		t.Fatalf("Send to a refusing destination = %v, want a permanent error", err)
	}
}

func testOutage(t *testing.T, h Harness) {
	var proxy *Proxy
	s, rcv := h.Proxied(t, func(target string) string {
		p, err := NewProxy(target)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		proxy = p
		return p.Addr()
	})
	t.Cleanup(func() { _ = s.Close() })
	if proxy == nil {
		t.Fatal("Harness.Proxied did not ask for a proxy")
	}

	before := Events("before-outage", 5)
	if err := s.Send(h.ctx(t), before); err != nil {
		t.Fatalf("Send before the outage: %v", err)
	}
	expect(t, h, rcv, before)

	proxy.Cut()
	during := Events("during-outage", 5)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	err := s.Send(ctx, during)
	cancel()
	switch {
	case err == nil:
		t.Fatal("Send while the destination is unreachable = nil, want an error")
	case sink.IsPermanent(err):
		t.Fatalf("Send while the destination is unreachable = %v, want a retryable error", err)
	}

	time.Sleep(500 * time.Millisecond)
	proxy.Restore()
	if err := sendRetrying(h.ctx(t), s, during); err != nil {
		t.Fatalf("Send after the outage: %v", err)
	}
	expectSuffix(t, h, rcv, during)
}
