package logtail

import (
	"encoding/json"
	"reflect"
	"testing"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// changes returns records first..last, each of size bytes of data.
func changes(first, last uint64, size int) []store.Change {
	var cs []store.Change
	for seq := first; seq <= last; seq++ {
		cs = append(cs, store.Change{Record: event.Record{Seq: seq, Event: event.Event{Data: make(json.RawMessage, size)}}})
	}
	return cs
}

func TestTail(t *testing.T) {
	small := changeOverhead // the size of a record without data
	tests := []struct {
		name           string
		records, limit int
		push           [][]store.Change
		drop           uint64
		later          [][]store.Change // pushed after the drop
		after, upTo    uint64
		max            int
		want           []uint64 // nil: the tail does not hold after+1
	}{
		{name: "empty", records: 4, limit: 1 << 20, after: 0, upTo: 5, max: 10},
		{name: "all", records: 8, limit: 1 << 20, push: [][]store.Change{changes(1, 3, 0), changes(4, 5, 0)},
			after: 0, upTo: 5, max: 10, want: []uint64{1, 2, 3, 4, 5}},
		{name: "from the middle, bounded by max", records: 8, limit: 1 << 20, push: [][]store.Change{changes(1, 5, 0)},
			after: 2, upTo: 5, max: 2, want: []uint64{3, 4}},
		{name: "bounded by upTo", records: 8, limit: 1 << 20, push: [][]store.Change{changes(1, 5, 0)},
			after: 0, upTo: 3, max: 10, want: []uint64{1, 2, 3}},
		{name: "past the newest", records: 8, limit: 1 << 20, push: [][]store.Change{changes(1, 5, 0)},
			after: 5, upTo: 9, max: 10},
		{name: "evicted by count", records: 4, limit: 1 << 20, push: [][]store.Change{changes(1, 6, 0)},
			after: 1, upTo: 6, max: 10},
		{name: "ring wraps", records: 4, limit: 1 << 20, push: [][]store.Change{changes(1, 6, 0), changes(7, 7, 0)},
			after: 3, upTo: 7, max: 10, want: []uint64{4, 5, 6, 7}},
		{name: "evicted by size", records: 100, limit: 3*small + 3000, push: [][]store.Change{changes(1, 10, 1000)},
			after: 7, upTo: 10, max: 10, want: []uint64{8, 9, 10}},
		{name: "size evicts all but the newest", records: 100, limit: 10, push: [][]store.Change{changes(1, 3, 1000)},
			after: 2, upTo: 3, max: 10, want: []uint64{3}},
		{name: "pruned", records: 8, limit: 1 << 20, push: [][]store.Change{changes(1, 5, 0)}, drop: 3,
			after: 2, upTo: 5, max: 10},
		{name: "after pruning", records: 8, limit: 1 << 20, push: [][]store.Change{changes(1, 5, 0)}, drop: 3,
			after: 3, upTo: 5, max: 10, want: []uint64{4, 5}},
		// A batch committed before the prune and acknowledged after it: the prune's records
		// stay out of the tail.
		{name: "pushed after pruning", records: 8, limit: 1 << 20, push: [][]store.Change{changes(1, 5, 0)}, drop: 7,
			later: [][]store.Change{changes(6, 9, 0)}, after: 5, upTo: 9, max: 10},
		{name: "read after pushed after pruning", records: 8, limit: 1 << 20, push: [][]store.Change{changes(1, 5, 0)}, drop: 7,
			later: [][]store.Change{changes(6, 9, 0)}, after: 7, upTo: 9, max: 10, want: []uint64{8, 9}},
		{name: "a gap starts over", records: 8, limit: 1 << 20, push: [][]store.Change{changes(1, 3, 0), changes(6, 7, 0)},
			after: 2, upTo: 7, max: 10},
		{name: "after a gap", records: 8, limit: 1 << 20, push: [][]store.Change{changes(1, 3, 0), changes(6, 7, 0)},
			after: 5, upTo: 7, max: 10, want: []uint64{6, 7}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tl := New(tc.records, tc.limit)
			for _, cs := range tc.push {
				tl.Push(cs)
			}
			if tc.drop > 0 {
				tl.DropThrough(tc.drop)
			}
			for _, cs := range tc.later {
				tl.Push(cs)
			}
			var got []uint64
			ok := tl.Read(tc.after, tc.upTo, tc.max, func(c *store.Change) { got = append(got, c.Seq) })
			if ok != (tc.want != nil) || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Read(%d, %d, %d) = %v, %v; want %v", tc.after, tc.upTo, tc.max, got, ok, tc.want)
			}
		})
	}
}
