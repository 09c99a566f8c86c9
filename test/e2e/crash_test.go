// Package e2e_test runs the real twinflow binary and checks what survives crashes and
// restarts: every acknowledged write, and a gap-free change log holding its events.
package e2e_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinflow/twinflow/test/process"
)

// The size of the crash test: workers each own twins/workers twins and write to them one
// request at a time, so each twin's writes are ordered by their acknowledgements.
const (
	crashTwins   = 48
	crashWorkers = 16
	crashRounds  = 5
)

// write is one write to a twin's value or one relationship PUT.
type write struct {
	value int
	etag  string
}

// twinState is what the test knows about one twin: its last acknowledged value and the write
// in flight when the server died, which may or may not have committed.
type twinState struct {
	id      string
	acked   write
	pending *write
	next    int // the next value to write; values are unique per twin
	updates int // patches known to have committed: each must have left one update event

	rels        map[string]write // relationship id → acknowledged weight and etag
	pendingRel  *relWrite
	relsCreated int // relationship creates known to have committed
}

// relWrite is a relationship PUT in flight.
type relWrite struct {
	id, target string
	weight     int
}

// TestCrashRecovery kills the server with SIGKILL in the middle of a storm of concurrent
// writes, crashRounds times on the same data directory, and checks after every restart that
// each acknowledged write survived and nothing else appeared; at the end it checks that the
// change log is gap-free and holds exactly one event per committed write.
func TestCrashRecovery(t *testing.T) {
	bin := process.Build(t)
	dataDir := filepath.Join(t.TempDir(), "data")
	start := func() (*process.Process, *client) {
		p := process.Start(t, bin, "--listen", "127.0.0.1:0", "--data-dir", dataDir)
		c := newClient(p.URL, crashWorkers)
		return p, c
	}

	srv, c := start()
	c.must(t, http.MethodPost, "/models", []any{sensorModel}, http.StatusCreated)
	twins := make([]*twinState, crashTwins)
	for i := range twins {
		id := fmt.Sprintf("sensor-%02d", i)
		resp := c.must(t, http.MethodPut, twinPath(id), sensorTwin(0), http.StatusOK)
		twins[i] = &twinState{id: id, acked: write{etag: resp.etag}, next: 1, rels: map[string]write{}}
	}

	for round := range crashRounds {
		acked, killedAfter := storm(t, c, twins, srv)
		if t.Failed() {
			return
		}
		srv, c = start()
		landed := verifyAfterCrash(t, c, twins)
		t.Logf("round %d: killed after %v, %d writes acknowledged, %d unacknowledged writes landed",
			round+1, killedAfter.Round(time.Millisecond), acked, landed)
		if t.Failed() {
			return
		}
	}

	if err := srv.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop after the last round: %v", err)
	}
	checkLog(t, dataDir, twins)
}

// storm runs the write workers against srv and kills srv once at least minAcked writes were
// acknowledged and a further random 0–300 ms have passed, so that the kill lands in the
// middle of the storm however slow the machine is. It returns the number of writes
// acknowledged and the time from the start of the storm to the kill.
func storm(t *testing.T, c *client, twins []*twinState, srv *process.Process) (int, time.Duration) {
	const minAcked = 100
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	var (
		wg      sync.WaitGroup
		acked   atomic.Int64
		enough  = make(chan struct{})
		started = time.Now()
	)
	for w := range crashWorkers {
		wg.Go(func() {
			var owned []*twinState
			for i := w; i < len(twins); i += crashWorkers {
				owned = append(owned, twins[i])
			}
			work(ctx, t, c, owned, twins, func() {
				if acked.Add(1) == minAcked {
					close(enough)
				}
			})
		})
	}
	select {
	case <-enough:
		time.Sleep(rand.N(300 * time.Millisecond))
	case <-ctx.Done():
		t.Errorf("fewer than %d writes acknowledged in a minute", minAcked)
	}
	killedAfter := time.Since(started)
	srv.Kill()
	wg.Wait()
	return int(acked.Load()), killedAfter
}

// work writes to the owned twins in turn, three patches to one relationship PUT, until a
// request fails, calling ack after each acknowledged write. Only this worker writes to its
// twins, so each write starts after the previous one to the same twin was acknowledged.
func work(ctx context.Context, t *testing.T, c *client, owned, all []*twinState, ack func()) {
	for n := 0; ; n++ {
		tw := owned[n%len(owned)]
		if n%4 == 3 {
			target := all[rand.N(len(all))]
			if target == tw {
				continue
			}
			rw := &relWrite{id: fmt.Sprintf("r%d", tw.next), target: target.id, weight: tw.next}
			tw.next++
			tw.pendingRel = rw
			body := map[string]any{"$targetId": rw.target, "$relationshipName": "feeds", "weight": rw.weight}
			resp, err := c.do(ctx, http.MethodPut, relPath(tw.id, rw.id), body)
			if err != nil {
				return
			}
			if resp.status != http.StatusOK {
				t.Errorf("PUT relationship %s/%s: status %d: %s", tw.id, rw.id, resp.status, resp.body)
				return
			}
			tw.pendingRel = nil
			tw.rels[rw.id] = write{value: rw.weight, etag: resp.etag}
			tw.relsCreated++
		} else {
			pw := &write{value: tw.next}
			tw.next++
			tw.pending = pw
			patch := []map[string]any{{"op": "replace", "path": "/value", "value": pw.value}}
			resp, err := c.do(ctx, http.MethodPatch, twinPath(tw.id), patch)
			if err != nil {
				return
			}
			if resp.status != http.StatusNoContent || resp.etag == "" {
				t.Errorf("PATCH %s: status %d, etag %q: %s", tw.id, resp.status, resp.etag, resp.body)
				return
			}
			tw.pending = nil
			tw.acked = write{value: pw.value, etag: resp.etag}
			tw.updates++
		}
		ack()
	}
}

// verifyAfterCrash checks every twin and its relationships against what was acknowledged,
// settles the writes that were in flight (they either landed whole or not at all) and returns
// how many of those landed. It then checks that queries, which read the graph index rebuilt
// at the restart, agree with what GET returned.
func verifyAfterCrash(t *testing.T, c *client, twins []*twinState) int {
	landed := verifyStored(t, c, twins)
	indexed := map[string]twinDoc{}
	for _, d := range query[twinDoc](t, c, "SELECT * FROM DIGITALTWINS") {
		indexed[d.ID] = d
	}
	if len(indexed) != len(twins) {
		t.Errorf("the query finds %d twins, want %d", len(indexed), len(twins))
	}
	rels := 0
	for _, tw := range twins {
		if d := indexed[tw.id]; d.Value != tw.acked.value || d.ETag != tw.acked.etag {
			t.Errorf("twin %s: query has value %d etag %s, GET had %d %s", tw.id, d.Value, d.ETag, tw.acked.value, tw.acked.etag)
		}
		rels += len(tw.rels)
	}
	type count struct {
		N int `json:"COUNT"`
	}
	if got := query[count](t, c, "SELECT COUNT() FROM RELATIONSHIPS"); len(got) != 1 || got[0].N != rels {
		t.Errorf("relationship count query = %+v, want %d", got, rels)
	}
	return landed
}

// verifyStored is verifyAfterCrash's check through GET.
func verifyStored(t *testing.T, c *client, twins []*twinState) int {
	landed := 0
	for _, tw := range twins {
		resp := c.must(t, http.MethodGet, twinPath(tw.id), nil, http.StatusOK)
		var doc twinDoc
		if err := json.Unmarshal(resp.body, &doc); err != nil {
			t.Fatalf("decode twin %s: %v", tw.id, err)
		}
		if doc.ETag != resp.etag {
			t.Errorf("twin %s: body $etag %s, header %s", tw.id, doc.ETag, resp.etag)
		}
		switch {
		case doc.Value == tw.acked.value && doc.ETag == tw.acked.etag:
		case tw.pending != nil && doc.Value == tw.pending.value:
			landed++
			tw.updates++
			tw.acked = write{value: doc.Value, etag: doc.ETag}
		default:
			t.Errorf("twin %s: value %d etag %s after restart; last acknowledged %d (%s), in flight %+v",
				tw.id, doc.Value, doc.ETag, tw.acked.value, tw.acked.etag, tw.pending)
		}
		tw.pending = nil

		got := listRelationships(t, c, tw.id)
		for id, want := range tw.rels {
			r, ok := got[id]
			if !ok {
				t.Errorf("relationship %s/%s acknowledged but lost", tw.id, id)
				continue
			}
			if r.ETag != want.etag || r.Weight != want.value {
				t.Errorf("relationship %s/%s: etag %s weight %d, acknowledged %s weight %d",
					tw.id, id, r.ETag, r.Weight, want.etag, want.value)
			}
			delete(got, id)
		}
		if p := tw.pendingRel; p != nil {
			if r, ok := got[p.id]; ok {
				if r.Target != p.target || r.Weight != p.weight {
					t.Errorf("relationship %s/%s landed as %+v, sent %+v", tw.id, p.id, r, *p)
				}
				tw.rels[p.id] = write{value: r.Weight, etag: r.ETag}
				tw.relsCreated++
				landed++
				delete(got, p.id)
			}
			tw.pendingRel = nil
		}
		for id := range got {
			t.Errorf("relationship %s/%s exists but was never written", tw.id, id)
		}
	}
	return landed
}

// listRelationships returns the outgoing relationships of a twin by id, following nextLink.
func listRelationships(t *testing.T, c *client, id string) map[string]relDoc {
	t.Helper()
	rels := map[string]relDoc{}
	next := c.base + twinPath(id) + "/relationships?api-version=" + apiVersion
	for next != "" {
		resp, err := c.http.Get(next)
		if err != nil {
			t.Fatalf("list relationships of %s: %v", id, err)
		}
		var page struct {
			Value    []relDoc `json:"value"`
			NextLink *string  `json:"nextLink"`
		}
		err = json.NewDecoder(resp.Body).Decode(&page)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("list relationships of %s: status %d, decode: %v", id, resp.StatusCode, err)
		}
		for _, r := range page.Value {
			rels[r.ID] = r
		}
		next = ""
		if page.NextLink != nil {
			next = *page.NextLink
		}
	}
	return rels
}

// checkLog opens the stopped server's store and checks that its change log numbers records
// 1..n without gaps and holds exactly one event for every committed write: a create per twin,
// an update per patch and a create per relationship.
func checkLog(t *testing.T, dataDir string, twins []*twinState) {
	t.Helper()
	counts := readLog(t, dataDir)
	for _, tw := range twins {
		if got := counts[eventKey{"Microsoft.DigitalTwins.Twin.Create", tw.id}]; got != 1 {
			t.Errorf("twin %s: %d create events, want 1", tw.id, got)
		}
		if got := counts[eventKey{"Microsoft.DigitalTwins.Twin.Update", tw.id}]; got != tw.updates {
			t.Errorf("twin %s: %d update events, want %d (one per committed patch)", tw.id, got, tw.updates)
		}
		got := 0
		for k, n := range counts {
			if k.typ == "Microsoft.DigitalTwins.Relationship.Create" && strings.HasPrefix(k.subject, tw.id+"/relationships/") {
				got += n
			}
		}
		if got != tw.relsCreated {
			t.Errorf("twin %s: %d relationship create events, want %d", tw.id, got, tw.relsCreated)
		}
	}
}
