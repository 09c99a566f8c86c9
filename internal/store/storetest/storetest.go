// Package storetest is the contract suite every store.Store implementation must pass.
//
// An implementation's test calls Run with a function that opens a fresh, empty store:
//
//	func TestContract(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) store.Store { return openEmpty(t) })
//	}
//
// The suite closes each store it opens, and its Close subtest expects Close to be callable
// then; the open function must not close the store itself (t.Cleanup may, ignoring
// store.ErrClosed).
package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// testCase is one subtest of a contract suite.
type testCase[S store.Store] struct {
	name string
	fn   func(t *testing.T, s S)
}

// runCases runs each case as a subtest on a fresh store from open, closing it afterwards.
func runCases[S store.Store](t *testing.T, open func(t *testing.T) S, cases []testCase[S]) {
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s := open(t)
			tc.fn(t, s)
			if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
				t.Errorf("Close: %v", err)
			}
		})
	}
}

// Run runs the contract suite, opening a fresh empty store with open for each subtest.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	tests := []testCase[store.Store]{
		{"Models", testModels},
		{"Twins", testTwins},
		{"CreateTwin", testCreateTwin},
		{"CreateRelationship", testCreateRelationship},
		{"Relationships", testRelationships},
		{"IncomingRelationships", testIncomingRelationships},
		{"UpdateSeesOwnWrites", testUpdateSeesOwnWrites},
		{"Log", testLog},
		{"LogReadWaits", testLogReadWaits},
		{"LogReadHonoursContext", testLogReadHonoursContext},
		{"FailedUpdateRollsBack", testFailedUpdateRollsBack},
		{"FailuresDoNotAffectNeighbours", testFailuresDoNotAffectNeighbours},
		{"ConcurrentUpdatesLoseNothing", testConcurrentUpdatesLoseNothing},
		{"ViewIsSnapshot", testViewIsSnapshot},
		{"Close", testClose},
	}
	runCases(t, open, tests)
}

// update runs fn in an Update and fails the test on error.
func update(t *testing.T, s store.Store, fn func(store.Writer) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

// view runs fn in a View and fails the test on error.
func view(t *testing.T, s store.Store, fn func(store.Reader) error) {
	t.Helper()
	if err := s.View(context.Background(), fn); err != nil {
		t.Fatalf("View: %v", err)
	}
}

// wantNotFound fails the test unless err is store.ErrNotFound.
func wantNotFound(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, store.ErrNotFound) {
		t.Errorf("%s: got error %v, want store.ErrNotFound", what, err)
	}
}

// equalJSON reports whether a and b hold the same JSON value.
func equalJSON(a, b json.RawMessage) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	return fmt.Sprint(va) == fmt.Sprint(vb)
}

func twin(id, doc string) store.Twin {
	return store.Twin{ID: id, ModelID: "dtmi:example:Room;1", ETag: `W/"` + id + `-1"`, Doc: json.RawMessage(doc)}
}

func rel(source, id, name, target string) store.Relationship {
	return store.Relationship{
		SourceID: source, ID: id, Name: name, TargetID: target, ETag: `W/"r"`,
		Doc: json.RawMessage(fmt.Sprintf(`{"$sourceId":%q,"$relationshipId":%q}`, source, id)),
	}
}

func ev(id string) event.Event {
	return event.Event{
		ID: id, Source: "twinflow.test", SpecVersion: event.SpecVersion, Type: event.TwinUpdate,
		Subject: "room-" + id, Time: "2026-01-02T03:04:05.0000000Z", DataContentType: "application/json",
		DataSchema: "dtmi:example:Room;1", TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		TraceState: "rojo=00f067aa0ba902b7", TelemetrySourceTime: "2026-01-02T03:04:04.5Z",
		Data: json.RawMessage(fmt.Sprintf(`{"id":%q}`, id)),
	}
}

func testModels(t *testing.T, s store.Store) {
	upload := time.Date(2026, 1, 2, 3, 4, 5, 600, time.UTC)
	models := []store.Model{
		{ID: "dtmi:example:B;1", Definition: json.RawMessage(`{"@id":"dtmi:example:B;1"}`), UploadTime: upload},
		{ID: "dtmi:example:A;1", Definition: json.RawMessage(`{"@id":"dtmi:example:A;1"}`), UploadTime: upload},
		{ID: "dtmi:example:C;1", Definition: json.RawMessage(`{"@id":"dtmi:example:C;1"}`), UploadTime: upload, Decommissioned: true},
	}
	update(t, s, func(w store.Writer) error {
		for _, m := range models {
			if err := w.PutModel(m); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(r store.Reader) error {
		got, err := r.Model("dtmi:example:C;1")
		if err != nil {
			return err
		}
		if got.ID != "dtmi:example:C;1" || !equalJSON(got.Definition, models[2].Definition) ||
			!got.UploadTime.Equal(upload) || !got.Decommissioned {
			t.Errorf("Model = %+v, want %+v", got, models[2])
		}
		_, err = r.Model("dtmi:example:Missing;1")
		wantNotFound(t, "Model of a missing id", err)

		all, err := r.Models("", 0)
		if err != nil {
			return err
		}
		if ids := modelIDs(all); !slices.Equal(ids, []string{"dtmi:example:A;1", "dtmi:example:B;1", "dtmi:example:C;1"}) {
			t.Errorf("Models(\"\", 0) = %v, want all three by id", ids)
		}
		page, err := r.Models("dtmi:example:A;1", 1)
		if err != nil {
			return err
		}
		if ids := modelIDs(page); !slices.Equal(ids, []string{"dtmi:example:B;1"}) {
			t.Errorf("Models(A, 1) = %v, want [B]", ids)
		}
		return nil
	})

	update(t, s, func(w store.Writer) error {
		replaced := models[0]
		replaced.Decommissioned = true
		if err := w.PutModel(replaced); err != nil {
			return err
		}
		if err := w.DeleteModel("dtmi:example:A;1"); err != nil {
			return err
		}
		wantNotFound(t, "DeleteModel of a missing id", w.DeleteModel("dtmi:example:Missing;1"))
		return nil
	})
	view(t, s, func(r store.Reader) error {
		got, err := r.Model("dtmi:example:B;1")
		if err != nil {
			return err
		}
		if !got.Decommissioned {
			t.Error("PutModel of an existing id did not replace it")
		}
		_, err = r.Model("dtmi:example:A;1")
		wantNotFound(t, "Model after DeleteModel", err)
		return nil
	})
}

func modelIDs(ms []store.Model) []string {
	ids := make([]string, len(ms))
	for i, m := range ms {
		ids[i] = m.ID
	}
	return ids
}

func testTwins(t *testing.T, s store.Store) {
	view(t, s, func(r store.Reader) error {
		n, err := r.CountTwins()
		if err != nil {
			return err
		}
		if n != 0 {
			t.Errorf("CountTwins of an empty store = %d", n)
		}
		_, err = r.Twin("missing")
		wantNotFound(t, "Twin of a missing id", err)
		return nil
	})
	update(t, s, func(w store.Writer) error {
		for _, id := range []string{"c", "a", "b", "d"} {
			if err := w.PutTwin(twin(id, `{"$dtId":"`+id+`"}`)); err != nil {
				return err
			}
		}
		return nil
	})
	update(t, s, func(w store.Writer) error {
		replaced := twin("b", `{"$dtId":"b","temperature":21.5}`)
		replaced.ETag = `W/"b-2"`
		if err := w.PutTwin(replaced); err != nil {
			return err
		}
		if err := w.DeleteTwin("d"); err != nil {
			return err
		}
		wantNotFound(t, "DeleteTwin of a missing id", w.DeleteTwin("d"))
		return nil
	})
	view(t, s, func(r store.Reader) error {
		got, err := r.Twin("b")
		if err != nil {
			return err
		}
		want := twin("b", `{"$dtId":"b","temperature":21.5}`)
		want.ETag = `W/"b-2"`
		if got.ID != want.ID || got.ModelID != want.ModelID || got.ETag != want.ETag || !equalJSON(got.Doc, want.Doc) {
			t.Errorf("Twin(b) = %+v, want %+v", got, want)
		}
		_, err = r.Twin("d")
		wantNotFound(t, "Twin after DeleteTwin", err)

		n, err := r.CountTwins()
		if err != nil {
			return err
		}
		if n != 3 {
			t.Errorf("CountTwins = %d, want 3 (4 put, 1 replaced, 1 deleted)", n)
		}
		for _, tc := range []struct {
			after string
			limit int
			want  []string
		}{
			{"", 0, []string{"a", "b", "c"}},
			{"", -1, []string{"a", "b", "c"}},
			{"", 2, []string{"a", "b"}},
			{"b", 2, []string{"c"}},
			{"c", 0, nil},
		} {
			ts, err := r.Twins(tc.after, tc.limit)
			if err != nil {
				return err
			}
			var ids []string
			for _, tw := range ts {
				ids = append(ids, tw.ID)
			}
			if !slices.Equal(ids, tc.want) {
				t.Errorf("Twins(%q, %d) = %v, want %v", tc.after, tc.limit, ids, tc.want)
			}
		}
		return nil
	})
}

func relKeys(rs []store.Relationship) []string {
	var keys []string
	for _, r := range rs {
		keys = append(keys, r.SourceID+"/"+r.ID)
	}
	return keys
}

func testRelationships(t *testing.T, s store.Store) {
	update(t, s, func(w store.Writer) error {
		for _, r := range []store.Relationship{
			rel("a", "r3", "contains", "x"),
			rel("a", "r1", "contains", "y"),
			rel("a", "r2", "feeds", "x"),
			rel("b", "r1", "contains", "a"),
		} {
			if err := w.PutRelationship(r); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(r store.Reader) error {
		got, err := r.Relationship("a", "r2")
		if err != nil {
			return err
		}
		want := rel("a", "r2", "feeds", "x")
		if got.SourceID != want.SourceID || got.ID != want.ID || got.Name != want.Name ||
			got.TargetID != want.TargetID || got.ETag != want.ETag || !equalJSON(got.Doc, want.Doc) {
			t.Errorf("Relationship(a, r2) = %+v, want %+v", got, want)
		}
		_, err = r.Relationship("b", "r2")
		wantNotFound(t, "Relationship of a missing id", err)

		for _, tc := range []struct {
			source, name, after string
			limit               int
			want                []string
		}{
			{"a", "", "", 0, []string{"a/r1", "a/r2", "a/r3"}},
			{"a", "", "r1", 1, []string{"a/r2"}},
			{"a", "contains", "", 0, []string{"a/r1", "a/r3"}},
			{"a", "contains", "r1", 0, []string{"a/r3"}},
			{"a", "missing", "", 0, nil},
			{"x", "", "", 0, nil},
		} {
			rs, err := r.Relationships(tc.source, tc.name, tc.after, tc.limit)
			if err != nil {
				return err
			}
			if keys := relKeys(rs); !slices.Equal(keys, tc.want) {
				t.Errorf("Relationships(%q, %q, %q, %d) = %v, want %v", tc.source, tc.name, tc.after, tc.limit, keys, tc.want)
			}
		}
		for id, want := range map[string]bool{"a": true, "b": true, "x": true, "y": true, "z": false} {
			has, err := r.HasRelationships(id)
			if err != nil {
				return err
			}
			if has != want {
				t.Errorf("HasRelationships(%q) = %v, want %v", id, has, want)
			}
		}
		return nil
	})
	update(t, s, func(w store.Writer) error {
		if err := w.PutRelationship(rel("a", "r3", "contains", "z")); err != nil {
			return err
		}
		if err := w.DeleteRelationship("a", "r1"); err != nil {
			return err
		}
		wantNotFound(t, "DeleteRelationship of a missing id", w.DeleteRelationship("a", "r1"))
		return nil
	})
	view(t, s, func(r store.Reader) error {
		got, err := r.Relationship("a", "r3")
		if err != nil {
			return err
		}
		if got.TargetID != "z" {
			t.Errorf("PutRelationship of an existing id did not replace it: target %q", got.TargetID)
		}
		_, err = r.Relationship("a", "r1")
		wantNotFound(t, "Relationship after DeleteRelationship", err)
		has, err := r.HasRelationships("y")
		if err != nil {
			return err
		}
		if has {
			t.Error("HasRelationships(y) after its only relationship was deleted = true")
		}
		return nil
	})
}

func testIncomingRelationships(t *testing.T, s store.Store) {
	update(t, s, func(w store.Writer) error {
		for _, r := range []store.Relationship{
			rel("b", "r1", "feeds", "t"),
			rel("a", "r2", "feeds", "t"),
			rel("a", "r1", "feeds", "t"),
			rel("a", "r3", "feeds", "other"),
			rel("c", "r0", "feeds", "t"),
		} {
			if err := w.PutRelationship(r); err != nil {
				return err
			}
		}
		return nil
	})
	view(t, s, func(r store.Reader) error {
		for _, tc := range []struct {
			after string
			limit int
			want  []string
		}{
			{"", 0, []string{"a/r1", "a/r2", "b/r1", "c/r0"}},
			{"", 3, []string{"a/r1", "a/r2", "b/r1"}},
			{"a\x00r1", 2, []string{"a/r2", "b/r1"}},
			{"a\x00r2", 0, []string{"b/r1", "c/r0"}},
			{"c\x00r0", 0, nil},
		} {
			rs, err := r.IncomingRelationships("t", tc.after, tc.limit)
			if err != nil {
				return err
			}
			if keys := relKeys(rs); !slices.Equal(keys, tc.want) {
				t.Errorf("IncomingRelationships(t, %q, %d) = %v, want %v", tc.after, tc.limit, keys, tc.want)
			}
		}
		return nil
	})
}

func testUpdateSeesOwnWrites(t *testing.T, s store.Store) {
	update(t, s, func(w store.Writer) error {
		put := twin("a", `{"v":1}`)
		if err := w.PutTwin(put); err != nil {
			return err
		}
		// The store must not keep the caller's buffer, nor hand out its own.
		put.Doc[len(put.Doc)-2] = '9'
		got, err := w.Twin("a")
		if err != nil {
			return fmt.Errorf("read own write: %w", err)
		}
		if !equalJSON(got.Doc, json.RawMessage(`{"v":1}`)) {
			t.Errorf("Twin inside the Update that put it = %s", got.Doc)
		}
		got.Doc[len(got.Doc)-2] = '8'
		if again, err := w.Twin("a"); err != nil || !equalJSON(again.Doc, json.RawMessage(`{"v":1}`)) {
			t.Errorf("Twin after the caller changed the document it got = %s, %v", again.Doc, err)
		}
		n, err := w.CountTwins()
		if err != nil {
			return err
		}
		if n != 1 {
			t.Errorf("CountTwins inside the Update that put a twin = %d, want 1", n)
		}
		return nil
	})
}

// readAll reads the whole log, failing the test on error.
func readAll(t *testing.T, l store.Log) []event.Record {
	t.Helper()
	if l.Last() == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var all []event.Record
	for after := uint64(0); after < l.Last(); {
		recs, err := l.Read(ctx, after, 1000)
		if err != nil {
			t.Fatalf("Log().Read(%d): %v", after, err)
		}
		all = append(all, recs...)
		after = recs[len(recs)-1].Seq
	}
	return all
}

// wantGapFree fails the test unless recs are numbered 1, 2, ... len(recs).
func wantGapFree(t *testing.T, recs []event.Record) {
	t.Helper()
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has Seq %d: the log has a gap or is out of order", i, r.Seq)
		}
	}
}

func testLog(t *testing.T, s store.Store) {
	if last := s.Log().Last(); last != 0 {
		t.Fatalf("Last of an empty log = %d", last)
	}
	update(t, s, func(w store.Writer) error {
		for _, id := range []string{"1", "2", "3"} {
			if err := w.Emit(ev(id)); err != nil {
				return err
			}
		}
		return nil
	})
	update(t, s, func(w store.Writer) error {
		bare := event.Event{ID: "4", Source: "s", SpecVersion: event.SpecVersion, Type: event.Telemetry}
		if err := w.Emit(bare); err != nil {
			return err
		}
		propagated := ev("5")
		propagated.Depth = 3
		return w.Emit(propagated)
	})
	if last := s.Log().Last(); last != 5 {
		t.Fatalf("Last after five events = %d", last)
	}
	all := readAll(t, s.Log())
	wantGapFree(t, all)
	if len(all) != 5 {
		t.Fatalf("log holds %d records, want 5", len(all))
	}
	for _, r := range all {
		if r.Event.ID != fmt.Sprint(r.Seq) {
			t.Errorf("record %d holds event %q: not in emit order", r.Seq, r.Event.ID)
		}
	}
	if got, want := all[2].Event, ev("3"); !equalEvent(got, want) {
		t.Errorf("record 3 = %+v, want %+v", got, want)
	}
	if got := all[3].Event; got.Subject != "" || got.Time != "" || len(got.Data) != 0 {
		t.Errorf("event without optional attributes came back as %+v", got)
	}
	if all[4].Event.Depth != 3 || all[2].Event.Depth != 0 {
		t.Errorf("records 3 and 5 have depths %d and %d, want 0 and 3", all[2].Event.Depth, all[4].Event.Depth)
	}

	recs, err := s.Log().Read(context.Background(), 2, 2)
	if err != nil {
		t.Fatalf("Read(2, 2): %v", err)
	}
	if len(recs) != 2 || recs[0].Seq != 3 || recs[1].Seq != 4 {
		t.Errorf("Read(2, 2) returned seqs %v, want [3 4]", seqs(recs))
	}
}

func equalEvent(a, b event.Event) bool {
	data := equalJSON(a.Data, b.Data)
	a.Data, b.Data = nil, nil
	return data && reflect.DeepEqual(a, b)
}

func seqs(recs []event.Record) []uint64 {
	s := make([]uint64, len(recs))
	for i, r := range recs {
		s[i] = r.Seq
	}
	return s
}

func testLogReadWaits(t *testing.T, s store.Store) {
	update(t, s, func(w store.Writer) error { return w.Emit(ev("1")) })
	type result struct {
		recs []event.Record
		err  error
	}
	done := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		recs, err := s.Log().Read(ctx, 1, 10)
		done <- result{recs, err}
	}()
	select {
	case r := <-done:
		t.Fatalf("Read past the end returned before a commit: %v, %v", seqs(r.recs), r.err)
	case <-time.After(50 * time.Millisecond):
	}
	// An Update without events must not wake the reader with nothing.
	update(t, s, func(w store.Writer) error { return w.PutTwin(twin("a", `{}`)) })
	update(t, s, func(w store.Writer) error { return w.Emit(ev("2")) })
	r := <-done
	if r.err != nil {
		t.Fatalf("Read: %v", r.err)
	}
	if len(r.recs) != 1 || r.recs[0].Seq != 2 || r.recs[0].Event.ID != "2" {
		t.Fatalf("Read after a commit = %+v, want record 2", r.recs)
	}
}

func testLogReadHonoursContext(t *testing.T, s store.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		_, err := s.Log().Read(ctx, 0, 10)
		done <- err
	}()
	time.Sleep(10 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("Read with a cancelled context returned %v, want context.Canceled", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read did not return after its context was cancelled")
	}
}

// errRefused is the error failing fns return.
var errRefused = errors.New("refused")

func testFailedUpdateRollsBack(t *testing.T, s store.Store) {
	update(t, s, func(w store.Writer) error { return w.PutTwin(twin("kept", `{"v":1}`)) })
	err := s.Update(context.Background(), func(w store.Writer) error {
		if err := w.PutTwin(twin("new", `{}`)); err != nil {
			return err
		}
		if err := w.PutTwin(twin("kept", `{"v":2}`)); err != nil {
			return err
		}
		if err := w.DeleteTwin("kept"); err != nil {
			return err
		}
		if err := w.Emit(ev("1")); err != nil {
			return err
		}
		return fmt.Errorf("check: %w", errRefused)
	})
	if !errors.Is(err, errRefused) {
		t.Fatalf("Update returned %v, want fn's error", err)
	}
	if last := s.Log().Last(); last != 0 {
		t.Errorf("Last after a failed Update = %d, want 0", last)
	}
	view(t, s, func(r store.Reader) error {
		_, err := r.Twin("new")
		wantNotFound(t, "twin put by a failed Update", err)
		got, err := r.Twin("kept")
		if err != nil {
			return fmt.Errorf("twin deleted by a failed Update: %w", err)
		}
		if !equalJSON(got.Doc, json.RawMessage(`{"v":1}`)) {
			t.Errorf("twin changed by a failed Update holds %s", got.Doc)
		}
		n, err := r.CountTwins()
		if err != nil {
			return err
		}
		if n != 1 {
			t.Errorf("CountTwins after a failed Update = %d, want 1", n)
		}
		return nil
	})
	// Later Updates read what the failed one left alone, too.
	update(t, s, func(w store.Writer) error {
		got, err := w.Twin("kept")
		if err != nil {
			return fmt.Errorf("twin deleted by a failed Update, read in the next one: %w", err)
		}
		if !equalJSON(got.Doc, json.RawMessage(`{"v":1}`)) {
			t.Errorf("the Update after a failed one reads %s", got.Doc)
		}
		_, err = w.Twin("new")
		wantNotFound(t, "twin put by a failed Update, read in the next one", err)
		// The next event still gets Seq 1.
		return w.Emit(ev("1"))
	})
	wantGapFree(t, readAll(t, s.Log()))
}

func testFailuresDoNotAffectNeighbours(t *testing.T, s store.Store) {
	const n = 200
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Update(context.Background(), func(w store.Writer) error {
				id := fmt.Sprint(i)
				if err := w.PutTwin(twin(id, `{}`)); err != nil {
					return err
				}
				if err := w.Emit(ev(id)); err != nil {
					return err
				}
				if i%3 == 0 {
					return errRefused
				}
				return nil
			})
		})
	}
	wg.Wait()
	var wantIDs []string
	for i, err := range errs {
		switch {
		case i%3 == 0 && !errors.Is(err, errRefused):
			t.Errorf("failing Update %d returned %v", i, err)
		case i%3 != 0 && err != nil:
			t.Errorf("Update %d, a neighbour of failing ones, returned %v", i, err)
		case i%3 != 0:
			wantIDs = append(wantIDs, fmt.Sprint(i))
		}
	}
	recs := readAll(t, s.Log())
	wantGapFree(t, recs)
	var gotIDs []string
	for _, r := range recs {
		gotIDs = append(gotIDs, r.Event.ID)
	}
	slices.Sort(gotIDs)
	slices.Sort(wantIDs)
	if !slices.Equal(gotIDs, wantIDs) {
		t.Errorf("log holds events %v, want exactly those of the successful Updates %v", gotIDs, wantIDs)
	}
	view(t, s, func(r store.Reader) error {
		ts, err := r.Twins("", 0)
		if err != nil {
			return err
		}
		var ids []string
		for _, tw := range ts {
			ids = append(ids, tw.ID)
		}
		if !slices.Equal(ids, wantIDs) {
			t.Errorf("store holds twins %v, want exactly those of the successful Updates %v", ids, wantIDs)
		}
		return nil
	})
}

func testConcurrentUpdatesLoseNothing(t *testing.T, s store.Store) {
	const goroutines, increments = 50, 20
	update(t, s, func(w store.Writer) error { return w.PutTwin(twin("counter", `{"n":0}`)) })
	var wg sync.WaitGroup
	for range goroutines {
		wg.Go(func() {
			for range increments {
				err := s.Update(context.Background(), func(w store.Writer) error {
					tw, err := w.Twin("counter")
					if err != nil {
						return err
					}
					var doc struct{ N int }
					if err := json.Unmarshal(tw.Doc, &doc); err != nil {
						return err
					}
					tw.Doc = json.RawMessage(fmt.Sprintf(`{"n":%d}`, doc.N+1))
					if err := w.PutTwin(tw); err != nil {
						return err
					}
					return w.Emit(ev(fmt.Sprint(doc.N + 1)))
				})
				if err != nil {
					t.Errorf("increment: %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	view(t, s, func(r store.Reader) error {
		tw, err := r.Twin("counter")
		if err != nil {
			return err
		}
		if want := fmt.Sprintf(`{"n":%d}`, goroutines*increments); !equalJSON(tw.Doc, json.RawMessage(want)) {
			t.Errorf("counter = %s after %d increments: updates were lost", tw.Doc, goroutines*increments)
		}
		return nil
	})
	recs := readAll(t, s.Log())
	wantGapFree(t, recs)
	for _, r := range recs {
		if r.Event.ID != fmt.Sprint(r.Seq) {
			t.Fatalf("record %d holds increment %s: log order differs from commit order", r.Seq, r.Event.ID)
		}
	}
}

func testViewIsSnapshot(t *testing.T, s store.Store) {
	update(t, s, func(w store.Writer) error {
		if err := w.PutTwin(twin("a", `{"v":1}`)); err != nil {
			return err
		}
		return w.PutTwin(twin("b", `{"v":1}`))
	})
	view(t, s, func(r store.Reader) error {
		if _, err := r.Twin("a"); err != nil {
			return err
		}
		update(t, s, func(w store.Writer) error {
			if err := w.PutTwin(twin("a", `{"v":2}`)); err != nil {
				return err
			}
			if err := w.PutTwin(twin("b", `{"v":2}`)); err != nil {
				return err
			}
			return w.PutTwin(twin("c", `{"v":2}`))
		})
		for _, id := range []string{"a", "b"} {
			tw, err := r.Twin(id)
			if err != nil {
				return err
			}
			if !equalJSON(tw.Doc, json.RawMessage(`{"v":1}`)) {
				t.Errorf("View saw twin %s change under it: %s", id, tw.Doc)
			}
		}
		n, err := r.CountTwins()
		if err != nil {
			return err
		}
		if n != 2 {
			t.Errorf("View counted %d twins, want the snapshot's 2", n)
		}
		return nil
	})
	view(t, s, func(r store.Reader) error {
		tw, err := r.Twin("b")
		if err != nil {
			return err
		}
		if !equalJSON(tw.Doc, json.RawMessage(`{"v":2}`)) {
			t.Errorf("a View after the Update sees %s", tw.Doc)
		}
		return nil
	})
}

func testClose(t *testing.T, s store.Store) {
	const n = 100
	var wg sync.WaitGroup
	started := make(chan struct{}, n)
	for i := range n {
		wg.Go(func() {
			started <- struct{}{}
			err := s.Update(context.Background(), func(w store.Writer) error {
				return w.PutTwin(twin(fmt.Sprint(i), `{}`))
			})
			if err != nil && !errors.Is(err, store.ErrClosed) {
				t.Errorf("Update racing Close returned %v, want nil or store.ErrClosed", err)
			}
		})
	}
	readErr := make(chan error, 1)
	go func() {
		_, err := s.Log().Read(context.Background(), 1<<40, 1)
		readErr <- err
	}()
	for range n {
		<-started
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	wg.Wait()
	select {
	case err := <-readErr:
		if !errors.Is(err, store.ErrClosed) {
			t.Errorf("Read waiting at Close returned %v, want store.ErrClosed", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Read waiting at Close did not return")
	}
	if err := s.Update(context.Background(), func(store.Writer) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Update after Close returned %v, want store.ErrClosed", err)
	}
	if err := s.View(context.Background(), func(store.Reader) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("View after Close returned %v, want store.ErrClosed", err)
	}
	if _, err := s.Log().Read(context.Background(), 0, 1); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Log().Read after Close returned %v, want store.ErrClosed", err)
	}
}
