package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinflow/twinflow/test/process"
)

// deliveryMaxBatch is the relay batch size the SIGKILL test configures. When the server dies,
// at most two batches are in flight (one being sent, the one before it whose cursor is being
// stored), so at most twice that many events may arrive twice.
const deliveryMaxBatch = 50

// TestDeliverySurvivesSIGKILL sends telemetry (whose event ids are the client's Message-Ids)
// while `twinflow serve` delivers it to a webhook, kills the server with SIGKILL mid-delivery
// and restarts it on the same data directory: every acknowledged event reaches the webhook at
// least once, and duplicates come only from the batches in flight.
func TestDeliverySurvivesSIGKILL(t *testing.T) {
	var (
		mu       sync.Mutex
		received = make(map[string]int)
		total    atomic.Int64
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.Header().Set("WebHook-Allowed-Origin", "*")
			return
		}
		var e struct {
			ID string `json:"id"`
		}
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// A slow destination keeps a batch in flight when the server dies.
		time.Sleep(200 * time.Microsecond)
		mu.Lock()
		received[e.ID]++
		mu.Unlock()
		total.Add(1)
	}))
	defer hook.Close()

	dir := t.TempDir()
	config := filepath.Join(dir, "twinflow.yaml")
	err := os.WriteFile(config, fmt.Appendf(nil, `
endpoints:
  hook:
    endpointType: webhook
    url: %s
    delivery: {maxBatch: %d, minBackoff: 10ms, maxBackoff: 100ms}
routes:
  telemetry:
    endpointName: hook
    filter: "type = 'microsoft.iot.telemetry'"
`, hook.URL, deliveryMaxBatch), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	bin := process.Build(t)
	args := []string{"--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--config", config}
	srv := process.Start(t, bin, args...)
	c := newClient(srv.URL, 16)
	c.must(t, http.MethodPost, "/models", []any{sensorModel}, http.StatusCreated)
	c.must(t, http.MethodPut, twinPath("s1"), sensorTwin(1), http.StatusOK)

	// Send telemetry from several workers until the server is killed.
	var (
		ackMu sync.Mutex
		acked []string
		next  atomic.Int64
	)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for ctx.Err() == nil {
				id := fmt.Sprintf("msg-%d", next.Add(1))
				resp, err := c.do(ctx, http.MethodPost, twinPath("s1")+"/telemetry", map[string]any{"n": 1}, "Message-Id", id)
				if err != nil {
					return // the server died; this one may or may not have committed
				}
				if resp.status == http.StatusNoContent {
					ackMu.Lock()
					acked = append(acked, id)
					ackMu.Unlock()
				}
			}
		})
	}
	deadline := time.Now().Add(30 * time.Second)
	for total.Load() < 500 {
		if time.Now().After(deadline) {
			t.Fatalf("the webhook got only %d events before the kill", total.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	srv.Kill()
	cancel()
	wg.Wait()
	ackMu.Lock()
	sent := len(acked)
	ackMu.Unlock()
	before := total.Load()
	t.Logf("%d telemetry events acknowledged; the webhook had %d when the server was killed", sent, before)

	srv = process.Start(t, bin, args...)
	deadline = time.Now().Add(time.Minute)
	for {
		mu.Lock()
		missing := 0
		for _, id := range acked {
			if received[id] == 0 {
				missing++
			}
		}
		mu.Unlock()
		if missing == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d acknowledged events never reached the webhook", missing)
		}
		time.Sleep(20 * time.Millisecond)
	}
	mu.Lock()
	duplicates := 0
	for _, n := range received {
		duplicates += n - 1
	}
	mu.Unlock()
	t.Logf("duplicates after the restart: %d", duplicates)
	if duplicates > 2*deliveryMaxBatch {
		t.Errorf("%d events arrived twice; only the batches in flight (at most %d events) may", duplicates, 2*deliveryMaxBatch)
	}
	if err := srv.Stop(10 * time.Second); err != nil {
		t.Errorf("stop: %v", err)
	}
}
