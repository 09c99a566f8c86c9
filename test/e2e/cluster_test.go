package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/testenv"
	"github.com/twinflow/twinflow/test/process"
)

// clusterTwins is the number of twins the cluster test patches, each by one worker that
// counts its values up, so that the order of a twin's events is known.
const clusterTwins = 12

// hookLog is what the cluster test's webhook received: for each twin, the values of its
// Twin.Update events in the order they arrived.
type hookLog struct {
	mu     sync.Mutex
	values map[string][]int
	total  atomic.Int64
}

func (h *hookLog) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodOptions {
		w.Header().Set("WebHook-Allowed-Origin", "*")
		return
	}
	var e struct {
		Type    string `json:"type"`
		Subject string `json:"subject"`
		Data    struct {
			Patch []struct {
				Path  string `json:"path"`
				Value int    `json:"value"`
			} `json:"patch"`
		} `json:"data"`
	}
	if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if e.Type != "Microsoft.DigitalTwins.Twin.Update" || len(e.Data.Patch) != 1 || e.Data.Patch[0].Path != "/value" {
		return
	}
	h.mu.Lock()
	h.values[e.Subject] = append(h.values[e.Subject], e.Data.Patch[0].Value)
	h.mu.Unlock()
	h.total.Add(1)
}

// TestClusterSurvivesSIGKILL runs three `twinflow serve` nodes on one PostgreSQL schema,
// with a webhook endpoint and a route, and patches twins through all three: it kills the
// node that delivers to the webhook with SIGKILL in the middle of the storm, and checks that
// every acknowledged write is stored, that every acknowledged write's event reaches the
// webhook at least once and, counting each value's first arrival, in each twin's order,
// that another node took the relay over, and that the killed node, started again, catches
// up.
func TestClusterSurvivesSIGKILL(t *testing.T) {
	dsn, schema := testenv.PostgreSQLSchema(t, "cluster")
	hook := &hookLog{values: map[string][]int{}}
	dest := httptest.NewServer(hook)
	defer dest.Close()

	dir := t.TempDir()
	config := filepath.Join(dir, "twinflow.yaml")
	err := os.WriteFile(config, fmt.Appendf(nil, `
store:
  dsn: %s
  schema: %s
  leaseTTL: 3s
endpoints:
  hook:
    endpointType: webhook
    url: %s
    delivery: {maxBatch: 20, minBackoff: 10ms, maxBackoff: 100ms}
routes:
  updates:
    endpointName: hook
    filter: "type = 'Microsoft.DigitalTwins.Twin.Update'"
`, dsn, schema, dest.URL), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	bin := process.Build(t)
	start := func(i int) *process.Process {
		return process.Start(t, bin, "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, fmt.Sprintf("node%d-%d", i, time.Now().UnixNano())),
			"--config", config, "--history", "off")
	}
	nodes := []*process.Process{start(0)}
	c0 := newClient(nodes[0].URL, 16)
	c0.must(t, http.MethodPost, "/models", []any{sensorModel}, http.StatusCreated)
	for i := range clusterTwins {
		c0.must(t, http.MethodPut, twinPath(fmt.Sprintf("c%d", i)), sensorTwin(0), http.StatusOK)
	}
	nodes = append(nodes, start(1), start(2))
	clients := make([]*client, len(nodes))
	for i, n := range nodes {
		clients[i] = newClient(n.URL, 16)
	}

	// One worker per twin patches value 1, 2, 3, ... through the nodes in turn, each value
	// after the one before was acknowledged or failed.
	var (
		ackMu sync.Mutex
		acked = map[string]int{} // the highest acknowledged value of each twin
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var killed atomic.Int32
	killed.Store(-1)
	for i := range clusterTwins {
		id := fmt.Sprintf("c%d", i)
		wg.Go(func() {
			for v, n := 1, i; ctx.Err() == nil; n++ {
				node := n % len(clients)
				if int(killed.Load()) == node {
					continue
				}
				resp, err := clients[node].do(ctx, http.MethodPatch, twinPath(id),
					[]map[string]any{{"op": "replace", "path": "/value", "value": v}})
				if err != nil || resp.status != http.StatusNoContent {
					// Not acknowledged: it may or may not have been applied; the next value
					// goes on from it.
					time.Sleep(10 * time.Millisecond)
					v++
					continue
				}
				ackMu.Lock()
				acked[id] = v
				ackMu.Unlock()
				v++
			}
		})
	}

	// Mid-storm, kill the node that runs the endpoint's relay.
	waitUntil(t, time.Minute, "events at the webhook before the kill", func() bool { return hook.total.Load() >= 300 })
	owner := relayOwner(t, clients[0])
	// A node's service id is localhost:PORT on loopback: its port names it.
	port := func(s string) string { return s[strings.LastIndex(s, ":")+1:] }
	victim := -1
	for i, n := range nodes {
		if owner != "" && port(n.URL) == port(owner) {
			victim = i
		}
	}
	if victim < 0 {
		t.Fatalf("the endpoint's owner %q is none of the nodes", owner)
	}
	killed.Store(int32(victim))
	nodes[victim].Kill()
	t.Logf("killed node %d (%s), the relay's owner, after %d events", victim, owner, hook.total.Load())
	survivor := clients[(victim+1)%len(clients)]
	waitUntil(t, 20*time.Second, "another node to take the relay over", func() bool {
		o := relayOwner(t, survivor)
		return o != "" && o != owner
	})
	time.Sleep(2 * time.Second) // more writes after the takeover
	cancel()
	wg.Wait()

	// Every acknowledged value is stored, and its event reached the webhook, in order.
	ackMu.Lock()
	defer ackMu.Unlock()
	for id, v := range acked {
		var doc twinDoc
		if err := json.Unmarshal(survivor.must(t, http.MethodGet, twinPath(id), nil, http.StatusOK).body, &doc); err != nil {
			t.Fatal(err)
		}
		if doc.Value < v {
			t.Errorf("twin %s holds %d, but %d was acknowledged", id, doc.Value, v)
		}
	}
	waitUntil(t, time.Minute, "every acknowledged value at the webhook", func() bool {
		hook.mu.Lock()
		defer hook.mu.Unlock()
		for id, v := range acked {
			if !slices.Contains(hook.values[id], v) {
				return false
			}
		}
		return true
	})
	hook.mu.Lock()
	for id, vals := range hook.values {
		// Redelivery after the takeover may repeat values; their first arrivals are in order.
		seen, last := map[int]bool{}, 0
		for _, v := range vals {
			if seen[v] {
				continue
			}
			seen[v] = true
			if v < last {
				t.Errorf("twin %s: value %d arrived first after %d: %v", id, v, last, vals)
				break
			}
			last = v
		}
	}
	hook.mu.Unlock()

	// The killed node, started again, catches up.
	restarted := newClient(start(victim).URL, 4)
	for id, v := range acked {
		rows := query[twinDoc](t, restarted, fmt.Sprintf("SELECT * FROM DIGITALTWINS WHERE $dtId = '%s'", id))
		if len(rows) != 1 || rows[0].Value < v {
			t.Errorf("the restarted node's query of %s = %+v; want a value of at least %d", id, rows, v)
		}
	}
}

// relayOwner returns the service id of the node that owns the endpoint hook's relay, as the
// node c talks to reports it; "" while none does.
func relayOwner(t *testing.T, c *client) string {
	t.Helper()
	resp, err := c.do(t.Context(), http.MethodGet, "/endpoints/hook", nil)
	if err != nil || resp.status != http.StatusOK {
		return ""
	}
	var ep struct {
		Status struct {
			Owner string `json:"owner"`
		} `json:"status"`
	}
	if err := json.Unmarshal(resp.body, &ep); err != nil {
		t.Fatalf("endpoint %s: %v", resp.body, err)
	}
	return ep.Status.Owner
}

// waitUntil polls cond every 20 ms until it holds, failing t after timeout.
func waitUntil(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(timeout); !cond(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", timeout, what)
		}
	}
}
