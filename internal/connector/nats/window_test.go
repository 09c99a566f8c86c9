package nats

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
)

// heldSink returns a sink of cfg (its URL and subject set here) reaching the server through a
// proxy, and the proxy; a first batch has opened the connection and been acknowledged.
func heldSink(t *testing.T, cfg SinkConfig) (*Sink, *sinktest.Proxy) {
	t.Helper()
	_, js := connect(t)
	name := stream(t, js)
	proxy, err := sinktest.NewProxy(server)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = proxy.Close() })
	cfg.URL, cfg.Subject = "nats://"+proxy.Addr(), name+".{twinId}"
	s := newSink(t, cfg)
	t.Cleanup(func() { _ = s.Close() })
	// The proxy is cut before the sink closes, so that nothing waits for held answers.
	t.Cleanup(proxy.Cut)
	if err := s.Send(t.Context(), sinktest.Events("open", 1)); err != nil {
		t.Fatal(err)
	}
	return s, proxy
}

// TestPublishWindow publishes a relay's window of full batches while the server's answers
// are held back: every batch must be handed over at once (a sink that stalls makes the relay
// give up pipelining), and every Ack return nil once the answers arrive.
func TestPublishWindow(t *testing.T) {
	batch := SinkConfig{}.DefaultMaxBatch()
	s, proxy := heldSink(t, SinkConfig{}.WithWindow(sinktest.PublishWindow*batch))
	proxy.Hold()
	var acks []sink.Ack
	for i := range sinktest.PublishWindow {
		ack, err := s.Publish(t.Context(), sinktest.Events("window-"+string(rune('a'+i)), batch))
		if err != nil {
			t.Fatalf("Publish of batch %d of %d events with %d awaiting acknowledgement: %v", i, batch, i*batch, err)
		}
		acks = append(acks, ack)
	}
	proxy.Release()
	for i, ack := range acks {
		if err := ack(t.Context()); err != nil {
			t.Fatalf("Ack of batch %d: %v", i, err)
		}
	}
}

// TestAckAfterClose closes the sink while a published batch awaits its acknowledgement: the
// Ack must fail at once rather than wait for the acknowledgement timeout or its context.
func TestAckAfterClose(t *testing.T) {
	s, proxy := heldSink(t, SinkConfig{})
	proxy.Hold()
	ack, err := s.Publish(t.Context(), sinktest.Events("closed", 3))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ack(ctx) }()
	select {
	case err := <-done:
		if err == nil || errors.Is(err, context.Canceled) {
			t.Fatalf("Ack after Close = %v, want the sink's error", err)
		}
	case <-time.After(ackTimeout / 3):
		t.Fatalf("Ack after Close still waits after %v", ackTimeout/3)
	}
}
