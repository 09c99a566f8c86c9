package detector

import "testing"

func TestLivesStart(t *testing.T) {
	created, deleted, again := uint64(5), uint64(9), uint64(12)
	l := lives{created, deleted, again}
	for _, tc := range []struct {
		seq, want uint64
	}{
		{1, 0},        // before any lifecycle row history holds
		{5, created},  // the creation's own rows
		{8, created},  // an update
		{9, deleted},  // the deletion's removals
		{11, deleted}, // nothing lives between a deletion and a creation
		{12, again},
		{100, again},
	} {
		if got := l.start(tc.seq); got != tc.want {
			t.Errorf("start(%d) = %d, want %d", tc.seq, got, tc.want)
		}
	}
	if got := (lives{}).start(7); got != 0 {
		t.Errorf("start of no lives = %d, want 0", got)
	}
}
