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

// RunChangeLog runs the contract suite of stores whose Log is a store.ChangeLog, opening a
// fresh empty store with open for each subtest.
func RunChangeLog(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []testCase[store.Store]{
		{"StatesOfChanges", testChangeStates},
		{"ReadAgreesWithReadChanges", testReadAgreesWithReadChanges},
		{"StatesOfLargeUpdate", testLargeUpdateStates},
	}
	runCases(t, open, tests)
}

// changeLog returns s's log as a store.ChangeLog, failing the test if it is not one.
func changeLog(t *testing.T, s store.Store) store.ChangeLog {
	t.Helper()
	cl, ok := s.Log().(store.ChangeLog)
	if !ok {
		t.Fatalf("%T is not a store.ChangeLog", s.Log())
	}
	return cl
}

// about returns an event of type typ about subject, with id.
func about(id, typ, subject string) event.Event {
	e := ev(id)
	e.Type, e.Subject = typ, subject
	return e
}

// wantState is what a record's Change should say: known, and then the document of the
// twin or relationship, or "" for deleted.
type wantState struct {
	known bool
	doc   string
}

func testChangeStates(t *testing.T, s store.Store) {
	errRollback := errors.New("rolled back")
	steps := []struct {
		fn   func(w store.Writer) error
		fail bool
		want []wantState // for the records the step emits, in order
	}{
		{ // a twin created
			fn: func(w store.Writer) error {
				return errors.Join(w.PutTwin(twin("a", `{"v":1}`)), w.Emit(about("1", event.TwinCreate, "a")))
			},
			want: []wantState{{true, `{"v":1}`}},
		},
		{ // an Update that puts the twin twice: both records carry what the Update left
			fn: func(w store.Writer) error {
				return errors.Join(w.PutTwin(twin("a", `{"v":2}`)), w.Emit(about("2", event.TwinUpdate, "a")),
					w.PutTwin(twin("a", `{"v":3}`)), w.Emit(about("3", event.TwinUpdate, "a")))
			},
			want: []wantState{{true, `{"v":3}`}, {true, `{"v":3}`}},
		},
		{ // a failed Update leaves no record
			fn: func(w store.Writer) error {
				if err := errors.Join(w.PutTwin(twin("a", `{"v":9}`)), w.Emit(about("x", event.TwinUpdate, "a"))); err != nil {
					return err
				}
				return errRollback
			},
			fail: true,
		},
		{ // a relationship, and a record of another type about the same subject
			fn: func(w store.Writer) error {
				return errors.Join(w.PutTwin(twin("b", `{"v":1}`)), w.Emit(about("4", event.TwinCreate, "b")),
					w.PutRelationship(rel("a", "r", "near", "b")), w.Emit(about("5", event.RelationshipCreate, "a/relationships/r")),
					w.Emit(about("6", event.Telemetry, "a")))
			},
			want: []wantState{{true, `{"v":1}`}, {true, `{"$sourceId":"a","$relationshipId":"r"}`}, {}},
		},
		{ // deletions
			fn: func(w store.Writer) error {
				return errors.Join(w.DeleteRelationship("a", "r"), w.Emit(about("7", event.RelationshipDelete, "a/relationships/r")),
					w.DeleteTwin("b"), w.Emit(about("8", event.TwinDelete, "b")))
			},
			want: []wantState{{true, ""}, {true, ""}},
		},
		{ // records whose Update did not change their subject
			fn: func(w store.Writer) error {
				return errors.Join(w.PutTwin(twin("c", `{"v":1}`)), w.Emit(about("9", event.TwinUpdate, "a")),
					w.Emit(about("10", event.RelationshipUpdate, "c")))
			},
			want: []wantState{{}, {}},
		},
	}
	var want []wantState
	for i, st := range steps {
		err := s.Update(context.Background(), st.fn)
		if st.fail != (err != nil) {
			t.Fatalf("step %d: Update returned %v", i, err)
		}
		want = append(want, st.want...)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	changes, err := changeLog(t, s).ReadChanges(ctx, 0, 100)
	if err != nil {
		t.Fatalf("ReadChanges: %v", err)
	}
	if len(changes) != len(want) {
		t.Fatalf("ReadChanges returned %d records, want %d", len(changes), len(want))
	}
	for i, c := range changes {
		if c.Seq != uint64(i+1) || c.Event.ID != fmt.Sprint(i+1) {
			t.Errorf("record %d: Seq %d, event %q", i+1, c.Seq, c.Event.ID)
		}
		if got := stateOf(c); got != want[i] {
			t.Errorf("record %d (%s %s): state %+v, want %+v", c.Seq, c.Event.Type, c.Event.Subject, got, want[i])
		}
	}
	twinOf, relOf := changes[0].Twin, changes[4].Relationship
	if twinOf == nil || twinOf.ID != "a" || twinOf.ModelID != "dtmi:example:Room;1" {
		t.Errorf("record 1's twin = %+v", twinOf)
	}
	if relOf == nil || relOf.SourceID != "a" || relOf.ID != "r" || relOf.Name != "near" || relOf.TargetID != "b" {
		t.Errorf("record 5's relationship = %+v", relOf)
	}
}

// stateOf summarises what c says of its entity's state.
func stateOf(c store.Change) wantState {
	switch {
	case !c.Known:
		return wantState{}
	case c.Twin != nil:
		return wantState{true, string(c.Twin.Doc)}
	case c.Relationship != nil:
		return wantState{true, string(c.Relationship.Doc)}
	}
	return wantState{known: true}
}

func testReadAgreesWithReadChanges(t *testing.T, s store.Store) {
	for i := range 20 {
		update(t, s, func(w store.Writer) error {
			return errors.Join(w.PutTwin(twin(fmt.Sprint(i%3), `{}`)), w.Emit(ev(fmt.Sprint(i+1))))
		})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, after := range []uint64{0, 7, 19} {
		recs, err := s.Log().Read(ctx, after, 5)
		if err != nil {
			t.Fatalf("Read(%d): %v", after, err)
		}
		changes, err := changeLog(t, s).ReadChanges(ctx, after, 5)
		if err != nil {
			t.Fatalf("ReadChanges(%d): %v", after, err)
		}
		if len(recs) != len(changes) || len(recs) == 0 || recs[0].Seq != after+1 {
			t.Fatalf("after %d: Read returned seqs %v, ReadChanges %d records", after, seqs(recs), len(changes))
		}
		for i := range recs {
			if recs[i].Seq != changes[i].Seq || !equalEvent(recs[i].Event, changes[i].Event) {
				t.Errorf("after %d: record %d differs: %+v and %+v", after, i, recs[i], changes[i].Record)
			}
		}
	}
}
