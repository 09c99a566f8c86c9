package sqlite

import (
	"bytes"

	"github.com/twinflow/twinflow/internal/store"
)

// cacheEntryOverhead approximates the bytes a cache entry costs beyond its strings and
// document: the map slot and the Twin's headers.
const cacheEntryOverhead = 96

// twinCache keeps twins as the writer's open transaction sees them: those that Updates read
// (writer.Twin) or wrote (writer.PutTwin), so that the twin read that starts most Updates
// (among them the twin service's ETag check) skips SQLite. It is one of the copies of twin
// state the write path keeps (see package store). Only the writer goroutine uses it; Views
// and log reads never see it.
//
// Invariant: an entry equals the row that the open transaction, or between transactions the
// database, holds for its id. A missing entry says nothing: the twin may not exist, may never
// have been read, or may have been evicted; a twin found missing is not cached. The writer is
// the only one that changes twin rows (Open locks the data directory), so entries stay true
// from one transaction to the next. The writer keeps the invariant so:
//   - writer.Twin caches the row it read; writer.PutTwin caches the state it wrote, or drops
//     the entry when the write failed; writer.DeleteTwin drops the entry;
//   - when a fn fails or panics and its savepoint is rolled back, apply drops the twins the fn
//     put (writer.touched);
//   - when a batch rolls back (a storage failure, a failed begin or commit), commit clears the
//     whole cache.
//
// It holds at most budget bytes, as cacheCost estimates them, and evicts arbitrary entries
// (Go's map order) to stay within them; a twin that costs more than the budget is not cached,
// and a budget of 0 or less disables it. It owns its documents: get returns a copy, and the
// document PutTwin caches is shared, read-only, with the log's tail.
type twinCache struct {
	budget int
	size   int
	twins  map[string]store.Twin
}

// newTwinCache returns a cache of budget bytes; a budget of 0 or less disables it.
func newTwinCache(budget int) twinCache {
	return twinCache{budget: budget, twins: make(map[string]store.Twin)}
}

func cacheCost(t *store.Twin) int {
	return len(t.ID) + len(t.ModelID) + len(t.ETag) + len(t.Doc) + cacheEntryOverhead
}

// get returns the cached twin id with a copy of its document, which the caller may keep.
func (c *twinCache) get(id string) (store.Twin, bool) {
	t, ok := c.twins[id]
	if ok {
		t.Doc = bytes.Clone(t.Doc)
	}
	return t, ok
}

// put caches t, taking ownership of t.Doc.
func (c *twinCache) put(t store.Twin) {
	cost := cacheCost(&t)
	if cost > c.budget {
		c.drop(t.ID)
		return
	}
	if old, ok := c.twins[t.ID]; ok {
		c.size -= cacheCost(&old)
	}
	for id, old := range c.twins {
		if c.size+cost <= c.budget {
			break
		}
		if id != t.ID {
			c.size -= cacheCost(&old)
			delete(c.twins, id)
		}
	}
	c.twins[t.ID] = t
	c.size += cost
}

// drop forgets twin id.
func (c *twinCache) drop(id string) {
	if old, ok := c.twins[id]; ok {
		c.size -= cacheCost(&old)
		delete(c.twins, id)
	}
}

// clear forgets every twin.
func (c *twinCache) clear() {
	clear(c.twins)
	c.size = 0
}
