package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/ingress/runner"
	"github.com/twinflow/twinflow/internal/source"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

// testHost is the Host every test request names, so nextLinks read the same in every run.
const testHost = "twinflow.test"

// env is a running twinflow API: the real twin service over a real SQLite store in a temporary
// directory, served by a real HTTP server.
type env struct {
	t     testing.TB
	srv   *httptest.Server
	store store.Store
	// redact maps text that differs from run to run (a temporary directory) to the stand-in
	// transcripts show.
	redact map[string]string
}

// tickingClock returns a clock that starts at a fixed instant and advances one microsecond per
// reading, so successive writes get distinct, increasing times within the second that
// transcripts recognise (clockPrefix).
func tickingClock() func() time.Time {
	var mu sync.Mutex
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now = now.Add(time.Microsecond)
		return now
	}
}

func newEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	logger := testLogger(t)
	st, svc := openService(t, logger)
	if cfg.Ingress == nil {
		cfg.Ingress = &Ingress{Sources: runSources(t, st, svc, logger)}
	}
	return serve(t, cfg, st, svc, logger)
}

// testLogger logs to the test log in verbose runs, nowhere otherwise.
func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// openService opens a store in a temporary directory, closed when the test ends, and the
// twin service over it, on a ticking clock.
func openService(t testing.TB, logger *slog.Logger) (*sqlite.Store, *twins.Service) {
	t.Helper()
	st, err := sqlite.Open(sqlite.Config{Dir: t.TempDir()}, logger)
	if err != nil {
		t.Fatalf("open store: %v", err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	g, err := twins.New(twins.Config{ServiceID: testHost, Now: tickingClock()}, st, logger)
	if err != nil {
		t.Fatalf("new graph: %v", err)
	}
	return st, g
}

// serve serves the API of svc over st with cfg until the test ends.
func serve(t testing.TB, cfg Config, st store.Store, svc *twins.Service, logger *slog.Logger) *env {
	t.Helper()
	a, err := New(cfg, svc, logger)
	if err != nil {
		t.Fatalf("new api: %v", err)
	}
	srv := httptest.NewServer(Guard(GuardConfig{}, a))
	t.Cleanup(srv.Close)
	return &env{t: t, srv: srv, store: st}
}

// runSources runs a source registry with the http kind and the tests' mapping language (see
// compileTest) until the test ends.
func runSources(t testing.TB, st *sqlite.Store, g *twins.Service, logger *slog.Logger) *source.Registry {
	t.Helper()
	// A clock that stands still: how often the runner reads it depends on how messages
	// happen to be batched.
	at := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	clock := func() time.Time { return at }
	reg, err := source.New(source.Config{Runner: runner.Config{Now: clock}, Now: clock},
		map[string]source.Kind{source.HTTPType: source.HTTPKind()}, st, g, compileTest, nil, logger)
	if err != nil {
		t.Fatalf("new source registry: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("source registry: %v", err)
		}
	})
	return reg
}

// tWriter sends log lines to the test log.
type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// response is a finished HTTP exchange.
type response struct {
	status int
	header http.Header
	body   []byte
}

// errCode returns the ADT error code in the response body.
func (r response) errCode() string {
	var b struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal(r.body, &b)
	return b.Error.Code
}

// do sends a request to the server. target is a path with query (the api-version is added
// when the target has no query at all) or an absolute URL; headers alternate names and values.
func (e *env) do(method, target, body string, headers ...string) response {
	e.t.Helper()
	resp, err := e.try(method, target, body, headers...)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// try is do for use off the test goroutine: it returns errors instead of failing the test.
func (e *env) try(method, target, body string, headers ...string) (response, error) {
	url := target
	if strings.HasPrefix(target, "/") {
		if !strings.Contains(target, "?") {
			target += "?api-version=2023-10-31"
		}
		url = e.srv.URL + target
	}
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return response{}, err
	}
	req.Host = testHost
	if body != "" {
		ct := "application/json"
		if method == http.MethodPatch {
			ct = "application/json-patch+json"
		}
		req.Header.Set("Content-Type", ct)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		if headers[i+1] == "" {
			req.Header.Del(headers[i])
			continue
		}
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// local turns a nextLink into a URL of the test server.
func (e *env) local(link string) string {
	return strings.Replace(link, "http://"+testHost, e.srv.URL, 1)
}

// must checks a response's status and, for errors, its ADT code in both body and header.
func (e *env) must(r response, status int, code string) response {
	e.t.Helper()
	if r.status != status {
		e.t.Fatalf("status = %d, want %d; body %s", r.status, status, r.body)
	}
	if code != "" {
		if got := r.errCode(); got != code {
			e.t.Fatalf("error code = %q, want %q; body %s", got, code, r.body)
		}
		if got := r.header.Get("x-ms-error-code"); got != code {
			e.t.Fatalf("x-ms-error-code = %q, want %q", got, code)
		}
	}
	return r
}

// decode unmarshals a response body, failing the test if it is not JSON.
func decode[T any](t testing.TB, r response) T {
	t.Helper()
	var v T
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.UseNumber()
	if err := dec.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}
