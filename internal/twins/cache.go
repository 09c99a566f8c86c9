package twins

import (
	"sync"

	"github.com/twinflow/twinflow/internal/store"
)

// twinCache holds twins the service wrote recently, so that a write can be prepared without
// reading a store snapshot first. It is one of the copies of twin state the write path keeps
// (see package store).
//
// Writers: PutTwin, PatchTwin and PatchComponent put the state their Update committed, only
// once Update returned nil, and Committed the states of Prepared.Commit once its caller's
// Update did; DeleteTwin removes the twin once its write has returned, whether
// it succeeded or not. Nothing else changes it: the service's other writes leave twin rows
// alone. Readers: PutTwin and patchTwin, and the callers of CachedTwin, who prepare changes
// with PrepareChanges and commit them with Prepared.Commit, which checks them as the
// service's own writes are checked; Twin, Component, relationships and telemetry read the
// store.
//
// It is only a hint and may be stale: two writes of one twin may put their states in another
// order than they committed them, a write that committed before a delete may put the twin back
// after the delete removed it, and writes that do not go through this Service do not reach
// it. Staleness is caught inside the store's writer: a write prepared from an entry re-reads
// the twin in its Update and commits only if the twin still exists with the entry's ETag.
// When the ETag changed, or PutTwin finds that its guess was wrong (it guesses "create" for a
// twin the cache lacks), the Update returns ErrStale and the write is prepared again from a
// store snapshot (Service.write); a patched twin that is gone is DigitalTwinNotFound. A
// failure to prepare from an entry, which may come from its being stale, falls back to the
// store the same way. So a stale entry costs a retry, and no write commits against a state
// other than the current one. An empty patch commits nothing, but checks the entry the same
// way before it answers with its ETag.
//
// It holds at most Config.CachedTwins twins; when full, put drops an arbitrary entry. A
// cache of size 0 or less holds nothing. An entry shares its document with the write that put
// it (PutTwin also returns it to its caller), so nobody may modify it. It is safe for
// concurrent use.
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
