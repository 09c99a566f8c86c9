package storetest

import (
	"slices"
	"testing"

	"github.com/twinflow/twinflow/internal/store"
)

// RunMultiReader runs the contract of store.MultiReader, for stores whose View readers
// implement it, opening a fresh empty store with open for each subtest.
func RunMultiReader(t *testing.T, open func(t *testing.T) store.Store) {
	runCases(t, open, []testCase[store.Store]{{"ReadsWhatExists", testMultiReader}})
}

func testMultiReader(t *testing.T, s store.Store) {
	update(t, s, func(w store.Writer) error {
		for _, id := range []string{"a", "b", "c"} {
			if err := w.PutTwin(twin(id, `{"$dtId":"`+id+`"}`)); err != nil {
				return err
			}
		}
		for _, r := range []store.Relationship{rel("a", "r1", "feeds", "b"), rel("a", "r2", "feeds", "c"), rel("b", "r1", "feeds", "c")} {
			if err := w.PutRelationship(r); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(r store.Reader) error {
		mr, ok := r.(store.MultiReader)
		if !ok {
			t.Fatalf("the View's reader %T does not implement store.MultiReader", r)
		}
		twins, err := mr.TwinsOf([]string{"c", "gone", "a"})
		if err != nil {
			return err
		}
		var ids []string
		for _, tw := range twins {
			ids = append(ids, tw.ID)
			if !equalJSON(tw.Doc, []byte(`{"$dtId":"`+tw.ID+`"}`)) || tw.ETag != `W/"`+tw.ID+`-1"` {
				t.Errorf("TwinsOf gave twin %s as %s %s", tw.ID, tw.ETag, tw.Doc)
			}
		}
		slices.Sort(ids)
		if !slices.Equal(ids, []string{"a", "c"}) {
			t.Errorf("TwinsOf(c, gone, a) = %v, want a and c", ids)
		}
		if none, err := mr.TwinsOf(nil); err != nil || len(none) != 0 {
			t.Errorf("TwinsOf(nil) = %v, %v; want none", none, err)
		}
		rels, err := mr.RelationshipsOf([]string{"b", "a", "c", "a"}, []string{"r1", "r2", "r1", "r9"})
		if err != nil {
			return err
		}
		var keys []string
		for _, r := range rels {
			keys = append(keys, r.SourceID+"/"+r.ID+"->"+r.TargetID)
		}
		slices.Sort(keys)
		if !slices.Equal(keys, []string{"a/r2->c", "b/r1->c"}) {
			t.Errorf("RelationshipsOf = %v, want a/r2->c and b/r1->c", keys)
		}
		return nil
	})
}
