package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/testenv"
	"github.com/twinflow/twinflow/test/process"
)

// RestartPostgreSQLEnv, set to 1, lets TestClusterSurvivesPostgreSQLRestart restart the
// machine's PostgreSQL. Other packages' tests use the same server, so `make test` runs that
// test on its own, after all the others, with the variable set.
const RestartPostgreSQLEnv = "TWINFLOW_TEST_RESTART_POSTGRESQL"

// TestClusterSurvivesPostgreSQLRestart runs two nodes on one PostgreSQL schema and patches
// twins through both while PostgreSQL itself is restarted (pg_ctlcluster restart, which stops
// the server, dropping every connection, and starts it again): the nodes keep running, take
// writes again once it is back, without a restart, and every write acknowledged before,
// during and after is stored.
func TestClusterSurvivesPostgreSQLRestart(t *testing.T) {
	if os.Getenv(RestartPostgreSQLEnv) != "1" {
		t.Skipf("restarts the machine's PostgreSQL, which other tests use at the same time; `make test` runs it on its own with %s=1", RestartPostgreSQLEnv)
	}
	dsn := testenv.PostgreSQL(t)
	versions, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(versions) != 1 {
		t.Fatalf("find the PostgreSQL cluster to restart in /etc/postgresql: %v", err)
	}
	schema := fmt.Sprintf("pgrestart_%d", time.Now().UnixNano())
	t.Cleanup(func() { dropClusterSchema(t, dsn, schema) })

	bin := process.Build(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "twinflow.yaml")
	if err := os.WriteFile(config, fmt.Appendf(nil, "store: {dsn: %q, schema: %s}\n", dsn, schema), 0o600); err != nil {
		t.Fatal(err)
	}
	start := func(i int) *process.Process {
		return process.Start(t, bin, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, fmt.Sprint(i)),
			"--history", "off", "--config", config)
	}
	a := start(0)
	ca := newClient(a.URL, 16)
	ca.must(t, http.MethodPost, "/models", []any{sensorModel}, http.StatusCreated)
	for i := range clusterTwins {
		ca.must(t, http.MethodPut, twinPath(fmt.Sprintf("r%d", i)), sensorTwin(0), http.StatusOK)
	}
	b := start(1)
	clients := []*client{ca, newClient(b.URL, 16)}

	var (
		mu    sync.Mutex
		acked = map[string]int{}
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for i := range clusterTwins {
		id := fmt.Sprintf("r%d", i)
		wg.Go(func() {
			for v, n := 1, i; ctx.Err() == nil; n, v = n+1, v+1 {
				resp, err := clients[n%2].do(ctx, http.MethodPatch, twinPath(id),
					[]map[string]any{{"op": "replace", "path": "/value", "value": v}})
				if err != nil || resp.status != http.StatusNoContent {
					time.Sleep(50 * time.Millisecond)
					continue
				}
				mu.Lock()
				acked[id] = v
				mu.Unlock()
			}
		})
	}
	time.Sleep(time.Second)
	restart := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", versions[0].Name(), "main", "restart")
	if out, err := restart.CombinedOutput(); err != nil {
		cancel()
		wg.Wait()
		t.Fatalf("restart PostgreSQL: %v: %s", err, out)
	}
	waitUntil(t, time.Minute, "PostgreSQL to listen again", func() bool {
		c, err := net.DialTimeout("tcp", testenv.PostgreSQLAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	mu.Lock()
	during := len(acked)
	mu.Unlock()
	waitUntil(t, time.Minute, "writes on both nodes after the restart", func() bool {
		for _, c := range clients {
			resp, err := c.do(t.Context(), http.MethodPatch, twinPath("r0"), []map[string]any{{"op": "add", "path": "/label", "value": "after"}})
			if err != nil || resp.status != http.StatusNoContent {
				return false
			}
		}
		return true
	})
	time.Sleep(time.Second)
	cancel()
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	t.Logf("%d twins with acknowledged writes (%d when PostgreSQL was back)", len(acked), during)
	for id, v := range acked {
		for _, c := range clients {
			var doc twinDoc
			if err := json.Unmarshal(c.must(t, http.MethodGet, twinPath(id), nil, http.StatusOK).body, &doc); err != nil {
				t.Fatal(err)
			}
			if doc.Value < v {
				t.Errorf("twin %s holds %d on %s, but %d was acknowledged", id, doc.Value, c.base, v)
			}
		}
	}
	for _, p := range []*process.Process{a, b} {
		select {
		case <-p.Done():
			t.Errorf("a node exited when PostgreSQL restarted:\n%s", p.Output())
		default:
		}
	}
}
