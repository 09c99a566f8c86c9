package kafka

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/twinflow/twinflow/internal/ingress/ingresstest"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
)

// TestPolicyChecksEveryConnection points a sink and a source at brokers on loopback, by
// address and by name, under a policy that denies loopback: no connection is made, and the
// clients report the policy's refusal.
func TestPolicyChecksEveryConnection(t *testing.T) {
	l := sinktest.NewListener(t)
	p := sinktest.DenyLoopback(t)
	for _, broker := range []string{l.Addr(), "localhost:" + l.Port()} {
		cfg := SinkConfig{Brokers: []string{broker}, Topic: topic}.WithPolicy(p)
		if err := cfg.WithPolicy(nil).Reach(); len(err.Addrs) != 1 || err.Addrs[0].Value != broker {
			t.Fatalf("Reach = %+v", err)
		}
		// A client of the sink's connection options reports the refusal of its dial.
		opts, err := cfg.connection().options(slog.New(slog.DiscardHandler), "kafka endpoint")
		if err != nil {
			t.Fatal(err)
		}
		cl, err := kgo.NewClient(opts...)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		if err := cl.Ping(ctx); !errors.Is(err, netpolicy.ErrDenied) {
			t.Errorf("Ping %s = %v, want ErrDenied", broker, err)
		}
		cancel()
		cl.Close()

		s := newSink(t, cfg)
		ctx, cancel = context.WithTimeout(t.Context(), time.Second)
		if err := s.Send(ctx, sinktest.Events("denied", 1)); err == nil {
			t.Errorf("Send to %s succeeded", broker)
		}
		cancel()
		s.Close()

		src, err := NewSource(SourceConfig{Brokers: []string{broker}, Topics: []string{topic}}.WithPolicy(p), "denied", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		r := ingresstest.Go(t, src, nil)
		r.WaitError(t, netpolicy.ErrDenied)
		r.Stop(t)
	}
	if n := l.Accepted(); n != 0 {
		t.Fatalf("the broker's listener accepted %d connections", n)
	}
	// Without the policy the same sink connects: the check above is the policy's.
	cl, err := kgo.NewClient(kgo.SeedBrokers(l.Addr()))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_ = cl.Ping(ctx)
	l.WaitAccepted(t)
}

func TestTLSFilesOutsideTheAllowedDirectories(t *testing.T) {
	p, err := netpolicy.New(netpolicy.Config{FileDirs: []string{t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	tls := SinkConfig{Brokers: []string{"b:9093"}, Topic: topic}
	tls.TLS.CAFile = "/etc/ssl/certs/ca-certificates.crt"
	if _, err := NewSink(tls.WithPolicy(p), slog.New(slog.DiscardHandler)); !errors.Is(err, netpolicy.ErrDenied) {
		t.Errorf("NewSink = %v, want ErrDenied", err)
	}
	src := SourceConfig{Brokers: []string{"b:9093"}, Topics: []string{topic}, TLS: tls.TLS}
	if _, err := NewSource(src.WithPolicy(p), "tls", slog.New(slog.DiscardHandler)); !errors.Is(err, netpolicy.ErrDenied) {
		t.Errorf("NewSource = %v, want ErrDenied", err)
	}
	if f := src.Reach().Files; len(f) != 1 || f[0].Field != "tls.caFile" {
		t.Errorf("Reach().Files = %+v", f)
	}
}
