package sqlite

import (
	"bytes"

	"github.com/twinflow/twinflow/internal/store"
)

// cacheEntryOverhead approximates the bytes a cache entry costs beyond its strings and
// document: the map slot and the Twin's headers.
const cacheEntryOverhead = 96

// twinCache keeps twins the writer read or wrote, as its open transaction sees them, so the
// twin read that starts most Updates skips SQLite. Only the writer goroutine uses it. It holds
// at most budget bytes and evicts arbitrary entries (Go's map order) to stay within them.
//
// Entries must never be ahead of or behind what the transaction would return: the writer
// drops what a failed fn wrote and clears the cache when a batch rolls back.
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
