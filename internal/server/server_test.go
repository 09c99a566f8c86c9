package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/test/process"
)

// start creates a Server on a free loopback port, runs it until the test ends and waits until
// it is ready. It returns the server and a function that stops it and returns Run's error.
func start(t testing.TB, cfg Config, logger *slog.Logger) (*Server, func() error) {
	t.Helper()
	if cfg.Server.Listen == "" {
		cfg.Server.Listen = "127.0.0.1:0"
	}
	if cfg.Server.DataDir == "" {
		cfg.Server.DataDir = t.TempDir()
	}
	if logger == nil {
		logger = failureLog(t)
	}
	s, err := New(cfg, logger)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	stop := run(t, s)
	waitReady(t, s)
	return s, stop
}

// failureLog returns a logger whose records t logs if it fails, once the servers it started
// have stopped.
func failureLog(t testing.TB) *slog.Logger {
	var w lockedBuffer
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("server log:\n%s", w.String())
		}
	})
	return slog.New(slog.NewTextHandler(&w, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// lockedBuffer is a bytes.Buffer that goroutines may write concurrently.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitReady polls s's readiness until it holds, failing t after ten seconds.
func waitReady(t testing.TB, s *Server) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !s.ready(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the server did not become ready in ten seconds")
		}
	}
}

// waitFor polls cond until it holds, failing t with what after thirty seconds.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited thirty seconds for %s", what)
		}
	}
}

// run runs s until the returned stop function is called or the test ends.
func run(t testing.TB, s *Server) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	var once sync.Once
	var err error
	stop := func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { stop() })
	return stop
}

func get(t testing.TB, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("read GET %s: %v", url, err)
	}
	return resp.StatusCode, string(body)
}

func TestHealthAndReadiness(t *testing.T) {
	s, err := New(Config{Config: config.Config{Server: config.Server{Listen: "127.0.0.1:0", DataDir: t.TempDir()}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// Before Run has built the index and the API, the server is alive but not ready, and API
	// requests are asked to come back.
	for _, tt := range []struct {
		path string
		code int
		body string
	}{
		{"/healthz", http.StatusOK, `{"status":"ok"}`},
		{"/readyz", http.StatusServiceUnavailable, `{"status":"not ready",`},
		{"/digitaltwins/x?api-version=2023-10-31", http.StatusServiceUnavailable, `"code":"ServiceUnavailable"`},
	} {
		rec := httptest.NewRecorder()
		req := httptest.NewRequest(http.MethodGet, tt.path, nil)
		req.Host = "localhost"
		s.http.Handler.ServeHTTP(rec, req)
		if rec.Code != tt.code || !strings.Contains(rec.Body.String(), tt.body) {
			t.Errorf("GET %s before Run = %d %q, want %d %s", tt.path, rec.Code, rec.Body, tt.code, tt.body)
		}
		if retry := rec.Header().Get("Retry-After"); (rec.Code == http.StatusServiceUnavailable && tt.path != "/readyz") != (retry != "") {
			t.Errorf("GET %s before Run: Retry-After %q", tt.path, retry)
		}
	}

	stop := run(t, s)
	waitReady(t, s)
	if code, body := get(t, http.DefaultClient, s.URL()+"/healthz"); code != http.StatusOK || body != `{"status":"ok"}`+"\n" {
		t.Errorf("GET /healthz = %d %q, want 200 {\"status\":\"ok\"}", code, body)
	}
	// /readyz names the node, and the leases it holds: none, with nothing to deliver to or
	// consume, and history in the data directory.
	if !strings.HasPrefix(s.NodeID(), s.ServiceID()+"#") {
		t.Errorf("NodeID %q does not start with the service id %q and '#'", s.NodeID(), s.ServiceID())
	}
	want := fmt.Sprintf(`{"status":"ready","node":%q}`+"\n", s.NodeID())
	if code, body := get(t, http.DefaultClient, s.URL()+"/readyz"); code != http.StatusOK || body != want {
		t.Errorf("GET /readyz = %d %q, want 200 %q", code, body, want)
	}
	// The API is mounted behind them.
	code, body := get(t, http.DefaultClient, s.URL()+"/digitaltwins/nope?api-version=2023-10-31")
	if code != http.StatusNotFound || !strings.Contains(body, "DigitalTwinNotFound") {
		t.Errorf("GET a missing twin = %d %s, want 404 DigitalTwinNotFound", code, body)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run: %v", err)
	}
	if _, err := http.Get(s.URL() + "/healthz"); err == nil {
		t.Error("the server still answers after Run returned")
	}
}

// TestQueryFollowsWrites checks the graph index is wired in: a query answers from it, sees a
// write acknowledged just before, and sees the stored twins again after a restart rebuilds it.
func TestQueryFollowsWrites(t *testing.T) {
	dir := t.TempDir()
	s, stop := start(t, Config{Config: config.Config{Server: config.Server{DataDir: dir}}}, nil)
	send := func(s *Server, method, path, body string, want int) string {
		t.Helper()
		req, err := http.NewRequest(method, s.URL()+path+"?api-version=2023-10-31", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", req.Method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != want {
			t.Fatalf("%s %s = %d %s, want %d", req.Method, path, resp.StatusCode, b, want)
		}
		return string(b)
	}
	send(s, http.MethodPost, "/models", `[{"@id":"dtmi:twinflow:test:Q;1","@type":"Interface","@context":"dtmi:dtdl:context;2",`+
		`"contents":[{"@type":"Property","name":"n","schema":"integer"}]}]`, http.StatusCreated)
	const count = `{"query":"SELECT COUNT() FROM DIGITALTWINS"}`
	for i := range 3 {
		send(s, http.MethodPut, fmt.Sprintf("/digitaltwins/q%d", i), `{"$metadata":{"$model":"dtmi:twinflow:test:Q;1"},"n":1}`, http.StatusOK)
		if got, want := send(s, http.MethodPost, "/query", count, http.StatusOK), fmt.Sprintf(`"COUNT":%d`, i+1); !strings.Contains(got, want) {
			t.Fatalf("after %d twins the count query answered %s", i+1, got)
		}
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	s, _ = start(t, Config{Config: config.Config{Server: config.Server{DataDir: dir}}}, nil)
	if got := send(s, http.MethodPost, "/query", count, http.StatusOK); !strings.Contains(got, `"COUNT":3`) {
		t.Errorf("after a restart the count query answered %s", got)
	}
}

// TestGracefulShutdown starts a request, cancels Run while the request body is still being
// sent, and checks that the request completes, that Run waits for it, and that its write is
// in the store afterwards.
func TestGracefulShutdown(t *testing.T) {
	dir := t.TempDir()
	s, err := New(Config{Config: config.Config{Server: config.Server{Listen: "127.0.0.1:0", DataDir: dir}}}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	active := make(chan struct{}, 1)
	s.http.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateActive {
			select {
			case active <- struct{}{}:
			default:
			}
		}
	}
	stop := run(t, s)
	waitReady(t, s)

	model := `[{"@id":"dtmi:twinflow:test:Slow;1","@type":"Interface","@context":"dtmi:dtdl:context;2",` +
		`"contents":[{"@type":"Property","name":"p","schema":"string"}]}]`
	body, bodyW := io.Pipe()
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Post(s.URL()+"/models?api-version=2023-10-31", "application/json", body)
		if err != nil {
			done <- result{err: err}
			return
		}
		resp.Body.Close()
		done <- result{code: resp.StatusCode}
	}()
	if _, err := io.WriteString(bodyW, model[:20]); err != nil {
		t.Fatalf("send the first part: %v", err)
	}
	<-active

	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	select {
	case err := <-stopped:
		t.Fatalf("Run returned (%v) while a request was in flight", err)
	case <-time.After(200 * time.Millisecond):
	}
	if _, err := io.WriteString(bodyW, model[20:]); err != nil {
		t.Fatalf("send the rest: %v", err)
	}
	bodyW.Close()
	if r := <-done; r.err != nil || r.code != http.StatusCreated {
		t.Fatalf("in-flight request = %d, %v; want 201", r.code, r.err)
	}
	if err := <-stopped; err != nil {
		t.Fatalf("Run: %v", err)
	}

	// Run closed the store: it opens again and holds the model.
	st, err := sqlite.Open(sqlite.Config{Dir: dir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("reopen the store: %v", err)
	}
	defer st.Close()
	err = st.View(t.Context(), func(r store.Reader) error {
		_, err := r.Model("dtmi:twinflow:test:Slow;1")
		return err
	})
	if err != nil {
		t.Errorf("the model written during shutdown: %v", err)
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := process.SelfSignedCert(t, dir)
	s, _ := start(t, Config{Config: config.Config{Server: config.Server{TLSCertFile: certFile, TLSKeyFile: keyFile}}}, nil)
	if !strings.HasPrefix(s.URL(), "https://") {
		t.Fatalf("URL = %s, want https", s.URL())
	}

	pemBytes, err := os.ReadFile(certFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pemBytes)
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots}}}
	code, body := get(t, c, s.URL()+"/healthz")
	if code != http.StatusOK || body != `{"status":"ok"}`+"\n" {
		t.Errorf("GET /healthz over TLS = %d %q", code, body)
	}

	// Plain HTTP to the TLS port is refused.
	code, _ = get(t, http.DefaultClient, "http://"+s.Addr().String()+"/healthz")
	if code != http.StatusBadRequest {
		t.Errorf("plain HTTP to the TLS port = %d, want 400", code)
	}
}

func TestAccessLog(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, stop := start(t, Config{}, logger)
	get(t, http.DefaultClient, s.URL()+"/digitaltwins/missing?api-version=2023-10-31")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{
		"twinflow listening on http://" + s.Addr().String(),
		`msg=request method=GET path=/digitaltwins/missing status=404`,
	} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %q:\n%s", want, out)
		}
	}
}

func TestAccessLogOffAtInfo(t *testing.T) {
	var buf syncBuffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	s, stop := start(t, Config{}, logger)
	get(t, http.DefaultClient, s.URL()+"/healthz")
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(buf.String(), "msg=request") {
		t.Errorf("access log at info level:\n%s", buf.String())
	}
}

func TestNewReleasesEverythingOnError(t *testing.T) {
	dir := t.TempDir()
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if _, err := New(Config{Config: config.Config{Server: config.Server{Listen: busy.Addr().String(), DataDir: dir}}}, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("New on a busy port succeeded")
	}
	if _, err := New(Config{Config: config.Config{Server: config.Server{Listen: "127.0.0.1:0", DataDir: dir, TLSCertFile: "missing.pem", TLSKeyFile: "missing.key"}}},
		slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "TLS") {
		t.Fatalf("New with a missing certificate: %v", err)
	}
	// Nothing holds the data directory: a server starts on it.
	_, stop := start(t, Config{Config: config.Config{Server: config.Server{DataDir: dir}}}, nil)
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

func TestDefaultServiceID(t *testing.T) {
	host, err := os.Hostname()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ addr, want string }{
		{"127.0.0.1:8080", "localhost:8080"},
		{"[::1]:9000", "localhost:9000"},
		{"0.0.0.0:80", host + ":80"},
		{"[::]:443", host + ":443"},
		{"192.0.2.7:8443", "192.0.2.7:8443"},
	} {
		addr, err := net.ResolveTCPAddr("tcp", tt.addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := DefaultServiceID(addr); got != tt.want {
			t.Errorf("DefaultServiceID(%s) = %s, want %s", tt.addr, got, tt.want)
		}
	}
}

func TestServiceIDFromConfig(t *testing.T) {
	s, _ := start(t, Config{Config: config.Config{Server: config.Server{ServiceID: "twins.example.com"}}}, nil)
	if s.ServiceID() != "twins.example.com" {
		t.Errorf("ServiceID = %s", s.ServiceID())
	}
	s, _ = start(t, Config{}, nil)
	if want := "localhost:" + strings.TrimPrefix(s.Addr().String(), "127.0.0.1:"); s.ServiceID() != want {
		t.Errorf("ServiceID = %s, want %s", s.ServiceID(), want)
	}
}

func TestConfigValidate(t *testing.T) {
	for _, tt := range []struct {
		name    string
		cfg     Config
		wantErr []string
	}{
		{name: "defaults", cfg: Config{Config: config.Config{}.WithDefaults()}},
		{name: "tls", cfg: Config{Config: config.Config{Server: config.Server{Listen: ":443", TLSCertFile: "c", TLSKeyFile: "k"}}}},
		{
			name:    "every error at once",
			cfg:     Config{Config: config.Config{Server: config.Server{Listen: "nohost", TLSKeyFile: "k", ShutdownTimeout: -time.Second}}},
			wantErr: []string{"server.listen:", "server.tlsCert:", "server.shutdownTimeout:"},
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.cfg.Validate()
			if len(tt.wantErr) == 0 {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Validate succeeded")
			}
			for _, want := range tt.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q lacks %q", err, want)
				}
			}
		})
	}
}

// syncBuffer is a bytes.Buffer safe for the concurrent writes of a logger.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
