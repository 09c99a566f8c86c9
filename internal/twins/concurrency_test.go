package twins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// TestConcurrentPatchIfMatch has 50 goroutines race to patch one twin with the same If-Match:
// exactly one wins.
func TestConcurrentPatchIfMatch(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	tw := e.putTwin("r1", `{"$metadata":{"$model":"dtmi:ex:Room;1"},"therm":{},"hum":0}`)
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		wins   int
		failed int
	)
	for i := range 50 {
		wg.Go(func() {
			_, err := e.g.PatchTwin(ctx, "r1", []byte(fmt.Sprintf(`[{"op":"replace","path":"/hum","value":%d}]`, i)), tw.ETag, trace)
			mu.Lock()
			defer mu.Unlock()
			var te *twin.Error
			switch {
			case err == nil:
				wins++
			case errors.As(err, &te) && te.Kind == twin.KindPreconditionFailed:
				failed++
			default:
				t.Errorf("patch %d: %v", i, err)
			}
		})
	}
	wg.Wait()
	if wins != 1 || failed != 49 {
		t.Fatalf("%d wins, %d precondition failures; want 1 and 49", wins, failed)
	}
	if n := len(e.events()); n != 1 {
		t.Fatalf("%d events; want 1", n)
	}
}

// TestConcurrentIncrements has 50 goroutines each increment a counter 10 times by
// read-modify-write with If-Match, retrying on 412: every ETag is built on exactly once and no
// increment is lost.
func TestConcurrentIncrements(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	e.putTwin("r1", `{"$metadata":{"$model":"dtmi:ex:Room;1"},"therm":{},"hum":0}`)
	const workers, increments = 50, 10
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		basis = map[string]int{} // ETag → successful patches based on it
	)
	for range workers {
		wg.Go(func() {
			for done := 0; done < increments; {
				tw, err := e.g.Twin(ctx, "r1")
				if err != nil {
					t.Error(err)
					return
				}
				var doc struct{ Hum int }
				if err := json.Unmarshal(tw.Doc, &doc); err != nil {
					t.Error(err)
					return
				}
				_, err = e.g.PatchTwin(ctx, "r1", []byte(fmt.Sprintf(`[{"op":"replace","path":"/hum","value":%d}]`, doc.Hum+1)), tw.ETag, trace)
				var te *twin.Error
				if errors.As(err, &te) && te.Kind == twin.KindPreconditionFailed {
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				basis[tw.ETag]++
				mu.Unlock()
				done++
			}
		})
	}
	wg.Wait()
	for etag, n := range basis {
		if n != 1 {
			t.Errorf("ETag %s won %d times", etag, n)
		}
	}
	tw, err := e.g.Twin(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Hum int }
	if err := json.Unmarshal(tw.Doc, &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Hum != workers*increments || len(basis) != workers*increments {
		t.Fatalf("counter %d after %d successful patches; want %d", doc.Hum, len(basis), workers*increments)
	}
	if n := len(e.events()); n != workers*increments {
		t.Fatalf("%d events; want %d", n, workers*increments)
	}
}

// TestConcurrentUnconditionalPatches has 50 goroutines patch one twin without If-Match: every
// patch lands (the losers of the optimistic race redo their work) and none is lost.
func TestConcurrentUnconditionalPatches(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	e.putTwin("r1", `{"$metadata":{"$model":"dtmi:ex:Room;1"},"therm":{},"tags":{}}`)
	const workers = 50
	var wg sync.WaitGroup
	for i := range workers {
		wg.Go(func() {
			p := fmt.Sprintf(`[{"op":"add","path":"/tags/k%d","value":"v"}]`, i)
			if _, err := e.g.PatchTwin(ctx, "r1", []byte(p), "", trace); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	tw, err := e.g.Twin(ctx, "r1")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct{ Tags map[string]string }
	if err := json.Unmarshal(tw.Doc, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Tags) != workers {
		t.Fatalf("%d tags after %d patches: %v", len(doc.Tags), workers, doc.Tags)
	}
	if n := len(e.events()); n != workers {
		t.Fatalf("%d events; want %d", n, workers)
	}
}

// racingStore makes every View lose a race: after fn has read the snapshot, another write
// changes twin id's ETag, until races runs out.
type racingStore struct {
	store.Store
	id    string
	races int
}

func (s *racingStore) View(ctx context.Context, fn func(store.Reader) error) error {
	if err := s.Store.View(ctx, fn); err != nil {
		return err
	}
	if s.races == 0 {
		return nil
	}
	s.races--
	return s.Store.Update(ctx, func(w store.Writer) error {
		tw, err := w.Twin(s.id)
		if err != nil {
			return err
		}
		tw.ETag = twin.NewETag()
		return w.PutTwin(tw)
	})
}

// TestWriteRedoesStaleWork checks that a write prepared against a snapshot that went stale is
// prepared again, and after optimisticAttempts lost races inside the Update, and that it
// commits exactly once either way.
func TestWriteRedoesStaleWork(t *testing.T) {
	ctx := context.Background()
	for _, races := range []int{1, optimisticAttempts - 1, optimisticAttempts, optimisticAttempts + 5} {
		t.Run(fmt.Sprint(races), func(t *testing.T) {
			e := newRoomEnv(t)
			e.putRoom("r1")
			rs := &racingStore{Store: e.st, id: "r1"}
			cfg := e.g.cfg
			cfg.CachedTwins = -1 // every attempt reads through the racing store
			g, err := New(cfg, rs, nil)
			if err != nil {
				t.Fatal(err)
			}
			rs.races = races
			etag, err := g.PatchTwin(ctx, "r1", []byte(`[{"op":"replace","path":"/temp","value":5}]`), "", trace)
			if err != nil {
				t.Fatal(err)
			}
			tw, err := e.g.Twin(ctx, "r1")
			if err != nil || tw.ETag != etag {
				t.Fatalf("Twin = %+v, %v; want ETag %s", tw, err, etag)
			}
			e.wantEvent("Microsoft.DigitalTwins.Twin.Update", "r1", `{"modelId":"dtmi:ex:Room;1","patch":[{"op":"replace","path":"/temp","value":5}]}`)
			wantRaces := min(races, optimisticAttempts)
			if races-rs.races != wantRaces {
				t.Fatalf("%d races happened; want %d", races-rs.races, wantRaces)
			}
			// With If-Match on the original ETag, a lost race is a precondition failure.
			rs.races = 1
			_, err = g.PatchTwin(ctx, "r1", []byte(`[{"op":"replace","path":"/temp","value":6}]`), etag, trace)
			wantErr(t, err, twin.KindPreconditionFailed, "")
		})
	}
}
