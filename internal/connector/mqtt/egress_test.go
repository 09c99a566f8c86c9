package mqtt

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/ingress/ingresstest"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
)

// TestPolicyChecksEveryConnection points sinks and sources of both protocol versions at a
// broker on loopback, by address and by name, over TCP and WebSocket, under a policy that
// denies loopback: no connection is made, and the sources report the policy's refusal.
func TestPolicyChecksEveryConnection(t *testing.T) {
	l := sinktest.NewListener(t)
	p := sinktest.DenyLoopback(t)
	for _, host := range []string{l.Addr(), "localhost:" + l.Port()} {
		for _, version := range []int{3, 5} {
			name := host + " v" + strconv.Itoa(version)
			s, err := NewSink(SinkConfig{URL: "tcp://" + host, Version: version}.WithPolicy(p), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(t.Context(), time.Second)
			err = s.Send(ctx, sinktest.Events("denied", 1))
			cancel()
			s.Close()
			if err == nil {
				t.Errorf("Send to %s succeeded", name)
			}
			if version == 3 && !errors.Is(err, netpolicy.ErrDenied) {
				t.Errorf("Send to %s = %v, want ErrDenied", name, err) // the 5 client reconnects by itself: ctx ends first
			}
			for _, scheme := range []string{"tcp", "ws"} {
				src, err := NewSource(SourceConfig{URL: scheme + "://" + host, Topics: []string{"t/#"}, Version: version}.WithPolicy(p),
					"denied", slog.New(slog.DiscardHandler))
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
	// Without the policy the same dial reaches the listener: the refusals above are the
	// policy's.
	u, err := parseBrokerURL("tcp://"+l.Addr(), false)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := dial(t.Context(), u, nil, nil); err == nil {
		c.Close()
	}
	l.WaitAccepted(t)
}

func TestTLSFilesOutsideTheAllowedDirectories(t *testing.T) {
	p, err := netpolicy.New(netpolicy.Config{FileDirs: []string{t.TempDir()}})
	if err != nil {
		t.Fatal(err)
	}
	tls := sink.TLS{CAFile: filepath.Join(t.TempDir(), "ca.pem")}
	if _, err := NewSink(SinkConfig{URL: "ssl://h", TLS: tls}.WithPolicy(p), slog.New(slog.DiscardHandler)); !errors.Is(err, netpolicy.ErrDenied) {
		t.Errorf("NewSink = %v, want ErrDenied", err)
	}
	src := SourceConfig{URL: "wss://h/mqtt", Topics: []string{"t"}, TLS: tls}
	if _, err := NewSource(src.WithPolicy(p), "tls", slog.New(slog.DiscardHandler)); !errors.Is(err, netpolicy.ErrDenied) {
		t.Errorf("NewSource = %v, want ErrDenied", err)
	}
	if r := src.Reach(); len(r.Addrs) != 1 || r.Addrs[0].Value != "h:443" || len(r.Files) != 1 {
		t.Errorf("Reach = %+v", r)
	}
	if r := (SinkConfig{URL: "mqtt://h"}).Reach(); len(r.Addrs) != 1 || r.Addrs[0].Value != "h:1883" {
		t.Errorf("Reach = %+v", r)
	}
}

func TestRedactedURL(t *testing.T) {
	r := SourceConfig{URL: "wss://u:url-pass@h/mqtt?sas=sig-secret", Password: "p"}.Redacted()
	if r.URL != "wss://u:xxxxx@h/mqtt?xxxxx" || r.Password != "***" {
		t.Errorf("Redacted = %+v", r)
	}
	if r := (SinkConfig{URL: "tcp://h:1883", Password: "p"}).Redacted(); r.URL != "tcp://h:1883" || r.Password != "***" {
		t.Errorf("Redacted = %+v", r)
	}
}
