package kafka

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/twinflow/twinflow/internal/ingress/ingresstest"
)

// benchCluster returns a kfake cluster of one broker whose topic of 8 partitions holds n
// benchmark records, keyed by device.
func benchCluster(b *testing.B, n int) *kfake.Cluster {
	c := cluster(b, 8)
	cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic(topic), kgo.ProducerLinger(5*time.Millisecond))
	if err != nil {
		b.Fatal(err)
	}
	defer cl.Close()
	for i := range n {
		cl.Produce(context.Background(), &kgo.Record{Key: fmt.Appendf(nil, "device-%d", i%1000), Value: ingresstest.BenchBody(i)}, func(_ *kgo.Record, err error) {
			if err != nil {
				b.Error(err)
			}
		})
	}
	if err := cl.Flush(b.Context()); err != nil {
		b.Fatal(err)
	}
	return c
}

// BenchmarkSource measures the records per second the source hands over from a kfake topic
// holding them, settling each as soon as it is handed over, against the same franz-go
// consumer group reading them directly with the same options: polls of maxPoll records with
// rebalances blocked, a commit of every record polled each commitInterval and one at the end,
// then leaving the group.
func BenchmarkSource(b *testing.B) {
	b.Run("source", func(b *testing.B) {
		c := benchCluster(b, b.N)
		src, err := NewSource(SourceConfig{Brokers: c.ListenAddrs(), Topics: []string{topic}}, "bench", slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		ingresstest.Consume(b, src, b.N)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("direct", func(b *testing.B) {
		c := benchCluster(b, b.N)
		b.ResetTimer()
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.ConsumerGroup("direct"), kgo.ConsumeTopics(topic),
			kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.DisableAutoCommit(), kgo.BlockRebalanceOnPoll())
		if err != nil {
			b.Fatal(err)
		}
		lastCommit := time.Now()
		for n := 0; n < b.N; {
			ctx, cancel := context.WithTimeout(b.Context(), pollWait)
			fetches := cl.PollRecords(ctx, maxPoll)
			cancel()
			fetches.EachRecord(func(r *kgo.Record) {
				n++
				_ = r.Value
			})
			if time.Since(lastCommit) >= commitInterval {
				if err := cl.CommitUncommittedOffsets(b.Context()); err != nil {
					b.Fatal(err)
				}
				lastCommit = time.Now()
			}
			cl.AllowRebalance()
		}
		if err := cl.CommitUncommittedOffsets(b.Context()); err != nil {
			b.Fatal(err)
		}
		cl.Close()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}
