package kafka

import (
	"context"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
)

// BenchmarkDelivery compares the sink with the same franz-go client options producing the
// same records directly, both against an in-process kfake cluster of one broker and 8
// partitions.
func BenchmarkDelivery(b *testing.B) {
	b.Run("sink", func(b *testing.B) {
		c := cluster(b, 8)
		s := newSink(b, SinkConfig{Brokers: c.ListenAddrs(), Topic: topic})
		defer s.Close()
		sinktest.Bench(b, s.Send)
	})
	b.Run("latency", func(b *testing.B) {
		c := cluster(b, 8)
		s := newSink(b, SinkConfig{Brokers: c.ListenAddrs(), Topic: topic})
		defer s.Close()
		sinktest.BenchLatency(b, s.Send)
	})
	b.Run("direct", func(b *testing.B) {
		c := cluster(b, 8)
		s := newSink(b, SinkConfig{Brokers: c.ListenAddrs(), Topic: topic})
		defer s.Close()
		client, err := kgo.NewClient(s.opts...)
		if err != nil {
			b.Fatal(err)
		}
		defer client.Close()
		records := make([]*kgo.Record, 0, sinktest.BenchmarkBatch)
		sinktest.Bench(b, func(ctx context.Context, events []event.Event) error {
			records = records[:0]
			for i := range events {
				r := Record(&events[i])
				records = append(records, &r)
			}
			return client.ProduceSync(ctx, records...).FirstErr()
		})
	})
}
