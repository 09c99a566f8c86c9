package amqp

import (
	"context"
	"testing"

	amqp10 "github.com/Azure/go-amqp"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
	"github.com/twinflow/twinflow/internal/testenv"
)

// benchQueue declares a durable queue that keeps its newest 50,000 messages, so a long run
// does not fill the broker's memory.
func benchQueue(b *testing.B, ch *amqp091.Channel) string {
	q := unique("bench-q")
	if _, err := ch.QueueDeclare(q, true, false, false, false, amqp091.Table{"x-max-length": int32(50000)}); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = ch.QueueDelete(q, false, false, false) })
	return q
}

// BenchmarkDelivery091 compares the sink with amqp091-go publishing the same persistent
// messages directly with deferred publisher confirms, to a durable queue on RabbitMQ.
func BenchmarkDelivery091(b *testing.B) {
	ch := channel(b)
	b.Run("sink", func(b *testing.B) {
		q := benchQueue(b, ch)
		s := newSink(b, SinkConfig{URL: brokerURL(broker), RoutingKey: q})
		defer s.Close()
		sinktest.Bench(b, s.Send)
	})
	b.Run("latency", func(b *testing.B) {
		q := benchQueue(b, ch)
		s := newSink(b, SinkConfig{URL: brokerURL(broker), RoutingKey: q})
		defer s.Close()
		sinktest.BenchLatency(b, s.Send)
	})
	b.Run("direct", func(b *testing.B) {
		q := benchQueue(b, ch)
		pub := channel(b)
		if err := pub.Confirm(false); err != nil {
			b.Fatal(err)
		}
		confirms := make([]*amqp091.DeferredConfirmation, 0, sinktest.BenchmarkBatch)
		sinktest.Bench(b, func(ctx context.Context, events []event.Event) error {
			confirms = confirms[:0]
			for i := range events {
				dc, err := pub.PublishWithDeferredConfirmWithContext(ctx, "", q, false, false, Publishing(&events[i]))
				if err != nil {
					return err
				}
				confirms = append(confirms, dc)
			}
			for _, dc := range confirms {
				if _, err := dc.WaitContext(ctx); err != nil {
					return err
				}
			}
			return nil
		})
	})
}

// BenchmarkDelivery10 compares the sink with go-amqp sending the same messages directly over
// AMQP 1.0 (all transfers of a batch, then every settlement) to a durable queue on RabbitMQ.
func BenchmarkDelivery10(b *testing.B) {
	testenv.RabbitMQ10(b)
	ch := channel(b)
	b.Run("sink", func(b *testing.B) {
		q := benchQueue(b, ch)
		s := newSink(b, SinkConfig{URL: brokerURL(broker), Protocol: Protocol10, Address: "/amq/queue/" + q})
		defer s.Close()
		sinktest.Bench(b, s.Send)
	})
	b.Run("direct", func(b *testing.B) {
		q := benchQueue(b, ch)
		conn, err := amqp10.Dial(b.Context(), brokerURL(broker), nil)
		if err != nil {
			b.Fatal(err)
		}
		defer conn.Close()
		session, err := conn.NewSession(b.Context(), nil)
		if err != nil {
			b.Fatal(err)
		}
		sender, err := session.NewSender(b.Context(), "/amq/queue/"+q, nil)
		if err != nil {
			b.Fatal(err)
		}
		receipts := make([]amqp10.SendReceipt, 0, sinktest.BenchmarkBatch)
		sinktest.Bench(b, func(ctx context.Context, events []event.Event) error {
			receipts = receipts[:0]
			for i := range events {
				r, err := sender.SendWithReceipt(ctx, Message(&events[i]), nil)
				if err != nil {
					return err
				}
				receipts = append(receipts, r)
			}
			for _, r := range receipts {
				if _, err := r.Wait(ctx); err != nil {
					return err
				}
			}
			return nil
		})
	})
}
