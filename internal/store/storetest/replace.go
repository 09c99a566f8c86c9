package storetest

import (
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/twinflow/twinflow/internal/store"
)

// RunTwinReplacer runs the contract of store.TwinReplacer, for stores whose Update writers
// implement it, opening a fresh empty store with open for each subtest.
func RunTwinReplacer(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []testCase[store.Store]{
		{"Replaces", testReplaces},
		{"ConflictKeepsNothing", testReplaceConflict},
		{"ConflictIgnoredStillFails", testReplaceConflictIgnored},
		{"NeighboursUnaffected", testReplaceNeighbours},
	}
	runCases(t, open, tests)
}

// replacer returns w as a store.TwinReplacer, failing the test if it is not one.
func replacer(t *testing.T, w store.Writer) store.TwinReplacer {
	t.Helper()
	rw, ok := w.(store.TwinReplacer)
	if !ok {
		t.Fatalf("the Update's writer %T does not implement store.TwinReplacer", w)
	}
	return rw
}

// etagOf returns the stored ETag of twin id, or "" when it is gone.
func etagOf(t *testing.T, s store.Store, id string) string {
	t.Helper()
	var etag string
	view(t, s, func(r store.Reader) error {
		tw, err := r.Twin(id)
		if errors.Is(err, store.ErrNotFound) {
			return nil
		}
		etag = tw.ETag
		return err
	})
	return etag
}

func testReplaces(t *testing.T, s store.Store) {
	update(t, s, func(w store.Writer) error { return w.PutTwin(twin("a", `{"v":1}`)) })
	next := twin("a", `{"v":2}`)
	next.ETag = `W/"a-2"`
	update(t, s, func(w store.Writer) error {
		if err := replacer(t, w).ReplaceTwin(next, `W/"a-1"`); err != nil {
			return err
		}
		// The replaced twin is what the rest of the Update reads.
		got, err := w.Twin("a")
		if err != nil {
			return err
		}
		if got.ETag != next.ETag || !equalJSON(got.Doc, next.Doc) {
			t.Errorf("Twin after ReplaceTwin in the same Update = %s %s", got.ETag, got.Doc)
		}
		return w.Emit(ev("1"))
	})
	if got := etagOf(t, s, "a"); got != next.ETag {
		t.Errorf("ETag after ReplaceTwin = %q, want %q", got, next.ETag)
	}
	if last := s.Log().Last(); last != 1 {
		t.Errorf("Log().Last() = %d, want 1", last)
	}
}

func testReplaceConflict(t *testing.T, s store.Store) {
	update(t, s, func(w store.Writer) error { return w.PutTwin(twin("a", `{"v":1}`)) })
	stale := twin("a", `{"v":3}`)
	stale.ETag = `W/"a-3"`
	for _, tc := range []struct{ name, etag string }{
		{"changed", `W/"a-0"`},
		{"gone", `W/"b-1"`},
	} {
		id := "a"
		if tc.name == "gone" {
			id = "b"
		}
		next := stale
		next.ID = id
		err := s.Update(context.Background(), func(w store.Writer) error {
			if err := w.PutTwin(twin("c-"+tc.name, `{}`)); err != nil {
				return err
			}
			if err := replacer(t, w).ReplaceTwin(next, tc.etag); err != nil {
				return err
			}
			return w.Emit(ev(tc.name))
		})
		if !errors.Is(err, store.ErrConflict) {
			t.Errorf("ReplaceTwin of a twin %s: Update = %v, want store.ErrConflict", tc.name, err)
		}
		if got := etagOf(t, s, "c-"+tc.name); got != "" {
			t.Errorf("after a conflict (%s), the Update's other put is stored", tc.name)
		}
	}
	if got := etagOf(t, s, "a"); got != `W/"a-1"` {
		t.Errorf("ETag after conflicts = %q, want the first", got)
	}
	if got := etagOf(t, s, "b"); got != "" {
		t.Errorf("a conflicting ReplaceTwin created twin b")
	}
	if last := s.Log().Last(); last != 0 {
		t.Errorf("Log().Last() = %d after failed Updates only, want 0", last)
	}
}

func testReplaceConflictIgnored(t *testing.T, s store.Store) {
	update(t, s, func(w store.Writer) error { return w.PutTwin(twin("a", `{"v":1}`)) })
	err := s.Update(context.Background(), func(w store.Writer) error {
		_ = replacer(t, w).ReplaceTwin(twin("a", `{"v":9}`), `W/"other"`)
		return w.Emit(ev("ignored"))
	})
	if !errors.Is(err, store.ErrConflict) {
		t.Errorf("Update that ignored a conflicting ReplaceTwin = %v, want store.ErrConflict", err)
	}
	if last := s.Log().Last(); last != 0 {
		t.Errorf("Log().Last() = %d, want 0: the failed Update's event is kept", last)
	}
}

// testReplaceNeighbours runs conflicting and succeeding ReplaceTwins side by side: only the
// conflicting Updates fail, and every succeeding one is kept.
func testReplaceNeighbours(t *testing.T, s store.Store) {
	update(t, s, func(w store.Writer) error {
		for _, id := range []string{"a", "b", "c", "d"} {
			if err := w.PutTwin(twin(id, `{}`)); err != nil {
				return err
			}
		}
		return nil
	})
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for i := range errs {
		id := string(rune('a' + i%4))
		etag := `W/"` + id + `-1"`
		if i >= 4 {
			etag = `W/"wrong"`
		}
		wg.Go(func() {
			next := twin(id, `{"i":1}`)
			next.ETag = `W/"` + id + `-2"`
			errs[i] = s.Update(context.Background(), func(w store.Writer) error {
				if err := replacer(t, w).ReplaceTwin(next, etag); err != nil {
					return err
				}
				return w.Emit(ev(id))
			})
		})
	}
	wg.Wait()
	for i, err := range errs {
		// The first four name the stored ETag; the last four never do (the twins' ETags
		// are -1 or -2).
		if i < 4 && err != nil {
			t.Errorf("Update %d with the right ETag: %v", i, err)
		}
		if i >= 4 && !errors.Is(err, store.ErrConflict) {
			t.Errorf("Update %d with a wrong ETag: %v, want store.ErrConflict", i, err)
		}
	}
	for _, id := range []string{"a", "b", "c", "d"} {
		if got := etagOf(t, s, id); got != `W/"`+id+`-2"` {
			t.Errorf("twin %s: ETag %q, want it replaced", id, got)
		}
	}
	if last := s.Log().Last(); last != 4 {
		t.Errorf("Log().Last() = %d, want 4", last)
	}
}
