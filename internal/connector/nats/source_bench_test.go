package nats

import (
	"fmt"
	"testing"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinflow/twinflow/internal/ingress/ingresstest"
)

// benchPublish stores n benchmark messages on stream name, each with a Nats-Msg-Id, spread
// over 100 device subjects.
func benchPublish(b *testing.B, js jetstream.JetStream, name string, n int) {
	futures := make([]jetstream.PubAckFuture, 0, 1024)
	wait := func() {
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				b.Fatal(err)
			}
		}
		futures = futures[:0]
	}
	for i := range n {
		m := &nats.Msg{Subject: fmt.Sprintf("%s.device-%d", name, i%100), Data: ingresstest.BenchBody(i), Header: nats.Header{}}
		m.Header.Set(jetstream.MsgIDHeader, fmt.Sprint(i))
		f, err := js.PublishMsgAsync(m)
		if err != nil {
			b.Fatal(err)
		}
		if futures = append(futures, f); len(futures) == cap(futures) {
			wait()
		}
	}
	wait()
}

// BenchmarkSource measures the messages per second the source hands over from a stream
// holding them, acknowledging each as soon as it is handed over, against the same client
// consuming the same durable pull consumer directly: Messages with the same pull batch, Ack
// per message.
func BenchmarkSource(b *testing.B) {
	_, js := connect(b)
	b.Run("source", func(b *testing.B) {
		name := benchStream(b, js)
		benchPublish(b, js, name, b.N)
		src := newSource(b, SourceConfig{URL: "nats://" + server, Stream: name}, name)
		b.ResetTimer()
		ingresstest.Consume(b, src, b.N)
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
	b.Run("direct", func(b *testing.B) {
		name := benchStream(b, js)
		benchPublish(b, js, name, b.N)
		b.ResetTimer()
		nc, err := nats.Connect("nats://" + server)
		if err != nil {
			b.Fatal(err)
		}
		defer nc.Close()
		djs, err := jetstream.New(nc)
		if err != nil {
			b.Fatal(err)
		}
		cfg := SourceConfig{Stream: name}.consumerConfig(DurableName(name))
		cons, err := djs.CreateOrUpdateConsumer(b.Context(), name, cfg)
		if err != nil {
			b.Fatal(err)
		}
		msgs, err := cons.Messages(jetstream.PullMaxMessages(min(pullBatch, cfg.MaxAckPending)))
		if err != nil {
			b.Fatal(err)
		}
		for range b.N {
			m, err := msgs.Next()
			if err != nil {
				b.Fatal(err)
			}
			if _, err := m.Metadata(); err != nil {
				b.Fatal(err)
			}
			if err := m.Ack(); err != nil {
				b.Fatal(err)
			}
		}
		msgs.Drain()
		if err := nc.Flush(); err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
	})
}
