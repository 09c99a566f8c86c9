package outbox

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	natsgo "github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	amqp091 "github.com/rabbitmq/amqp091-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/twinflow/twinflow/internal/connector/amqp"
	"github.com/twinflow/twinflow/internal/connector/kafka"
	"github.com/twinflow/twinflow/internal/connector/nats"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
)

// nullSink accepts everything at once: the relay's own cost.
type nullSink struct{}

func (nullSink) Send(context.Context, []event.Event) error { return nil }
func (nullSink) Close() error                              { return nil }

// BenchmarkRelay measures sustained delivery of 1 KB events from the change log: b.N events
// are committed first, then one relay delivers them all, with its cursor and TTL bookkeeping,
// to the sink. "null" is the relay alone. "nats", "kafka" and "amqp" deliver through their
// connectors to the machine's NATS JetStream, an in-process kfake cluster (8 partitions) and
// the machine's RabbitMQ (a durable queue, persistent messages, publisher confirms). Each
// "<kind>-sink" is that sink sending the same events without the relay, and each
// "<kind>-direct" the broker's client publishing the same messages itself, with the same
// durability and batches of the relay's size, all acknowledged before the next: the relay's
// figure over the direct one is its efficiency. NATS runs at the batch size its endpoints
// get (nats.SinkConfig.DefaultMaxBatch), the others at DefaultMaxBatch.
func BenchmarkRelay(b *testing.B) {
	b.Run("null", func(b *testing.B) { benchRelay(b, nullSink{}, DefaultMaxBatch) })
	kafkaSink := func(b *testing.B) sink.Sink {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(8, "relay-bench"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		s, err := kafka.NewSink(kafka.SinkConfig{Brokers: c.ListenAddrs(), Topic: "relay-bench"}, discard)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	b.Run("kafka", func(b *testing.B) { benchRelay(b, kafkaSink(b), DefaultMaxBatch) })
	b.Run("kafka-sink", func(b *testing.B) { sinktest.Bench(b, kafkaSink(b).Send) })
	b.Run("kafka-direct", func(b *testing.B) {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(8, "relay-bench"))
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close()
		cl, err := kgo.NewClient(kgo.SeedBrokers(c.ListenAddrs()...), kgo.DefaultProduceTopic("relay-bench"),
			kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		recs := make([]*kgo.Record, 0, DefaultMaxBatch)
		sinktest.Bench(b, func(ctx context.Context, events []event.Event) error {
			recs = recs[:0]
			for i := range events {
				r := kafka.Record(&events[i])
				recs = append(recs, &r)
			}
			return cl.ProduceSync(ctx, recs...).FirstErr()
		})
	})
	if conn, err := amqp091.Dial("amqp://guest:guest@127.0.0.1:5672/"); err == nil {
		defer conn.Close()
		amqpSink := func(b *testing.B) sink.Sink {
			ch, err := conn.Channel()
			if err != nil {
				b.Fatal(err)
			}
			q := fmt.Sprintf("relay-bench-%d", time.Now().UnixNano())
			if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { _, _ = ch.QueueDelete(q, false, false, false); ch.Close() })
			s, err := amqp.NewSink(amqp.SinkConfig{URL: "amqp://guest:guest@127.0.0.1:5672/", RoutingKey: q}, discard)
			if err != nil {
				b.Fatal(err)
			}
			b.Cleanup(func() { s.Close() })
			return s
		}
		b.Run("amqp", func(b *testing.B) { benchRelay(b, amqpSink(b), DefaultMaxBatch) })
		b.Run("amqp-sink", func(b *testing.B) { sinktest.Bench(b, amqpSink(b).Send) })
		b.Run("amqp-direct", func(b *testing.B) {
			ch, err := conn.Channel()
			if err != nil {
				b.Fatal(err)
			}
			q := fmt.Sprintf("relay-bench-%d", time.Now().UnixNano())
			if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
				b.Fatal(err)
			}
			defer func() { _, _ = ch.QueueDelete(q, false, false, false); ch.Close() }()
			pub, err := conn.Channel()
			if err != nil {
				b.Fatal(err)
			}
			defer pub.Close()
			if err := pub.Confirm(false); err != nil {
				b.Fatal(err)
			}
			confirms := make([]*amqp091.DeferredConfirmation, 0, DefaultMaxBatch)
			sinktest.Bench(b, func(ctx context.Context, events []event.Event) error {
				confirms = confirms[:0]
				for i := range events {
					dc, err := pub.PublishWithDeferredConfirmWithContext(ctx, "", q, false, false, amqp.Publishing(&events[i]))
					if err != nil {
						return err
					}
					confirms = append(confirms, dc)
				}
				for _, dc := range confirms {
					if ok, err := dc.WaitContext(ctx); err != nil || !ok {
						return fmt.Errorf("confirm: %v, %w", ok, err)
					}
				}
				return nil
			})
		})
	}
	nc, err := natsgo.Connect("nats://127.0.0.1:4222")
	if err != nil {
		b.Skipf("no NATS: %v", err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		b.Fatal(err)
	}
	natsSink := func(b *testing.B) sink.Sink {
		name := fmt.Sprintf("RELAYBENCH%d", time.Now().UnixNano())
		_, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
			Name: name, Subjects: []string{strings.ToLower(name) + ".>"}, MaxBytes: 512 << 20})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
		s, err := nats.NewSink(nats.SinkConfig{URL: "nats://127.0.0.1:4222", Subject: strings.ToLower(name) + ".{twinId}"}, discard)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	natsBatch := nats.SinkConfig{}.DefaultMaxBatch()
	b.Run("nats", func(b *testing.B) { benchRelay(b, natsSink(b), natsBatch) })
	b.Run("nats-sink", func(b *testing.B) { benchSend(b, natsBatch, natsSink(b).Send) })
	b.Run("nats-direct", func(b *testing.B) {
		name := fmt.Sprintf("RELAYBENCH%d", time.Now().UnixNano())
		subject := strings.ToLower(name)
		if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
			Name: name, Subjects: []string{subject + ".>"}, MaxBytes: 512 << 20}); err != nil {
			b.Fatal(err)
		}
		defer func() { _ = js.DeleteStream(context.Background(), name) }()
		futures := make([]jetstream.PubAckFuture, 0, natsBatch)
		benchSend(b, natsBatch, func(ctx context.Context, events []event.Event) error {
			futures = futures[:0]
			for i := range events {
				e := &events[i]
				f, err := js.PublishMsgAsync(nats.Message(subject+"."+e.Subject, e), jetstream.WithMsgID(e.ID))
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

// benchSend is sinktest.Bench with batches of the given size.
func benchSend(b *testing.B, batch int, send func(ctx context.Context, events []event.Event) error) {
	events := sinktest.BenchmarkEvents(batch, 1024)
	ctx := b.Context()
	prefix := "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-"
	b.SetBytes(1024)
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := min(len(events), b.N-sent)
		for i := range events[:n] {
			events[i].ID = prefix + strconv.Itoa(sent+i)
		}
		if err := send(ctx, events[:n]); err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// benchRelay commits b.N events, then measures one relay with batches of maxBatch delivering
// them to sink.
func benchRelay(b *testing.B, fs sink.Sink, maxBatch int) {
	s, err := sqlite.Open(sqlite.Config{Dir: b.TempDir(), NoSync: true}, discard)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	err = s.UpdateDelivery(ctx, func(w store.DeliveryWriter) error {
		return w.PutEndpoint(store.Endpoint{Name: "ep", Config: []byte(`{}`), Created: time.Now()})
	})
	if err != nil {
		b.Fatal(err)
	}
	batch := sinktest.BenchmarkEvents(1000, 1024)
	for done := 0; done < b.N; {
		n := min(len(batch), b.N-done)
		err := s.Update(ctx, func(w store.Writer) error {
			for i := range batch[:n] {
				e := batch[i]
				e.ID = fmt.Sprintf("e%d", done+i)
				if err := w.Emit(e); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		done += n
	}
	r, err := New(Config{Endpoint: "ep", MaxBatch: maxBatch}, s, fs, func(*event.Event) bool { return true }, nil, discard)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(1024)
	b.ResetTimer()
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- r.Run(runCtx) }()
	for {
		st, err := r.Status(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if st.Cursor >= uint64(b.N) {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	if err := <-done; err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
