// Package logtail keeps the newest records of a change log in memory, each with the state its
// change left behind, so that a store's readers following the head of its log (relays through
// Log().Read, the graph index through ReadChanges) neither query the database nor decode JSON
// for them. The stores (store/sqlite, store/postgres) say when they push and drop records.
package logtail

import (
	"sync"

	"github.com/twinflow/twinflow/internal/store"
)

// Defaults for a store's tail: at most DefaultRecords records and, beyond its newest record,
// no more than DefaultBytes of their events and states.
const (
	DefaultRecords = 1 << 14
	DefaultBytes   = 32 << 20
)

// changeOverhead approximates what a Change costs beyond its strings and documents.
const changeOverhead = 256

// Tail is a contiguous run of a log's newest records, bounded in records and bytes. Its
// methods are safe for concurrent use; the records it holds are shared with every reader, and
// nobody modifies them.
type Tail struct {
	mu    sync.RWMutex
	ring  []store.Change // ring[head] is the oldest of n records
	head  int
	n     int
	size  int // the approximate bytes of the n records
	limit int // the most bytes the tail keeps beyond its newest record
	// pruned is the newest Seq DropThrough was given; Push drops records up to it.
	pruned uint64
}

// New returns an empty Tail of up to records records and, beyond its newest record, limit
// bytes.
func New(records, limit int) *Tail {
	return &Tail{ring: make([]store.Change, records), limit: limit}
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

// Push appends cs, evicting the oldest records beyond the tail's bounds and leaving out those
// the log no longer holds (Seq up to the last DropThrough). Records that do not continue the
// Seqs the tail holds start it over, so that it never holds a gap.
func (t *Tail) Push(cs []store.Change) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for i := range cs {
		if cs[i].Seq <= t.pruned {
			continue
		}
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
func (t *Tail) dropOldestLocked() {
	t.size -= changeSize(&t.ring[t.head])
	t.ring[t.head] = store.Change{}
	t.head = (t.head + 1) % len(t.ring)
	t.n--
}

// DropThrough evicts the records up to and including seq, which the log no longer keeps, and
// keeps Push from adding them later.
func (t *Tail) DropThrough(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruned = max(t.pruned, seq)
	for t.n > 0 && t.ring[t.head].Seq <= seq {
		t.dropOldestLocked()
	}
}

// resetLocked empties the tail. The caller holds mu.
func (t *Tail) resetLocked() {
	clear(t.ring)
	t.head, t.n, t.size = 0, 0, 0
}

// Read calls fn with each record in Seq order from after+1 up to and including upTo, at most
// max of them, and reports true; or reports false, calling fn for none, when the tail does not
// hold record after+1.
func (t *Tail) Read(after, upTo uint64, max int, fn func(*store.Change)) bool {
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
