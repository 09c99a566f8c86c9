package nats

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/twinflow/twinflow/internal/ingress/ingresstest"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
)

// TestPolicyChecksEveryConnection points a sink and a source at a server on loopback, by
// address and by name, under a policy that denies loopback: no connection is made, and the
// clients report the policy's refusal.
func TestPolicyChecksEveryConnection(t *testing.T) {
	l := sinktest.NewListener(t)
	p := sinktest.DenyLoopback(t)
	for _, u := range []string{"nats://" + l.Addr(), "nats://localhost:" + l.Port()} {
		cfg := SinkConfig{URL: u}.WithPolicy(p)
		opts, err := cfg.connection().options()
		if err != nil {
			t.Fatal(err)
		}
		if _, err := nats.Connect(u, opts...); !errors.Is(err, netpolicy.ErrDenied) {
			t.Errorf("connect with the sink's options to %s = %v, want ErrDenied", u, err)
		}

		s, err := NewSink(cfg, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Second)
		if err := s.Send(ctx, sinktest.Events("denied", 1)); err == nil {
			t.Errorf("Send to %s succeeded", u)
		}
		cancel()
		s.Close()

		src, err := NewSource(SourceConfig{URL: u, Stream: "S"}.WithPolicy(p), "denied", slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		r := ingresstest.Go(t, src, nil)
		r.WaitError(t, netpolicy.ErrDenied)
		r.Stop(t)
	}
	if n := l.Accepted(); n != 0 {
		t.Fatalf("the server's listener accepted %d connections", n)
	}
	// Without the policy the same options reach the listener: the refusal above is the policy's.
	opts, err := SinkConfig{URL: "nats://" + l.Addr()}.connection().options()
	if err != nil {
		t.Fatal(err)
	}
	if nc, err := nats.Connect("nats://"+l.Addr(), opts...); err == nil {
		nc.Close()
	}
	l.WaitAccepted(t)
}

func TestFilesOutsideTheAllowedDirectories(t *testing.T) {
	dir := t.TempDir()
	p, err := netpolicy.New(netpolicy.Config{FileDirs: []string{dir}})
	if err != nil {
		t.Fatal(err)
	}
	outside := filepath.Join(t.TempDir(), "user.creds")
	for _, cfg := range []SinkConfig{
		{URL: "nats://h:4222", Credentials: outside},
		{URL: "tls://h:4222", TLS: sink.TLS{CAFile: outside}},
	} {
		if _, err := NewSink(cfg.WithPolicy(p), slog.New(slog.DiscardHandler)); !errors.Is(err, netpolicy.ErrDenied) {
			t.Errorf("NewSink(%+v) = %v, want ErrDenied", cfg, err)
		}
		src := SourceConfig{URL: cfg.URL, Stream: "S", Credentials: cfg.Credentials, TLS: cfg.TLS}
		if _, err := NewSource(src.WithPolicy(p), "files", slog.New(slog.DiscardHandler)); !errors.Is(err, netpolicy.ErrDenied) {
			t.Errorf("NewSource(%+v) = %v, want ErrDenied", src, err)
		}
	}
	r := SourceConfig{URL: "nats://a, tls://b:4443,ws://c", Credentials: "x.creds", TLS: sink.TLS{CAFile: "ca.pem"}}.Reach()
	var addrs, files []string
	for _, a := range r.Addrs {
		addrs = append(addrs, a.Value)
	}
	for _, f := range r.Files {
		files = append(files, f.Field+"="+f.Value)
	}
	if strings.Join(addrs, " ") != "a:4222 b:4443 c:80" || strings.Join(files, " ") != "credentials=x.creds tls.caFile=ca.pem" {
		t.Errorf("Reach = %v %v", addrs, files)
	}
}

func TestRedactedURLs(t *testing.T) {
	c := SinkConfig{URL: "nats://user:url-pass@a:4222,nats://s3cret-token@b:4222,tls://c:4222", Password: "p", Token: "t"}
	r := c.Redacted()
	if r.URL != "nats://user:xxxxx@a:4222,nats://xxxxx@b:4222,tls://c:4222" || r.Password != "***" || r.Token != "***" {
		t.Errorf("Redacted = %+v", r)
	}
	if sr := (SourceConfig{URL: c.URL}).Redacted(); sr.URL != r.URL {
		t.Errorf("source Redacted URL = %s", sr.URL)
	}
}
