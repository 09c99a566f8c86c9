package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/test/process"
)

// TestHistorySurvivesSIGKILL kills the server with SIGKILL while workers PATCH twins, twice,
// restarts it on the same data directory and checks that each twin's history holds every
// acknowledged value exactly once, in order: the history writer commits its rows together
// with its cursor, so a crash between the two never loses or repeats a row. A write in
// flight at the kill may or may not be in the history, once.
func TestHistorySurvivesSIGKILL(t *testing.T) {
	const twins, perTwin = 16, 400
	bin := process.Build(t)
	args := []string{"--listen", "127.0.0.1:0", "--data-dir", filepath.Join(t.TempDir(), "data")}
	srv := process.Start(t, bin, args...)
	c := newClient(srv.URL, twins)
	c.must(t, http.MethodPost, "/models", []any{sensorModel}, http.StatusCreated)
	for i := range twins {
		c.must(t, http.MethodPut, twinPath(fmt.Sprintf("h%d", i)), sensorTwin(0), http.StatusOK)
	}

	// acked[i] are the values the server acknowledged for twin i; inFlight[i] the one it
	// was sent and has not answered, if any; unanswered[i] those a kill left unanswered.
	var (
		mu         sync.Mutex
		acked      = make([][]int, twins)
		inFlight   = make([]int, twins)
		unanswered = make([]map[int]bool, twins)
	)
	storm := func(ctx context.Context, from int) {
		var wg sync.WaitGroup
		for i := range twins {
			wg.Go(func() {
				id := fmt.Sprintf("h%d", i)
				for v := from; v < from+perTwin && ctx.Err() == nil; v++ {
					mu.Lock()
					inFlight[i] = v
					mu.Unlock()
					resp, err := c.do(ctx, http.MethodPatch, twinPath(id), []map[string]any{{"op": "replace", "path": "/value", "value": v}})
					if err != nil || resp.status != http.StatusNoContent {
						return // the server is gone
					}
					mu.Lock()
					acked[i] = append(acked[i], v)
					inFlight[i] = 0
					mu.Unlock()
				}
			})
		}
		wg.Wait()
	}
	for round := range 2 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() {
			defer close(done)
			storm(ctx, 1+round*perTwin)
		}()
		time.Sleep(time.Second)
		srv.Kill()
		<-done
		cancel()
		for i, v := range inFlight {
			if v != 0 {
				if unanswered[i] == nil {
					unanswered[i] = make(map[int]bool)
				}
				unanswered[i][v] = true
				inFlight[i] = 0
			}
		}
		srv = process.Start(t, bin, args...)
		c = newClient(srv.URL, twins)
	}

	// Wait for the writer to catch up with the log.
	deadline := time.Now().Add(30 * time.Second)
	for {
		var st struct {
			LagEvents uint64 `json:"lagEvents"`
			Cursor    uint64 `json:"cursor"`
		}
		if err := json.Unmarshal(c.must(t, http.MethodGet, "/history/status", nil, http.StatusOK).body, &st); err != nil {
			t.Fatal(err)
		}
		if st.LagEvents == 0 && st.Cursor > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history still lags %d events after 30s", st.LagEvents)
		}
		time.Sleep(20 * time.Millisecond)
	}

	total := 0
	for i := range twins {
		id := fmt.Sprintf("h%d", i)
		got := historyValues(t, c, id, "value")
		// The creation's 0, then each acknowledged value once, in order; a value in flight at
		// a kill may sit between them, once.
		want := acked[i]
		total += len(want)
		j := 0
		for k, v := range got {
			if k == 0 {
				if v != 0 {
					t.Errorf("%s's history starts at %d; want the creation's 0", id, v)
				}
				continue
			}
			if j < len(want) && v == want[j] {
				j++
				continue
			}
			// Not acknowledged: it must be a write a kill left unanswered, once.
			if !unanswered[i][v] {
				t.Errorf("%s's history holds %d, neither acknowledged next nor left unanswered by a kill", id, v)
			}
			delete(unanswered[i], v)
		}
		if j != len(want) {
			t.Errorf("%s's history %v misses acknowledged values after %d of %d", id, got, j, len(want))
		}
	}
	if total < twins*10 {
		t.Fatalf("only %d patches were acknowledged before the kills; the test proves little", total)
	}
	t.Logf("%d acknowledged patches, each in the history once", total)
}

// historyValues reads a twin's whole history of one integer property, following nextLinks.
func historyValues(t *testing.T, c *client, id, property string) []int {
	t.Helper()
	var out []int
	path := twinPath(id) + "/history?property=" + property
	for path != "" {
		var page struct {
			Value []struct {
				Value json.RawMessage `json:"value"`
			} `json:"value"`
			NextLink *string `json:"nextLink"`
		}
		if err := json.Unmarshal(c.must(t, http.MethodGet, path, nil, http.StatusOK).body, &page); err != nil {
			t.Fatal(err)
		}
		for _, v := range page.Value {
			n, err := strconv.Atoi(string(v.Value))
			if err != nil {
				t.Fatalf("%s's %s history holds %s", id, property, v.Value)
			}
			out = append(out, n)
		}
		path = ""
		if page.NextLink != nil {
			path = *page.NextLink
		}
	}
	return out
}
