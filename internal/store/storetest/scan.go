package storetest

import (
	"context"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/twinflow/twinflow/internal/store"
)

// RunScan runs the contract of store.Scanner, for stores whose View readers implement it,
// opening a fresh empty store with open for each subtest.
func RunScan(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []testCase[store.Store]{
		{"YieldsEachEntityOnce", testScanYieldsEachOnce},
		{"IsSnapshot", testScanIsSnapshot},
		{"StopsEarly", testScanStopsEarly},
	}
	runCases(t, open, tests)
}

// scanned lists what one View's scans yield: twins as "id model doc", relationships as
// "source/id name target etag doc", each sorted.
func scanned(t *testing.T, r store.Reader) (twins, rels []string) {
	t.Helper()
	sc, ok := r.(store.Scanner)
	if !ok {
		t.Fatalf("the View's reader %T does not implement store.Scanner", r)
	}
	for tw, err := range sc.ScanTwins() {
		if err != nil {
			t.Fatalf("ScanTwins: %v", err)
		}
		twins = append(twins, strings.Join([]string{tw.ID, tw.ModelID, tw.ETag, string(tw.Doc)}, " "))
	}
	for rel, err := range sc.ScanRelationships() {
		if err != nil {
			t.Fatalf("ScanRelationships: %v", err)
		}
		rels = append(rels, strings.Join([]string{rel.SourceID + "/" + rel.ID, rel.Name, rel.TargetID, rel.ETag, string(rel.Doc)}, " "))
	}
	slices.Sort(twins)
	slices.Sort(rels)
	return twins, rels
}

func testScanYieldsEachOnce(t *testing.T, s store.Store) {
	view(t, s, func(r store.Reader) error {
		if twins, rels := scanned(t, r); len(twins) != 0 || len(rels) != 0 {
			t.Errorf("an empty store scanned %d twins and %d relationships", len(twins), len(rels))
		}
		return nil
	})
	update(t, s, func(w store.Writer) error {
		for _, id := range []string{"c", "a", "b", "d"} {
			if err := w.PutTwin(twin(id, `{"$dtId":"`+id+`"}`)); err != nil {
				return err
			}
		}
		for _, r := range []store.Relationship{rel("b", "r1", "near", "a"), rel("a", "r2", "near", "c"), rel("a", "r1", "feeds", "b")} {
			if err := w.PutRelationship(r); err != nil {
				return err
			}
		}
		// A replaced twin and relationship are scanned once, as they are now; deleted ones
		// are not scanned.
		if err := w.PutTwin(twin("a", `{"$dtId":"a","v":2}`)); err != nil {
			return err
		}
		if err := w.PutRelationship(rel("a", "r1", "feeds", "c")); err != nil {
			return err
		}
		if err := w.DeleteTwin("d"); err != nil {
			return err
		}
		return w.DeleteRelationship("a", "r2")
	})
	view(t, s, func(r store.Reader) error {
		twins, rels := scanned(t, r)
		wantTwins := []string{
			`a dtmi:example:Room;1 W/"a-1" {"$dtId":"a","v":2}`,
			`b dtmi:example:Room;1 W/"b-1" {"$dtId":"b"}`,
			`c dtmi:example:Room;1 W/"c-1" {"$dtId":"c"}`,
		}
		wantRels := []string{
			`a/r1 feeds c W/"r" {"$sourceId":"a","$relationshipId":"r1"}`,
			`b/r1 near a W/"r" {"$sourceId":"b","$relationshipId":"r1"}`,
		}
		if !slices.Equal(twins, wantTwins) {
			t.Errorf("ScanTwins yielded\n%q\nwant\n%q", twins, wantTwins)
		}
		if !slices.Equal(rels, wantRels) {
			t.Errorf("ScanRelationships yielded\n%q\nwant\n%q", rels, wantRels)
		}
		return nil
	})
}

// testScanIsSnapshot checks that a scan sees the View's snapshot, not writes committed while
// it runs.
func testScanIsSnapshot(t *testing.T, s store.Store) {
	update(t, s, func(w store.Writer) error {
		for _, id := range []string{"a", "b"} {
			if err := w.PutTwin(twin(id, `{}`)); err != nil {
				return err
			}
		}
		return w.PutRelationship(rel("a", "r", "near", "b"))
	})
	var once sync.Once
	view(t, s, func(r store.Reader) error {
		if _, err := r.CountTwins(); err != nil { // the snapshot starts at the first read
			return err
		}
		once.Do(func() {
			update(t, s, func(w store.Writer) error {
				if err := w.PutTwin(twin("c", `{}`)); err != nil {
					return err
				}
				return w.PutRelationship(rel("b", "r", "near", "c"))
			})
		})
		twins, rels := scanned(t, r)
		if len(twins) != 2 || len(rels) != 1 {
			t.Errorf("a scan begun before a write saw %d twins and %d relationships, want 2 and 1", len(twins), len(rels))
		}
		return nil
	})
	view(t, s, func(r store.Reader) error {
		if twins, rels := scanned(t, r); len(twins) != 3 || len(rels) != 2 {
			t.Errorf("a scan after the write saw %d twins and %d relationships, want 3 and 2", len(twins), len(rels))
		}
		return nil
	})
}

// testScanStopsEarly checks that leaving a scan early releases it: the View can go on
// reading and scanning.
func testScanStopsEarly(t *testing.T, s store.Store) {
	update(t, s, func(w store.Writer) error {
		for _, id := range []string{"a", "b", "c"} {
			if err := w.PutTwin(twin(id, `{}`)); err != nil {
				return err
			}
		}
		return nil
	})
	err := s.View(context.Background(), func(r store.Reader) error {
		sc := r.(store.Scanner)
		for range 3 {
			n := 0
			for _, err := range sc.ScanTwins() {
				if err != nil {
					return err
				}
				if n++; n == 2 {
					break
				}
			}
		}
		if _, err := r.Twin("c"); err != nil {
			return err
		}
		twins, _ := scanned(t, r)
		if len(twins) != 3 {
			t.Errorf("a full scan after early stops saw %d twins, want 3", len(twins))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("View: %v", err)
	}
}
