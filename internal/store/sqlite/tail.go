package sqlite

import (
	"sync"

	"github.com/twinflow/twinflow/internal/store"
)

// Bounds of the log's in-memory tail: it keeps at most tailRecords records and, beyond its
// newest record, no more than tailBytes of their events and states.
const (
	tailRecords = 1 << 14
	tailBytes   = 32 << 20
)

// changeOverhead approximates what a Change costs beyond its strings and documents.
const changeOverhead = 256

// tail keeps the newest durable log records in memory, each with the state its change left
// behind, so that readers following the head of the log (relays, the query index) neither
// query SQLite nor decode JSON for them. It holds a contiguous run of Seqs ending at the
// log's Last; older records are read from the database. Its methods are safe for concurrent
// use.
type tail struct {
	mu    sync.RWMutex
	ring  []store.Change // ring[head] is the oldest of n records
	head  int
	n     int
	size  int // the approximate bytes of the n records
	limit int // the most bytes the tail keeps beyond its newest record
}

// newTail returns an empty tail of up to records records and limit bytes.
func newTail(records, limit int) *tail {
	return &tail{ring: make([]store.Change, records), limit: limit}
}

// changeSize approximates the memory c holds.
func changeSize(c *store.Change) int {
	n := changeOverhead + len(c.Event.ID) + len(c.Event.Source) + len(c.Event.Subject) +
		len(c.Event.Time) + len(c.Event.TraceParent) + len(c.Event.TraceState) +
		len(c.Event.TelemetrySourceTime) + len(c.Event.Data)
	if c.Twin != nil {
		n += len(c.Twin.ID) + len(c.Twin.ModelID) + len(c.Twin.ETag) + len(c.Twin.Doc)
	}
	if c.Relationship != nil {
		r := c.Relationship
		n += len(r.SourceID) + len(r.ID) + len(r.Name) + len(r.TargetID) + len(r.ETag) + len(r.Doc)
	}
	return n
}

// push appends cs, evicting the oldest records beyond the tail's bounds. Records that do not
// continue the Seqs the tail holds (after a batch failed and its Seqs were given again) start
// it over.
func (t *tail) push(cs []store.Change) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range cs {
		if t.n > 0 && cs[i].Seq != t.ring[(t.head+t.n-1)%len(t.ring)].Seq+1 {
			t.resetLocked()
		}
		if t.n == len(t.ring) {
			t.dropOldestLocked()
		}
		t.ring[(t.head+t.n)%len(t.ring)] = cs[i]
		t.n++
		t.size += changeSize(&cs[i])
		for t.n > 1 && t.size > t.limit {
			t.dropOldestLocked()
		}
	}
}

// dropOldestLocked evicts the oldest record. The caller holds mu.
func (t *tail) dropOldestLocked() {
	t.size -= changeSize(&t.ring[t.head])
	t.ring[t.head] = store.Change{}
	t.head = (t.head + 1) % len(t.ring)
	t.n--
}

// dropThrough evicts the records up to and including seq, which the log no longer keeps.
func (t *tail) dropThrough(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for t.n > 0 && t.ring[t.head].Seq <= seq {
		t.dropOldestLocked()
	}
}

// resetLocked empties the tail. The caller holds mu.
func (t *tail) resetLocked() {
	clear(t.ring)
	t.head, t.n, t.size = 0, 0, 0
}

// read calls fn with each record in Seq order from after+1 up to and including upTo, at most
// max of them, and reports true; or reports false, calling fn for none, when the tail does not
// hold record after+1.
func (t *tail) read(after, upTo uint64, max int, fn func(*store.Change)) bool {
	t.mu.RLock()
	defer t.mu.RUnlock()
	if t.n == 0 {
		return false
	}
	first := t.ring[t.head].Seq
	if after+1 < first || after+1 > first+uint64(t.n)-1 {
		return false
	}
	for seq := after + 1; seq <= upTo && seq < first+uint64(t.n) && max > 0; seq, max = seq+1, max-1 {
		fn(&t.ring[(t.head+int(seq-first))%len(t.ring)])
	}
	return true
}
