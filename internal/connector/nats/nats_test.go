package nats

import (
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/event/cloudevents"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
	"github.com/twinflow/twinflow/internal/testenv"
)

// server is the NATS JetStream server running on this machine, a prerequisite checked by
// testenv.NATS.
const server = testenv.NATSAddr

var streamSeq atomic.Int64

// stream creates a fresh stream capturing "<name>.>" and returns its name.
func stream(t testing.TB, js jetstream.JetStream) string {
	name := fmt.Sprintf("sinktest_%d_%d", time.Now().UnixNano(), streamSeq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: name, Subjects: []string{name + ".>"}, Storage: jetstream.MemoryStorage}); err != nil {
		t.Fatalf("create stream: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = js.DeleteStream(ctx, name)
	})
	return name
}

// connect connects to the server; a server that is not running skips the test, or fails it
// under CI (see testenv.Missing).
func connect(t testing.TB) (*nats.Conn, jetstream.JetStream) {
	t.Helper()
	nc, err := nats.Connect(testenv.NATS(t))
	if err != nil {
		t.Fatalf("connect to the NATS server on %s: %v", server, err)
	}
	t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	return nc, js
}

// receiver reads a stream from its start with an ordered consumer.
type receiver struct {
	msgs    jetstream.MessagesContext
	subject chan string
}

func newReceiver(t *testing.T, js jetstream.JetStream, name string) *receiver {
	c, err := js.OrderedConsumer(t.Context(), name, jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	msgs, err := c.Messages()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(msgs.Stop)
	return &receiver{msgs: msgs, subject: make(chan string, 10000)}
}

func (r *receiver) Receive(ctx context.Context, n int) ([]event.Event, error) {
	out := make([]event.Event, 0, n)
	for len(out) < n {
		type result struct {
			m   jetstream.Msg
			err error
		}
		ch := make(chan result, 1)
		go func() { m, err := r.msgs.Next(); ch <- result{m, err} }()
		var res result
		select {
		case res = <-ch:
		case <-ctx.Done():
			return out, ctx.Err()
		}
		if res.err != nil {
			return out, res.err
		}
		h := res.m.Headers()
		if h.Get(jetstream.MsgIDHeader) != h.Get("ce-id") {
			return out, fmt.Errorf("Nats-Msg-Id %q differs from ce-id %q", h.Get(jetstream.MsgIDHeader), h.Get("ce-id"))
		}
		e, err := cloudevents.FromAttributes(func(name string) string { return h.Get("ce-" + name) }, h.Get("content-type"), res.m.Data())
		if err != nil {
			return out, err
		}
		r.subject <- res.m.Subject()
		out = append(out, e)
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

func TestContract(t *testing.T) {
	_, js := connect(t)
	sinktest.Run(t, sinktest.Harness{
		New: func(t *testing.T) (sink.Sink, sinktest.Receiver) {
			name := stream(t, js)
			return newSink(t, SinkConfig{URL: "nats://" + server, Subject: name + ".{type}.{twinId}", Stream: name}), newReceiver(t, js, name)
		},
		Proxied: func(t *testing.T, proxy func(string) string) (sink.Sink, sinktest.Receiver) {
			name := stream(t, js)
			return newSink(t, SinkConfig{URL: "nats://" + proxy(server), Subject: name + ".{twinId}"}), newReceiver(t, js, name)
		},
		Reject: func(t *testing.T) sink.Sink {
			name := stream(t, js)
			// The subject belongs to a stream other than the one the endpoint expects.
			return newSink(t, SinkConfig{URL: "nats://" + server, Subject: name + ".x", Stream: name + "_other"})
		},
		// More than two bounds of publishes awaiting acknowledgement (defaultPending), so
		// that Send and Publish hand the large batch over in pieces.
		LargeBatch: 2*defaultPending + 10,
	})
}

func TestSubjectsAndDeduplication(t *testing.T) {
	_, js := connect(t)
	name := stream(t, js)
	s := newSink(t, SinkConfig{URL: "nats://" + server, Subject: name + ".{type}.{twinId}"})
	defer s.Close()
	events := sinktest.Events("dedup", 4)
	for range 2 {
		if err := s.Send(t.Context(), events); err != nil {
			t.Fatal(err)
		}
	}
	info, err := js.Stream(t.Context(), name)
	if err != nil {
		t.Fatal(err)
	}
	if got := info.CachedInfo().State.Msgs; got != 4 {
		t.Errorf("stream holds %d messages after sending 4 events twice, want 4 (Nats-Msg-Id de-duplication)", got)
	}
	r := newReceiver(t, js, name)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if _, err := r.Receive(ctx, 4); err != nil {
		t.Fatal(err)
	}
	want := []string{
		name + ".Microsoft_DigitalTwins_Twin_Update.twin-0",
		name + ".Microsoft_DigitalTwins_Relationship_Create.twin-1",
		name + ".microsoft_iot_telemetry.twin-2",
		name + ".Microsoft_DigitalTwins_Twin_Delete.twin-3",
	}
	for i, w := range want {
		if got := <-r.subject; got != w {
			t.Errorf("event %d subject %q, want %q", i, got, w)
		}
	}
}

func TestEscapeToken(t *testing.T) {
	for in, want := range map[string]string{"": "_", "room1": "room1", "a.b c*d>e": "a_b_c_d_e", "ünï": "ünï"} {
		if got := escapeToken(in); got != want {
			t.Errorf("escapeToken(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		cfg  SinkConfig
		want []string
	}{
		{SinkConfig{URL: "nats://h:4222"}, nil},
		{SinkConfig{URL: "nats://a:1,nats://b:2", Subject: "x.{id}", User: "u", Password: "p"}, nil},
		{SinkConfig{}, []string{"url: required"}},
		{SinkConfig{URL: "http://h", Subject: "x.{bad}", Token: "t", User: "u"}, []string{"url:", "subject:", "token:"}},
		{SinkConfig{URL: "nats://h", Subject: "x.*"}, []string{"subject:"}},
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
	r := SinkConfig{URL: "nats://h", Password: "p", Token: "t"}.Redacted()
	if r.Password == "p" || r.Token == "t" {
		t.Errorf("Redacted = %+v", r)
	}
}
