package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"

	"github.com/twinflow/twinflow/internal/store"
)

// DeliveryStore is a store that also keeps event delivery state.
type DeliveryStore interface {
	store.Store
	store.Delivery
}

// RunDelivery runs the contract suite of store.Delivery, opening a fresh empty store with open for
// each subtest and closing it afterwards.
func RunDelivery(t *testing.T, open func(t *testing.T) DeliveryStore) {
	tests := []testCase[DeliveryStore]{
		{"Endpoints", testEndpoints},
		{"EndpointCursorStartsAtNewestRecord", testEndpointCursor},
		{"ConsumerCursors", testConsumerCursors},
		{"Routes", testRoutes},
		{"DeadLetters", testDeadLetters},
		{"LogClock", testLogClock},
		{"PruneLog", testPruneLog},
		{"FailedDeliveryUpdateRollsBack", testFailedDeliveryUpdate},
	}
	runCases(t, open, tests)
}

func updateDelivery(t *testing.T, s DeliveryStore, fn func(store.DeliveryWriter) error) {
	t.Helper()
	if err := s.UpdateDelivery(context.Background(), fn); err != nil {
		t.Fatalf("UpdateDelivery: %v", err)
	}
}

func viewDelivery(t *testing.T, s DeliveryStore, fn func(store.DeliveryReader) error) {
	t.Helper()
	if err := s.ViewDelivery(context.Background(), fn); err != nil {
		t.Fatalf("ViewDelivery: %v", err)
	}
}

// emit appends n events to the log in one Update.
func emit(t *testing.T, s store.Store, n int) {
	t.Helper()
	update(t, s, func(w store.Writer) error {
		for i := range n {
			if err := w.Emit(ev(fmt.Sprintf("e%d-%d", time.Now().UnixNano(), i))); err != nil {
				return err
			}
		}
		return nil
	})
}

// deadEvent returns an event with id and the data {"n":1}.
func deadEvent(id string) event.Event {
	e := ev(id)
	e.Data = json.RawMessage(`{"n":1}`)
	return e
}

func testEndpoints(t *testing.T, s DeliveryStore) {
	created := time.Date(2026, 1, 2, 3, 4, 5, 6000, time.UTC)
	updateDelivery(t, s, func(w store.DeliveryWriter) error {
		if err := w.PutEndpoint(store.Endpoint{Name: "b", Config: json.RawMessage(`{"endpointType":"webhook"}`), Created: created}); err != nil {
			return err
		}
		return w.PutEndpoint(store.Endpoint{Name: "a", Config: json.RawMessage(`{"endpointType":"nats"}`), Created: created})
	})
	// Replacing keeps the creation time.
	updateDelivery(t, s, func(w store.DeliveryWriter) error {
		return w.PutEndpoint(store.Endpoint{Name: "b", Config: json.RawMessage(`{"endpointType":"kafka"}`), Created: created.Add(time.Hour)})
	})
	viewDelivery(t, s, func(r store.DeliveryReader) error {
		eps, err := r.Endpoints()
		if err != nil {
			return err
		}
		if len(eps) != 2 || eps[0].Name != "a" || eps[1].Name != "b" {
			t.Fatalf("Endpoints = %+v, want a and b", eps)
		}
		b, err := r.Endpoint("b")
		if err != nil {
			return err
		}
		if !equalJSON(b.Config, json.RawMessage(`{"endpointType":"kafka"}`)) || !b.Created.Equal(created) {
			t.Errorf("Endpoint(b) = %s created %v, want the kafka config created %v", b.Config, b.Created, created)
		}
		_, err = r.Endpoint("c")
		wantNotFound(t, "Endpoint(c)", err)
		return nil
	})
	updateDelivery(t, s, func(w store.DeliveryWriter) error {
		if _, err := w.AddDeadLetter(store.DeadLetter{Endpoint: "a", Event: deadEvent("x"), Time: created}); err != nil {
			return err
		}
		if err := w.DeleteEndpoint("a"); err != nil {
			return err
		}
		wantNotFound(t, "DeleteEndpoint(a) twice", w.DeleteEndpoint("a"))
		return nil
	})
	viewDelivery(t, s, func(r store.DeliveryReader) error {
		_, err := r.Endpoint("a")
		wantNotFound(t, "Endpoint(a) after delete", err)
		_, err = r.Cursor("a")
		wantNotFound(t, "Cursor(a) after delete", err)
		if n, err := r.CountDeadLetters("a"); err != nil || n != 0 {
			t.Errorf("CountDeadLetters(a) after delete = %d, %v; want 0", n, err)
		}
		return nil
	})
}

func testEndpointCursor(t *testing.T, s DeliveryStore) {
	emit(t, s, 3)
	updateDelivery(t, s, func(w store.DeliveryWriter) error {
		return w.PutEndpoint(store.Endpoint{Name: "a", Config: json.RawMessage(`{}`), Created: time.Now()})
	})
	emit(t, s, 2)
	// Replacing the endpoint keeps its cursor.
	updateDelivery(t, s, func(w store.DeliveryWriter) error {
		return w.PutEndpoint(store.Endpoint{Name: "a", Config: json.RawMessage(`{"x":1}`), Created: time.Now()})
	})
	viewDelivery(t, s, func(r store.DeliveryReader) error {
		c, err := r.Cursor("a")
		if err != nil {
			return err
		}
		if c != 3 {
			t.Errorf("Cursor(a) = %d, want 3 (the newest record when it was created)", c)
		}
		return nil
	})
	updateDelivery(t, s, func(w store.DeliveryWriter) error {
		if err := w.SetCursor("a", 5); err != nil {
			return err
		}
		wantNotFound(t, "SetCursor(missing)", w.SetCursor("missing", 1))
		return nil
	})
	viewDelivery(t, s, func(r store.DeliveryReader) error {
		if c, err := r.Cursor("a"); err != nil || c != 5 {
			t.Errorf("Cursor(a) = %d, %v; want 5", c, err)
		}
		return nil
	})
}

func testConsumerCursors(t *testing.T, s DeliveryStore) {
	viewDelivery(t, s, func(r store.DeliveryReader) error {
		_, err := r.ConsumerCursor("propagation")
		wantNotFound(t, "ConsumerCursor before it is set", err)
		return nil
	})
	updateDelivery(t, s, func(w store.DeliveryWriter) error {
		if err := w.SetConsumerCursor("propagation", 4); err != nil {
			return err
		}
		if err := w.SetConsumerCursor("other", 9); err != nil {
			return err
		}
		return w.SetConsumerCursor("propagation", 7)
	})
	viewDelivery(t, s, func(r store.DeliveryReader) error {
		c, err := r.ConsumerCursor("propagation")
		if err != nil || c != 7 {
			t.Errorf("ConsumerCursor(propagation) = %d, %v; want 7", c, err)
		}
		all, err := r.ConsumerCursors()
		if err != nil || len(all) != 2 || all["propagation"] != 7 || all["other"] != 9 {
			t.Errorf("ConsumerCursors = %v, %v; want propagation 7 and other 9", all, err)
		}
		return nil
	})
	updateDelivery(t, s, func(w store.DeliveryWriter) error {
		if err := w.DeleteConsumerCursor("other"); err != nil {
			return err
		}
		wantNotFound(t, "DeleteConsumerCursor twice", w.DeleteConsumerCursor("other"))
		return nil
	})
	viewDelivery(t, s, func(r store.DeliveryReader) error {
		all, err := r.ConsumerCursors()
		if err != nil || len(all) != 1 {
			t.Errorf("ConsumerCursors after a delete = %v, %v; want propagation only", all, err)
		}
		return nil
	})
}

func testRoutes(t *testing.T, s DeliveryStore) {
	updateDelivery(t, s, func(w store.DeliveryWriter) error {
		for _, id := range []string{"r2", "r1", "r3"} {
			if err := w.PutRoute(store.Route{ID: id, EndpointName: "ep", Filter: "true"}); err != nil {
				return err
			}
		}
		return w.PutRoute(store.Route{ID: "r2", EndpointName: "other", Filter: "type = 'x'"})
	})
	viewDelivery(t, s, func(r store.DeliveryReader) error {
		n, err := r.CountRoutes()
		if err != nil || n != 3 {
			t.Errorf("CountRoutes = %d, %v; want 3", n, err)
		}
		page, err := r.Routes("r1", 1)
		if err != nil {
			return err
		}
		want := store.Route{ID: "r2", EndpointName: "other", Filter: "type = 'x'"}
		if len(page) != 1 || page[0] != want {
			t.Errorf("Routes(r1, 1) = %+v, want [%+v]", page, want)
		}
		all, err := r.Routes("", 0)
		if err != nil || len(all) != 3 {
			t.Errorf("Routes(all) = %+v, %v; want 3", all, err)
		}
		_, err = r.Route("nope")
		wantNotFound(t, "Route(nope)", err)
		return nil
	})
	updateDelivery(t, s, func(w store.DeliveryWriter) error {
		if err := w.DeleteRoute("r1"); err != nil {
			return err
		}
		wantNotFound(t, "DeleteRoute(r1) twice", w.DeleteRoute("r1"))
		return nil
	})
	viewDelivery(t, s, func(r store.DeliveryReader) error {
		_, err := r.Route("r1")
		wantNotFound(t, "Route(r1) after delete", err)
		return nil
	})
}

func testDeadLetters(t *testing.T, s DeliveryStore) {
	at := time.Date(2026, 5, 6, 7, 8, 9, 0, time.UTC)
	var ids []uint64
	updateDelivery(t, s, func(w store.DeliveryWriter) error {
		for i, ep := range []string{"a", "b", "a", "a"} {
			e := deadEvent(fmt.Sprintf("ev%d", i))
			id, err := w.AddDeadLetter(store.DeadLetter{Endpoint: ep, Seq: uint64(10 + i), Event: e, Reason: "HTTP 400", Attempts: i + 1, Time: at})
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
	viewDelivery(t, s, func(r store.DeliveryReader) error {
		d, err := r.DeadLetter("a", ids[2])
		if err != nil {
			return err
		}
		if d.Seq != 12 || d.Event.ID != "ev2" || d.Reason != "HTTP 400" || d.Attempts != 3 || !d.Time.Equal(at) ||
			!equalJSON(d.Event.Data, json.RawMessage(`{"n":1}`)) || d.Endpoint != "a" {
			t.Errorf("DeadLetter(a, %d) = %+v", ids[2], d)
		}
		_, err = r.DeadLetter("b", ids[2])
		wantNotFound(t, "DeadLetter of another endpoint", err)
		list, err := r.DeadLetters("a", ids[0], 0)
		if err != nil {
			return err
		}
		if len(list) != 2 || list[0].ID != ids[2] || list[1].ID != ids[3] {
			t.Errorf("DeadLetters(a, after first) = %+v, want ids %d, %d", list, ids[2], ids[3])
		}
		if n, err := r.CountDeadLetters("a"); err != nil || n != 3 {
			t.Errorf("CountDeadLetters(a) = %d, %v; want 3", n, err)
		}
		return nil
	})
	updateDelivery(t, s, func(w store.DeliveryWriter) error {
		if err := w.DeleteDeadLetter("a", ids[3]); err != nil {
			return err
		}
		wantNotFound(t, "DeleteDeadLetter twice", w.DeleteDeadLetter("a", ids[3]))
		return nil
	})
	// Ids are never reused.
	var next uint64
	updateDelivery(t, s, func(w store.DeliveryWriter) error {
		var err error
		next, err = w.AddDeadLetter(store.DeadLetter{Endpoint: "a", Event: deadEvent("late"), Time: at})
		return err
	})
	if next <= ids[3] {
		t.Errorf("dead letter id %d reuses or precedes deleted id %d", next, ids[3])
	}
}

func testLogClock(t *testing.T, s DeliveryStore) {
	viewDelivery(t, s, func(r store.DeliveryReader) error {
		_, err := r.LogTime(1)
		wantNotFound(t, "LogTime on an empty log", err)
		if seq, err := r.LogSeqAt(time.Now()); err != nil || seq != 1 {
			t.Errorf("LogSeqAt on an empty log = %d, %v; want 1", seq, err)
		}
		return nil
	})
	before := time.Now().Truncate(time.Millisecond)
	emit(t, s, 2)
	time.Sleep(5 * time.Millisecond)
	middle := time.Now()
	emit(t, s, 2)
	after := time.Now()
	viewDelivery(t, s, func(r store.DeliveryReader) error {
		for seq := uint64(1); seq <= 4; seq++ {
			at, err := r.LogTime(seq)
			if err != nil {
				return err
			}
			if at.Before(before) || at.After(after) {
				t.Errorf("LogTime(%d) = %v, want within [%v, %v]", seq, at, before, after)
			}
		}
		if seq, err := r.LogSeqAt(middle); err != nil || seq != 3 {
			t.Errorf("LogSeqAt(between the commits) = %d, %v; want 3", seq, err)
		}
		if seq, err := r.LogSeqAt(before.Add(-time.Hour)); err != nil || seq != 1 {
			t.Errorf("LogSeqAt(long before) = %d, %v; want 1", seq, err)
		}
		if seq, err := r.LogSeqAt(after.Add(time.Second)); err != nil || seq != 5 {
			t.Errorf("LogSeqAt(after every record) = %d, %v; want 5", seq, err)
		}
		return nil
	})
}

func testPruneLog(t *testing.T, s DeliveryStore) {
	emit(t, s, 5)
	time.Sleep(5 * time.Millisecond)
	cut := time.Now()
	time.Sleep(5 * time.Millisecond)
	emit(t, s, 5)
	prune := func(through uint64, before time.Time, max int) int {
		var n int
		updateDelivery(t, s, func(w store.DeliveryWriter) error {
			var err error
			n, err = w.PruneLog(through, before, max)
			return err
		})
		return n
	}
	first := func() uint64 {
		recs, err := s.Log().Read(context.Background(), 0, 1)
		if err != nil {
			t.Fatalf("Read: %v", err)
		}
		return recs[0].Seq
	}
	if n := prune(3, cut, 2); n != 2 || first() != 3 {
		t.Errorf("PruneLog(3, cut, max 2) deleted %d, first record %d; want 2 deleted, first 3", n, first())
	}
	if n := prune(10, cut, 100); n != 3 || first() != 6 {
		t.Errorf("PruneLog(10, cut) deleted %d, first record %d; want 3 (only those before cut), first 6", n, first())
	}
	if n := prune(10, time.Now().Add(time.Hour), 100); n != 4 || first() != 10 {
		t.Errorf("PruneLog(everything) deleted %d, first record %d; want 4, keeping the newest (10)", n, first())
	}
	viewDelivery(t, s, func(r store.DeliveryReader) error {
		at, err := r.LogTime(10)
		if err != nil {
			t.Errorf("LogTime(10) after pruning: %v", err)
		} else if at.Before(cut) {
			t.Errorf("LogTime(10) = %v, want after %v", at, cut)
		}
		return nil
	})
	emit(t, s, 1)
	if last := s.Log().Last(); last != 11 {
		t.Errorf("Last after pruning and one more event = %d, want 11", last)
	}
}

func testFailedDeliveryUpdate(t *testing.T, s DeliveryStore) {
	boom := errors.New("boom")
	err := s.UpdateDelivery(context.Background(), func(w store.DeliveryWriter) error {
		if err := w.PutRoute(store.Route{ID: "r", EndpointName: "e", Filter: "true"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("UpdateDelivery = %v, want boom", err)
	}
	viewDelivery(t, s, func(r store.DeliveryReader) error {
		_, err := r.Route("r")
		wantNotFound(t, "Route after a failed update", err)
		return nil
	})
}
