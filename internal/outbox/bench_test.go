package outbox

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	"github.com/twinflow/twinflow/internal/testenv"
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
// "<kind>-sink" is that sink's Send delivering the same events without the relay, one batch
// acknowledged before the next. Each "<kind>-direct" is the broker's client publishing the
// same messages itself, with the same durability and batches of the relay's size, pipelined
// as the relay pipelines a sink.Publisher: up to publishWindow batches await acknowledgement,
// and the acknowledgements are awaited in publish order (see benchPublish). The relay's
// figure over the direct one is its efficiency. NATS runs at the batch size its endpoints get
// (nats.SinkConfig.DefaultMaxBatch), its sinks sized for the relay's window as the endpoint
// registry sizes them (nats.SinkConfig.WithWindow); the others run at DefaultMaxBatch. The NATS and RabbitMQ
// cases are prerequisites (see testenv): without the service they skip, or fail under CI.
func BenchmarkRelay(b *testing.B) {
	b.Run("null", func(b *testing.B) { benchRelay(b, nullSink{}, DefaultMaxBatch) })

	kafkaCluster := func(b *testing.B) *kfake.Cluster {
		c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(8, "relay-bench"))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(c.Close)
		return c
	}
	kafkaSink := func(b *testing.B) sink.Sink {
		s, err := kafka.NewSink(kafka.SinkConfig{Brokers: kafkaCluster(b).ListenAddrs(), Topic: "relay-bench"}, discard)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	b.Run("kafka", func(b *testing.B) { benchRelay(b, kafkaSink(b), DefaultMaxBatch) })
	b.Run("kafka-sink", func(b *testing.B) { benchSend(b, DefaultMaxBatch, kafkaSink(b).Send) })
	b.Run("kafka-direct", func(b *testing.B) {
		cl, err := kgo.NewClient(kgo.SeedBrokers(kafkaCluster(b).ListenAddrs()...), kgo.DefaultProduceTopic("relay-bench"),
			kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(0))
		if err != nil {
			b.Fatal(err)
		}
		defer cl.Close()
		benchPublish(b, DefaultMaxBatch, func(ctx context.Context, events []event.Event) (sink.Ack, error) {
			// The records of a batch stay with the producer until their promises ran.
			recs := make([]kgo.Record, len(events))
			var (
				pending atomic.Int64
				done    = make(chan struct{})
				mu      sync.Mutex
				first   error
			)
			pending.Store(int64(len(recs)))
			promise := func(_ *kgo.Record, err error) {
				if err != nil {
					mu.Lock()
					if first == nil {
						first = err
					}
					mu.Unlock()
				}
				if pending.Add(-1) == 0 {
					close(done)
				}
			}
			for i := range events {
				recs[i] = kafka.Record(&events[i])
				cl.Produce(ctx, &recs[i], promise)
			}
			return func(ctx context.Context) error {
				select {
				case <-done:
					mu.Lock()
					defer mu.Unlock()
					return first
				case <-ctx.Done():
					return ctx.Err()
				}
			}, nil
		})
	})

	rabbitMQ := func(b *testing.B) *amqp091.Connection {
		conn, err := amqp091.Dial(testenv.RabbitMQ(b))
		if err != nil {
			b.Fatalf("connect to RabbitMQ: %v", err)
		}
		b.Cleanup(func() { conn.Close() })
		return conn
	}
	// amqpQueue declares a fresh durable queue, deleted when b ends.
	amqpQueue := func(b *testing.B, conn *amqp091.Connection) string {
		ch, err := conn.Channel()
		if err != nil {
			b.Fatal(err)
		}
		q := fmt.Sprintf("relay-bench-%d", time.Now().UnixNano())
		if _, err := ch.QueueDeclare(q, true, false, false, false, nil); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _, _ = ch.QueueDelete(q, false, false, false); ch.Close() })
		return q
	}
	amqpSink := func(b *testing.B) sink.Sink {
		url := testenv.RabbitMQ(b)
		q := amqpQueue(b, rabbitMQ(b))
		s, err := amqp.NewSink(amqp.SinkConfig{URL: url, RoutingKey: q}, discard)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	b.Run("amqp", func(b *testing.B) { benchRelay(b, amqpSink(b), DefaultMaxBatch) })
	b.Run("amqp-sink", func(b *testing.B) { benchSend(b, DefaultMaxBatch, amqpSink(b).Send) })
	b.Run("amqp-direct", func(b *testing.B) {
		conn := rabbitMQ(b)
		q := amqpQueue(b, conn)
		pub, err := conn.Channel()
		if err != nil {
			b.Fatal(err)
		}
		defer pub.Close()
		if err := pub.Confirm(false); err != nil {
			b.Fatal(err)
		}
		benchPublish(b, DefaultMaxBatch, func(ctx context.Context, events []event.Event) (sink.Ack, error) {
			confirms := make([]*amqp091.DeferredConfirmation, len(events))
			for i := range events {
				dc, err := pub.PublishWithDeferredConfirmWithContext(ctx, "", q, false, false, amqp.Publishing(&events[i]))
				if err != nil {
					return nil, err
				}
				confirms[i] = dc
			}
			return func(ctx context.Context) error {
				for _, dc := range confirms {
					if ok, err := dc.WaitContext(ctx); err != nil || !ok {
						return fmt.Errorf("confirm: %v, %w", ok, err)
					}
				}
				return nil
			}, nil
		})
	})

	natsBatch := nats.SinkConfig{}.DefaultMaxBatch()
	// natsStream connects to NATS and creates a fresh stream, deleted when b ends; the client
	// lets a window of batches await acknowledgement.
	natsStream := func(b *testing.B) (url, subject string, js jetstream.JetStream) {
		url = testenv.NATS(b)
		nc, err := natsgo.Connect(url)
		if err != nil {
			b.Fatalf("connect to NATS: %v", err)
		}
		b.Cleanup(nc.Close)
		js, err = jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(publishWindow*natsBatch))
		if err != nil {
			b.Fatal(err)
		}
		name := fmt.Sprintf("RELAYBENCH%d", time.Now().UnixNano())
		subject = strings.ToLower(name)
		if _, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
			Name: name, Subjects: []string{subject + ".>"}, MaxBytes: 512 << 20}); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { _ = js.DeleteStream(context.Background(), name) })
		return url, subject, js
	}
	natsSink := func(b *testing.B) sink.Sink {
		url, subject, _ := natsStream(b)
		s, err := nats.NewSink(nats.SinkConfig{URL: url, Subject: subject + ".{twinId}"}.WithWindow(Window(natsBatch)), discard)
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	b.Run("nats", func(b *testing.B) { benchRelay(b, natsSink(b), natsBatch) })
	b.Run("nats-sink", func(b *testing.B) { benchSend(b, natsBatch, natsSink(b).Send) })
	b.Run("nats-direct", func(b *testing.B) {
		_, subject, js := natsStream(b)
		benchPublish(b, natsBatch, func(ctx context.Context, events []event.Event) (sink.Ack, error) {
			futures := make([]jetstream.PubAckFuture, len(events))
			for i := range events {
				e := &events[i]
				f, err := js.PublishMsgAsync(nats.Message(subject+"."+e.Subject, e), jetstream.WithMsgID(e.ID))
				if err != nil {
					return nil, err
				}
				futures[i] = f
			}
			return func(ctx context.Context) error {
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
			}, nil
		})
	})
}

// benchEventIDs returns the id prefix of one benchmark run's events, fresh for each run, so
// that destinations dropping duplicate ids (JetStream) store every event.
func benchEventIDs() string { return "bench-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" }

// benchSend delivers b.N events of 1 KB through send in batches of the given size, each
// acknowledged before the next, and reports events/s.
func benchSend(b *testing.B, batch int, send func(ctx context.Context, events []event.Event) error) {
	events := sinktest.BenchmarkEvents(batch, 1024)
	ctx := b.Context()
	prefix := benchEventIDs()
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

// benchPublish delivers b.N events of 1 KB through publish in batches of the given size,
// pipelined as the relay pipelines a sink.Publisher: up to publishWindow published batches
// await acknowledgement, the acknowledgements are awaited in publish order, and the last ones
// before the timer stops. It reports events/s. Each batch in flight has events of its own,
// left untouched until its acknowledgement returned.
func benchPublish(b *testing.B, batch int, publish func(ctx context.Context, events []event.Event) (sink.Ack, error)) {
	var slots [publishWindow][]event.Event
	for i := range slots {
		slots[i] = sinktest.BenchmarkEvents(batch, 1024)
	}
	// acks[n%publishWindow] is batch n's acknowledgement, awaited before slot n%publishWindow
	// carries batch n+publishWindow.
	var acks [publishWindow]sink.Ack
	ctx := b.Context()
	prefix := benchEventIDs()
	await := func(n int) {
		if err := acks[n%publishWindow](ctx); err != nil {
			b.Fatalf("batch %d: %v", n, err)
		}
		acks[n%publishWindow] = nil
	}
	b.SetBytes(1024)
	b.ResetTimer()
	published := 0
	for sent := 0; sent < b.N; published++ {
		if published >= publishWindow {
			await(published - publishWindow)
		}
		events := slots[published%publishWindow][:min(batch, b.N-sent)]
		for i := range events {
			events[i].ID = prefix + strconv.Itoa(sent+i)
		}
		ack, err := publish(ctx, events)
		if err != nil {
			b.Fatalf("publish batch %d: %v", published, err)
		}
		acks[published%publishWindow] = ack
		sent += len(events)
	}
	for n := max(published-publishWindow, 0); n < published; n++ {
		await(n)
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
