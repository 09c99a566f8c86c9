package postgres

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

// tail keeps this store's newest committed log records in memory, each with the state its
// change left behind, so that readers following the head of the log (relays through
// Log().Read, the graph index through ReadChanges) neither query PostgreSQL nor decode JSON for
// them. Its methods are safe for concurrent use.
//
// Writers: the writer goroutine pushes each batch's records once its commit returned (so they
// are durable), before it advances the log's Last past them, and PruneLog drops the records it
// deletes. Other nodes' records never enter it: the records of one store are contiguous only
// until another node appends, and push starts over at such a gap. Readers: readLog, for
// Log().Read and ReadChanges, on the callers' goroutines.
//
// Invariants:
//   - It holds only records of committed batches.
//   - It holds a contiguous run of Seqs; readLog reads the database whenever the tail lacks
//     record after+1, handing those records out without their states (not Known).
//   - It holds no record PruneLog deleted (see pruned).
//   - A Known record's state is what the Update that emitted it left its subject in; records
//     are shared with every reader, and nobody modifies them.
type tail struct {
	mu    sync.RWMutex
	ring  []store.Change // ring[head] is the oldest of n records
	head  int
	n     int
	size  int // the approximate bytes of the n records
	limit int // the most bytes the tail keeps beyond its newest record
	// pruned is the newest Seq PruneLog deleted; push drops records up to it.
	pruned uint64
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

// push appends cs, evicting the oldest records beyond the tail's bounds and leaving out those
// the log no longer holds (Seq up to pruned). Records that do not continue the Seqs the tail
// holds start it over, so that it never holds a gap. The Store pushes acknowledged batches in
// Seq order and never the records of a failed one (whose Seqs the next batch takes again), so
// it does not push a gap; this is a safeguard.
func (t *tail) push(cs []store.Change) {
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
func (t *tail) dropOldestLocked() {
	t.size -= changeSize(&t.ring[t.head])
	t.ring[t.head] = store.Change{}
	t.head = (t.head + 1) % len(t.ring)
	t.n--
}

// dropThrough evicts the records up to and including seq, which the log no longer keeps, and
// keeps push from adding them later.
func (t *tail) dropThrough(seq uint64) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.pruned = max(t.pruned, seq)
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
