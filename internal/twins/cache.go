package twins

import (
	"sync"

	"github.com/twinflow/twinflow/internal/store"
)

// twinCache holds recently written twins, so that a patch can be prepared without a store
// read. It is only a hint: a write prepared from it still checks, inside the store's writer,
// that the twin's ETag is the one its work was based on, and a stale entry only costs a retry
// from the store. When full it drops an arbitrary entry. A nil or zero-sized cache holds
// nothing. It is safe for concurrent use.
type twinCache struct {
	mu  sync.Mutex
	max int
	m   map[string]store.Twin
}

// newTwinCache returns a cache of at most size twins.
func newTwinCache(size int) *twinCache {
	return &twinCache{max: size, m: make(map[string]store.Twin, max(0, min(size, 1024)))}
}

// get returns the cached twin id.
func (c *twinCache) get(id string) (store.Twin, bool) {
	if c.max <= 0 {
		return store.Twin{}, false
	}
	c.mu.Lock()
	t, ok := c.m[id]
	c.mu.Unlock()
	return t, ok
}

// put caches t, a committed state of its twin.
func (c *twinCache) put(t store.Twin) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[t.ID]; !ok && len(c.m) >= c.max {
		for id := range c.m {
			delete(c.m, id)
			break
		}
	}
	c.m[t.ID] = t
}

// remove drops twin id.
func (c *twinCache) remove(id string) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	delete(c.m, id)
	c.mu.Unlock()
}
