package sqlite

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/storetest"
)

func TestTwinCache(t *testing.T) {
	tw := func(id, doc string) store.Twin { return store.Twin{ID: id, Doc: json.RawMessage(doc)} }
	one := cacheCost(&store.Twin{ID: "a", Doc: json.RawMessage("{}")})
	for _, tc := range []struct {
		name   string
		budget int
		ops    func(c *twinCache)
		want   []string // ids cached afterwards
	}{
		{"disabled", -1, func(c *twinCache) { c.put(tw("a", "{}")) }, nil},
		{"within budget", 3 * one, func(c *twinCache) {
			c.put(tw("a", "{}"))
			c.put(tw("b", "{}"))
		}, []string{"a", "b"}},
		{"replace keeps size", 2 * one, func(c *twinCache) {
			c.put(tw("a", "{}"))
			c.put(tw("b", "{}"))
			c.put(tw("a", "[]"))
		}, []string{"a", "b"}},
		{"evicts to fit", 2 * one, func(c *twinCache) {
			c.put(tw("a", "{}"))
			c.put(tw("b", "{}"))
			c.put(tw("c", "{}"))
		}, []string{"c", "?"}},
		{"too large for the budget", one, func(c *twinCache) {
			c.put(tw("a", "{}"))
			c.put(tw("a", `{"much":"larger"}`))
		}, nil},
		{"drop and clear", 4 * one, func(c *twinCache) {
			c.put(tw("a", "{}"))
			c.put(tw("b", "{}"))
			c.put(tw("c", "{}"))
			c.drop("b")
			c.clear()
			c.put(tw("d", "{}"))
		}, []string{"d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTwinCache(tc.budget)
			tc.ops(&c)
			if len(c.twins) != len(tc.want) {
				t.Fatalf("cache holds %d twins, want %d", len(c.twins), len(tc.want))
			}
			size := 0
			for id, cached := range c.twins {
				size += cacheCost(&cached)
				if id != cached.ID {
					t.Errorf("entry %q holds twin %q", id, cached.ID)
				}
			}
			for _, id := range tc.want {
				if _, ok := c.twins[id]; id != "?" && !ok {
					t.Errorf("twin %q is not cached", id)
				}
			}
			if size != c.size || c.size > max(tc.budget, 0) {
				t.Errorf("cache counts %d bytes, holds %d, budget %d", c.size, size, tc.budget)
			}
		})
	}
}

// TestContractTinyTwinCache runs the contract suite with a cache that evicts constantly.
func TestContractTinyTwinCache(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, Config{Dir: t.TempDir(), TwinCacheBytes: 2 * cacheEntryOverhead})
	})
}

func TestTwinCacheFollowsRolledBackBatch(t *testing.T) {
	s := open(t, Config{Dir: t.TempDir()})
	defer s.Close()
	update(t, s, func(w store.Writer) error {
		return w.PutTwin(store.Twin{ID: "a", Doc: json.RawMessage(`{"v":1}`)})
	})
	// A storage failure in a later fn dooms the whole batch, including a fn that already
	// put a new version of the twin into the cache.
	release := holdWriter(t, s)
	done := make(chan error, 2)
	go func() {
		done <- s.Update(context.Background(), func(w store.Writer) error {
			return w.PutTwin(store.Twin{ID: "a", Doc: json.RawMessage(`{"v":2}`)})
		})
	}()
	waitQueued(t, s, 1)
	go func() {
		done <- s.Update(context.Background(), func(w store.Writer) error {
			ww := w.(*writer)
			_, err := ww.exec(stmtInsertTwin, "b", nil, nil, nil) // violates NOT NULL
			return err
		})
	}()
	waitQueued(t, s, 2)
	if err := release(); err == nil {
		t.Error("the blocking Update, in a failed batch, succeeded")
	}
	for range 2 {
		if err := <-done; err == nil {
			t.Error("an Update in a failed batch succeeded")
		}
	}
	update(t, s, func(w store.Writer) error {
		got, err := w.Twin("a")
		if err != nil {
			return err
		}
		if string(got.Doc) != `{"v":1}` {
			t.Errorf("after a rolled-back batch the writer reads %s, want the committed version", got.Doc)
		}
		return nil
	})
}
