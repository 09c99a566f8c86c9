package endpoint

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/twinflow/twinflow/internal/connector/amqp"
	"github.com/twinflow/twinflow/internal/connector/kafka"
	"github.com/twinflow/twinflow/internal/connector/mqtt"
	"github.com/twinflow/twinflow/internal/connector/nats"
	"github.com/twinflow/twinflow/internal/connector/webhook"
	"github.com/twinflow/twinflow/internal/eventroute"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/outbox"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
)

// allKinds are the endpoint types of the server (server.Kinds, which this package cannot
// import).
var allKinds = map[string]Kind{
	"webhook":      KindOf(webhook.NewSink, webhook.Handshake),
	"kafka":        KindOf(kafka.NewSink, nil),
	"nats":         KindOf(nats.NewSink, nil),
	"amqp":         KindOf(amqp.NewSink, nil),
	"mqtt":         KindOf(mqtt.NewSink, nil),
	EventGridType:  EventGridKind(),
	EventHubType:   EventHubKind(),
	ServiceBusType: ServiceBusKind(),
}

// resolver answers names from a table; others do not resolve.
type resolver map[string][]netip.Addr

func (r resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	if ips, ok := r[host]; ok {
		return ips, nil
	}
	return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
}

// definitions returns a definition of every kind reaching host (a host name or an IP
// address, IPv6 in brackets), with a TLS CA file caFile if not empty.
func definitions(host, caFile string) map[string]string {
	tls := ""
	if caFile != "" {
		tls = `,"tls":{"caFile":"` + caFile + `"}`
	}
	return map[string]string{
		"webhook":      `{"endpointType":"webhook","url":"https://` + host + `/hook"` + tls + `}`,
		"kafka":        `{"endpointType":"kafka","brokers":["` + host + `:9092"],"topic":"t"` + tls + `}`,
		"nats":         `{"endpointType":"nats","url":"nats://` + host + `:4222"` + tls + `}`,
		"amqp":         `{"endpointType":"amqp","url":"amqps://u:p@` + host + `/","routingKey":"q"` + tls + `}`,
		"mqtt":         `{"endpointType":"mqtt","url":"ssl://` + host + `:8883"` + tls + `}`,
		EventGridType:  `{"endpointType":"EventGrid","TopicEndpoint":"https://` + host + `/api/events","accessKey1":"k1"` + tls + `}`,
		EventHubType:   `{"endpointType":"EventHub","connectionStringPrimaryKey":"Endpoint=sb://` + host + `/;SharedAccessKeyName=s;SharedAccessKey=k;EntityPath=h"` + tls + `}`,
		ServiceBusType: `{"endpointType":"ServiceBus","primaryConnectionString":"Endpoint=sb://` + host + `/;SharedAccessKeyName=s;SharedAccessKey=k;EntityPath=t"` + tls + `}`,
	}
}

// TestPutChecksTheEgressPolicy creates and updates an endpoint of every kind with
// destinations the policy denies: metadata and link-local addresses, names of metadata
// services, a name resolving to a metadata address, TLS files outside the allowed
// directories. Each is refused, create and update alike, and an update that is refused
// leaves the stored definition as it was.
func TestPutChecksTheEgressPolicy(t *testing.T) {
	allowedDir := t.TempDir()
	caInside := filepath.Join(allowedDir, "ca.pem")
	caOutside := filepath.Join(t.TempDir(), "ca.pem")
	p, err := netpolicy.New(netpolicy.Config{
		FileDirs: []string{allowedDir},
		Resolver: resolver{
			"broker.example": {netip.MustParseAddr("203.0.113.10")},
			"evil.example":   {netip.MustParseAddr("169.254.169.254")},
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixtureOf(t, Config{Policy: p, SkipHandshake: true, MaxEndpoints: 100}, allKinds)
	ctx := context.Background()
	denied := []struct {
		name, host, ca, want string
	}{
		{"metadata", "169.254.169.254", "", "cloud metadata address"},
		{"link-local", "169.254.7.7", "", "link-local"},
		{"ipv6 link-local", "[fe80::1]", "", "link-local"},
		{"aws ipv6 metadata", "[fd00:ec2::254]", "", "cloud metadata address"},
		{"metadata name", "metadata.google.internal", "", "cloud metadata service"},
		{"resolves to metadata", "evil.example", "", "resolves to 169.254.169.254"},
		{"file outside", "broker.example", caOutside, "tls.caFile"},
	}
	for kind, ok := range definitions("broker.example", caInside) {
		t.Run(kind, func(t *testing.T) {
			if _, err := f.reg.Put(ctx, kind, json.RawMessage(ok)); err != nil {
				t.Fatalf("create with an allowed destination: %v", err)
			}
			before, err := f.reg.Get(ctx, kind)
			if err != nil {
				t.Fatal(err)
			}
			for _, d := range denied {
				def := definitions(d.host, d.ca)[kind]
				for _, name := range []string{kind, kind + "-new"} { // update, create
					_, err := f.reg.Put(ctx, name, json.RawMessage(def))
					if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), d.want) {
						t.Errorf("%s: Put %s = %v, want ErrInvalid naming %q", d.name, name, err, d.want)
					}
				}
			}
			after, err := f.reg.Get(ctx, kind)
			if err != nil || !bytes.Equal(after.Definition.Raw, before.Definition.Raw) {
				t.Errorf("a refused update changed the definition: %s", after.Definition.Raw)
			}
			if _, err := f.reg.Get(ctx, kind+"-new"); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("a refused create stored the endpoint: %v", err)
			}
		})
	}
}

// TestConnectionsAreCheckedWhenMade makes a webhook endpoint whose host name does not
// resolve when it is put (so it passes), and resolves to loopback, which the policy denies,
// when the relay connects: the connection is refused, and status says why.
func TestConnectionsAreCheckedWhenMade(t *testing.T) {
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("WebHook-Allowed-Origin", "*")
	}))
	defer srv.Close()
	_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
	f := newFixture(t, Config{Policy: sinktest.DenyLoopback(t), SkipHandshake: true})
	ctx := context.Background()
	def := `{"endpointType":"webhook","url":"http://localhost:` + port + `/hook","delivery":{"minBackoff":"10ms","maxBackoff":"20ms"}}`
	if _, err := f.reg.Put(ctx, "hook", json.RawMessage(def)); err != nil {
		t.Fatal(err)
	}
	if err := f.routes.Put(ctx, store.Route{ID: "all", EndpointName: "hook", Filter: "true"}); err != nil {
		t.Fatal(err)
	}
	f.emit(t, "a")
	var st Status
	eventually(t, "the relay fails", func() bool {
		st, _ = f.reg.Status(ctx, "hook")
		return st.LastError != ""
	})
	if !strings.Contains(st.LastError, "is not allowed by the egress policy") || !strings.Contains(st.LastError, "loopback") {
		t.Errorf("last error %q, want the policy's refusal", st.LastError)
	}
	if n := requests.Load(); n != 0 {
		t.Fatalf("the webhook got %d requests", n)
	}
}

// hanging is a webhook destination whose handshake answers once release is closed, with
// status (200 accepting it).
type hanging struct {
	srv     *httptest.Server
	release chan struct{}
	once    sync.Once
	status  atomic.Int32
}

// answer lets the handshakes be answered.
func (h *hanging) answer() { h.once.Do(func() { close(h.release) }) }

func newHanging(t *testing.T) *hanging {
	h := &hanging{release: make(chan struct{})}
	h.status.Store(http.StatusOK)
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			select {
			case <-h.release:
			case <-r.Context().Done():
				return
			}
			w.Header().Set("WebHook-Allowed-Origin", "*")
			w.WriteHeader(int(h.status.Load()))
		}
	}))
	t.Cleanup(func() {
		h.answer()
		h.srv.Close()
	})
	return h
}

// TestPutDoesNotWaitForASlowHandshake creates endpoints whose destinations take their time to
// answer the handshake: Put answers after Config.HandshakeWait with the endpoint
// provisioning, and the endpoint becomes active once the destination accepts, or failed once
// it refuses or the handshake times out.
func TestPutDoesNotWaitForASlowHandshake(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{HandshakeWait: 200 * time.Millisecond, HandshakeTimeout: 2 * time.Second, MaxEndpoints: 10})
	accepts, refuses, never := newHanging(t), newHanging(t), newHanging(t)
	refuses.status.Store(http.StatusForbidden)
	for name, h := range map[string]*hanging{"accepts": accepts, "refuses": refuses, "never": never} {
		start := time.Now()
		created, err := f.reg.Put(ctx, name, json.RawMessage(`{"endpointType":"webhook","url":"`+h.srv.URL+`"}`))
		if err != nil || !created {
			t.Fatalf("Put %s = %v, %v", name, created, err)
		}
		if d := time.Since(start); d > time.Second {
			t.Errorf("Put %s took %v", name, d)
		}
		if st, err := f.reg.Status(ctx, name); err != nil || st.State != StateProvisioning {
			t.Errorf("Status of %s = %+v, %v; want provisioning", name, st, err)
		}
	}
	// A route to an endpoint that is provisioning is accepted.
	if err := f.routes.Put(ctx, store.Route{ID: "all", EndpointName: "accepts", Filter: "true"}); err != nil {
		t.Fatal(err)
	}
	accepts.answer()
	refuses.answer()
	eventually(t, "accepts is delivering", func() bool {
		st, _ := f.reg.Status(ctx, "accepts")
		return st.State == outbox.StateDelivering
	})
	var st Status
	eventually(t, "refuses failed", func() bool {
		st, _ = f.reg.Status(ctx, "refuses")
		return st.State == StateFailed
	})
	if st.LastError != "endpoint validation failed: validate webhook "+refuses.srv.URL+": OPTIONS answered 403 Forbidden" {
		t.Errorf("last error of refuses %q", st.LastError)
	}
	eventually(t, "never failed", func() bool {
		st, _ = f.reg.Status(ctx, "never")
		return st.State == StateFailed
	})
	if st.LastError != "endpoint validation failed: "+redact.Unreachable {
		t.Errorf("last error of never %q", st.LastError)
	}
	// Putting it again validates it again; deleting it ends the handshake.
	if _, err := f.reg.Put(ctx, "never", json.RawMessage(`{"endpointType":"webhook","url":"`+never.srv.URL+`/x"}`)); err != nil {
		t.Fatal(err)
	}
	if st, _ := f.reg.Status(ctx, "never"); st.State != StateProvisioning {
		t.Errorf("state after Put again %q", st.State)
	}
	if err := f.reg.Delete(ctx, "never"); err != nil {
		t.Fatal(err)
	}
}

// TestValidationErrorsDoNotTellWhatAnswered puts webhooks whose addresses answer in other
// ways than HTTP, or not at all: each is refused with one message, whatever answered.
func TestValidationErrorsDoNotTellWhatAnswered(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t, Config{})
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	banner, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer banner.Close()
	go func() {
		for {
			c, err := banner.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write([]byte("SSH-2.0-OpenSSH_9.6 secret-banner\r\n"))
			c.Close()
		}
	}()
	plain := httptest.NewServer(http.NotFoundHandler())
	defer plain.Close()
	for name, u := range map[string]string{
		"closed port":    closed.URL,
		"ssh banner":     "http://" + banner.Addr().String(),
		"tls over plain": strings.Replace(plain.URL, "http://", "https://", 1),
	} {
		_, err := f.reg.Put(ctx, "x", json.RawMessage(`{"endpointType":"webhook","url":"`+u+`"}`))
		if !errors.Is(err, ErrValidationFailed) {
			t.Fatalf("%s: Put = %v, want ErrValidationFailed", name, err)
		}
		if want := ErrValidationFailed.Error() + ": " + redact.Unreachable; err.Error() != want {
			t.Errorf("%s: error %q, want %q", name, err, want)
		}
	}
}

// TestEndpointsAreValidatedAgainAtStart stores a webhook endpoint, then starts a registry
// whose destination refuses the handshake: the relay does not start, and status says why.
func TestEndpointsAreValidatedAgainAtStart(t *testing.T) {
	ctx := context.Background()
	var refuse atomic.Bool
	var posts atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodOptions {
			posts.Add(1)
			return
		}
		if refuse.Load() {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		w.Header().Set("WebHook-Allowed-Origin", "*")
	}))
	defer srv.Close()
	st, err := sqlite.Open(sqlite.Config{Dir: t.TempDir(), NoSync: true}, discard)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	routes, err := eventroute.New(ctx, eventroute.Config{}, st)
	if err != nil {
		t.Fatal(err)
	}
	first, err := New(Config{}, kinds, st, routes, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := first.Put(ctx, "hook", json.RawMessage(`{"endpointType":"webhook","url":"`+srv.URL+`"}`)); err != nil {
		t.Fatal(err)
	}
	if err := routes.Put(ctx, store.Route{ID: "all", EndpointName: "hook", Filter: "true"}); err != nil {
		t.Fatal(err)
	}
	refuse.Store(true)
	reg, err := New(Config{}, kinds, st, routes, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- reg.Run(runCtx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	(&fixture{st: st}).emit(t, "a")
	var status Status
	eventually(t, "the endpoint failed validation", func() bool {
		status, _ = reg.Status(ctx, "hook")
		return status.State == StateFailed
	})
	if !strings.Contains(status.LastError, "403 Forbidden") {
		t.Errorf("last error %q", status.LastError)
	}
	time.Sleep(100 * time.Millisecond)
	if n := posts.Load(); n != 0 {
		t.Errorf("the refusing destination got %d events", n)
	}
}

// TestSecretsRoundTrip reads endpoints back with their secrets blanked and puts them again
// as read, with other changes: the stored secrets are kept, and still sent. Sent blanked to
// another destination, they are refused.
func TestSecretsRoundTrip(t *testing.T) {
	ctx := context.Background()
	var mu sync.Mutex
	var got http.Header
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.Header().Set("WebHook-Allowed-Origin", "*")
			return
		}
		mu.Lock()
		got = r.Header.Clone()
		got.Set("X-Query", r.URL.RawQuery)
		mu.Unlock()
	}))
	defer srv.Close()
	f := newFixtureOf(t, Config{MaxEndpoints: 10}, allKinds)
	def := `{"endpointType":"webhook","url":"` + srv.URL + `/hook?code=query-secret-1","secret":"hmac-secret-1",
		"headers":{"Authorization":"Bearer bearer-secret-1","X-Key":"header-secret-1","X-Trace":"on"},"secretHeaders":["X-Key"]}`
	if _, err := f.reg.Put(ctx, "hook", json.RawMessage(def)); err != nil {
		t.Fatal(err)
	}
	ep, err := f.reg.Get(ctx, "hook")
	if err != nil {
		t.Fatal(err)
	}
	shown := ep.Definition.Redacted()
	b, _ := json.Marshal(shown)
	for _, secret := range []string{"query-secret-1", "hmac-secret-1", "bearer-secret-1", "header-secret-1"} {
		if strings.Contains(string(b), secret) {
			t.Fatalf("GET shows %s: %s", secret, b)
		}
	}
	shown["mode"] = "binary"
	shown["headers"].(map[string]any)["X-Trace"] = "off"
	b, _ = json.Marshal(shown)
	if created, err := f.reg.Put(ctx, "hook", b); err != nil || created {
		t.Fatalf("Put back = %v, %v", created, err)
	}
	ep, err = f.reg.Get(ctx, "hook")
	if err != nil {
		t.Fatal(err)
	}
	var stored webhook.SinkConfig
	raw := map[string]json.RawMessage{}
	_ = json.Unmarshal(ep.Definition.Raw, &raw)
	delete(raw, "endpointType")
	rest, _ := json.Marshal(raw)
	if err := json.Unmarshal(rest, &stored); err != nil {
		t.Fatal(err)
	}
	if stored.URL != srv.URL+"/hook?code=query-secret-1" || stored.Secret != "hmac-secret-1" || stored.Mode != "binary" ||
		stored.Headers["Authorization"] != "Bearer bearer-secret-1" || stored.Headers["X-Key"] != "header-secret-1" || stored.Headers["X-Trace"] != "off" {
		t.Fatalf("stored after the round trip: %+v", stored)
	}
	if err := f.routes.Put(ctx, store.Route{ID: "all", EndpointName: "hook", Filter: "true"}); err != nil {
		t.Fatal(err)
	}
	f.emit(t, "a")
	eventually(t, "the event arrives", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return got != nil
	})
	mu.Lock()
	if got.Get("Authorization") != "Bearer bearer-secret-1" || got.Get("X-Key") != "header-secret-1" || got.Get("X-Query") != "code=query-secret-1" ||
		got.Get(webhook.SignatureHeader) == "" {
		t.Errorf("request headers after the round trip: %v", got)
	}
	mu.Unlock()

	// The blanked secrets sent for another destination are refused.
	shown["url"] = strings.Replace(shown["url"].(string), "127.0.0.1", "localhost", 1)
	b, _ = json.Marshal(shown)
	if _, err := f.reg.Put(ctx, "hook", b); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "headers.Authorization, headers.X-Key, secret") {
		t.Errorf("Put with blanked secrets for another destination = %v", err)
	}

	// ADT's definitions round-trip too: a key blanked as ADT shows it is kept.
	eg := `{"properties":{"endpointType":"EventGrid","TopicEndpoint":"` + srv.URL + `/api/events","accessKey1":"grid-key-1","accessKey2":"grid-key-2"}}`
	if _, err := f.reg.Put(ctx, "grid", json.RawMessage(eg)); err != nil {
		t.Fatal(err)
	}
	ep, _ = f.reg.Get(ctx, "grid")
	b, _ = json.Marshal(map[string]any{"properties": ep.Definition.Redacted()})
	if !strings.Contains(string(b), `"accessKey1":"************"`) {
		t.Fatalf("EventGrid shown as %s", b)
	}
	if _, err := f.reg.Put(ctx, "grid", b); err != nil {
		t.Fatal(err)
	}
	ep, _ = f.reg.Get(ctx, "grid")
	if !strings.Contains(string(ep.Definition.Raw), "grid-key-1") || !strings.Contains(string(ep.Definition.Raw), "grid-key-2") {
		t.Errorf("EventGrid stored after the round trip: %s", ep.Definition.Raw)
	}
}

// TestSecretsStayOutOfStatusAndLogs sends to endpoints that fail, with secrets in every
// setting that holds one, and checks that neither status, dead letters nor the logs show
// them, nor what answered at the destination.
func TestSecretsStayOutOfStatusAndLogs(t *testing.T) {
	ctx := context.Background()
	var logs syncBuffer
	l := sinktest.NewListener(t) // closes every connection at once
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.Header().Set("WebHook-Allowed-Origin", "*")
			return
		}
		http.Error(w, "server detail s3cr3t-from-the-destination", http.StatusBadRequest)
	}))
	defer srv.Close()
	st, err := sqlite.Open(sqlite.Config{Dir: t.TempDir(), NoSync: true}, discard)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := eventroute.New(ctx, eventroute.Config{MaxRoutes: 20}, st)
	if err != nil {
		t.Fatal(err)
	}
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	reg, err := New(Config{MaxEndpoints: 20, SkipHandshake: true}, allKinds, st, routes, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- reg.Run(runCtx) }()
	defer func() {
		cancel()
		<-done
		st.Close()
	}()
	down := l.Addr()
	// A Kafka cluster that takes the login and refuses every record as too large: Kafka's
	// answer is shown (an unreachable cluster shows only after the producer's 30 s delivery
	// timeout).
	kc, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "t"), kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "u", "kafka-pass-1"), kfake.BrokerConfigs(map[string]string{"message.max.bytes": "64"}))
	if err != nil {
		t.Fatal(err)
	}
	defer kc.Close()
	kafkaAddr := kc.ListenAddrs()[0]
	secrets := []string{"hook-secret-1", "hook-query-1", "hook-bearer-1", "hook-header-1", "hook-pass-1",
		"kafka-pass-1", "nats-pass-1", "nats-token-1", "amqp-pass-1", "mqtt-pass-1", "grid-key-1", "grid-query-1", "hub-key-1", "bus-key-1"}
	defs := map[string]string{
		"webhook": `{"endpointType":"webhook","url":"http://u:hook-pass-1@` + down + `/h?sig=hook-query-1","secret":"hook-secret-1",
			"headers":{"Authorization":"hook-bearer-1","X-Key":"hook-header-1"},"secretHeaders":["X-Key"]}`,
		"answering": `{"endpointType":"webhook","url":"` + srv.URL + `/h?sig=hook-query-1","headers":{"Authorization":"hook-bearer-1"}}`,
		"kafka":     `{"endpointType":"kafka","brokers":["` + kafkaAddr + `"],"topic":"t","sasl":{"mechanism":"PLAIN","user":"u","password":"kafka-pass-1"}}`,
		"nats":      `{"endpointType":"nats","url":"nats://` + down + `","user":"u","password":"nats-pass-1"}`,
		"natstoken": `{"endpointType":"nats","url":"nats://nats-token-1@` + down + `"}`,
		"amqp":      `{"endpointType":"amqp","url":"amqp://u:amqp-pass-1@` + down + `/","routingKey":"q"}`,
		"amqp10":    `{"endpointType":"amqp","protocol":"1.0","url":"amqp://u:amqp-pass-1@` + down + `/","address":"q"}`,
		"mqtt":      `{"endpointType":"mqtt","url":"tcp://` + down + `","version":3,"username":"u","password":"mqtt-pass-1"}`,
		"grid":      `{"endpointType":"EventGrid","TopicEndpoint":"http://` + down + `/api/events?code=grid-query-1","accessKey1":"grid-key-1"}`,
		"hub":       `{"endpointType":"EventHub","protocol":"amqp","connectionStringPrimaryKey":"Endpoint=sb://` + down + `/;SharedAccessKeyName=s;SharedAccessKey=hub-key-1;EntityPath=h;UseDevelopmentEmulator=true"}`,
		"bus":       `{"endpointType":"ServiceBus","primaryConnectionString":"Endpoint=sb://` + down + `/;SharedAccessKeyName=s;SharedAccessKey=bus-key-1;EntityPath=t;UseDevelopmentEmulator=true"}`,
	}
	for name, def := range defs {
		def = strings.Replace(def, `"endpointType"`, `"delivery":{"minBackoff":"10ms","maxBackoff":"50ms","maxAttempts":2},"endpointType"`, 1)
		if _, err := reg.Put(ctx, name, json.RawMessage(def)); err != nil {
			t.Fatalf("Put %s: %v", name, err)
		}
		if err := routes.Put(ctx, store.Route{ID: name, EndpointName: name, Filter: "true"}); err != nil {
			t.Fatal(err)
		}
	}
	(&fixture{st: st}).emit(t, "a")
	for name := range defs {
		var status Status
		eventually(t, name+" fails", func() bool {
			status, _ = reg.Status(ctx, name)
			return status.LastError != ""
		})
		switch name {
		case "answering":
			if want := `deliver event "a": permanent: webhook answered 400 Bad Request`; status.LastError != want {
				t.Errorf("%s: last error %q, want %q", name, status.LastError, want)
			}
		case "kafka":
			if !strings.Contains(status.LastError, "MESSAGE_TOO_LARGE") {
				t.Errorf("%s: last error %q, want Kafka's answer", name, status.LastError)
			}
		default:
			if status.LastError != redact.Unreachable {
				t.Errorf("%s: last error %q, want %q", name, status.LastError, redact.Unreachable)
			}
		}
		var dls []store.DeadLetter
		eventually(t, name+" dead-letters the event", func() bool {
			dls, _ = reg.DeadLetters(ctx, name, 0, 10)
			return len(dls) == 1
		})
		for _, s := range append(secrets, "s3cr3t-from-the-destination") {
			if strings.Contains(status.LastError, s) || strings.Contains(dls[0].Reason, s) {
				t.Errorf("%s: status or dead letter shows %s: %q, %q", name, s, status.LastError, dls[0].Reason)
			}
		}
		ep, err := reg.Get(ctx, name)
		if err != nil {
			t.Fatal(err)
		}
		shown, _ := json.Marshal(ep.Definition.Redacted())
		for _, s := range secrets {
			if strings.Contains(string(shown), s) {
				t.Errorf("%s: the definition shown holds %s: %s", name, s, shown)
			}
		}
	}
	if !strings.Contains(logs.String(), "send failed") {
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
