package e2e_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/test/process"
)

// TestRestart stops the server cleanly with SIGTERM and checks that it exits 0, that a
// restart on the same data directory serves exactly the same twins and relationships, and
// that the change log goes on from where it stopped without a gap.
func TestRestart(t *testing.T) {
	bin := process.Build(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	start := func() (*process.Process, *client) {
		p := process.Start(t, bin, "--listen", "127.0.0.1:0", "--data-dir", dataDir)
		c := newClient(p.URL, 4)
		return p, c
	}

	srv, c := start()
	c.must(t, http.MethodPost, "/models", []any{sensorModel}, http.StatusCreated)
	const n = 10
	for i := range n {
		c.must(t, http.MethodPut, twinPath(fmt.Sprint("t", i)), sensorTwin(i), http.StatusOK)
	}
	for i := range n - 1 {
		body := map[string]any{"$targetId": fmt.Sprint("t", i+1), "$relationshipName": "feeds", "weight": i}
		c.must(t, http.MethodPut, relPath(fmt.Sprint("t", i), "next"), body, http.StatusOK)
	}
	for i := range n {
		patch := []map[string]any{{"op": "add", "path": "/label", "value": fmt.Sprint("label ", i)}}
		c.must(t, http.MethodPatch, twinPath(fmt.Sprint("t", i)), patch, http.StatusNoContent)
	}
	before := snapshot(t, c, n)
	if err := srv.Stop(30 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}
	counts := readLog(t, dataDir)
	if got, want := total(counts), n+(n-1)+n; got != want {
		t.Fatalf("log holds %d events before the restart, want %d", got, want)
	}

	srv, c = start()
	after := snapshot(t, c, n)
	for path, want := range before {
		if got := after[path]; !bytes.Equal(got, want) {
			t.Errorf("GET %s after restart:\n%s\nbefore:\n%s", path, got, want)
		}
	}
	c.must(t, http.MethodDelete, relPath("t0", "next"), nil, http.StatusNoContent)
	c.must(t, http.MethodDelete, twinPath("t0"), nil, http.StatusNoContent)
	if err := srv.Stop(30 * time.Second); err != nil {
		t.Fatalf("second SIGTERM: %v", err)
	}
	counts = readLog(t, dataDir)
	if got, want := total(counts), n+(n-1)+n+2; got != want {
		t.Errorf("log holds %d events after the restart, want %d", got, want)
	}
	if got := counts[eventKey{"Microsoft.DigitalTwins.Twin.Delete", "t0"}]; got != 1 {
		t.Errorf("%d delete events for t0, want 1", got)
	}
}

// snapshot GETs every twin and relationship of TestRestart and returns the bodies by path.
func snapshot(t *testing.T, c *client, n int) map[string][]byte {
	t.Helper()
	docs := map[string][]byte{}
	for i := range n {
		p := twinPath(fmt.Sprint("t", i))
		docs[p] = c.must(t, http.MethodGet, p, nil, http.StatusOK).body
		if i < n-1 {
			p = relPath(fmt.Sprint("t", i), "next")
			docs[p] = c.must(t, http.MethodGet, p, nil, http.StatusOK).body
		}
	}
	return docs
}

// eventKey counts events by type and subject.
type eventKey struct{ typ, subject string }

func total(counts map[eventKey]int) int {
	n := 0
	for _, c := range counts {
		n += c
	}
	return n
}

// readLog opens the store of a stopped server, reads its whole change log, fails t unless the
// records are numbered 1..n without a gap, and counts the events by type and subject.
func readLog(t *testing.T, dataDir string) map[eventKey]int {
	t.Helper()
	st, err := sqlite.Open(sqlite.Config{Dir: dataDir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open the store in %s: %v", dataDir, err)
	}
	defer st.Close()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	counts := map[eventKey]int{}
	last := st.Log().Last()
	var seq uint64
	for seq < last {
		recs, err := st.Log().Read(ctx, seq, 1000)
		if err != nil {
			t.Fatalf("read the log after %d (last %d): %v", seq, last, err)
		}
		for _, r := range recs {
			if r.Seq != seq+1 {
				t.Fatalf("log record %d follows %d: the sequence has a gap", r.Seq, seq)
			}
			seq = r.Seq
			counts[eventKey{r.Event.Type, r.Event.Subject}]++
		}
	}
	return counts
}
