package sqlite

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"testing"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/storetest"
)

func TestChangeLogContract(t *testing.T) {
	storetest.RunChangeLog(t, func(t *testing.T) store.Store { return open(t, Config{Dir: t.TempDir()}) })
}

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
			tl := newTail(tc.records, tc.limit)
			for _, cs := range tc.push {
				tl.push(cs)
			}
			if tc.drop > 0 {
				tl.dropThrough(tc.drop)
			}
			for _, cs := range tc.later {
				tl.push(cs)
			}
			var got []uint64
			ok := tl.read(tc.after, tc.upTo, tc.max, func(c *store.Change) { got = append(got, c.Seq) })
			if ok != (tc.want != nil) || !reflect.DeepEqual(got, tc.want) {
				t.Errorf("read(%d, %d, %d) = %v, %v; want %v", tc.after, tc.upTo, tc.max, got, ok, tc.want)
			}
		})
	}
}

// TestLogFromDiskAndTailAgree checks that the records the tail hands out are the records the
// database holds: the same log read before and after a restart, which empties the tail.
func TestLogFromDiskAndTailAgree(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Config{Dir: dir})
	for i := range 50 {
		err := s.Update(context.Background(), func(w store.Writer) error {
			id := fmt.Sprint("twin-", i%7)
			e := event.Event{
				ID: fmt.Sprint("e", i), Source: "twinflow.test", SpecVersion: event.SpecVersion, Type: event.TwinUpdate,
				Subject: id, Time: "2026-01-02T03:04:05.0000000Z", DataContentType: "application/json",
				TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
				Data:        json.RawMessage(fmt.Sprintf(`[{"op":"replace","path":"/v","value":"\u00e9\n%d"}]`, i)),
			}
			if i%5 == 0 {
				e.Type, e.Subject, e.DataSchema = event.Telemetry, "", "dtmi:example:Room;1"
			}
			return errors.Join(w.PutTwin(store.Twin{ID: id, ModelID: "dtmi:example:Room;1", ETag: `W/"1"`, Doc: json.RawMessage(`{}`)}), w.Emit(e))
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	cl := s.Log().(store.ChangeLog)
	fromTail, err := cl.ReadChanges(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = open(t, Config{Dir: dir})
	defer s.Close()
	fromDisk, err := s.Log().(store.ChangeLog).ReadChanges(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(fromTail) != 50 || len(fromDisk) != 50 {
		t.Fatalf("read %d records from the tail and %d from disk, want 50", len(fromTail), len(fromDisk))
	}
	for i := range fromDisk {
		if !reflect.DeepEqual(fromTail[i].Record, fromDisk[i].Record) {
			t.Errorf("record %d from the tail %+v, from disk %+v", i+1, fromTail[i].Record, fromDisk[i].Record)
		}
		if wantKnown := i%5 != 0; fromTail[i].Known != wantKnown || fromDisk[i].Known {
			t.Errorf("record %d: known %v from the tail, %v from disk", i+1, fromTail[i].Known, fromDisk[i].Known)
		}
	}
}
