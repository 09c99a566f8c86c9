package storetest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// DetectorStore is a store that also keeps anomaly detectors.
type DetectorStore interface {
	store.Store
	store.Detectors
}

// RunDetectors runs the contract suite of store.Detectors, opening a fresh empty store with
// open for each subtest and closing it afterwards.
func RunDetectors(t *testing.T, open func(t *testing.T) DetectorStore) {
	tests := []testCase[DetectorStore]{
		{"Detectors", testDetectors},
		{"DetectorStatesCommitWithCursorAndEvents", testDetectorStatesCommit},
		{"DetectorEventsCommitApartFromStates", testDetectorEventsCommit},
	}
	runCases(t, open, tests)
}

func updateDetectors(t *testing.T, s DetectorStore, fn func(store.DetectorWriter) error) {
	t.Helper()
	if err := s.UpdateDetectors(context.Background(), fn); err != nil {
		t.Fatalf("UpdateDetectors: %v", err)
	}
}

func viewDetectors(t *testing.T, s DetectorStore, fn func(store.DetectorReader) error) {
	t.Helper()
	if err := s.ViewDetectors(context.Background(), fn); err != nil {
		t.Fatalf("ViewDetectors: %v", err)
	}
}

func testDetectors(t *testing.T, s DetectorStore) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 600000000, time.UTC)
	updateDetectors(t, s, func(w store.DetectorWriter) error {
		for _, name := range []string{"b", "a", "c"} {
			if err := w.PutDetector(store.Detector{Name: name, Config: json.RawMessage(`{"n":"` + name + `"}`), Created: created}); err != nil {
				return err
			}
		}
		got, err := w.Detector("b")
		if err != nil || !equalJSON(got.Config, []byte(`{"n":"b"}`)) {
			t.Errorf("Detector(b) inside the Update = %+v, %v", got, err)
		}
		return errors.Join(
			w.PutDetectorState(store.DetectorState{Detector: "b", Twin: "t2", Property: "p", State: []byte{2}}),
			w.PutDetectorState(store.DetectorState{Detector: "b", Twin: "t1", Property: "p", State: []byte{1}}),
			w.PutDetectorState(store.DetectorState{Detector: "c", Twin: "t1", Property: "p", State: []byte{3}}))
	})
	updateDetectors(t, s, func(w store.DetectorWriter) error {
		// A replaced detector keeps its Created time and its states.
		if err := w.PutDetector(store.Detector{Name: "b", Config: json.RawMessage(`{"n":"b2"}`), Created: created.Add(time.Hour)}); err != nil {
			return err
		}
		if err := w.PutDetectorState(store.DetectorState{Detector: "b", Twin: "t1", Property: "p", State: []byte{9}}); err != nil {
			return err
		}
		if err := w.PutDetectorState(store.DetectorState{Detector: "b", Twin: "t3", Property: "p", State: []byte{3}}); err != nil {
			return err
		}
		if err := w.PutDetectorState(store.DetectorState{Detector: "b", Twin: "t3", Property: "q", State: []byte{4}}); err != nil {
			return err
		}
		if err := w.DeleteDetectorTwin("b", "t3"); err != nil {
			return err
		}
		if err := w.DeleteDetector("c"); err != nil {
			return err
		}
		wantNotFound(t, "DeleteDetector of a missing detector", w.DeleteDetector("c"))
		return nil
	})
	viewDetectors(t, s, func(r store.DetectorReader) error {
		got, err := r.Detector("b")
		if err != nil {
			return err
		}
		if !equalJSON(got.Config, []byte(`{"n":"b2"}`)) || !got.Created.Equal(created) {
			t.Errorf("Detector(b) = %+v, want the replaced config and the first creation time %v", got, created)
		}
		_, err = r.Detector("c")
		wantNotFound(t, "Detector after DeleteDetector", err)
		for _, tc := range []struct {
			after string
			limit int
			want  []string
		}{
			{"", 0, []string{"a", "b"}},
			{"", 1, []string{"a"}},
			{"a", 5, []string{"b"}},
			{"b", 0, nil},
		} {
			ds, err := r.Detectors(tc.after, tc.limit)
			if err != nil {
				return err
			}
			var names []string
			for _, d := range ds {
				names = append(names, d.Name)
			}
			if !slices.Equal(names, tc.want) {
				t.Errorf("Detectors(%q, %d) = %v, want %v", tc.after, tc.limit, names, tc.want)
			}
		}
		states, err := r.DetectorStates("b")
		if err != nil {
			return err
		}
		if len(states) != 2 || states[0].Twin != "t1" || !bytes.Equal(states[0].State, []byte{9}) ||
			states[1].Twin != "t2" || !bytes.Equal(states[1].State, []byte{2}) {
			t.Errorf("DetectorStates(b) = %+v, want t1 [9] and t2 [2], and none of t3, whose twin's states were deleted", states)
		}
		if states, err := r.DetectorStates("c"); err != nil || len(states) != 0 {
			t.Errorf("DetectorStates(c) of a deleted detector = %+v, %v, want none", states, err)
		}
		return nil
	})
}

// testDetectorStatesCommit checks that a detector's states, its consumer cursor and the events
// it emits commit or roll back together.
func testDetectorStatesCommit(t *testing.T, s DetectorStore) {
	errAbort := errors.New("abort")
	write := func(w store.DetectorWriter) error {
		return errors.Join(
			w.PutDetectorState(store.DetectorState{Detector: "d", Twin: "t1", Property: "p", State: []byte{1}}),
			w.SetConsumerCursor("detector d", 7),
			w.Emit(about("1", event.TwinUpdate, "t1")))
	}
	err := s.UpdateDetectors(context.Background(), func(w store.DetectorWriter) error {
		if err := write(w); err != nil {
			return err
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("UpdateDetectors = %v, want the fn's error", err)
	}
	viewDetectors(t, s, func(r store.DetectorReader) error {
		if states, err := r.DetectorStates("d"); err != nil || len(states) != 0 {
			t.Errorf("DetectorStates of a rolled back Update = %+v, %v", states, err)
		}
		_, err := r.ConsumerCursor("detector d")
		wantNotFound(t, "ConsumerCursor of a rolled back Update", err)
		return nil
	})
	if last := s.Log().Last(); last != 0 {
		t.Errorf("log holds %d records after a rolled back detector Update", last)
	}

	updateDetectors(t, s, func(w store.DetectorWriter) error {
		if err := write(w); err != nil {
			return err
		}
		if c, err := w.ConsumerCursor("detector d"); err != nil || c != 7 {
			t.Errorf("ConsumerCursor inside the Update = %d, %v, want 7", c, err)
		}
		return nil
	})
	viewDetectors(t, s, func(r store.DetectorReader) error {
		if states, err := r.DetectorStates("d"); err != nil || len(states) != 1 {
			t.Errorf("DetectorStates = %+v, %v, want one", states, err)
		}
		if c, err := r.ConsumerCursor("detector d"); err != nil || c != 7 {
			t.Errorf("ConsumerCursor = %d, %v, want 7", c, err)
		}
		return nil
	})
	if last := s.Log().Last(); last != 1 {
		t.Errorf("log holds %d records, want 1", last)
	}
}

// testDetectorEventsCommit checks what a detector's scoring relies on between checkpoints:
// events commit, or roll back, with one consumer cursor while the states and another cursor
// stay as the last checkpoint left them, and one cursor goes without the other.
func testDetectorEventsCommit(t *testing.T, s DetectorStore) {
	const scored, events = "detector d", "detector d events"
	updateDetectors(t, s, func(w store.DetectorWriter) error {
		return errors.Join(
			w.PutDetectorState(store.DetectorState{Detector: "d", Twin: "t1", Property: "p", State: []byte{1}}),
			w.SetConsumerCursor(scored, 5),
			w.SetConsumerCursor(events, 5))
	})
	updateDetectors(t, s, func(w store.DetectorWriter) error {
		return errors.Join(w.Emit(about("1", event.Anomaly, "t1")), w.SetConsumerCursor(events, 9))
	})
	errAbort := errors.New("abort")
	err := s.UpdateDetectors(context.Background(), func(w store.DetectorWriter) error {
		if err := errors.Join(w.Emit(about("2", event.Anomaly, "t1")), w.SetConsumerCursor(events, 12)); err != nil {
			return err
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("UpdateDetectors = %v, want the fn's error", err)
	}
	viewDetectors(t, s, func(r store.DetectorReader) error {
		if c, err := r.ConsumerCursor(scored); err != nil || c != 5 {
			t.Errorf("ConsumerCursor of the checkpoint = %d, %v, want 5", c, err)
		}
		if c, err := r.ConsumerCursor(events); err != nil || c != 9 {
			t.Errorf("ConsumerCursor of the events = %d, %v, want 9", c, err)
		}
		if states, err := r.DetectorStates("d"); err != nil || len(states) != 1 || !bytes.Equal(states[0].State, []byte{1}) {
			t.Errorf("DetectorStates = %+v, %v, want the checkpoint's", states, err)
		}
		return nil
	})
	if last := s.Log().Last(); last != 1 {
		t.Errorf("log holds %d records, want the committed event's", last)
	}

	updateDetectors(t, s, func(w store.DetectorWriter) error { return w.DeleteConsumerCursor(events) })
	viewDetectors(t, s, func(r store.DetectorReader) error {
		_, err := r.ConsumerCursor(events)
		wantNotFound(t, "ConsumerCursor of the deleted events cursor", err)
		if c, err := r.ConsumerCursor(scored); err != nil || c != 5 {
			t.Errorf("ConsumerCursor of the checkpoint after the other's deletion = %d, %v, want 5", c, err)
		}
		return nil
	})
}
