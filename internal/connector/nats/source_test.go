package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/ingress/ingresstest"
	"github.com/twinflow/twinflow/internal/sink"
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

// publish stores msgs on subject prefix.<device> of js's stream, with Nats-Msg-Id and headers.
func publish(t testing.TB, js jetstream.JetStream, prefix string, msgs []ingresstest.Outgoing) {
	t.Helper()
	for _, o := range msgs {
		m := &nats.Msg{Subject: prefix + "." + o.Device, Data: o.Body, Header: nats.Header{}}
		for k, v := range o.Headers {
			m.Header.Set(k, v)
		}
		var opts []jetstream.PublishOpt
		if o.ID != "" {
			opts = append(opts, jetstream.WithMsgID(o.ID))
		}
		if _, err := js.PublishMsg(t.Context(), m, opts...); err != nil {
			t.Fatalf("publish: %v", err)
		}
	}
}

func TestSourceContract(t *testing.T) {
	_, js := connect(t)
	var mu sync.Mutex
	streams := map[testing.TB]string{}
	// streamOf returns the stream of test t, created on first use.
	streamOf := func(t *testing.T) string {
		mu.Lock()
		defer mu.Unlock()
		if s, ok := streams[t]; ok {
			return s
		}
		s := stream(t, js)
		streams[t] = s
		return s
	}
	ingresstest.Run(t, ingresstest.Broker{
		NewSource: func(t *testing.T) ingress.Source {
			s := streamOf(t)
			return newSource(t, SourceConfig{URL: "nats://" + server, Stream: s, Subjects: []string{s + ".>"}}, s)
		},
		Publish: func(t *testing.T, msgs []ingresstest.Outgoing) { publish(t, js, streamOf(t), msgs) },
		Durable: true,
		Headers: true,
		IDs:     true,
	})
}

// TestSourceNakRedelivers checks that a message settled with an error comes back while the
// source runs, after ingress.RedeliveryDelay, and that the others are not delivered again.
func TestSourceNakRedelivers(t *testing.T) {
	_, js := connect(t)
	name := stream(t, js)
	var failedAt time.Time
	r := ingresstest.Start(t, newSource(t, SourceConfig{URL: "nats://" + server, Stream: name}, name), func(m ingress.Message, i int) error {
		if i == 1 {
			failedAt = time.Now()
			return errors.New("store unavailable")
		}
		return nil
	})
	publish(t, js, name, []ingresstest.Outgoing{{Device: "d", ID: "a", Body: []byte("a")}, {Device: "d", ID: "b", Body: []byte("b")}, {Device: "d", ID: "c", Body: []byte("c")}})
	got := r.WaitFor(t, 4)
	if after := time.Since(failedAt); after < ingress.RedeliveryDelay {
		t.Errorf("redelivered %v after the failure, want at least %v", after, ingress.RedeliveryDelay)
	}
	var ids []string
	for _, m := range got {
		ids = append(ids, m.ID)
	}
	if strings.Join(ids, ",") != "a,b,c,b" {
		t.Errorf("received %v, want a,b,c,b", ids)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(r.Received()); n != 4 {
		t.Errorf("received %d messages, want 4: an acknowledged one came again", n)
	}
	r.Stop(t)
}

// TestSourceLag checks that Lag reports the messages not delivered yet: with one message
// allowed unacknowledged and held, the other four wait.
func TestSourceLag(t *testing.T) {
	_, js := connect(t)
	name := stream(t, js)
	publish(t, js, name, []ingresstest.Outgoing{{Device: "d", Body: []byte("1")}, {Device: "d", Body: []byte("2")}, {Device: "d", Body: []byte("3")}, {Device: "d", Body: []byte("4")}, {Device: "d", Body: []byte("5")}})
	src := newSource(t, SourceConfig{URL: "nats://" + server, Stream: name, MaxAckPending: 1}, name)
	if _, ok := src.Lag(); ok {
		t.Error("Lag known before the source ran")
	}
	r := ingresstest.Start(t, src, func(ingress.Message, int) error { return ingresstest.ErrHold })
	r.WaitFor(t, 1)
	if n, ok := src.Lag(); !ok || n != 4 {
		t.Errorf("Lag = %d, %v; want 4, true", n, ok)
	}
	r.Settle(t, 0, nil)
	r.WaitFor(t, 2)
	if n, ok := src.Lag(); !ok || n != 3 {
		t.Errorf("Lag = %d, %v; want 3, true", n, ok)
	}
	r.Stop(t)
}

// TestSourceDurableName checks the consumer a source creates: named after the source unless
// named, filtering and bounding as configured.
func TestSourceDurableName(t *testing.T) {
	_, js := connect(t)
	name := stream(t, js)
	r := ingresstest.Start(t, newSource(t, SourceConfig{URL: "nats://" + server, Stream: name, Subjects: []string{name + ".a.>"},
		AckWait: 0, MaxAckPending: 7, Deliver: DeliverNew}, "room.sensors"), nil)
	r.Stop(t)
	c, err := js.Consumer(t.Context(), name, "twinflow-room_sensors")
	if err != nil {
		t.Fatalf("consumer of source room.sensors: %v", err)
	}
	cfg := c.CachedInfo().Config
	if cfg.FilterSubject != name+".a.>" || cfg.MaxAckPending != 7 || cfg.AckWait != DefaultAckWait ||
		cfg.DeliverPolicy != jetstream.DeliverNewPolicy || cfg.AckPolicy != jetstream.AckExplicitPolicy {
		t.Errorf("consumer config %+v", cfg)
	}
}

// TestSourceFails checks the failures retrying cannot fix: the source reports Failed and Run
// returns the error.
func TestSourceFails(t *testing.T) {
	testenv.NATS(t)
	r := ingresstest.Go(t, newSource(t, SourceConfig{URL: "nats://" + server, Stream: "no_such_stream_" + fmt.Sprint(time.Now().UnixNano())}, "s"), nil)
	if err := r.Wait(t); !errors.Is(err, jetstream.ErrStreamNotFound) {
		t.Errorf("Run on a missing stream = %v, want stream not found", err)
	}
	if s := r.LastState(); s != ingress.Failed {
		t.Errorf("last state %q, want failed", s)
	}

	addr := freeAddr(t)
	privateServer(t, addr, t.TempDir(), "--user", "tf", "--pass", "s3cret")
	r = ingresstest.Go(t, newSource(t, SourceConfig{URL: "nats://" + addr, Stream: "s", User: "tf", Password: "wrong"}, "s"), nil)
	if err := r.Wait(t); !errors.Is(err, nats.ErrAuthorization) || strings.Contains(err.Error(), "wrong") {
		t.Errorf("Run with a wrong password = %v, want an authorization error without the password", err)
	}
	if s := r.LastState(); s != ingress.Failed {
		t.Errorf("last state %q, want failed", s)
	}
}

// TestSourceServerRestart starts the source while the server is down, then kills the server
// while it consumes and starts it again on the same storage: the source reports Reconnecting
// and Running, and delivers every message, the unacknowledged ones again.
func TestSourceServerRestart(t *testing.T) {
	testenv.Command(t, "nats-server")
	addr, dir := freeAddr(t), t.TempDir()
	// A message delivered before the server stopped comes again after the ack wait, if the
	// server wrote its delivery before it was killed.
	const ackWait = sink.Duration(2 * time.Second)
	var mu sync.Mutex
	hold := true
	r := ingresstest.Go(t, newSource(t, SourceConfig{URL: "nats://" + addr, Stream: "restart", AckWait: ackWait}, "restart"), func(m ingress.Message, i int) error {
		mu.Lock()
		defer mu.Unlock()
		if hold {
			return ingresstest.ErrHold
		}
		return nil
	})
	r.WaitState(t, ingress.Reconnecting, 0)

	stop := privateServer(t, addr, dir)
	nc, err := nats.Connect("nats://"+addr, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	js, err := jetstream.New(nc)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "restart", Subjects: []string{"restart.>"}}); err != nil {
		t.Fatal(err)
	}
	running := r.WaitState(t, ingress.Running, 0)
	publish(t, js, "restart", []ingresstest.Outgoing{{Device: "d", ID: "1", Body: []byte("1")}, {Device: "d", ID: "2", Body: []byte("2")}})
	r.WaitFor(t, 2)
	r.Settle(t, 0, nil)

	stop()
	reconnecting := r.WaitState(t, ingress.Reconnecting, running+1)
	mu.Lock()
	hold = false
	mu.Unlock()
	privateServer(t, addr, dir)
	r.WaitState(t, ingress.Running, reconnecting+1)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	for {
		if _, err := js.Stream(ctx, "restart"); err == nil {
			break
		} else if ctx.Err() != nil {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	publish(t, js, "restart", []ingresstest.Outgoing{{Device: "d", ID: "3", Body: []byte("3")}})
	// Message 2, held when the server stopped, comes again, and 3 arrives. (1 may come again too: a killed server can lose the last
	// acknowledgements it had not written yet.)
	var ids []string
	deadline := time.Now().Add(time.Duration(ackWait) + 10*time.Second)
	for !strings.Contains(strings.Join(ids, ","), "3") || strings.Count(strings.Join(ids, ","), "2") < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("received %v", ids)
		}
		time.Sleep(50 * time.Millisecond)
		ids = ids[:0]
		for _, m := range r.Received() {
			ids = append(ids, m.ID)
		}
	}
	r.Stop(t)
}

func TestSourceValidate(t *testing.T) {
	tests := []struct {
		cfg  SourceConfig
		want []string
	}{
		{SourceConfig{URL: "nats://h:4222", Stream: "s"}, nil},
		{SourceConfig{URL: "tls://a:1,nats://b:2", Stream: "s", Subjects: []string{"a.*", "b.>"}, Durable: "d-1", Deliver: DeliverNew,
			AckWait: 1, MaxAckPending: 10, Token: "t"}, nil},
		{SourceConfig{}, []string{"url: required", "stream: required"}},
		{SourceConfig{URL: "http://u:secret@h", Stream: "a.b", Subjects: []string{"", "a..b"}, Durable: "x.y", Deliver: "last",
			AckWait: -1, MaxAckPending: -1, Token: "t", User: "u"},
			[]string{"url:", "stream:", "subjects[0]:", "subjects[1]:", "durable:", "deliver:", "ackWait:", "maxAckPending:", "token:"}},
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
	r := SourceConfig{URL: "nats://h", Stream: "s", Password: "p", Token: "t"}.Redacted()
	if r.Password == "p" || r.Token == "t" {
		t.Errorf("Redacted = %+v", r)
	}
	if got := DurableName("room 1.a*b>c/d"); got != "twinflow-room_1_a_b_c_d" {
		t.Errorf("DurableName = %q", got)
	}
}
