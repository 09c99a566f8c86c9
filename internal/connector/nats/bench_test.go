package nats

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
)

// benchStream creates a file-backed stream of at most 512 MiB for a benchmark.
func benchStream(b *testing.B, js jetstream.JetStream) string {
	name := fmt.Sprintf("bench_%d", time.Now().UnixNano())
	if _, err := js.CreateStream(b.Context(), jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, MaxBytes: 512 << 20}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
	return name
}

// BenchmarkDelivery compares the sink with the same client publishing the same messages to
// JetStream directly: async publishes of a batch, then every acknowledgement.
func BenchmarkDelivery(b *testing.B) {
	_, js := connect(b)
	b.Run("sink", func(b *testing.B) {
		name := benchStream(b, js)
		s := newSink(b, SinkConfig{URL: "nats://" + server, Subject: name + ".{type}.{twinId}"})
		defer s.Close()
		sinktest.Bench(b, s.Send)
	})
	b.Run("latency", func(b *testing.B) {
		name := benchStream(b, js)
		s := newSink(b, SinkConfig{URL: "nats://" + server, Subject: name + ".{type}.{twinId}"})
		defer s.Close()
		sinktest.BenchLatency(b, s.Send)
	})
	b.Run("direct", func(b *testing.B) {
		name := benchStream(b, js)
		_, djs := connect(b)
		futures := make([]jetstream.PubAckFuture, 0, sinktest.BenchmarkBatch)
		sinktest.Bench(b, func(ctx context.Context, events []event.Event) error {
			futures = futures[:0]
			for i := range events {
				m := Message(name+".Microsoft_DigitalTwins_Twin_Update."+events[i].Subject, &events[i])
				f, err := djs.PublishMsgAsync(m, jetstream.WithMsgID(events[i].ID))
				if err != nil {
					return err
				}
				futures = append(futures, f)
			}
			for _, f := range futures {
				select {
				case <-f.Ok():
				case err := <-f.Err():
					return err
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			return nil
		})
	})
}
