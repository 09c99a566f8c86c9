package history_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/history"
	hsqlite "github.com/twinflow/twinflow/internal/history/sqlite"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

const models = `[
 {"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Space;1","@type":"Interface",
  "contents":[{"@type":"Property","name":"name","schema":"string","writable":true},
              {"@type":"Relationship","name":"contains","properties":[{"@type":"Property","name":"n","schema":"integer"}]}]},
 {"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Room;1","@type":"Interface","extends":"dtmi:ex:Space;1",
  "contents":[{"@type":"Property","name":"temperature","schema":"double","writable":true},
              {"@type":"Property","name":"pos","writable":true,"schema":{"@type":"Object","fields":[
                {"name":"x","schema":"double"},{"name":"y","schema":"double"}]}}]}
]`

// env is a twin store with its twin service, the source of a change log.
type env struct {
	t     *testing.T
	ctx   context.Context
	store *sqlite.Store
	twins *twins.Service
}

func newEnv(t *testing.T) *env {
	st, err := sqlite.Open(sqlite.Config{Dir: t.TempDir(), NoSync: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g, err := twins.New(twins.Config{ServiceID: "tf.test"}, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, ctx: context.Background(), store: st, twins: g}
	if _, err := g.AddModels(e.ctx, []byte(models)); err != nil {
		t.Fatal(err)
	}
	return e
}

func (e *env) must(_ any, err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// story makes the changes every writer test records.
func (e *env) story() {
	tr := twins.Trace{}
	e.must(e.twins.PutTwin(e.ctx, "room1", []byte(`{"$metadata":{"$model":"dtmi:ex:Room;1","temperature":{"sourceTime":"2024-05-01T09:00:00Z"}},
		"temperature":20,"name":"a","pos":{"x":1,"y":2}}`), "", tr))
	e.must(e.twins.PutTwin(e.ctx, "floor1", []byte(`{"$metadata":{"$model":"dtmi:ex:Space;1"},"name":"f"}`), "", tr))
	e.must(e.twins.PatchTwin(e.ctx, "room1", []byte(`[{"op":"replace","path":"/temperature","value":21},{"op":"replace","path":"/pos/x","value":5}]`), "", tr))
	e.must(e.twins.PutRelationship(e.ctx, "floor1", "r1", []byte(`{"$relationshipName":"contains","$targetId":"room1","n":1}`), "", tr))
	e.must(e.twins.PatchRelationship(e.ctx, "floor1", "r1", []byte(`[{"op":"replace","path":"/n","value":2}]`), "", tr))
	e.must(e.twins.PatchTwin(e.ctx, "room1", []byte(`[{"op":"remove","path":"/name"}]`), "", tr))
	e.must("", e.twins.DeleteRelationship(e.ctx, "floor1", "r1", "", tr))
	e.must("", e.twins.DeleteTwin(e.ctx, "room1", "", tr))
}

func openHistory(t *testing.T) *hsqlite.Store {
	h, err := hsqlite.Open(hsqlite.Config{Dir: t.TempDir(), NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// runUntilCaughtUp runs a writer of log into h until it wrote through the log's end.
func runUntilCaughtUp(t testing.TB, log store.Log, h history.Store) history.Status {
	t.Helper()
	return runWriter(t, history.Config{}, log, h)
}

// runWriter runs a writer configured by cfg until it has every record of log.
func runWriter(t testing.TB, cfg history.Config, log store.Log, h history.Store) history.Status {
	t.Helper()
	w, err := history.New(cfg, log, h, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for w.Status().Cursor < log.Last() {
		if time.Now().After(deadline) {
			t.Fatalf("writer did not catch up: %+v", w.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	s := w.Status()
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	return s
}

// dump describes the history of twin id, its relationships' included.
func dump(t *testing.T, h history.Store, id string) string {
	t.Helper()
	var b strings.Builder
	for r, err := range h.Select(context.Background(), history.Selection{ID: id, AllRelationships: true}) {
		if err != nil {
			t.Fatal(err)
		}
		src := ""
		if !r.SourceTimeStamp.IsZero() {
			src = " source=" + r.SourceTimeStamp.Format(time.RFC3339)
		}
		fmt.Fprintf(&b, "%s/%s %s=%s %s%s\n", r.RelationshipID, r.RelationshipTarget, r.Key, r.Value, r.Action, src)
	}
	return b.String()
}

// plainLog hides that a log is a store.ChangeLog.
type plainLog struct{ store.Log }

func TestWriterRecordsTheTwinService(t *testing.T) {
	e := newEnv(t)
	e.story()
	known, replayed, oneByOne := openHistory(t), openHistory(t), openHistory(t)
	s := runUntilCaughtUp(t, e.store.Log(), known)
	if s.Skipped != 0 || s.Rows == 0 || s.LagEvents != 0 {
		t.Fatalf("status %+v", s)
	}
	runUntilCaughtUp(t, plainLog{e.store.Log()}, replayed)
	// One record a batch: each patch's prior values come from the rows the writer remembers
	// of earlier batches, or from the store, never from its own batch.
	runWriter(t, history.Config{MaxBatch: 1, Linger: -1}, plainLog{e.store.Log()}, oneByOne)

	wantRoom := `/ name="a" update
/ pos={"x":1,"y":2} update
/ temperature=20 update source=2024-05-01T09:00:00Z
/ pos={"x":5,"y":2} update
/ temperature=21 update source=2024-05-01T09:00:00Z
/ name=null delete
`
	wantFloor := `/ name="f" update
r1/room1 n=1 update
r1/room1 n=2 update
`
	for name, h := range map[string]history.Store{"from states": known, "from patches": replayed, "one record a batch": oneByOne} {
		if got := dump(t, h, "room1"); got != wantRoom {
			t.Errorf("%s: room1's history:\n%s\nwant\n%s", name, got, wantRoom)
		}
		if got := dump(t, h, "floor1"); got != wantFloor {
			t.Errorf("%s: floor1's history:\n%s\nwant\n%s", name, got, wantFloor)
		}
		st, err := h.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if got := fmt.Sprint(st.Tables); got != "[{AdtPropertyEvents 9} {AdtTwinLifeCycleEvents 3} {AdtRelationshipLifeCycleEvents 2} {AdtTelemetryEvents 0} {TwinflowAnomalyEvents 0} {AdtPropertyEvents_Hourly 0}]" {
			t.Errorf("%s: tables %s", name, got)
		}
		snap, err := history.AsOf(context.Background(), h, time.Now())
		if err != nil || len(snap.Twins) != 1 || snap.Twins[0].ID != "floor1" || len(snap.Relationships) != 0 {
			t.Errorf("%s: AsOf(now) = %+v, %v", name, snap, err)
		}
	}
}

// lostCursor is a history store that forgot its cursor, as if the writer crashed before
// its cursor was durable: the next writer reads the whole log again.
type lostCursor struct{ history.Store }

func (lostCursor) Cursor(context.Context) (uint64, error) { return 0, nil }

func TestWriterReplayDoesNotDuplicate(t *testing.T) {
	e := newEnv(t)
	e.story()
	h := openHistory(t)
	runUntilCaughtUp(t, e.store.Log(), h)
	before := dump(t, h, "room1") + dump(t, h, "floor1")
	statsBefore, _ := h.Stats(context.Background())

	// A restart from the stored cursor writes only what is new; one from a lost cursor
	// writes everything again, which the store drops.
	e.must(e.twins.PatchTwin(e.ctx, "floor1", []byte(`[{"op":"replace","path":"/name","value":"g"}]`), "", twins.Trace{}))
	runUntilCaughtUp(t, e.store.Log(), h)
	runUntilCaughtUp(t, e.store.Log(), lostCursor{h})
	after := dump(t, h, "room1") + dump(t, h, "floor1")
	if want := before + "/ name=\"g\" update\n"; after != want {
		t.Fatalf("after restarts:\n%s\nwant\n%s", after, want)
	}
	statsAfter, _ := h.Stats(context.Background())
	if statsAfter.Tables[0].Rows != statsBefore.Tables[0].Rows+1 || statsAfter.Cursor != e.store.Log().Last() {
		t.Fatalf("stats before %+v, after %+v", statsBefore, statsAfter)
	}
}

// awayCursor is a history store whose cursor cannot be read the first times it is asked, as
// when its database is away as the writer starts.
type awayCursor struct {
	history.Store
	failures atomic.Int32
}

func (s *awayCursor) Cursor(ctx context.Context) (uint64, error) {
	if s.failures.Add(-1) >= 0 {
		return 0, errors.New("connection refused")
	}
	return s.Store.Cursor(ctx)
}

func TestWriterWaitsForItsCursor(t *testing.T) {
	e := newEnv(t)
	e.story()
	h := &awayCursor{Store: openHistory(t)}
	h.failures.Store(3)
	st := runWriter(t, history.Config{MinBackoff: time.Millisecond, MaxBackoff: 4 * time.Millisecond}, e.store.Log(), h)
	if st.Err != nil || st.Rows == 0 {
		t.Fatalf("status after the cursor could be read = %+v; want rows written and no error", st)
	}
	if n := h.failures.Load(); n >= 0 {
		t.Fatalf("the cursor was read %d times fewer than the failures it was given", n+1)
	}
}

func TestWriterPrunes(t *testing.T) {
	e := newEnv(t)
	e.story()
	h := openHistory(t)
	runUntilCaughtUp(t, e.store.Log(), h)
	// A day later, with a retention of an hour, floor1's superseded rows and room1 (deleted)
	// go; floor1's newest values stay.
	w, err := history.New(history.Config{Retention: time.Hour, Now: func() time.Time { return time.Now().Add(24 * time.Hour) }},
		e.store.Log(), h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Prune(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := dump(t, h, "room1")+dump(t, h, "floor1"), "/ name=\"f\" update\n"; got != want {
		t.Fatalf("after pruning:\n%s\nwant\n%s", got, want)
	}
	snap, err := history.AsOf(context.Background(), h, time.Now().Add(24*time.Hour))
	if err != nil || len(snap.Twins) != 1 || string(snap.Twins[0].Properties["name"]) != `"f"` {
		t.Fatalf("AsOf after pruning: %+v, %v", snap, err)
	}
}

// TestWriterRollsUp runs a writer whose clock is an hour ahead: once caught up, it rolls
// every row up; before it knows how far behind it is, it rolls nothing up.
func TestWriterRollsUp(t *testing.T) {
	e := newEnv(t)
	e.story()
	h := openHistory(t)
	ahead := func() time.Time { return time.Now().Add(time.Hour) }
	idle, err := history.New(history.Config{Now: ahead}, e.store.Log(), h, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := idle.Rollup(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st, err := h.Stats(context.Background()); err != nil || !st.RolledUpTo.IsZero() {
		t.Fatalf("a writer that has not read its cursor rolled up to %s (%v)", st.RolledUpTo, err)
	}

	w, err := history.New(history.Config{Now: ahead, RollupEvery: 10 * time.Millisecond}, e.store.Log(), h, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	deadline := time.Now().Add(10 * time.Second)
	for w.Status().Cursor < e.store.Log().Last() || w.Status().RolledUpTo.Before(time.Now()) {
		if time.Now().After(deadline) {
			t.Fatalf("writer did not catch up and roll up: %+v", w.Status())
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != context.Canceled {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	st, err := h.Stats(context.Background())
	if err != nil || st.RolledUpTo.Before(time.Now()) {
		t.Fatalf("the store is rolled up to %s (%v), want past every row", st.RolledUpTo, err)
	}
	// room1's temperature, 20 then 21, is the one numeric twin property.
	if got := st.Tables[len(st.Tables)-1]; got != (history.TableStats{Name: "AdtPropertyEvents_Hourly", Rows: 1}) {
		t.Fatalf("roll-up table %+v, want one row", got)
	}
}

func TestWriterConfig(t *testing.T) {
	h := openHistory(t)
	if _, err := history.New(history.Config{MaxBatch: -1}, plainLog{}, h, nil); err == nil {
		t.Fatal("a negative MaxBatch was accepted")
	}
}
