package server

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/testenv"
)

// BenchmarkCrossNodeVisibility measures how long a write acknowledged by one node takes to
// be visible to a query on another node of the same PostgreSQL store: each iteration PATCHes
// a twin on node A and polls node B with a query for the new value, every 2 ms, until it
// answers. It reports the p50, p99 and largest latency, and, for comparison, the same on
// node A itself (where the query index is brought up to the write before the query runs).
//
//	CI=1 go test -run '^$' -bench CrossNodeVisibility -benchtime 200x ./internal/server/
func BenchmarkCrossNodeVisibility(b *testing.B) {
	dsn, schema := testenv.PostgreSQLSchema(b, "visibility")
	cfg := Config{Config: config.Config{
		Store:   config.Store{DSN: dsn, Schema: schema},
		History: config.History{Mode: config.HistoryOff},
	}}
	a := startNode(b, cfg)
	request(b, http.MethodPost, a+"/models", `[{"@id":"dtmi:twinflow:bench:V;1","@type":"Interface","@context":"dtmi:dtdl:context;3",`+
		`"contents":[{"@type":"Property","name":"n","schema":"integer","writable":true}]}]`, http.StatusCreated)
	request(b, http.MethodPut, a+"/digitaltwins/v", `{"$metadata":{"$model":"dtmi:twinflow:bench:V;1"},"n":0}`, http.StatusOK)
	// B starts after the model exists, and loads it.
	nodeB := startNode(b, cfg)

	measure := func(at string, n int) time.Duration {
		request(b, http.MethodPatch, a+"/digitaltwins/v", fmt.Sprintf(`[{"op":"replace","path":"/n","value":%d}]`, n), http.StatusNoContent)
		start := time.Now()
		q := fmt.Sprintf(`{"query":"SELECT COUNT() FROM DIGITALTWINS WHERE $dtId = 'v' AND n = %d"}`, n)
		for !strings.Contains(request(b, http.MethodPost, at+"/query", q, http.StatusOK), `"COUNT":1`) {
			if time.Since(start) > 30*time.Second {
				b.Fatalf("the write of n = %d is not visible on %s after 30 s", n, at)
			}
			time.Sleep(2 * time.Millisecond)
		}
		return time.Since(start)
	}
	var cross, local []time.Duration
	b.ResetTimer()
	for i := range b.N {
		cross = append(cross, measure(nodeB, 2*i+1))
		local = append(local, measure(a, 2*i+2))
	}
	b.StopTimer()
	report := func(lat []time.Duration, unit string) {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, unit+"-p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, unit+"-p99-ms")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, unit+"-max-ms")
	}
	report(cross, "cross")
	report(local, "local")
}

// startNode starts a server of cfg on a loopback port with a data directory of its own,
// waits until it is ready and returns its base URL; it stops when tb ends.
func startNode(tb testing.TB, cfg Config) string {
	tb.Helper()
	cfg.Server.Listen, cfg.Server.DataDir = "127.0.0.1:0", tb.TempDir()
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		tb.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	tb.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			tb.Errorf("Run: %v", err)
		}
	})
	for deadline := time.Now().Add(10 * time.Second); !s.ready(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			tb.Fatal("the server did not become ready in ten seconds")
		}
	}
	return s.URL()
}

// request sends a request with a JSON body (a JSON Patch for PATCH) to url, with the
// api-version added, fails tb unless it is answered want, and returns the answer's body.
func request(tb testing.TB, method, url, body string, want int) string {
	tb.Helper()
	req, err := http.NewRequest(method, url+"?api-version=2023-10-31", strings.NewReader(body))
	if err != nil {
		tb.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if method == http.MethodPatch {
		req.Header.Set("Content-Type", "application/json-patch+json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	var out bytes.Buffer
	if _, err := io.Copy(&out, resp.Body); err != nil {
		tb.Fatal(err)
	}
	if resp.StatusCode != want {
		tb.Fatalf("%s %s = %d %s; want %d", method, url, resp.StatusCode, out.String(), want)
	}
	return out.String()
}
