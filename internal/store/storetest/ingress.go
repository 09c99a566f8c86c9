package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/store"
)

// IngressStore is a store that also keeps ingress state.
type IngressStore interface {
	store.Store
	store.Ingress
}

// RunIngress runs the contract suite of store.Ingress, opening a fresh empty store with open
// for each subtest and closing it afterwards.
func RunIngress(t *testing.T, open func(t *testing.T) IngressStore) {
	tests := []testCase[IngressStore]{
		{"Sources", testSources},
		{"Mappings", testMappings},
		{"SourceDeadLetters", testSourceDeadLetters},
		{"RecordMessage", testRecordMessage},
		{"PruneMessages", testPruneMessages},
		{"MessageCommitsWithItsChanges", testMessageCommitsWithChanges},
		{"DeleteSourceTakesItsState", testDeleteSource},
	}
	runCases(t, open, tests)
}

func updateIngress(t *testing.T, s IngressStore, fn func(store.IngressWriter) error) {
	t.Helper()
	if err := s.UpdateIngress(context.Background(), fn); err != nil {
		t.Fatalf("UpdateIngress: %v", err)
	}
}

func viewIngress(t *testing.T, s IngressStore, fn func(store.IngressReader) error) {
	t.Helper()
	if err := s.ViewIngress(context.Background(), fn); err != nil {
		t.Fatalf("ViewIngress: %v", err)
	}
}

func testSources(t *testing.T, s IngressStore) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	updateIngress(t, s, func(w store.IngressWriter) error {
		if err := w.PutSource(store.Source{Name: "b", Config: json.RawMessage(`{"sourceType":"mqtt"}`), Created: created}); err != nil {
			return err
		}
		return w.PutSource(store.Source{Name: "a", Config: json.RawMessage(`{"sourceType":"http"}`), Created: created})
	})
	// Replacing keeps the creation time.
	updateIngress(t, s, func(w store.IngressWriter) error {
		return w.PutSource(store.Source{Name: "b", Config: json.RawMessage(`{"sourceType":"kafka"}`), Created: created.Add(time.Hour)})
	})
	viewIngress(t, s, func(r store.IngressReader) error {
		srcs, err := r.Sources()
		if err != nil {
			return err
		}
		if len(srcs) != 2 || srcs[0].Name != "a" || srcs[1].Name != "b" {
			t.Fatalf("Sources = %+v, want a and b", srcs)
		}
		b, err := r.Source("b")
		if err != nil {
			return err
		}
		if !equalJSON(b.Config, json.RawMessage(`{"sourceType":"kafka"}`)) || !b.Created.Equal(created) {
			t.Errorf("Source(b) = %s created %v, want the kafka config created %v", b.Config, b.Created, created)
		}
		_, err = r.Source("c")
		wantNotFound(t, "Source(c)", err)
		return nil
	})
	updateIngress(t, s, func(w store.IngressWriter) error {
		if err := w.DeleteSource("a"); err != nil {
			return err
		}
		wantNotFound(t, "DeleteSource(a) twice", w.DeleteSource("a"))
		// The writer sees its own changes.
		_, err := w.Source("a")
		wantNotFound(t, "Source(a) in the deleting update", err)
		return nil
	})
	viewIngress(t, s, func(r store.IngressReader) error {
		_, err := r.Source("a")
		wantNotFound(t, "Source(a) after delete", err)
		return nil
	})
}

func testMappings(t *testing.T, s IngressStore) {
	created := time.Date(2026, 2, 3, 4, 5, 6, 0, time.UTC)
	updateIngress(t, s, func(w store.IngressWriter) error {
		for _, m := range []store.Mapping{
			{Name: "z", Source: "plant", Definition: json.RawMessage(`{"twinId":"1"}`), Created: created},
			{Name: "m", Source: "$events", Definition: json.RawMessage(`{"twinId":"2"}`), Created: created},
		} {
			if err := w.PutMapping(m); err != nil {
				return err
			}
		}
		return nil
	})
	updateIngress(t, s, func(w store.IngressWriter) error {
		return w.PutMapping(store.Mapping{Name: "z", Source: "other", Definition: json.RawMessage(`{"twinId":"3"}`), Created: created.Add(time.Hour)})
	})
	viewIngress(t, s, func(r store.IngressReader) error {
		ms, err := r.Mappings()
		if err != nil {
			return err
		}
		if len(ms) != 2 || ms[0].Name != "m" || ms[1].Name != "z" {
			t.Fatalf("Mappings = %+v, want m and z", ms)
		}
		z, err := r.Mapping("z")
		if err != nil {
			return err
		}
		if z.Source != "other" || !equalJSON(z.Definition, json.RawMessage(`{"twinId":"3"}`)) || !z.Created.Equal(created) {
			t.Errorf("Mapping(z) = %+v, want the replaced one with the first creation time", z)
		}
		_, err = r.Mapping("nope")
		wantNotFound(t, "Mapping(nope)", err)
		return nil
	})
	updateIngress(t, s, func(w store.IngressWriter) error {
		if err := w.DeleteMapping("m"); err != nil {
			return err
		}
		wantNotFound(t, "DeleteMapping twice", w.DeleteMapping("m"))
		return nil
	})
	viewIngress(t, s, func(r store.IngressReader) error {
		ms, err := r.Mappings()
		if err != nil || len(ms) != 1 {
			t.Errorf("Mappings after a delete = %+v, %v; want z only", ms, err)
		}
		return nil
	})
}

// message returns a test message with every field set.
func message(id string) ingress.Message {
	return ingress.Message{
		ID: id, Topic: "devices/t1/messages/events/", Key: "k",
		Headers: map[string]string{"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		Body:    []byte("not JSON \x00\xff"), Time: time.Date(2026, 3, 4, 5, 6, 7, 800, time.UTC), Order: "devices/t1",
	}
}

func equalMessage(a, b ingress.Message) bool {
	return a.ID == b.ID && a.Topic == b.Topic && a.Key == b.Key && a.Order == b.Order &&
		string(a.Body) == string(b.Body) && a.Time.Equal(b.Time) &&
		len(a.Headers) == len(b.Headers) && fmt.Sprint(a.Headers) == fmt.Sprint(b.Headers)
}

func testSourceDeadLetters(t *testing.T, s IngressStore) {
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	var ids []uint64
	updateIngress(t, s, func(w store.IngressWriter) error {
		for i, src := range []string{"a", "b", "a", "a"} {
			id, err := w.AddSourceDeadLetter(store.SourceDeadLetter{
				Source: src, Message: message(fmt.Sprintf("m%d", i)), Reason: "twin missing", Attempts: i + 1, Time: at,
			})
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	})
	for i := 1; i < len(ids); i++ {
		if ids[i] <= ids[i-1] {
			t.Fatalf("dead letter ids %v are not increasing", ids)
		}
	}
	viewIngress(t, s, func(r store.IngressReader) error {
		d, err := r.SourceDeadLetter("a", ids[2])
		if err != nil {
			return err
		}
		if d.Source != "a" || d.Reason != "twin missing" || d.Attempts != 3 || !d.Time.Equal(at) || !equalMessage(d.Message, message("m2")) {
			t.Errorf("SourceDeadLetter(a, %d) = %+v", ids[2], d)
		}
		_, err = r.SourceDeadLetter("b", ids[2])
		wantNotFound(t, "SourceDeadLetter of another source", err)
		list, err := r.SourceDeadLetters("a", ids[0], 0)
		if err != nil {
			return err
		}
		if len(list) != 2 || list[0].ID != ids[2] || list[1].ID != ids[3] {
			t.Errorf("SourceDeadLetters(a, after first) = %+v, want ids %d, %d", list, ids[2], ids[3])
		}
		if list, err := r.SourceDeadLetters("a", 0, 1); err != nil || len(list) != 1 || list[0].ID != ids[0] {
			t.Errorf("SourceDeadLetters(a, limit 1) = %+v, %v; want id %d", list, err, ids[0])
		}
		if n, err := r.CountSourceDeadLetters("a"); err != nil || n != 3 {
			t.Errorf("CountSourceDeadLetters(a) = %d, %v; want 3", n, err)
		}
		return nil
	})
	updateIngress(t, s, func(w store.IngressWriter) error {
		if err := w.DeleteSourceDeadLetter("a", ids[3]); err != nil {
			return err
		}
		wantNotFound(t, "DeleteSourceDeadLetter twice", w.DeleteSourceDeadLetter("a", ids[3]))
		return nil
	})
	var next uint64
	updateIngress(t, s, func(w store.IngressWriter) error {
		var err error
		next, err = w.AddSourceDeadLetter(store.SourceDeadLetter{Source: "a", Message: message("late"), Time: at})
		return err
	})
	if next <= ids[3] {
		t.Errorf("dead letter id %d reuses or precedes deleted id %d", next, ids[3])
	}
}

func testRecordMessage(t *testing.T, s IngressStore) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rec := func(src, id string, at time.Time) store.MessageRecord {
		return store.MessageRecord{Source: src, ID: id, Time: at, Expires: at.Add(time.Hour)}
	}
	updateIngress(t, s, func(w store.IngressWriter) error {
		if err := w.RecordMessage(rec("a", "m1", t0)); err != nil {
			return err
		}
		// The writer sees its own record.
		if err := w.RecordMessage(rec("a", "m1", t0)); !errors.Is(err, store.ErrDuplicate) {
			t.Errorf("RecordMessage twice in one update = %v, want ErrDuplicate", err)
		}
		// Ids are per source.
		return w.RecordMessage(rec("b", "m1", t0))
	})
	err := s.UpdateIngress(context.Background(), func(w store.IngressWriter) error {
		return w.RecordMessage(rec("a", "m1", t0.Add(59*time.Minute)))
	})
	if !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("RecordMessage within the window = %v, want ErrDuplicate", err)
	}
	viewIngress(t, s, func(r store.IngressReader) error {
		for _, c := range []struct {
			src, id string
			at      time.Time
			want    bool
		}{
			{"a", "m1", t0, true},
			{"a", "m1", t0.Add(time.Hour), false},
			{"a", "m2", t0, false},
			{"b", "m1", t0.Add(time.Minute), true},
		} {
			if got, err := r.MessageRecorded(c.src, c.id, c.at); err != nil || got != c.want {
				t.Errorf("MessageRecorded(%s, %s, %v) = %v, %v; want %v", c.src, c.id, c.at, got, err, c.want)
			}
		}
		return nil
	})
	// An expired record is replaced, and the new one counts from then.
	later := t0.Add(2 * time.Hour)
	updateIngress(t, s, func(w store.IngressWriter) error { return w.RecordMessage(rec("a", "m1", later)) })
	err = s.UpdateIngress(context.Background(), func(w store.IngressWriter) error {
		return w.RecordMessage(rec("a", "m1", later.Add(time.Minute)))
	})
	if !errors.Is(err, store.ErrDuplicate) {
		t.Errorf("RecordMessage after the record was renewed = %v, want ErrDuplicate", err)
	}
}

func testPruneMessages(t *testing.T, s IngressStore) {
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	updateIngress(t, s, func(w store.IngressWriter) error {
		for i := range 10 {
			r := store.MessageRecord{Source: "a", ID: fmt.Sprint(i), Time: t0, Expires: t0.Add(time.Duration(i) * time.Minute)}
			if err := w.RecordMessage(r); err != nil {
				return err
			}
		}
		return nil
	})
	var pruned []int
	updateIngress(t, s, func(w store.IngressWriter) error {
		// Records 0 to 5 expired at or before t0+5m; at most 4 go at once.
		for _, max := range []int{4, 4, 4} {
			n, err := w.PruneMessages(t0.Add(5*time.Minute), max)
			if err != nil {
				return err
			}
			pruned = append(pruned, n)
		}
		return nil
	})
	if !slices.Equal(pruned, []int{4, 2, 0}) {
		t.Errorf("PruneMessages returned %v, want [4 2 0]", pruned)
	}
	viewIngress(t, s, func(r store.IngressReader) error {
		for i := range 10 {
			got, err := r.MessageRecorded("a", fmt.Sprint(i), t0)
			if err != nil {
				return err
			}
			// Record 0 expired at t0 and so never counted.
			if want := i > 5; got != want {
				t.Errorf("message %d recorded = %v after pruning, want %v", i, got, want)
			}
		}
		return nil
	})
}

func testMessageCommitsWithChanges(t *testing.T, s IngressStore) {
	t0 := time.Now()
	rec := store.MessageRecord{Source: "a", ID: "m1", Time: t0, Expires: t0.Add(time.Hour)}
	boom := errors.New("boom")
	err := s.UpdateIngress(context.Background(), func(w store.IngressWriter) error {
		if err := w.RecordMessage(rec); err != nil {
			return err
		}
		if err := w.PutTwin(twin("t1", `{"$dtId":"t1"}`)); err != nil {
			return err
		}
		if _, err := w.AddSourceDeadLetter(store.SourceDeadLetter{Source: "a", Message: message("m0"), Time: t0}); err != nil {
			return err
		}
		if err := w.Emit(ev("e1")); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateIngress = %v, want boom", err)
	}
	viewIngress(t, s, func(r store.IngressReader) error {
		if got, err := r.MessageRecorded("a", "m1", t0); err != nil || got {
			t.Errorf("MessageRecorded after a failed update = %v, %v; want false", got, err)
		}
		if n, err := r.CountSourceDeadLetters("a"); err != nil || n != 0 {
			t.Errorf("CountSourceDeadLetters after a failed update = %d, %v; want 0", n, err)
		}
		return nil
	})
	view(t, s, func(r store.Reader) error {
		_, err := r.Twin("t1")
		wantNotFound(t, "Twin after a failed update", err)
		return nil
	})
	if last := s.Log().Last(); last != 0 {
		t.Errorf("log Last after a failed update = %d, want 0", last)
	}

	updateIngress(t, s, func(w store.IngressWriter) error {
		if err := w.RecordMessage(rec); err != nil {
			return err
		}
		if err := w.PutTwin(twin("t1", `{"$dtId":"t1"}`)); err != nil {
			return err
		}
		return w.Emit(ev("e1"))
	})
	view(t, s, func(r store.Reader) error {
		_, err := r.Twin("t1")
		return err
	})
	if last := s.Log().Last(); last != 1 {
		t.Errorf("log Last after the update = %d, want 1", last)
	}
	viewIngress(t, s, func(r store.IngressReader) error {
		if got, err := r.MessageRecorded("a", "m1", t0); err != nil || !got {
			t.Errorf("MessageRecorded after the update = %v, %v; want true", got, err)
		}
		return nil
	})
}

func testDeleteSource(t *testing.T, s IngressStore) {
	t0 := time.Now()
	updateIngress(t, s, func(w store.IngressWriter) error {
		for _, name := range []string{"a", "b"} {
			if err := w.PutSource(store.Source{Name: name, Config: json.RawMessage(`{}`), Created: t0}); err != nil {
				return err
			}
			if _, err := w.AddSourceDeadLetter(store.SourceDeadLetter{Source: name, Message: message("x"), Time: t0}); err != nil {
				return err
			}
			if err := w.RecordMessage(store.MessageRecord{Source: name, ID: "x", Time: t0, Expires: t0.Add(time.Hour)}); err != nil {
				return err
			}
		}
		return nil
	})
	updateIngress(t, s, func(w store.IngressWriter) error { return w.DeleteSource("a") })
	viewIngress(t, s, func(r store.IngressReader) error {
		for _, c := range []struct {
			src  string
			want int
		}{{"a", 0}, {"b", 1}} {
			if n, err := r.CountSourceDeadLetters(c.src); err != nil || n != c.want {
				t.Errorf("CountSourceDeadLetters(%s) = %d, %v; want %d", c.src, n, err, c.want)
			}
			if got, err := r.MessageRecorded(c.src, "x", t0); err != nil || got != (c.want == 1) {
				t.Errorf("MessageRecorded(%s, x) = %v, %v; want %v", c.src, got, err, c.want == 1)
			}
		}
		return nil
	})
}
