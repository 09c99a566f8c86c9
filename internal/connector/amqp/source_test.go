package amqp

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	amqp10 "github.com/Azure/go-amqp"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/ingress/ingresstest"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
	"github.com/twinflow/twinflow/internal/testenv"
)

func newSource(t testing.TB, cfg SourceConfig, name string) *Source {
	t.Helper()
	s, err := NewSource(cfg, name, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// publish091 publishes msgs to queue q through the default exchange, with message ids,
// headers, a timestamp and a content type.
func publish091(t testing.TB, ch *amqp091.Channel, q string, msgs []ingresstest.Outgoing) {
	t.Helper()
	for _, o := range msgs {
		h := amqp091.Table{}
		for k, v := range o.Headers {
			h[k] = v
		}
		if err := ch.PublishWithContext(t.Context(), "", q, false, false, amqp091.Publishing{
			MessageId: o.ID, Headers: h, Body: o.Body, ContentType: "application/json", Timestamp: time.Now(),
		}); err != nil {
			t.Fatal(err)
		}
	}
	// A round trip on the channel: the broker holds what was published before it.
	if _, err := ch.QueueDeclarePassive(q, false, false, false, false, nil); err != nil {
		t.Fatal(err)
	}
}

// perTest returns the value make gives for each test, made on the test's first call.
func perTest[T any](make func(t *testing.T) T) func(t *testing.T) T {
	var mu sync.Mutex
	values := map[*testing.T]T{}
	return func(t *testing.T) T {
		mu.Lock()
		defer mu.Unlock()
		v, ok := values[t]
		if !ok {
			v = make(t)
			values[t] = v
		}
		return v
	}
}

func TestSourceContract091(t *testing.T) {
	ch := channel(t)
	queueOf := perTest(func(t *testing.T) string { q, _ := queue(t, ch, false); return q })
	ingresstest.Run(t, ingresstest.Broker{
		NewSource: func(t *testing.T) ingress.Source {
			return newSource(t, SourceConfig{URL: brokerURL(broker), Queue: queueOf(t)}, "contract")
		},
		Publish: func(t *testing.T, msgs []ingresstest.Outgoing) { publish091(t, ch, queueOf(t), msgs) },
		Durable: true,
		Headers: true,
		IDs:     true,
	})
}

// sender10 opens an AMQP 1.0 sender to addr.
func sender10(t testing.TB, addr string) *amqp10.Sender {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	conn, err := amqp10.Dial(ctx, brokerURL(broker), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	s, err := conn.NewSession(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	snd, err := s.NewSender(ctx, addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	return snd
}

func publish10(t testing.TB, snd *amqp10.Sender, msgs []ingresstest.Outgoing) {
	t.Helper()
	for _, o := range msgs {
		props := map[string]any{}
		for k, v := range o.Headers {
			props[k] = v
		}
		now := time.Now()
		m := &amqp10.Message{Data: [][]byte{o.Body}, Properties: &amqp10.MessageProperties{MessageID: o.ID, CreationTime: &now},
			ApplicationProperties: props, Header: &amqp10.MessageHeader{Durable: true}}
		if err := snd.Send(t.Context(), m, nil); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSourceContract10(t *testing.T) {
	testenv.RabbitMQ10(t)
	ch := channel(t)
	queueOf := perTest(func(t *testing.T) string { q, _ := queue(t, ch, false); return q })
	senderOf := perTest(func(t *testing.T) *amqp10.Sender { return sender10(t, "/amq/queue/"+queueOf(t)) })
	ingresstest.Run(t, ingresstest.Broker{
		NewSource: func(t *testing.T) ingress.Source {
			return newSource(t, SourceConfig{URL: brokerURL(broker), Protocol: Protocol10, Address: "/amq/queue/" + queueOf(t)}, "contract")
		},
		Publish: func(t *testing.T, msgs []ingresstest.Outgoing) { publish10(t, senderOf(t), msgs) },
		Durable: true,
		Headers: true,
		IDs:     true,
	})
}

// TestSourceMessage091 checks the fields of a delivery's message, through an exchange the
// source binds its queue to, declaring the queue.
func TestSourceMessage091(t *testing.T) {
	ch := channel(t)
	x := unique("source-x")
	if err := ch.ExchangeDeclare(x, "topic", false, true, false, false, nil); err != nil {
		t.Fatal(err)
	}
	q := unique("source-q")
	t.Cleanup(func() { _, _ = ch.QueueDelete(q, false, false, false) })
	r := ingresstest.Start(t, newSource(t, SourceConfig{URL: brokerURL(broker), Queue: q, Exchange: x, BindingKeys: []string{"devices.#", "rooms.*"}}, "fields"), nil)
	at := time.Unix(1700000000, 0)
	for _, key := range []string{"devices.t1.telemetry", "other", "rooms.r1"} {
		if err := ch.PublishWithContext(t.Context(), x, key, false, false, amqp091.Publishing{
			MessageId: key, ContentType: "application/json", Timestamp: at, Body: []byte(`{"t":21}`),
			Headers: amqp091.Table{"s": "v", "n": int32(7), "b": true, "raw": []byte("x")},
		}); err != nil {
			t.Fatal(err)
		}
	}
	got := r.WaitFor(t, 2)
	m := got[0]
	want := map[string]string{"s": "v", "n": "7", "b": "true", "raw": "x", "content-type": "application/json"}
	if m.ID != "devices.t1.telemetry" || m.Topic != "devices.t1.telemetry" || m.Order != q || !m.Time.Equal(at) ||
		string(m.Body) != `{"t":21}` || !mapsEqual(m.Headers, want) {
		t.Errorf("message %+v, want id and topic devices.t1.telemetry, order %s, time %v, headers %v", m, q, at, want)
	}
	if got[1].ID != "rooms.r1" {
		t.Errorf("second message %q, want rooms.r1 (other is not bound)", got[1].ID)
	}
	r.Stop(t)
	if _, err := ch.QueueDeclarePassive(q, true, false, false, false, nil); err != nil {
		t.Errorf("the declared queue is gone after the source stopped: %v", err)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || w != v {
			return false
		}
	}
	return true
}

// TestSourceRequeue cuts the connection of a source that holds messages: the broker
// requeues them, the source reports Reconnecting, connects again and receives them again, in
// order; a message acknowledged before the cut does not come again.
func TestSourceRequeue(t *testing.T) {
	for _, proto := range []string{Protocol091, Protocol10} {
		t.Run(proto, func(t *testing.T) {
			ch := channel(t)
			q, _ := queue(t, ch, false)
			proxy, err := sinktest.NewProxy(broker)
			if err != nil {
				t.Fatal(err)
			}
			defer proxy.Close()
			cfg := SourceConfig{URL: brokerURL(proxy.Addr()), Queue: q}
			if proto == Protocol10 {
				testenv.RabbitMQ10(t)
				cfg = SourceConfig{URL: brokerURL(proxy.Addr()), Protocol: Protocol10, Address: "/amq/queue/" + q}
			}
			var mu sync.Mutex
			hold := true
			r := ingresstest.Start(t, newSource(t, cfg, "requeue"), func(m ingress.Message, i int) error {
				mu.Lock()
				defer mu.Unlock()
				if i == 0 || !hold {
					return nil
				}
				return ingresstest.ErrHold
			})
			publish091(t, ch, q, []ingresstest.Outgoing{{ID: "1", Body: []byte("1")}, {ID: "2", Body: []byte("2")}, {ID: "3", Body: []byte("3")}})
			r.WaitFor(t, 3)
			// The acknowledgement of 1, written when it was settled, passes the proxy before
			// the cut.
			time.Sleep(100 * time.Millisecond)
			mu.Lock()
			hold = false
			mu.Unlock()
			proxy.Cut()
			from := r.WaitState(t, ingress.Reconnecting, 0)
			proxy.Restore()
			r.WaitState(t, ingress.Running, from+1)
			got := r.WaitFor(t, 5)
			if ids := ids(got); !slices.Equal(ids, []string{"1", "2", "3", "2", "3"}) {
				t.Errorf("received %v, want 1 2 3 and, after the cut, 2 3 again", ids)
			}
			r.Stop(t)
			waitQueue(t, ch, q, 0)
		})
	}
}

// waitQueue waits until queue q, which no source consumes, holds n messages.
func waitQueue(t testing.TB, ch *amqp091.Channel, q string, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		qi, err := ch.QueueDeclarePassive(q, false, false, false, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		if qi.Messages == n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("queue %s holds %d messages, want %d", q, qi.Messages, n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func ids(ms []ingress.Message) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

// TestSourceNackRedelivers settles a message with an error: after ingress.RedeliveryDelay it
// is requeued and delivered again.
func TestSourceNackRedelivers(t *testing.T) {
	for _, proto := range []string{Protocol091, Protocol10} {
		t.Run(proto, func(t *testing.T) {
			ch := channel(t)
			q, _ := queue(t, ch, false)
			cfg := SourceConfig{URL: brokerURL(broker), Queue: q}
			if proto == Protocol10 {
				testenv.RabbitMQ10(t)
				cfg = SourceConfig{URL: brokerURL(broker), Protocol: Protocol10, Address: "/amq/queue/" + q}
			}
			var failedAt time.Time
			r := ingresstest.Start(t, newSource(t, cfg, "nack"), func(m ingress.Message, i int) error {
				if i == 0 {
					failedAt = time.Now()
					return errors.New("store unavailable")
				}
				return nil
			})
			publish091(t, ch, q, []ingresstest.Outgoing{{ID: "a", Body: []byte("a")}, {ID: "b", Body: []byte("b")}})
			got := r.WaitFor(t, 3)
			if d := time.Since(failedAt); d < ingress.RedeliveryDelay {
				t.Errorf("delivered again %v after the failure, want at least %v", d, ingress.RedeliveryDelay)
			}
			if ids := ids(got); !slices.Equal(ids, []string{"a", "b", "a"}) {
				t.Errorf("received %v, want a b a", ids)
			}
			r.Stop(t)
		})
	}
}

// TestSourceFails checks the failures retrying cannot fix: a queue or address that does not
// exist, a refused login, an exchange that does not exist.
func TestSourceFails(t *testing.T) {
	testenv.RabbitMQ(t)
	missing := unique("missing")
	tests := []struct {
		name string
		cfg  SourceConfig
		want string
	}{
		{"queue", SourceConfig{URL: brokerURL(broker), Queue: missing}, "does not exist"},
		{"exchange", SourceConfig{URL: brokerURL(broker), Queue: unique("q"), Exchange: missing}, "NOT_FOUND"},
		{"login", SourceConfig{URL: "amqp://guest:wrong@" + broker + "/", Queue: "q"}, "403"},
		{"vhost", SourceConfig{URL: "amqp://guest:guest@" + broker + "/" + missing, Queue: "q"}, ""},
		{"address 1.0", SourceConfig{URL: brokerURL(broker), Protocol: Protocol10, Address: "/amq/queue/" + missing}, "not-found"},
		{"login 1.0", SourceConfig{URL: "amqp://guest:wrong@" + broker + "/", Protocol: Protocol10, Address: "/amq/queue/q"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel() // RabbitMQ answers a refused login after a pause
			if tt.cfg.Protocol == Protocol10 {
				testenv.RabbitMQ10(t)
			}
			if tt.cfg.Exchange != "" {
				t.Cleanup(func() { _, _ = channel(t).QueueDelete(tt.cfg.Queue, false, false, false) })
			}
			r := ingresstest.Go(t, newSource(t, tt.cfg, "fails"), nil)
			err := r.Wait(t)
			t.Log(err)
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "wrong") {
				t.Errorf("Run = %v, want an error mentioning %q, without the password", err, tt.want)
			}
			if s := r.LastState(); s != ingress.Failed {
				t.Errorf("last state %q, want failed", s)
			}
		})
	}
}

func TestSourceValidate(t *testing.T) {
	tests := []struct {
		cfg  SourceConfig
		want []string
	}{
		{SourceConfig{URL: "amqp://h", Queue: "q"}, nil},
		{SourceConfig{URL: "amqps://u:p@h:5671/v", Queue: "q", Exchange: "x", BindingKeys: []string{"a.#"}, Prefetch: 10}, nil},
		{SourceConfig{URL: "amqps://p:k@ns.servicebus.windows.net", Protocol: Protocol10, Address: "topic/Subscriptions/s", Credit: 50}, nil},
		{SourceConfig{}, []string{"url: required", "queue: required"}},
		{SourceConfig{URL: "http://u:secret@h", Queue: "q", BindingKeys: []string{"k"}, Address: "a", Prefetch: -1},
			[]string{"url:", "bindingKeys:", "address, credit:", "prefetch:"}},
		{SourceConfig{URL: "amqp://h", Protocol: Protocol10, Queue: "q", Credit: -1}, []string{"address: required", "queue, exchange", "credit:"}},
		{SourceConfig{URL: "amqp://h", Protocol: "0-10"}, []string{"protocol:"}},
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
		if err != nil && strings.Contains(err.Error(), "secret") {
			t.Errorf("Validate shows the password: %v", err)
		}
	}
	if r := (SourceConfig{URL: "amqp://user:secret@h/"}).Redacted(); strings.Contains(r.URL, "secret") {
		t.Errorf("Redacted URL = %q", r.URL)
	}
}

func TestPropertyString(t *testing.T) {
	at := time.Date(2024, 5, 1, 12, 0, 0, 5, time.UTC)
	for _, tt := range []struct {
		v    any
		want string
	}{
		{"s", "s"}, {[]byte("b"), "b"}, {int32(7), "7"}, {int64(-1), "-1"}, {3.5, "3.5"}, {true, "true"},
		{at, "2024-05-01T12:00:00.000000005Z"}, {map[string]any{"a": 1}, `{"a":1}`}, {nil, "null"},
		{amqp10.UUID{1}, "01000000-0000-0000-0000-000000000000"},
	} {
		if got := propertyString(tt.v); got != tt.want {
			t.Errorf("propertyString(%#v) = %q, want %q", tt.v, got, tt.want)
		}
	}
	if got := idString(uint64(42)); got != "42" {
		t.Errorf("idString(42) = %q", got)
	}
}
