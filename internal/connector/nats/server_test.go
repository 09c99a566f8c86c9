package nats

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
	"github.com/twinflow/twinflow/internal/testenv"
)

// privateServer runs a nats-server of the test's own with JetStream stored in dir, on
// addr, with the extra command-line arguments, until stop is called. The program is a
// prerequisite (see testenv.Command).
func privateServer(t *testing.T, addr, dir string, args ...string) (stop func()) {
	t.Helper()
	host, port, _ := net.SplitHostPort(addr)
	cmd := exec.Command(testenv.Command(t, "nats-server"), append([]string{"-a", host, "-p", port, "-js", "-sd", dir}, args...)...)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start nats-server: %v", err)
	}
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}
	t.Cleanup(stop)
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return stop
		}
		if time.Now().After(deadline) {
			t.Fatalf("nats-server does not listen on %s: %v", addr, err)
		}
	}
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestAuthentication checks that user and password, and token, reach the server: the right
// ones deliver, a wrong one does not.
func TestAuthentication(t *testing.T) {
	tests := []struct {
		name      string
		args      []string
		good, bad SinkConfig
	}{
		{"user", []string{"--user", "tf", "--pass", "s3cret"}, SinkConfig{User: "tf", Password: "s3cret"}, SinkConfig{User: "tf", Password: "wrong"}},
		{"token", []string{"--auth", "t0ken"}, SinkConfig{Token: "t0ken"}, SinkConfig{Token: "wrong"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			addr := freeAddr(t)
			privateServer(t, addr, t.TempDir(), tt.args...)
			opts := []nats.Option{nats.UserInfo(tt.good.User, tt.good.Password)}
			if tt.good.Token != "" {
				opts = []nats.Option{nats.Token(tt.good.Token)}
			}
			nc, err := nats.Connect("nats://"+addr, opts...)
			if err != nil {
				t.Fatal(err)
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := js.CreateStream(t.Context(), jetstream.StreamConfig{Name: "auth", Subjects: []string{"auth.>"}}); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				cfg  SinkConfig
				good bool
			}{{tt.good, true}, {tt.bad, false}} {
				c.cfg.URL, c.cfg.Subject = "nats://"+addr, "auth.{twinId}"
				s := newSink(t, c.cfg)
				ctx, cancel := context.WithTimeout(t.Context(), 3*time.Second)
				err := s.Send(ctx, sinktest.Events("auth", 2))
				cancel()
				s.Close()
				if (err == nil) != c.good {
					t.Errorf("Send with %+v = %v, want success %v", c.cfg.Redacted(), err, c.good)
				}
			}
		})
	}
}

// TestServerRestart creates the sink while the server is down, then kills the server
// between batches and starts it again on the same port and store: the same sink delivers
// every batch, and the stream holds them in order.
func TestServerRestart(t *testing.T) {
	testenv.Command(t, "nats-server") // before the first Send, which expects no server
	addr := freeAddr(t)
	dir := t.TempDir()

	s := newSink(t, SinkConfig{URL: "nats://" + addr, Subject: "restart.{twinId}"})
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	err := s.Send(ctx, sinktest.Events("down", 1))
	cancel()
	if err == nil || sink.IsPermanent(err) {
		t.Fatalf("Send before the server started = %v, want a retryable error", err)
	}

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
	var want []string
	for round := range 3 {
		events := sinktest.Events("round"+strconv.Itoa(round), 20)
		deadline := time.Now().Add(20 * time.Second)
		for {
			ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
			err := s.Send(ctx, events)
			cancel()
			if err == nil {
				break
			}
			if sink.IsPermanent(err) || time.Now().After(deadline) {
				t.Fatalf("round %d: %v", round, err)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, e := range events {
			want = append(want, e.ID)
		}
		if round < 2 {
			stop()
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			err := s.Send(ctx, sinktest.Events("while-down", 1))
			cancel()
			if err == nil || sink.IsPermanent(err) {
				t.Fatalf("Send while the server is down = %v, want a retryable error", err)
			}
			stop = privateServer(t, addr, dir)
		}
	}

	ctx, cancel = context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	c, err := js.OrderedConsumer(ctx, "restart", jetstream.OrderedConsumerConfig{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for len(got) < len(want) {
		batch, err := c.Fetch(100, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			n++
			if id := m.Headers().Get("ce-id"); !strings.HasPrefix(id, "while-down") {
				got = append(got, id)
			}
		}
		if n == 0 && ctx.Err() != nil {
			break
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("stream holds\n%v\nwant\n%v", got, want)
	}
}
