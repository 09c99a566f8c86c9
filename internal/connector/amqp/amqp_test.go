package amqp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	amqp10 "github.com/Azure/go-amqp"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
	"github.com/twinflow/twinflow/internal/testenv"
)

// broker is the RabbitMQ server running on this machine, a prerequisite checked by
// testenv.RabbitMQ, and over AMQP 1.0 (its plugin enabled) by testenv.RabbitMQ10.
const broker = testenv.RabbitMQAddr

func brokerURL(addr string) string { return "amqp://guest:guest@" + addr + "/" }

var seq atomic.Int64

func unique(prefix string) string {
	return fmt.Sprintf("%s-%d-%d", prefix, time.Now().UnixNano(), seq.Add(1))
}

// channel connects to the broker over AMQP 0-9-1 and opens a channel; a broker that is not
// running skips the test, or fails it under CI (see testenv.Missing).
func channel(t testing.TB) *amqp091.Channel {
	t.Helper()
	testenv.RabbitMQ(t)
	conn, err := amqp091.Dial(brokerURL(broker))
	if err != nil {
		t.Fatalf("connect to RabbitMQ on %s: %v", broker, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	return ch
}

// queue declares a fresh queue, bound to a fresh topic exchange with "twins.#" if exchange
// is true, and returns the names.
func queue(t testing.TB, ch *amqp091.Channel, exchange bool) (q, x string) {
	q = unique("sinktest-q")
	if _, err := ch.QueueDeclare(q, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _, _ = ch.QueueDelete(q, false, false, false) })
	if exchange {
		x = unique("sinktest-x")
		if err := ch.ExchangeDeclare(x, "topic", false, false, false, false, nil); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = ch.ExchangeDelete(x, false, false) })
		if err := ch.QueueBind(q, "twins.#", x, false, nil); err != nil {
			t.Fatal(err)
		}
	}
	return q, x
}

// receiver091 consumes a queue over AMQP 0-9-1.
type receiver091 struct {
	deliveries <-chan amqp091.Delivery
	keys       chan string
}

func newReceiver091(t testing.TB, ch *amqp091.Channel, q string) *receiver091 {
	d, err := ch.Consume(q, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &receiver091{deliveries: d, keys: make(chan string, 10000)}
}

func (r *receiver091) Receive(ctx context.Context, n int) ([]event.Event, error) {
	out := make([]event.Event, 0, n)
	for len(out) < n {
		select {
		case d := <-r.deliveries:
			if d.DeliveryMode != amqp091.Persistent {
				return out, fmt.Errorf("delivery mode %d, want persistent", d.DeliveryMode)
			}
			e, err := FromProperties(d.Headers, d.ContentType, d.Body)
			if err != nil {
				return out, err
			}
			if d.MessageId != e.ID {
				return out, fmt.Errorf("message-id %q, want the event id %q", d.MessageId, e.ID)
			}
			r.keys <- d.RoutingKey
			out = append(out, e)
		case <-ctx.Done():
			return out, ctx.Err()
		}
	}
	return out, nil
}

func newSink(t testing.TB, cfg SinkConfig) *Sink {
	s, err := NewSink(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestContract091(t *testing.T) {
	ch := channel(t)
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) (sink.Sink, sinktest.Receiver) {
			q, x := queue(t, ch, true)
			return newSink(t, SinkConfig{URL: brokerURL(broker), Exchange: x, RoutingKey: "twins.{twinId}"}), newReceiver091(t, ch, q)
		},
		Proxied: func(t *testing.T, proxy func(string) string) (sink.Sink, sinktest.Receiver) {
			q, _ := queue(t, ch, false)
			return newSink(t, SinkConfig{URL: brokerURL(proxy(broker)), RoutingKey: q}), newReceiver091(t, ch, q)
		},
		Reject: func(t *testing.T) sink.Sink {
			return newSink(t, SinkConfig{URL: brokerURL(broker), Exchange: unique("no-such-exchange"), RoutingKey: "k"})
		},
	})
}

func TestRoutingKey091(t *testing.T) {
	ch := channel(t)
	q, x := queue(t, ch, true)
	s := newSink(t, SinkConfig{URL: brokerURL(broker), Exchange: x, RoutingKey: "twins.{twinId}"})
	defer s.Close()
	if err := s.Send(t.Context(), sinktest.Events("key", 3)); err != nil {
		t.Fatal(err)
	}
	r := newReceiver091(t, ch, q)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := r.Receive(ctx, 3); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"twins.twin-0", "twins.twin-1", "twins.twin-2"} {
		if got := <-r.keys; got != want {
			t.Errorf("event %d routing key %q, want %q", i, got, want)
		}
	}
}

// receiver10 reads a queue over AMQP 1.0.
type receiver10 struct {
	r *amqp10.Receiver
}

func newReceiver10(t testing.TB, addr string) *receiver10 {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := amqp10.Dial(ctx, brokerURL(broker), nil)
	if err != nil {
		t.Fatalf("connect over AMQP 1.0 to %s: %v", broker, err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	s, err := conn.NewSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	// Credit for every event a test sends: RabbitMQ 3's AMQP 1.0 plugin sometimes stops
	// delivering when the receiver has to top up its credit.
	r, err := s.NewReceiver(ctx, addr, &amqp10.ReceiverOptions{Credit: 5000})
	if err != nil {
		t.Fatal(err)
	}
	return &receiver10{r: r}
}

func (r *receiver10) Receive(ctx context.Context, n int) ([]event.Event, error) {
	out := make([]event.Event, 0, n)
	for len(out) < n {
		m, err := r.r.Receive(ctx, nil)
		if err != nil {
			return out, err
		}
		if err := r.r.AcceptMessage(ctx, m); err != nil {
			return out, err
		}
		var ct string
		var id any
		if m.Properties != nil {
			if m.Properties.ContentType != nil {
				ct = *m.Properties.ContentType
			}
			id = m.Properties.MessageID
		}
		e, err := FromProperties(m.ApplicationProperties, ct, m.GetData())
		if err != nil {
			return out, err
		}
		if id != e.ID {
			return out, fmt.Errorf("message-id %v, want the event id %q", id, e.ID)
		}
		out = append(out, e)
	}
	return out, nil
}

func TestContract10(t *testing.T) {
	testenv.RabbitMQ10(t)
	ch := channel(t)
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) (sink.Sink, sinktest.Receiver) {
			q, _ := queue(t, ch, false)
			return newSink(t, SinkConfig{URL: brokerURL(broker), Protocol: Protocol10, Address: "/amq/queue/" + q}), newReceiver10(t, "/amq/queue/"+q)
		},
		Proxied: func(t *testing.T, proxy func(string) string) (sink.Sink, sinktest.Receiver) {
			q, _ := queue(t, ch, false)
			return newSink(t, SinkConfig{URL: brokerURL(proxy(broker)), Protocol: Protocol10, Address: "/amq/queue/" + q}), newReceiver10(t, "/amq/queue/"+q)
		},
		Reject: func(t *testing.T) sink.Sink {
			return newSink(t, SinkConfig{URL: brokerURL(broker), Protocol: Protocol10, Address: "/exchange/" + unique("no-such-exchange") + "/k"})
		},
	})
}

func TestValidate(t *testing.T) {
	tests := []struct {
		cfg  SinkConfig
		want []string
	}{
		{SinkConfig{URL: "amqp://h", RoutingKey: "q"}, nil},
		{SinkConfig{URL: "amqps://u:p@h:5671/v", Exchange: "x", RoutingKey: "twins.{type}"}, nil},
		{SinkConfig{URL: "amqp://h", Protocol: Protocol10, Address: "topic1"}, nil},
		{SinkConfig{}, []string{"url: required", "routingKey: required"}},
		{SinkConfig{URL: "http://h", RoutingKey: "{nope}", Address: "a"}, []string{"url:", "routingKey:", "address:"}},
		{SinkConfig{URL: "amqp://h", Protocol: Protocol10, Exchange: "x"}, []string{"address: required", "exchange, routingKey:"}},
		{SinkConfig{URL: "amqp://h", Protocol: "0-10"}, []string{"protocol:"}},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (err == nil) != (len(tt.want) == 0) {
			t.Errorf("Validate(%+v) = %v, want %v", tt.cfg, err, tt.want)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%+v) = %v, want it to mention %q", tt.cfg, err, w)
			}
		}
	}
	r := SinkConfig{URL: "amqp://user:secret@h/"}.Redacted()
	if strings.Contains(r.URL, "secret") || !strings.Contains(r.URL, "user") {
		t.Errorf("Redacted URL = %q", r.URL)
	}
}

// TestRefusedCredentials10 checks that a refused SASL PLAIN login is permanent and
// sink.ErrUnauthorized, so that an endpoint with a second credential switches to it.
func TestRefusedCredentials10(t *testing.T) {
	testenv.RabbitMQ10(t)
	s := newSink(t, SinkConfig{URL: "amqp://guest:wrong@" + broker + "/", Protocol: Protocol10, Address: "/amq/queue/none"})
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err := s.Send(ctx, sinktest.Events("refused", 1))
	if !sink.IsPermanent(err) || !errors.Is(err, sink.ErrUnauthorized) {
		t.Fatalf("Send with a wrong password = %v, want a permanent ErrUnauthorized", err)
	}
	if strings.Contains(err.Error(), "wrong") {
		t.Errorf("the error shows the password: %v", err)
	}
}
