package amqp

import (
	"context"
	"fmt"
	"testing"
	"time"

	amqp10 "github.com/Azure/go-amqp"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/twinflow/twinflow/internal/ingress/ingresstest"
	"github.com/twinflow/twinflow/internal/testenv"
)

// benchFill declares a fresh queue and publishes n benchmark messages to it, each with a
// message id, and waits until the broker holds them all.
func benchFill(b *testing.B, ch *amqp091.Channel, n int) string {
	q := unique("bench-src")
	if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _, _ = ch.QueueDelete(q, false, false, false) })
	for i := range n {
		if err := ch.PublishWithContext(b.Context(), "", q, false, false, amqp091.Publishing{
			MessageId: fmt.Sprint(i), ContentType: "application/json", Body: ingresstest.BenchBody(i),
		}); err != nil {
			b.Fatal(err)
		}
	}
	waitQueue(b, ch, q, n)
	return q
}

// BenchmarkSource091 measures the messages per second the source hands over from a
// RabbitMQ queue holding them, acknowledging each as soon as it is handed over, against
// amqp091-go consuming the same queue directly with the same prefetch and an ack per message.
func BenchmarkSource091(b *testing.B) {
	ch := channel(b)
	b.Run("source", func(b *testing.B) {
		q := benchFill(b, ch, b.N)
		src := newSource(b, SourceConfig{URL: brokerURL(broker), Queue: q}, "bench")
		b.ResetTimer()
		ingresstest.Consume(b, src, b.N)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("direct", func(b *testing.B) {
		q := benchFill(b, ch, b.N)
		b.ResetTimer()
		conn, err := amqp091.Dial(brokerURL(broker))
		if err != nil {
			b.Fatal(err)
		}
		c, err := conn.Channel()
		if err != nil {
			b.Fatal(err)
		}
		if err := c.Qos(DefaultPrefetch, 0, false); err != nil {
			b.Fatal(err)
		}
		deliveries, err := c.Consume(q, "direct", false, false, false, false, nil)
		if err != nil {
			b.Fatal(err)
		}
		for range b.N {
			d := <-deliveries
			if err := d.Ack(false); err != nil {
				b.Fatal(err)
			}
		}
		_ = c.Cancel("direct", false)
		_ = conn.Close()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}

// BenchmarkSource10 is BenchmarkSource091 over AMQP 1.0 (RabbitMQ's plugin): the source
// against go-amqp receiving with the same credit, granted the same way (a batch once the last
// is used up), and accepting each message.
func BenchmarkSource10(b *testing.B) {
	testenv.RabbitMQ10(b)
	ch := channel(b)
	b.Run("source", func(b *testing.B) {
		q := benchFill(b, ch, b.N)
		src := newSource(b, SourceConfig{URL: brokerURL(broker), Protocol: Protocol10, Address: "/amq/queue/" + q}, "bench")
		b.ResetTimer()
		ingresstest.Consume(b, src, b.N)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("direct", func(b *testing.B) {
		q := benchFill(b, ch, b.N)
		b.ResetTimer()
		ctx, cancel := context.WithTimeout(b.Context(), time.Minute)
		defer cancel()
		conn, err := amqp10.Dial(ctx, brokerURL(broker), nil)
		if err != nil {
			b.Fatal(err)
		}
		s, err := conn.NewSession(ctx, nil)
		if err != nil {
			b.Fatal(err)
		}
		r, err := s.NewReceiver(ctx, "/amq/queue/"+q, &amqp10.ReceiverOptions{Credit: -1,
			RequestedSenderSettleMode: amqp10.SenderSettleModeUnsettled.Ptr()})
		if err != nil {
			b.Fatal(err)
		}
		if err := r.IssueCredit(DefaultPrefetch); err != nil {
			b.Fatal(err)
		}
		for i := range b.N {
			if i > 0 && i%DefaultPrefetch == 0 {
				if err := r.IssueCredit(DefaultPrefetch); err != nil {
					b.Fatal(err)
				}
			}
			m, err := r.Receive(ctx, nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := r.AcceptMessage(ctx, m); err != nil {
				b.Fatal(err)
			}
		}
		_ = conn.Close()
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}
