package detector

import (
	"testing"

	"github.com/twinflow/twinflow/internal/history"
)

// TestDeletedBefore checks which deletions of a twin a timeline takes before a row: those
// before it and before the twin's next row, each once.
func TestDeletedBefore(t *testing.T) {
	for _, tc := range []struct {
		name    string
		deleted []uint64
		seq     uint64
		next    uint64 // the twin's next row; 0 for none
		want    []bool // the answers of successive calls
	}{
		{"none", nil, 10, 0, []bool{false}},
		{"before the row", []uint64{4}, 10, 0, []bool{true, false}},
		{"two before the row", []uint64{4, 6}, 10, 0, []bool{true, true, false}},
		{"at the row", []uint64{10}, 10, 0, []bool{false}},
		{"after the row", []uint64{12}, 10, 0, []bool{false}},
		// The deletion's removals are its twin's rows: they come first.
		{"at the twin's next row", []uint64{4}, 10, 4, []bool{false}},
		{"after the twin's next row", []uint64{6}, 10, 5, []bool{false}},
		{"before the twin's next row", []uint64{4}, 10, 7, []bool{true, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := &historyRead{deleted: tc.deleted}
			next := &history.PropertyEvent{Seq: tc.next}
			for i, want := range tc.want {
				if got := h.deletedBefore(tc.seq, tc.next != 0, next); got != want {
					t.Fatalf("call %d = %v, want %v", i, got, want)
				}
			}
		})
	}
}
