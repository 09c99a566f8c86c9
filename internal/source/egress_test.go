package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/twinflow/twinflow/internal/connector/amqp"
	"github.com/twinflow/twinflow/internal/connector/kafka"
	"github.com/twinflow/twinflow/internal/connector/mqtt"
	"github.com/twinflow/twinflow/internal/connector/nats"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
	"github.com/twinflow/twinflow/internal/store"
)

// allKinds are the source types of the server (server.SourceKinds, which this package
// cannot import).
var allKinds = map[string]Kind{
	HTTPType: HTTPKind(),
	"mqtt":   KindOf(mqtt.NewSource),
	"nats":   KindOf(nats.NewSource),
	"kafka":  KindOf(kafka.NewSource),
	"amqp":   KindOf(amqp.NewSource),
}

// resolver answers names from a table; others do not resolve.
type resolver map[string][]netip.Addr

func (r resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ips, ok := r[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// sourceDefinitions returns a definition of every network source kind whose broker is
// host:port (an IP address, IPv6 in brackets, or a name), with a TLS CA file caFile if not
// empty.
func sourceDefinitions(host, port, caFile string) map[string]string {
	tls, scheme := "", ""
	if caFile != "" {
		tls, scheme = `,"tls":{"caFile":"`+caFile+`"}`, "s"
	}
	return map[string]string{
		"mqtt":   `{"sourceType":"mqtt","url":"` + map[string]string{"": "tcp", "s": "ssl"}[scheme] + `://` + host + `:` + port + `","topics":["t/#"]` + tls + `}`,
		"nats":   `{"sourceType":"nats","url":"` + map[string]string{"": "nats", "s": "tls"}[scheme] + `://` + host + `:` + port + `","stream":"S"` + tls + `}`,
		"kafka":  `{"sourceType":"kafka","brokers":["` + host + `:` + port + `"],"topics":["t"]` + tls + `}`,
		"amqp":   `{"sourceType":"amqp","url":"amqp` + scheme + `://u:p@` + host + `:` + port + `/","queue":"q"` + tls + `}`,
		"amqp10": `{"sourceType":"amqp","protocol":"1.0","url":"amqp` + scheme + `://u:p@` + host + `:` + port + `/","address":"q"` + tls + `}`,
	}
}

// TestPutChecksTheEgressPolicy creates and updates a source of every kind with brokers the
// policy denies: metadata and link-local addresses, names of metadata services, a name
// resolving to a metadata address, TLS files outside the allowed directories. Each is
// refused, create and update alike, and an update that is refused leaves the stored
// definition as it was.
func TestPutChecksTheEgressPolicy(t *testing.T) {
	allowedDir := t.TempDir()
	caOutside, _ := sinktest.ServerTLS(t)
	pem, err := os.ReadFile(caOutside)
	if err != nil {
		t.Fatal(err)
	}
	caInside := filepath.Join(allowedDir, "ca.pem")
	if err := os.WriteFile(caInside, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	p, err := netpolicy.New(netpolicy.Config{
		FileDirs: []string{allowedDir},
		Resolver: resolver{"evil.example": {netip.MustParseAddr("169.254.169.254")}},
	})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvWith(t, Config{Policy: p, StartWait: 50 * time.Millisecond}, allKinds, discard)
	ctx := context.Background()
	closed := sinktest.NewListener(t) // an allowed broker that closes every connection
	denied := []struct {
		name, host, ca, want string
	}{
		{"metadata", "169.254.169.254", "", "cloud metadata address"},
		{"link-local", "169.254.7.7", "", "link-local"},
		{"ipv6 link-local", "[fe80::1]", "", "link-local"},
		{"alibaba metadata", "100.100.100.200", "", "cloud metadata address"},
		{"metadata name", "metadata.google.internal", "", "cloud metadata service"},
		{"resolves to metadata", "evil.example", "", "resolves to 169.254.169.254"},
		{"file outside", "127.0.0.1", caOutside, "tls.caFile"},
	}
	for kind, ok := range sourceDefinitions("127.0.0.1", closed.Port(), caInside) {
		t.Run(kind, func(t *testing.T) {
			if _, err := e.reg.Put(ctx, kind, json.RawMessage(ok)); err != nil {
				t.Fatalf("create with an allowed broker: %v", err)
			}
			before, err := e.reg.Get(ctx, kind)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range denied {
				def := sourceDefinitions(d.host, closed.Port(), d.ca)[kind]
				for _, name := range []string{kind, kind + "-new"} { // update, create
					_, err := e.reg.Put(ctx, name, json.RawMessage(def))
					if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), d.want) {
						t.Errorf("%s: Put %s = %v, want ErrInvalid naming %q", d.name, name, err, d.want)
					}
				}
			}
			after, err := e.reg.Get(ctx, kind)
			if err != nil || !bytes.Equal(after.Definition.Raw, before.Definition.Raw) {
				t.Errorf("a refused update changed the definition: %s", after.Definition.Raw)
			}
			if _, err := e.reg.Get(ctx, kind+"-new"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a refused create stored the source: %v", err)
			}
		})
	}
}

// TestConnectionsAreCheckedWhenMade makes a source of every kind whose broker's name does
// not resolve when it is put (so it passes), and resolves to loopback, which the policy
// denies, when the source connects: no connection is made, and status says why.
func TestConnectionsAreCheckedWhenMade(t *testing.T) {
	l := sinktest.NewListener(t)
	e := newEnvWith(t, Config{Policy: sinktest.DenyLoopback(t), StartWait: 50 * time.Millisecond}, allKinds, discard)
	ctx := context.Background()
	for kind, def := range sourceDefinitions("localhost", l.Port(), "") {
		e.putSource(kind, def)
		var st Status
		waitFor(t, kind+" reports the refusal", func() bool {
			st, _ = e.reg.Status(ctx, kind)
			return strings.Contains(st.LastError, "is not allowed by the egress policy")
		})
		if !strings.Contains(st.LastError, "loopback") {
			t.Errorf("%s: last error %q", kind, st.LastError)
		}
	}
	if n := l.Accepted(); n != 0 {
		t.Fatalf("the broker's listener accepted %d connections", n)
	}
}

// TestSecretsRoundTrip reads sources back with their secrets blanked and puts them again as
// read, with other changes: the stored secrets are kept. Sent blanked for another broker,
// they are refused.
func TestSecretsRoundTrip(t *testing.T) {
	l := sinktest.NewListener(t)
	e := newEnvWith(t, Config{StartWait: 50 * time.Millisecond}, allKinds, discard)
	ctx := context.Background()
	defs := map[string]string{
		"mqtt":  `{"sourceType":"mqtt","url":"ws://u:mqtt-url-pass@` + l.Addr() + `/mqtt?sas=mqtt-query-1","topics":["t"],"username":"u","password":"mqtt-pass-1"}`,
		"nats":  `{"sourceType":"nats","url":"nats://nats-url-token@` + l.Addr() + `","stream":"S","user":"u","password":"nats-pass-1"}`,
		"kafka": `{"sourceType":"kafka","brokers":["` + l.Addr() + `"],"topics":["t"],"sasl":{"mechanism":"PLAIN","user":"u","password":"kafka-pass-1"}}`,
		"amqp":  `{"sourceType":"amqp","url":"amqp://u:amqp-pass-1@` + l.Addr() + `/","queue":"q"}`,
	}
	secrets := []string{"mqtt-url-pass", "mqtt-query-1", "mqtt-pass-1", "nats-url-token", "nats-pass-1", "kafka-pass-1", "amqp-pass-1"}
	for kind, def := range defs {
		e.putSource(kind, def)
		src, err := e.reg.Get(ctx, kind)
		if err != nil {
			t.Fatal(err)
		}
		shown := src.Definition.Redacted()
		b, _ := json.Marshal(shown)
		for _, s := range secrets {
			if strings.Contains(string(b), s) {
				t.Fatalf("%s: GET shows %s: %s", kind, s, b)
			}
		}
		shown["maxMessageBytes"] = 1000
		b, _ = json.Marshal(shown)
		if created, err := e.reg.Put(ctx, kind, b); err != nil || created {
			t.Fatalf("%s: Put back = %v, %v", kind, created, err)
		}
		src, err = e.reg.Get(ctx, kind)
		if err != nil {
			t.Fatal(err)
		}
		var stored, sent map[string]any
		_ = json.Unmarshal(src.Definition.Raw, &stored)
		_ = json.Unmarshal([]byte(def), &sent)
		sent["maxMessageBytes"] = float64(1000)
		if got, want := mustJSON(stored), mustJSON(sent); got != want {
			t.Errorf("%s: stored after the round trip\n%s\nwant\n%s", kind, got, want)
		}
		// Another broker with the blanked secrets is refused.
		other, _ := json.Marshal(shown)
		other = bytes.ReplaceAll(other, []byte(l.Addr()), []byte("broker.example:1"))
		if _, err := e.reg.Put(ctx, kind, other); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "the broker stays the same") {
			t.Errorf("%s: Put with blanked secrets for another broker = %v", kind, err)
		}
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestSecretsStayOutOfStatusAndLogs runs a source of every kind, with secrets in every
// setting that holds one, against brokers that fail, and checks that neither status nor the
// logs show them, nor what answered at the broker's address.
func TestSecretsStayOutOfStatusAndLogs(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e := newEnvWith(t, Config{StartWait: 50 * time.Millisecond}, allKinds, logger)
	ctx := context.Background()
	l := sinktest.NewListener(t) // closes every connection at once
	down := l.Addr()
	// A Kafka cluster that takes the login and has no such topic: its answer is shown.
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "other"), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "u", "kafka-pass-1"))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	defs := map[string]string{
		"mqtt":      `{"sourceType":"mqtt","url":"tcp://u:mqtt-url-pass@` + down + `","topics":["t"],"username":"u","password":"mqtt-pass-1"}`,
		"mqttws":    `{"sourceType":"mqtt","url":"ws://` + down + `/mqtt?sas=mqtt-query-1","topics":["t"],"version":3,"username":"u","password":"mqtt-pass-1"}`,
		"nats":      `{"sourceType":"nats","url":"nats://` + down + `","stream":"S","user":"u","password":"nats-pass-1"}`,
		"natstoken": `{"sourceType":"nats","url":"nats://` + down + `","stream":"S","token":"nats-token-1"}`,
		"kafka":     `{"sourceType":"kafka","brokers":["` + kc.ListenAddrs()[0] + `"],"topics":["t"],"sasl":{"mechanism":"PLAIN","user":"u","password":"kafka-pass-1"}}`,
		"amqp":      `{"sourceType":"amqp","url":"amqp://u:amqp-pass-1@` + down + `/","queue":"q"}`,
		"amqp10":    `{"sourceType":"amqp","protocol":"1.0","url":"amqp://u:amqp-pass-1@` + down + `/","address":"q"}`,
	}
	secrets := []string{"mqtt-url-pass", "mqtt-query-1", "mqtt-pass-1", "nats-pass-1", "nats-token-1", "kafka-pass-1", "amqp-pass-1"}
	for name, def := range defs {
		e.putSource(name, def)
	}
	for name := range defs {
		var st Status
		waitFor(t, name+" fails", func() bool {
			st, _ = e.reg.Status(ctx, name)
			return st.LastError != ""
		})
		switch name {
		case "kafka":
			if !strings.Contains(st.LastError, `topic "t" does not exist`) {
				t.Errorf("%s: last error %q, want Kafka's answer", name, st.LastError)
			}
		default:
			if st.LastError != redact.Unreachable {
				t.Errorf("%s: last error %q, want %q", name, st.LastError, redact.Unreachable)
			}
		}
		src, err := e.reg.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		shown, _ := json.Marshal(src.Definition.Redacted())
		for _, s := range secrets {
			if strings.Contains(st.LastError, s) || strings.Contains(string(shown), s) {
				t.Errorf("%s: status or definition shows %s: %q, %s", name, s, st.LastError, shown)
			}
		}
	}
	e.stop()
	if !strings.Contains(logs.String(), "reconnecting") {
		t.Errorf("the logs lack the failures: %s", logs.String())
	}
	for _, s := range secrets {
		if strings.Contains(logs.String(), s) {
			t.Errorf("the logs hold %s:\n%s", s, logs.String())
		}
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
