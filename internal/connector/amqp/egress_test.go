package amqp

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/ingress/ingresstest"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
)

// TestPolicyChecksEveryConnection points sinks and sources of both protocols at a broker on
// loopback, by address and by name, under a policy that denies loopback: no connection is
// made, and each reports the policy's refusal.
func TestPolicyChecksEveryConnection(t *testing.T) {
	l := sinktest.NewListener(t)
	p := sinktest.DenyLoopback(t)
	for _, host := range []string{l.Addr(), "localhost:" + l.Port()} {
		for _, scheme := range []string{"amqp", "amqps"} {
			u := scheme + "://guest:guest@" + host + "/"
			for _, cfg := range []SinkConfig{
				{URL: u, RoutingKey: "q"},
				{URL: u, Protocol: Protocol10, Address: "/queues/q"},
			} {
				s, err := NewSink(cfg.WithPolicy(p), slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatal(err)
				}
				ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
				err = s.Send(ctx, sinktest.Events("denied", 1))
				cancel()
				s.Close()
				if !errors.Is(err, netpolicy.ErrDenied) {
					t.Errorf("Send to %s over %s = %v, want ErrDenied", u, cfg.protocol(), err)
				}
			}
			for _, cfg := range []SourceConfig{
				{URL: u, Queue: "q"},
				{URL: u, Protocol: Protocol10, Address: "/queues/q"},
			} {
				src, err := NewSource(cfg.WithPolicy(p), "denied", slog.New(slog.DiscardHandler))
				if err != nil {
					t.Fatal(err)
				}
				r := ingresstest.Go(t, src, nil)
				r.WaitError(t, netpolicy.ErrDenied)
				r.Stop(t)
			}
		}
	}
	if n := l.Accepted(); n != 0 {
		t.Fatalf("the broker's listener accepted %d connections", n)
	}
	// Without the policy the same sink reaches the listener: the refusals above are the
	// policy's.
	s, err := NewSink(SinkConfig{URL: "amqp://" + l.Addr(), RoutingKey: "q"}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Second)
	defer cancel()
	_ = s.Send(ctx, sinktest.Events("allowed", 1))
	l.WaitAccepted(t)
}

func TestFilesOutsideTheAllowedDirectories(t *testing.T) {
	p, err := netpolicy.New(netpolicy.Config{FileDirs: []string{t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	tls := sink.TLS{CAFile: filepath.Join(t.TempDir(), "ca.pem")}
	for _, cfg := range []SinkConfig{
		{URL: "amqps://h", RoutingKey: "q", TLS: tls},
		{URL: "amqps://h", Protocol: Protocol10, Address: "a", TLS: tls},
	} {
		if _, err := NewSink(cfg.WithPolicy(p), slog.New(slog.DiscardHandler)); !errors.Is(err, netpolicy.ErrDenied) {
			t.Errorf("NewSink(%+v) = %v, want ErrDenied", cfg, err)
		}
	}
	for _, cfg := range []SourceConfig{
		{URL: "amqps://h", Queue: "q", TLS: tls},
		{URL: "amqps://h", Protocol: Protocol10, Address: "a", TLS: tls},
	} {
		if _, err := NewSource(cfg.WithPolicy(p), "files", slog.New(slog.DiscardHandler)); !errors.Is(err, netpolicy.ErrDenied) {
			t.Errorf("NewSource(%+v) = %v, want ErrDenied", cfg, err)
		}
	}
	// AMQP 0-9-1 URIs can name TLS files in their query; they are refused.
	err = SourceConfig{URL: "amqps://h/?cacertfile=/etc/x.pem&keyfile=/k&heartbeat=5", Queue: "q"}.Validate()
	if err == nil || !strings.Contains(err.Error(), "cacertfile") || !strings.Contains(err.Error(), "keyfile") || strings.Contains(err.Error(), "heartbeat") {
		t.Errorf("Validate of a URL naming files = %v", err)
	}
	if err := (SinkConfig{URL: "amqp://h/?certfile=/c", RoutingKey: "q"}).Validate(); err == nil {
		t.Error("Validate accepted a URL naming a file")
	}
	if r := (SinkConfig{URL: "amqps://u:p@h/vh", RoutingKey: "q", TLS: tls}).Reach(); len(r.Addrs) != 1 || r.Addrs[0].Value != "h:5671" || len(r.Files) != 1 {
		t.Errorf("Reach = %+v", r)
	}
	if r := (SourceConfig{URL: "amqp://h", Queue: "q"}).Reach(); len(r.Addrs) != 1 || r.Addrs[0].Value != "h:5672" {
		t.Errorf("Reach = %+v", r)
	}
}

func TestRedactedURL(t *testing.T) {
	if r := (SinkConfig{URL: "amqps://u:p@h/vh?auth_mechanism=plain"}).Redacted(); r.URL != "amqps://u:xxxxx@h/vh?xxxxx" {
		t.Errorf("Redacted = %+v", r)
	}
	if r := (SourceConfig{URL: "amqp://u:p@h"}).Redacted(); r.URL != "amqp://u:xxxxx@h" {
		t.Errorf("Redacted = %+v", r)
	}
}
