package storetest

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// testCreateTwin checks that CreateTwin inserts new twins, refuses existing ones with
// ErrExists without changing them, and counts what it inserts.
func testCreateTwin(t *testing.T, s store.Store) {
	update(t, s, func(w store.Writer) error {
		if err := w.PutTwin(twin("old", `{"v":"old"}`)); err != nil {
			return err
		}
		return w.CreateTwin(twin("new", `{"v":"new"}`))
	})
	update(t, s, func(w store.Writer) error {
		if err := w.CreateTwin(twin("old", `{"v":"replaced"}`)); !errors.Is(err, store.ErrExists) {
			t.Errorf("CreateTwin of an existing twin: got %v, want store.ErrExists", err)
		}
		if err := w.CreateTwin(twin("new", `{"v":"again"}`)); !errors.Is(err, store.ErrExists) {
			t.Errorf("CreateTwin of a twin created before: got %v, want store.ErrExists", err)
		}
		// The Update sees what it created.
		if err := w.CreateTwin(twin("third", `{"v":3}`)); err != nil {
			return err
		}
		got, err := w.Twin("third")
		if err != nil || !equalJSON(got.Doc, []byte(`{"v":3}`)) {
			t.Errorf("Twin(third) inside the Update that created it = %+v, %v", got, err)
		}
		return nil
	})
	view(t, s, func(r store.Reader) error {
		for id, want := range map[string]string{"old": `{"v":"old"}`, "new": `{"v":"new"}`, "third": `{"v":3}`} {
			got, err := r.Twin(id)
			if err != nil {
				return err
			}
			if !equalJSON(got.Doc, []byte(want)) {
				t.Errorf("Twin(%s) = %s, want %s", id, got.Doc, want)
			}
		}
		n, err := r.CountTwins()
		if err != nil {
			return err
		}
		if n != 3 {
			t.Errorf("CountTwins = %d, want 3", n)
		}
		return nil
	})
}

// testCreateRelationship checks CreateRelationship's conditions: both twins present with the
// models given, and no relationship of the same source and id.
func testCreateRelationship(t *testing.T, s store.Store) {
	const model = "dtmi:example:Room;1" // the model of every storetest twin
	update(t, s, func(w store.Writer) error {
		for _, id := range []string{"a", "b"} {
			if err := w.PutTwin(twin(id, `{}`)); err != nil {
				return err
			}
		}
		return w.CreateRelationship(rel("a", "r1", "feeds", "b"), model, model)
	})
	update(t, s, func(w store.Writer) error {
		for _, tc := range []struct {
			name      string
			r         store.Relationship
			src, dst  string
			want      error
			wantsSame bool
		}{
			{"an existing relationship", rel("a", "r1", "contains", "b"), model, model, store.ErrExists, true},
			{"a missing source", rel("x", "r1", "feeds", "b"), model, model, store.ErrNotFound, false},
			{"a missing target", rel("a", "r2", "feeds", "x"), model, model, store.ErrNotFound, false},
			{"a source of another model", rel("a", "r3", "feeds", "b"), "dtmi:example:Other;1", model, store.ErrNotFound, false},
			{"a target of another model", rel("a", "r4", "feeds", "b"), model, "dtmi:example:Other;1", store.ErrNotFound, false},
		} {
			if err := w.CreateRelationship(tc.r, tc.src, tc.dst); !errors.Is(err, tc.want) {
				t.Errorf("CreateRelationship of %s: got %v, want %v", tc.name, err, tc.want)
			}
		}
		return w.CreateRelationship(rel("b", "r1", "feeds", "a"), model, model)
	})
	view(t, s, func(r store.Reader) error {
		got, err := r.Relationship("a", "r1")
		if err != nil {
			return err
		}
		if got.Name != "feeds" {
			t.Errorf("the refused CreateRelationship replaced a/r1: %+v", got)
		}
		for _, k := range [][2]string{{"a", "r2"}, {"a", "r3"}, {"a", "r4"}, {"x", "r1"}} {
			_, err := r.Relationship(k[0], k[1])
			wantNotFound(t, fmt.Sprintf("Relationship(%s, %s) after a refused create", k[0], k[1]), err)
		}
		in, err := r.IncomingRelationships("a", "", 0)
		if err != nil {
			return err
		}
		if len(in) != 1 || in[0].SourceID != "b" {
			t.Errorf("IncomingRelationships(a) = %v, want b/r1", relKeys(in))
		}
		return nil
	})
}

// testLargeUpdateStates checks that the records of an Update that writes thousands of
// entities come with each entity's state, as those of a small one do. Three thousand small
// records are well within what a log keeps in memory.
func testLargeUpdateStates(t *testing.T, s store.Store) {
	const n = 3000
	update(t, s, func(w store.Writer) error {
		for i := range n {
			id := fmt.Sprint("t", i)
			if err := w.CreateTwin(twin(id, fmt.Sprintf(`{"i":%d}`, i))); err != nil {
				return err
			}
			if err := w.Emit(about(fmt.Sprint(i), event.TwinCreate, id)); err != nil {
				return err
			}
		}
		// One twin changes twice: its records both carry the newest state.
		if err := w.PutTwin(twin("t0", `{"i":"last"}`)); err != nil {
			return err
		}
		if err := w.Emit(about("again", event.TwinUpdate, "t0")); err != nil {
			return err
		}
		r := rel("t0", "r", "feeds", "t1")
		if err := w.CreateRelationship(r, "dtmi:example:Room;1", "dtmi:example:Room;1"); err != nil {
			return err
		}
		return w.Emit(about("rel", event.RelationshipCreate, event.RelationshipSubject("t0", "r")))
	})
	changes := readChanges(t, s, n+2)
	for i, c := range changes[:n] {
		want := fmt.Sprintf(`{"i":%d}`, i)
		if i == 0 {
			want = `{"i":"last"}`
		}
		if got := stateOf(c); !got.known || got.doc != want {
			t.Fatalf("record %d (%s) has state %+v, want %s", c.Seq, c.Event.Subject, got, want)
		}
	}
	if got := stateOf(changes[n]); got.doc != `{"i":"last"}` {
		t.Errorf("the second record of t0 has state %+v", got)
	}
	if c := changes[n+1]; !c.Known || c.Relationship == nil || c.Relationship.TargetID != "t1" {
		t.Errorf("the relationship's record has state %+v", c)
	}
}

// readChanges reads the first n records of s's change log with ReadChanges.
func readChanges(t *testing.T, s store.Store, n int) []store.Change {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var out []store.Change
	for len(out) < n {
		cs, err := changeLog(t, s).ReadChanges(ctx, uint64(len(out)), n-len(out))
		if err != nil {
			t.Fatalf("ReadChanges after %d: %v", len(out), err)
		}
		out = append(out, cs...)
	}
	return out
}
