package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/test/process"
)

// dbStorm is two `twinflow serve` nodes on one PostgreSQL schema taking writes: one worker
// per twin patches its value up 1, 2, 3, ... through the two nodes in turn, so that what was
// acknowledged is known, while a test does something to the database.
type dbStorm struct {
	t       *testing.T
	nodes   []*process.Process
	clients []*client

	mu          sync.Mutex
	acked       map[string]int // the highest acknowledged value of each twin
	writes      int            // acknowledged writes
	unavailable int            // writes answered 503 with Retry-After

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// startDBStorm starts two nodes on the store schema of the database at dsn, creates the
// twins through the first (before the second starts) and starts the workers. Any answer to
// a write but 204, or 503 with Retry-After, fails t; a transport error is retried.
func startDBStorm(t *testing.T, dsn, schema string) *dbStorm {
	t.Helper()
	bin := process.Build(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "twinflow.yaml")
	if err := os.WriteFile(config, fmt.Appendf(nil, "store: {dsn: %q, schema: %s}\n", dsn, schema), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &dbStorm{t: t, acked: map[string]int{}}
	start := func(i int) {
		p := process.Start(t, bin, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, fmt.Sprint(i)),
			"--history", "off", "--config", config)
		s.nodes, s.clients = append(s.nodes, p), append(s.clients, newClient(p.URL, 16))
	}
	start(0)
	s.clients[0].must(t, http.MethodPost, "/models", []any{sensorModel}, http.StatusCreated)
	for i := range clusterTwins {
		s.clients[0].must(t, http.MethodPut, twinPath(fmt.Sprintf("s%d", i)), sensorTwin(0), http.StatusOK)
	}
	start(1)

	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	for i := range clusterTwins {
		id := fmt.Sprintf("s%d", i)
		s.wg.Go(func() {
			for v, n := 1, i; ctx.Err() == nil; n, v = n+1, v+1 {
				resp, err := s.clients[n%2].do(ctx, http.MethodPatch, twinPath(id),
					[]map[string]any{{"op": "replace", "path": "/value", "value": v}})
				switch {
				case err != nil:
				case resp.status == http.StatusNoContent:
					s.mu.Lock()
					s.acked[id], s.writes = v, s.writes+1
					s.mu.Unlock()
				case resp.status == http.StatusServiceUnavailable && resp.header.Get("Retry-After") != "":
					s.mu.Lock()
					s.unavailable++
					s.mu.Unlock()
					time.Sleep(50 * time.Millisecond)
				default:
					t.Errorf("PATCH %s = %d %s", id, resp.status, resp.body)
					return
				}
			}
		})
	}
	return s
}

// counts returns the acknowledged writes and the writes answered 503 so far.
func (s *dbStorm) counts() (writes, unavailable int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.writes, s.unavailable
}

// finish waits until both nodes take a write again (without a restart), lets the storm go on
// a second and stops it; then it checks that every acknowledged value is stored, as both nodes
// read it, and that neither node exited.
func (s *dbStorm) finish() {
	t := s.t
	t.Helper()
	waitUntil(t, time.Minute, "writes on both nodes again", func() bool {
		for _, c := range s.clients {
			resp, err := c.do(t.Context(), http.MethodPatch, twinPath("s0"), []map[string]any{{"op": "add", "path": "/label", "value": "after"}})
			if err != nil || resp.status != http.StatusNoContent {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second)
	s.cancel()
	s.wg.Wait()
	for id, v := range s.acked {
		for _, c := range s.clients {
			var doc twinDoc
			if err := json.Unmarshal(c.must(t, http.MethodGet, twinPath(id), nil, http.StatusOK).body, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Value < v {
				t.Errorf("twin %s holds %d on %s, but %d was acknowledged", id, doc.Value, c.base, v)
			}
		}
	}
	for _, p := range s.nodes {
		select {
		case <-p.Done():
			t.Errorf("a node exited:\n%s", p.Output())
		default:
		}
	}
}
