package sinktest

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink"
)

// PublishWindow is the number of published batches the Publish cases keep awaiting
// acknowledgement at most, as the relay (package outbox) does.
const PublishWindow = 4

// heldFor is how long the Publish cases let a sink wait for answers the proxy holds back
// before they check that no Ack returned nil.
const heldFor = 300 * time.Millisecond

// testPublish runs the Publish cases if the harness's sinks are sink.Publishers; the first
// sink it builds decides.
func testPublish(t *testing.T, h Harness) {
	s, _ := h.New(t)
	_, ok := s.(sink.Publisher)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !ok {
		t.Logf("%T is not a sink.Publisher: Send is its only way out, and nothing here applies", s)
		return
	}
	t.Run("InOrder", func(t *testing.T) { testPublishInOrder(t, h) })
	t.Run("AckAfterArrival", func(t *testing.T) { testPublishAckAfterArrival(t, h) })
	t.Run("CanceledContext", func(t *testing.T) { testPublishCanceledContext(t, h) })
	t.Run("AfterClose", func(t *testing.T) { testPublishAfterClose(t, h) })
	if h.Reject != nil {
		t.Run("Rejected", func(t *testing.T) { testPublishRejected(t, h) })
	}
	if h.Proxied != nil {
		t.Run("AckWaitsForDestination", func(t *testing.T) { testPublishAckWaits(t, h) })
		t.Run("AcksLost", func(t *testing.T) { testPublishAcksLost(t, h) })
	}
}

// newPublisher is newSink for a harness whose sinks are sink.Publishers.
func newPublisher(t *testing.T, h Harness) (sink.Publisher, Receiver) {
	t.Helper()
	s, rcv := newSink(t, h)
	p, ok := s.(sink.Publisher)
	if !ok {
		t.Fatalf("%T is not a sink.Publisher, though the harness's first sink was", s)
	}
	return p, rcv
}

// newProxiedPublisher is newPublisher through Harness.Proxied. Cleanup cuts the proxy before
// the sink closes, so that closing cannot wait for answers a failed case left held back.
func newProxiedPublisher(t *testing.T, h Harness) (sink.Publisher, Receiver, *Proxy) {
	t.Helper()
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
	t.Cleanup(proxy.Cut)
	p, ok := s.(sink.Publisher)
	if !ok {
		t.Fatalf("%T is not a sink.Publisher, though the harness's first sink was", s)
	}
	return p, rcv, proxy
}

// batches returns events with ids prefix-0, prefix-1, ... and the same events cut into
// batches of the given sizes.
func batches(prefix string, sizes ...int) ([]event.Event, [][]event.Event) {
	n := 0
	for _, size := range sizes {
		n += size
	}
	events := Events(prefix, n)
	out := make([][]event.Event, len(sizes))
	rest := events
	for i, size := range sizes {
		out[i], rest = rest[:size:size], rest[size:]
	}
	return events, out
}

// publishAll publishes batches the way the relay does: each as soon as fewer than
// PublishWindow published batches await acknowledgement, their Acks awaited in publish order.
// Every Publish and Ack must succeed; after batch i's Ack returned nil, publishAll calls
// acked(i) if it is set.
func publishAll(t *testing.T, ctx context.Context, p sink.Publisher, batches [][]event.Event, acked func(i int)) {
	t.Helper()
	acks := make([]sink.Ack, 0, len(batches))
	next := 0
	await := func() {
		t.Helper()
		if err := acks[next](ctx); err != nil {
			t.Fatalf("Ack of batch %d (%d events): %v", next, len(batches[next]), err)
		}
		if acked != nil {
			acked(next)
		}
		next++
	}
	for i, b := range batches {
		if len(acks)-next == PublishWindow {
			await()
		}
		ack, err := p.Publish(ctx, b)
		if err != nil {
			t.Fatalf("Publish of batch %d (%d events): %v", i, len(b), err)
		}
		acks = append(acks, ack)
	}
	for next < len(acks) {
		await()
	}
}

// ackResult is the outcome of the Ack of batch i.
type ackResult struct {
	i   int
	err error
}

// awaitAcks waits for acks in order on a goroutine of its own, as the relay does while it
// publishes, and sends each outcome on the channel it returns.
func awaitAcks(ctx context.Context, acks []sink.Ack) <-chan ackResult {
	results := make(chan ackResult, len(acks))
	go func() {
		for i, ack := range acks {
			results <- ackResult{i, ack(ctx)}
		}
	}()
	return results
}

// publishHeld holds back the proxy's answers and publishes a window of small batches, which
// must all be handed over: Publish does not wait for the destination. While the answers are
// held back, no Ack may return nil. It returns the outcomes of the Acks, awaited in order on a
// goroutine until ctx ends: those that returned an error while the answers were held back, and
// the channel of the others.
func publishHeld(t *testing.T, ctx context.Context, p sink.Publisher, proxy *Proxy, batches [][]event.Event) (early []ackResult, results <-chan ackResult) {
	t.Helper()
	proxy.Hold()
	acks := make([]sink.Ack, 0, len(batches))
	for i, b := range batches {
		ack, err := p.Publish(ctx, b)
		if err != nil {
			t.Fatalf("Publish of batch %d while the destination's answers are held back: %v", i, err)
		}
		acks = append(acks, ack)
	}
	results = awaitAcks(ctx, acks)
	held := time.After(heldFor)
	for {
		select {
		case r := <-results:
			if r.err == nil {
				t.Fatalf("Ack of batch %d returned nil while the destination's answers were held back: "+
					"an Ack must wait until the destination accepted the batch", r.i)
			}
			early = append(early, r)
		case <-held:
			return early, results
		}
	}
}

// testPublishInOrder publishes batches of many sizes, an empty one and a large one among
// them, with a window of them awaiting acknowledgement: every Ack returns nil, in order, and
// the events arrive in order, each once.
func testPublishInOrder(t *testing.T, h Harness) {
	p, rcv := newPublisher(t, h)
	events, bs := batches("publish-order", 1, 10, 0, h.LargeBatch, 1, 7, 25, 3, 40)
	publishAll(t, h.ctx(t), p, bs, nil)
	expect(t, h, rcv, events)
}

// testPublishAckAfterArrival checks, batch by batch while the later ones are in flight, that
// once a batch's Ack returned nil its events can be received, all of them and in order.
func testPublishAckAfterArrival(t *testing.T, h Harness) {
	p, rcv := newPublisher(t, h)
	_, bs := batches("publish-acked", 3, 1, 8, 2, 5, 13, 1, 4, 6, 2)
	publishAll(t, h.ctx(t), p, bs, func(i int) { expect(t, h, rcv, bs[i]) })
}

// testPublishCanceledContext checks that Publish with a canceled context fails (or its Ack
// does) and that the sink stays usable.
func testPublishCanceledContext(t *testing.T, h Harness) {
	p, rcv := newPublisher(t, h)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	ack, err := p.Publish(ctx, Events("publish-canceled", 3))
	if err == nil {
		err = ack(h.ctx(t))
	}
	if err == nil {
		t.Fatal("Publish with a canceled context, and its Ack, = nil; want an error")
	}
	events, bs := batches("publish-after-cancel", 2, 3)
	publishAll(t, h.ctx(t), p, bs, nil)
	expectSuffix(t, h, rcv, events)
}

// testPublishAfterClose checks that Publish after Close fails.
func testPublishAfterClose(t *testing.T, h Harness) {
	s, _ := h.New(t)
	p, ok := s.(sink.Publisher)
	if !ok {
		t.Fatalf("%T is not a sink.Publisher, though the harness's first sink was", s)
	}
	_, bs := batches("publish-close", 2)
	publishAll(t, h.ctx(t), p, bs, nil)
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := p.Publish(h.ctx(t), Events("publish-after-close", 1)); err == nil {
		t.Fatal("Publish after Close = nil, want an error")
	}
}

// testPublishRejected publishes a window of batches to a refusing destination: each must
// fail permanently, in Publish or in its Ack, as Send does.
func testPublishRejected(t *testing.T, h Harness) {
	s := h.Reject(t)
	t.Cleanup(func() { _ = s.Close() })
	p, ok := s.(sink.Publisher)
	if !ok {
		t.Fatalf("%T is not a sink.Publisher, though the harness's first sink was", s)
	}
	ctx := h.ctx(t)
	errs := make([]error, PublishWindow-1)
	acks := make([]sink.Ack, len(errs))
	for i := range errs {
		acks[i], errs[i] = p.Publish(ctx, Events("publish-rejected-"+strconv.Itoa(i), 2))
	}
	for i, err := range errs {
		if err == nil {
			err = acks[i](ctx)
		}
		if !sink.IsPermanent(err) {
			t.Errorf("batch %d to a refusing destination: Publish and its Ack = %v, want a permanent error", i, err)
		}
	}
}

// testPublishAckWaits holds back the destination's answers while a window of batches is
// published: no Ack may return nil before the answers arrive. Then it releases them: every
// Ack returns nil, in order, and the events arrive in order.
func testPublishAckWaits(t *testing.T, h Harness) {
	p, rcv, proxy := newProxiedPublisher(t, h)
	ctx := h.ctx(t)
	// A first batch opens the connection before the answers are held back.
	before, bs := batches("ack-waits-before", 2)
	publishAll(t, ctx, p, bs, nil)
	expect(t, h, rcv, before)

	events, bs := batches("ack-waits", 3, 5, 1, 4)
	early, results := publishHeld(t, ctx, p, proxy, bs)
	if len(early) > 0 {
		t.Fatalf("Ack of batch %d failed while the destination's answers were held back: %v", early[0].i, early[0].err)
	}
	proxy.Release()
	for range bs {
		if r := <-results; r.err != nil {
			t.Fatalf("Ack of batch %d once the destination's answers were released: %v", r.i, r.err)
		}
	}
	expect(t, h, rcv, events)
}

// testPublishAcksLost cuts the connection while a window of batches awaits acknowledgement,
// their answers held back: every Ack must fail with a retryable error, none may return nil.
// Once the destination is reachable again, the sink must deliver the same batches, sent
// again the way the relay retries: the first with Send until it succeeds, the others
// published again.
func testPublishAcksLost(t *testing.T, h Harness) {
	p, rcv, proxy := newProxiedPublisher(t, h)
	ctx := h.ctx(t)
	before, bs := batches("acks-lost-before", 2)
	publishAll(t, ctx, p, bs, nil)
	expect(t, h, rcv, before)

	events, bs := batches("acks-lost", 3, 5, 1, 4)
	early, results := publishHeld(t, ctx, p, proxy, bs)
	proxy.Cut()
	for range len(bs) - len(early) {
		early = append(early, <-results)
	}
	for _, r := range early {
		switch {
		case r.err == nil:
			t.Fatalf("Ack of batch %d = nil after the connection was cut before its acknowledgement arrived; want an error", r.i)
		case sink.IsPermanent(r.err):
			t.Fatalf("Ack of batch %d = %v after the connection was cut; want a retryable error", r.i, r.err)
		}
	}

	time.Sleep(100 * time.Millisecond)
	proxy.Restore()
	if err := sendRetrying(ctx, p, bs[0]); err != nil {
		t.Fatalf("Send of batch 0 again after the outage: %v", err)
	}
	publishAll(t, ctx, p, bs[1:], nil)
	// The destination may hold some events from before the cut, so anything may come first,
	// and events may repeat.
	expectSuffix(t, h, rcv, events)
}
