package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/testenv"
	"github.com/twinflow/twinflow/test/process"
)

// TestDiskFull runs the server with its data directory (twin store and history, both
// SQLite) on a 32 MiB tmpfs, most of it taken by a filler file, and PUTs twins until the disk
// is full. Writes are then refused with 507 InsufficientStorage, Retry-After and ADT's error
// body, /readyz is 503 with the reason and history waits, while reads and deletes still
// work. Once the filler is deleted, /readyz recovers, writes succeed and history catches up;
// after a restart every acknowledged write is there, and in the history.
func TestDiskFull(t *testing.T) {
	disk := testenv.Tmpfs(t, 32<<20)
	bin := process.Build(t)
	dataDir := filepath.Join(disk, "data")
	config := filepath.Join(t.TempDir(), "twinflow.yaml")
	if err := os.WriteFile(config, []byte("server:\n  diskReserveBytes: 2097152\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--listen", "127.0.0.1:0", "--data-dir", dataDir, "--config", config}
	srv := process.Start(t, bin, args...)
	c := newClient(srv.URL, 8)
	c.must(t, http.MethodPost, "/models", []any{sensorModel}, http.StatusCreated)

	// The filler leaves the server 4 MiB; deleting it frees the disk.
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, free(t, disk)-4<<20), 0o600); err != nil {
		t.Fatal(err)
	}

	// Workers PUT twins of 2 KB each until the server refuses them.
	label := strings.Repeat("x", 2048)
	var (
		mu      sync.Mutex
		acked   []string
		refusal response
	)
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := 0; ; i++ {
				id := fmt.Sprintf("w%d-%d", w, i)
				body := sensorTwin(i)
				body["label"] = label
				resp, err := c.do(t.Context(), http.MethodPut, twinPath(id), body)
				if err != nil {
					t.Errorf("PUT %s: %v", id, err)
					return
				}
				mu.Lock()
				switch resp.status {
				case http.StatusOK:
					acked = append(acked, id)
				case http.StatusInsufficientStorage:
					refusal = resp
				default:
					t.Errorf("PUT %s on a filling disk: status %d, want 200 or 507: %s", id, resp.status, resp.body)
				}
				mu.Unlock()
				if resp.status != http.StatusOK {
					return
				}
				if i == 100_000 {
					t.Error("the disk never filled up")
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	t.Logf("%d twins acknowledged before the disk filled up", len(acked))
	checkInsufficientStorage(t, refusal)

	// Writes are refused at once, reads and deletes work, and the server says it is not
	// ready, and why.
	resp, err := c.do(t.Context(), http.MethodPatch, twinPath(acked[0]), []map[string]any{{"op": "replace", "path": "/value", "value": -1}})
	if err != nil {
		t.Fatal(err)
	}
	checkInsufficientStorage(t, resp)
	// An import job's input cannot be uploaded either.
	header := map[string]any{"Section": "Header"}
	resp, err = c.do(t.Context(), http.MethodPut, "/jobs/files/in.ndjson", header, "Content-Type", "application/x-ndjson")
	if err != nil {
		t.Fatal(err)
	}
	checkInsufficientStorage(t, resp)
	if _, err := os.Stat(filepath.Join(dataDir, "jobs", "in.ndjson")); err == nil {
		t.Error("a job file was written on a full disk")
	}
	checkReadyz(t, srv.URL, http.StatusServiceUnavailable, "disk is full")
	c.must(t, http.MethodGet, twinPath(acked[1]), nil, http.StatusOK)
	deleted := acked[0]
	c.must(t, http.MethodDelete, twinPath(deleted), nil, http.StatusNoContent)
	c.must(t, http.MethodGet, twinPath(deleted), nil, http.StatusNotFound)
	acked = acked[1:]
	// History waits for space, and says so.
	waitHistory(t, c, func(st historyStatus) bool { return strings.Contains(st.LastError, "disk is full") && st.LagEvents > 0 })

	// Space returns.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for ready(srv.URL) != http.StatusOK {
		if time.Now().After(deadline) {
			t.Fatal("/readyz did not recover within 30s of space being freed")
		}
		time.Sleep(20 * time.Millisecond)
	}
	c.must(t, http.MethodPut, twinPath("after"), sensorTwin(7), http.StatusOK)
	if resp, err = c.do(t.Context(), http.MethodPut, "/jobs/files/in.ndjson", header, "Content-Type", "application/x-ndjson"); err != nil || resp.status != http.StatusCreated {
		t.Errorf("job file upload once space returned: %v %d %s", err, resp.status, resp.body)
	}
	c.must(t, http.MethodPatch, twinPath("after"), []map[string]any{{"op": "replace", "path": "/value", "value": 8}}, http.StatusNoContent)
	acked = append(acked, "after")
	waitHistory(t, c, func(st historyStatus) bool { return st.LastError == "" && st.LagEvents == 0 })

	if err := srv.Stop(30 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	srv = process.Start(t, bin, args...)
	c = newClient(srv.URL, 8)
	for _, id := range acked {
		var doc twinDoc
		if err := json.Unmarshal(c.must(t, http.MethodGet, twinPath(id), nil, http.StatusOK).body, &doc); err != nil {
			t.Fatal(err)
		}
		want := []int{doc.Value}
		if id == "after" {
			want = []int{7, 8}
		}
		if got := historyValues(t, c, id, "value"); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s's history after the restart is %v, want %v", id, got, want)
		}
	}
	c.must(t, http.MethodGet, twinPath(deleted), nil, http.StatusNotFound)
	if err := srv.Stop(30 * time.Second); err != nil {
		t.Fatalf("second SIGTERM: %v", err)
	}
}

// free returns the bytes free on the file system holding dir.
func free(t *testing.T, dir string) int {
	t.Helper()
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int(st.Bavail) * int(st.Bsize)
}

// checkInsufficientStorage checks that resp is a refusal for a full disk: 507 with
// Retry-After and ADT's error body.
func checkInsufficientStorage(t *testing.T, resp response) {
	t.Helper()
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	err := json.Unmarshal(resp.body, &body)
	after, aerr := strconv.Atoi(resp.header.Get("Retry-After"))
	if resp.status != http.StatusInsufficientStorage || err != nil || body.Error.Code != "InsufficientStorage" ||
		!strings.Contains(body.Error.Message, "disk is full") || resp.header.Get("x-ms-error-code") != "InsufficientStorage" ||
		aerr != nil || after <= 0 {
		t.Errorf("refusal on a full disk: %d %v %s; want 507 InsufficientStorage with Retry-After", resp.status, resp.header, resp.body)
	}
}

// ready returns the status of base's /readyz, 0 when it cannot be reached.
func ready(base string) int {
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// checkReadyz checks that base's /readyz answers status, with a reason holding reason.
func checkReadyz(t *testing.T, base string, status int, reason string) {
	t.Helper()
	resp, err := http.Get(base + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Status, Reason string }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != status || body.Status != "not ready" || !strings.Contains(body.Reason, reason) {
		t.Errorf("/readyz = %d %+v, want %d not ready because %q", resp.StatusCode, body, status, reason)
	}
}

// historyStatus is the part of GET /history/status the tests look at.
type historyStatus struct {
	LagEvents uint64 `json:"lagEvents"`
	LastError string `json:"lastError"`
}

// waitHistory polls GET /history/status until cond holds, failing t after a minute: the
// history writer's backoff grows to 30s while it cannot write.
func waitHistory(t *testing.T, c *client, cond func(historyStatus) bool) {
	t.Helper()
	var st historyStatus
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		resp, err := c.do(context.Background(), http.MethodGet, "/history/status", nil)
		if err != nil {
			t.Fatal(err)
		}
		if resp.status != http.StatusOK {
			t.Fatalf("GET /history/status: %d %s", resp.status, resp.body)
		}
		st = historyStatus{}
		if err := json.Unmarshal(resp.body, &st); err != nil {
			t.Fatal(err)
		}
		if cond(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("history status after a minute: %+v", st)
		}
	}
}
