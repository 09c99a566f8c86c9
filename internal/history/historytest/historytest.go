// Package historytest is the contract suite of history.Store: every implementation runs Run
// from its tests, so that they all behave alike.
package historytest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/history"
)

// Opener opens the store kept under key (a directory for embedded stores, a name otherwise),
// empty the first time; opening the same key again, after Close, must find what was written.
// The suite closes every store it opens.
type Opener func(t *testing.T, key string) history.Store

// Run runs the contract suite against the stores open makes.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"Cursor", testCursor},
		{"Replay", testReplay},
		{"Reopen", testReopen},
		{"Select", testSelect},
		{"Paging", testPaging},
		{"Latest", testLatest},
		{"Lifecycle", testLifecycle},
		{"Aggregate", testAggregate},
		{"AsOf", testAsOf},
		{"AsOfNames", testAsOfNames},
		{"Prune", testPrune},
		{"Concurrent", testConcurrent},
		{"Telemetry", testTelemetry},
		{"Anomalies", testAnomalies},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, open) })
	}
	RunRollup(t, open)
}

var base = time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)

// at returns base plus m minutes.
func at(m int) time.Time { return base.Add(time.Duration(m) * time.Minute) }

// prop is a twin property row at minute m.
func prop(seq uint64, m int, id, key, value string) history.PropertyEvent {
	return history.PropertyEvent{
		Seq: seq, TimeStamp: at(m), ServiceID: "svc", ID: id, ModelID: "dtmi:x:T;1", Key: key,
		Value: json.RawMessage(value), Action: history.ActionUpdate,
	}
}

func openStore(t *testing.T, open Opener, key string) history.Store {
	t.Helper()
	st := open(t, key)
	t.Cleanup(func() { st.Close() })
	return st
}

func write(t *testing.T, st history.Store, rows history.Rows, through uint64) {
	t.Helper()
	if err := st.Write(context.Background(), &rows, through); err != nil {
		t.Fatalf("Write through %d: %v", through, err)
	}
}

func cursor(t *testing.T, st history.Store) uint64 {
	t.Helper()
	c, err := st.Cursor(context.Background())
	if err != nil {
		t.Fatalf("Cursor: %v", err)
	}
	return c
}

func rowCounts(t *testing.T, st history.Store) string {
	t.Helper()
	s, err := st.Stats(context.Background())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	var out string
	for _, tb := range s.Tables {
		out += fmt.Sprintf("%s=%d ", tb.Name, tb.Rows)
	}
	return out
}

// collect returns "<seq>:<key>=<value>" of every selected row.
func collect(t *testing.T, st history.Store, q history.Selection) []string {
	t.Helper()
	var out []string
	for r, err := range st.Select(context.Background(), q) {
		if err != nil {
			t.Fatalf("Select(%+v): %v", q, err)
		}
		out = append(out, fmt.Sprintf("%d:%s=%s", r.Seq, r.Key, r.Value))
	}
	return out
}

func testCursor(t *testing.T, open Opener) {
	st := openStore(t, open, t.TempDir())
	if c := cursor(t, st); c != 0 {
		t.Fatalf("new store: cursor %d, want 0", c)
	}
	write(t, st, history.Rows{}, 5)
	if c := cursor(t, st); c != 5 {
		t.Fatalf("cursor %d, want 5", c)
	}
	write(t, st, history.Rows{}, 3)
	if c := cursor(t, st); c != 5 {
		t.Fatalf("a lower through moved the cursor back to %d", c)
	}
}

func testReplay(t *testing.T, open Opener) {
	st := openStore(t, open, t.TempDir())
	batch := history.Rows{
		Properties: []history.PropertyEvent{prop(1, 0, "t1", "a", "1"), prop(2, 1, "t1", "a", "2")},
		Twins: []history.TwinLifecycleEvent{{Seq: 1, TwinID: "t1", Action: history.LifecycleCreate, TimeStamp: at(0),
			ServiceID: "svc", ModelID: "dtmi:x:T;1"}},
		Relationships: []history.RelationshipLifecycleEvent{{Seq: 2, RelationshipID: "r", Name: "n",
			Action: history.LifecycleCreate, TimeStamp: at(1), ServiceID: "svc", Source: "t1", Target: "t2"}},
	}
	write(t, st, batch, 2)
	counts := rowCounts(t, st)
	// The same batch again, and one that overlaps it: a replay after a crash.
	write(t, st, batch, 2)
	more := batch
	more.Properties = append(append([]history.PropertyEvent(nil), batch.Properties...), prop(3, 2, "t1", "a", "3"))
	write(t, st, more, 3)
	got := collect(t, st, history.Selection{ID: "t1"})
	if want := []string{"1:a=1", "2:a=2", "3:a=3"}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("after replays: %v, want %v", got, want)
	}
	if c := rowCounts(t, st); c == counts {
		t.Fatalf("row counts did not grow by the new row: %s", c)
	}
	write(t, st, batch, 3)
	if c := cursor(t, st); c != 3 {
		t.Fatalf("cursor %d, want 3", c)
	}
}

// tableRows returns the row count Stats gives table name.
func tableRows(t *testing.T, st history.Store, name string) int64 {
	t.Helper()
	s, err := st.Stats(context.Background())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	for _, tb := range s.Tables {
		if tb.Name == name {
			return tb.Rows
		}
	}
	t.Fatalf("Stats has no table %s: %+v", name, s.Tables)
	return 0
}

// testTelemetry writes telemetry rows, replays them, and prunes the old ones: Stats counts
// them in the telemetry table, a replay adds none, and Prune takes every one before its
// time.
func testTelemetry(t *testing.T, open Opener) {
	st := openStore(t, open, t.TempDir())
	tel := func(seq uint64, m int) history.TelemetryEvent {
		return history.TelemetryEvent{Seq: seq, TimeStamp: at(m), SourceTimeStamp: at(m).Add(-time.Second), ServiceID: "svc",
			ID: "t1", Component: "c", ModelID: "dtmi:x:T;1", MessageID: fmt.Sprint("m", seq), Value: json.RawMessage(`{"v":1}`)}
	}
	batch := history.Rows{Telemetry: []history.TelemetryEvent{tel(1, 0), tel(2, 10)}}
	write(t, st, batch, 2)
	write(t, st, batch, 2)
	name := history.Tables{}.WithDefaults().Telemetry
	if n := tableRows(t, st, name); n != 2 {
		t.Fatalf("%s holds %d rows after a replay, want 2", name, n)
	}
	if _, err := st.Prune(context.Background(), at(5), 0); err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if n := tableRows(t, st, name); n != 1 {
		t.Fatalf("%s holds %d rows after pruning the one before minute 5, want 1", name, n)
	}
}

// testAnomalies writes anomaly rows, replays them, selects them by twin, detector, time and
// position, and prunes the old ones.
func testAnomalies(t *testing.T, open Opener) {
	st := openStore(t, open, t.TempDir())
	an := func(seq uint64, m int, id, detector string) history.AnomalyEvent {
		return history.AnomalyEvent{Seq: seq, TimeStamp: at(m).Add(123456 * time.Microsecond), ServiceID: "svc", ID: id, Key: "temp",
			Value: float64(seq) + 0.5, Score: 0.75, Kind: "spike", Detector: detector}
	}
	all := []history.AnomalyEvent{an(1, 0, "t1", "a"), an(2, 10, "t1", "b"), an(3, 20, "t2", "a"), an(4, 30, "t1", "a")}
	batch := history.Rows{Anomalies: all}
	write(t, st, batch, 4)
	write(t, st, batch, 4)
	seqs := func(q history.AnomalySelection) []uint64 {
		t.Helper()
		rows, err := st.Anomalies(context.Background(), q)
		if err != nil {
			t.Fatalf("Anomalies(%+v): %v", q, err)
		}
		var out []uint64
		for _, r := range rows {
			if want := all[r.Seq-1]; r != want {
				t.Errorf("row %+v, want %+v", r, want)
			}
			out = append(out, r.Seq)
		}
		return out
	}
	for _, tc := range []struct {
		q    history.AnomalySelection
		want []uint64
	}{
		{history.AnomalySelection{ID: "t1"}, []uint64{1, 2, 4}},
		{history.AnomalySelection{ID: "t1", Detector: "a"}, []uint64{1, 4}},
		{history.AnomalySelection{ID: "t1", From: at(5), To: at(30)}, []uint64{2}},
		{history.AnomalySelection{ID: "t1", After: 1, Limit: 1}, []uint64{2}},
		{history.AnomalySelection{ID: "t3"}, nil},
	} {
		if got := seqs(tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("Anomalies(%+v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if _, err := st.Prune(context.Background(), at(15), 0); err != nil {
		t.Fatalf("Prune: %v", err)
	}
	if got := seqs(history.AnomalySelection{ID: "t1"}); !slices.Equal(got, []uint64{4}) {
		t.Errorf("Anomalies after pruning before minute 15 = %v, want [4]", got)
	}
}

func testReopen(t *testing.T, open Opener) {
	key := t.TempDir()
	st := open(t, key)
	write(t, st, history.Rows{Properties: []history.PropertyEvent{prop(1, 0, "t1", "a", `{"x":[1,"s"]}`)}}, 7)
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st = openStore(t, open, key)
	if c := cursor(t, st); c != 7 {
		t.Fatalf("cursor after reopen %d, want 7", c)
	}
	if got := collect(t, st, history.Selection{ID: "t1"}); fmt.Sprint(got) != `[1:a={"x":[1,"s"]}]` {
		t.Fatalf("rows after reopen: %v", got)
	}
}

func testSelect(t *testing.T, open Opener) {
	st := openStore(t, open, t.TempDir())
	src := at(0).Add(-time.Second + 123456789)
	p1 := prop(1, 0, "t1", "temp", "20")
	p1.SourceTimeStamp = src
	rel := prop(3, 2, "t1", "temp", "99")
	rel.RelationshipID, rel.RelationshipTarget = "r1", "t2"
	del := prop(5, 4, "t1", "hum", "null")
	del.Action = history.ActionDelete
	write(t, st, history.Rows{Properties: []history.PropertyEvent{
		p1, prop(1, 0, "t1", "hum", "40"), prop(2, 1, "t1", "temp", "21"), rel,
		prop(4, 3, "t2", "temp", "5"), del, prop(6, 5, "t1", "temp", `"hot"`),
	}}, 6)
	cases := []struct {
		q    history.Selection
		want string
	}{
		{history.Selection{ID: "t1"}, `[1:hum=40 1:temp=20 2:temp=21 5:hum=null 6:temp="hot"]`},
		{history.Selection{ID: "t1", Key: "temp"}, `[1:temp=20 2:temp=21 6:temp="hot"]`},
		{history.Selection{ID: "t1", Key: "temp", AllRelationships: true}, `[1:temp=20 2:temp=21 3:temp=99 6:temp="hot"]`},
		{history.Selection{ID: "t1", RelationshipID: "r1"}, `[3:temp=99]`},
		{history.Selection{ID: "t1", From: at(1), To: at(5)}, `[2:temp=21 5:hum=null]`},
		{history.Selection{ID: "t1", Limit: 2}, `[1:hum=40 1:temp=20]`},
		{history.Selection{ID: "nobody"}, `[]`},
	}
	for _, c := range cases {
		if got := fmt.Sprint(collect(t, st, c.q)); got != c.want {
			t.Errorf("Select(%+v) = %s, want %s", c.q, got, c.want)
		}
	}
	for r, err := range st.Select(context.Background(), history.Selection{ID: "t1", Key: "temp", Limit: 1}) {
		if err != nil {
			t.Fatal(err)
		}
		if !r.TimeStamp.Equal(at(0)) || !r.SourceTimeStamp.Equal(src) || r.ServiceID != "svc" ||
			r.ModelID != "dtmi:x:T;1" || r.Action != history.ActionUpdate || r.RelationshipID != "" {
			t.Errorf("row read back as %+v", r)
		}
	}
	for r, err := range st.Select(context.Background(), history.Selection{ID: "t1", RelationshipID: "r1"}) {
		if err != nil || r.RelationshipTarget != "t2" || !r.SourceTimeStamp.IsZero() {
			t.Errorf("relationship row %+v, %v", r, err)
		}
	}
	var err error
	for _, e := range st.Select(context.Background(), history.Selection{ID: "t1", After: "%%%"}) {
		err = e
	}
	if !errors.Is(err, history.ErrBadContinuation) {
		t.Errorf("bad continuation: %v", err)
	}
	n := 0
	for range st.Select(context.Background(), history.Selection{ID: "t1"}) {
		n++
		break
	}
	if n != 1 {
		t.Errorf("break after one row: got %d", n)
	}
}

func testPaging(t *testing.T, open Opener) {
	st := openStore(t, open, t.TempDir())
	var rows history.Rows
	for i := range 25 {
		// Three rows share each time stamp, two of them one record.
		rows.Properties = append(rows.Properties,
			prop(uint64(2*i+1), i, "t", "a", fmt.Sprint(i)), prop(uint64(2*i+1), i, "t", "b", fmt.Sprint(i)),
			prop(uint64(2*i+2), i, "t", "a", fmt.Sprint(-i)))
	}
	write(t, st, rows, 50)
	all := collect(t, st, history.Selection{ID: "t"})
	var paged []string
	q := history.Selection{ID: "t", Limit: 7}
	for pages := 0; ; pages++ {
		if pages > 20 {
			t.Fatal("paging does not end")
		}
		var last history.PropertyEvent
		n := 0
		for r, err := range st.Select(context.Background(), q) {
			if err != nil {
				t.Fatal(err)
			}
			paged = append(paged, fmt.Sprintf("%d:%s=%s", r.Seq, r.Key, r.Value))
			last, n = r, n+1
		}
		if n < q.Limit {
			break
		}
		q.After = history.Continuation(last)
	}
	if len(all) != 75 || fmt.Sprint(paged) != fmt.Sprint(all) {
		t.Fatalf("paged %d rows %v\nwant %d rows %v", len(paged), paged, len(all), all)
	}
}

func testLatest(t *testing.T, open Opener) {
	st := openStore(t, open, t.TempDir())
	rel := prop(4, 9, "t1", "a", "100")
	rel.RelationshipID = "r"
	write(t, st, history.Rows{Properties: []history.PropertyEvent{
		prop(1, 0, "t1", "a", "1"), prop(3, 5, "t1", "a", "3"), prop(2, 1, "t1", "a", "2"), rel,
	}}, 4)
	r, ok, err := st.Latest(context.Background(), "t1", "", "a")
	if err != nil || !ok || r.Seq != 3 || string(r.Value) != "3" {
		t.Fatalf("Latest = %+v, %v, %v; want seq 3", r, ok, err)
	}
	r, ok, err = st.Latest(context.Background(), "t1", "r", "a")
	if err != nil || !ok || r.Seq != 4 {
		t.Fatalf("Latest of relationship = %+v, %v, %v; want seq 4", r, ok, err)
	}
	if _, ok, err := st.Latest(context.Background(), "t1", "", "zz"); ok || err != nil {
		t.Fatalf("Latest of a missing property: %v, %v", ok, err)
	}
}

func testAggregate(t *testing.T, open Opener) {
	st := openStore(t, open, t.TempDir())
	var rows history.Rows
	seq := uint64(0)
	add := func(id string, m int, v string) {
		seq++
		rows.Properties = append(rows.Properties, prop(seq, m, id, "temp", v))
	}
	// Hour 0: t1 10, 20, "x" (not a number), 30; hour 1: t1 5. t2 in hour 0: 1. t3 is not asked for.
	add("t1", 0, "10")
	add("t1", 10, "20")
	add("t1", 20, `"x"`)
	add("t1", 59, "30")
	add("t1", 60, "5")
	add("t2", 30, "1")
	add("t3", 30, "1000")
	add("t1", 120, "7") // at To: excluded
	write(t, st, rows, seq)
	got, err := st.Aggregate(context.Background(), history.Aggregation{
		IDs: []string{"t1", "t2"}, Key: "temp", From: at(0), To: at(120), Interval: time.Hour,
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []history.Bucket{
		{ID: "t1", Start: at(0), Count: 3, Avg: 20, Min: 10, Max: 30, First: 10, Last: 30},
		{ID: "t1", Start: at(60), Count: 1, Avg: 5, Min: 5, Max: 5, First: 5, Last: 5},
		{ID: "t2", Start: at(0), Count: 1, Avg: 1, Min: 1, Max: 1, First: 1, Last: 1},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Aggregate:\n got %v\nwant %v", got, want)
	}
	// Without the edges, the other aggregates are the same.
	got, err = st.Aggregate(context.Background(), history.Aggregation{
		IDs: []string{"t1", "t2"}, Key: "temp", From: at(0), To: at(120), Interval: time.Hour, NoEdges: true,
	})
	if err != nil {
		t.Fatal(err)
	}
	for i := range min(len(got), len(want)) {
		got[i].First, got[i].Last = want[i].First, want[i].Last
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("Aggregate with NoEdges, First and Last aside:\n got %v\nwant %v", got, want)
	}
	if _, err := st.Aggregate(context.Background(), history.Aggregation{IDs: []string{"t1"}, Key: "temp"}); err == nil {
		t.Fatal("Aggregate without a range or interval succeeded")
	}
}

// graphHistory writes a small graph's history:
//
//	minute 0: t1 created (a=1), t2 created (no properties)
//	minute 1: r1 t1->t2 created (w=5); t1.a=2
//	minute 2: t1.b={"x":1}; t1.a removed
//	minute 3: r1 deleted; t2 deleted
//	minute 4: t2 created again (c=3)
func graphHistory(t *testing.T, st history.Store) {
	t.Helper()
	tw := func(seq uint64, m int, id, action string) history.TwinLifecycleEvent {
		return history.TwinLifecycleEvent{Seq: seq, TwinID: id, Action: action, TimeStamp: at(m), ServiceID: "svc", ModelID: "dtmi:x:T;1"}
	}
	rl := func(seq uint64, m int, action string) history.RelationshipLifecycleEvent {
		return history.RelationshipLifecycleEvent{Seq: seq, RelationshipID: "r1", Name: "feeds", Action: action,
			TimeStamp: at(m), ServiceID: "svc", Source: "t1", Target: "t2"}
	}
	w := prop(3, 1, "t1", "w", "5")
	w.RelationshipID, w.RelationshipTarget, w.ModelID = "r1", "t2", ""
	removed := prop(6, 2, "t1", "a", "null")
	removed.Action = history.ActionDelete
	write(t, st, history.Rows{
		Properties: []history.PropertyEvent{prop(1, 0, "t1", "a", "1"), w, prop(4, 1, "t1", "a", "2"),
			prop(5, 2, "t1", "b", `{"x":1}`), removed, prop(9, 4, "t2", "c", "3")},
		Twins:         []history.TwinLifecycleEvent{tw(1, 0, "t1", "Create"), tw(2, 0, "t2", "Create"), tw(8, 3, "t2", "Delete"), tw(9, 4, "t2", "Create")},
		Relationships: []history.RelationshipLifecycleEvent{rl(3, 1, "Create"), rl(7, 3, "Delete")},
	}, 9)
}

// describe writes a snapshot in a fixed form.
func describe(t *testing.T, st history.Store, m int) string {
	t.Helper()
	s, err := history.AsOf(context.Background(), st, at(m))
	if err != nil {
		t.Fatalf("AsOf(minute %d): %v", m, err)
	}
	out := ""
	for _, tw := range s.Twins {
		b, _ := json.Marshal(tw.Properties)
		out += fmt.Sprintf("%s(%s)%s ", tw.ID, tw.ModelID, b)
	}
	for _, r := range s.Relationships {
		b, _ := json.Marshal(r.Properties)
		out += fmt.Sprintf("%s:%s-%s->%s%s ", r.ID, r.SourceID, r.Name, r.TargetID, b)
	}
	return out
}

var graphWant = []string{
	0: `t1(dtmi:x:T;1){"a":1} t2(dtmi:x:T;1){} `,
	1: `t1(dtmi:x:T;1){"a":2} t2(dtmi:x:T;1){} r1:t1-feeds->t2{"w":5} `,
	2: `t1(dtmi:x:T;1){"b":{"x":1}} t2(dtmi:x:T;1){} r1:t1-feeds->t2{"w":5} `,
	3: `t1(dtmi:x:T;1){"b":{"x":1}} `,
	4: `t1(dtmi:x:T;1){"b":{"x":1}} t2(dtmi:x:T;1){"c":3} `,
}

// lifecycle returns "<seq>:<what> <action>@<minute>" of each lifecycle row q selects.
func lifecycle(t *testing.T, st history.Store, q history.LifecycleSelection) []string {
	t.Helper()
	events, err := st.Lifecycle(context.Background(), q)
	if err != nil {
		t.Fatalf("Lifecycle(%+v): %v", q, err)
	}
	var out []string
	for _, e := range events {
		switch {
		case e.Twin != nil:
			tw := e.Twin
			out = append(out, fmt.Sprintf("%d:%s(%s) %s@%v", tw.Seq, tw.TwinID, tw.ModelID, tw.Action, tw.TimeStamp.Sub(base).Minutes()))
		default:
			r := e.Relationship
			out = append(out, fmt.Sprintf("%d:%s:%s-%s->%s %s@%v", r.Seq, r.RelationshipID, r.Source, r.Name, r.Target, r.Action, r.TimeStamp.Sub(base).Minutes()))
		}
		if e.Seq() == 0 {
			t.Errorf("event %s has no Seq", out[len(out)-1])
		}
	}
	return out
}

// testLifecycle reads a twin's lifecycle and its relationships' in Seq order, with time
// bounds and in pages.
func testLifecycle(t *testing.T, open Opener) {
	st := openStore(t, open, t.TempDir())
	graphHistory(t, st)
	t1 := []string{"1:t1(dtmi:x:T;1) Create@0", "3:r1:t1-feeds->t2 Create@1", "7:r1:t1-feeds->t2 Delete@3"}
	t2 := []string{"2:t2(dtmi:x:T;1) Create@0", "8:t2(dtmi:x:T;1) Delete@3", "9:t2(dtmi:x:T;1) Create@4"}
	tests := []struct {
		q    history.LifecycleSelection
		want []string
	}{
		{history.LifecycleSelection{ID: "t1"}, t1},
		// A relationship's target does not see it: it is the source's.
		{history.LifecycleSelection{ID: "t2"}, t2},
		{history.LifecycleSelection{ID: "unknown"}, nil},
		{history.LifecycleSelection{ID: "t1", From: at(1)}, t1[1:]},
		{history.LifecycleSelection{ID: "t1", To: at(3)}, t1[:2]},
		{history.LifecycleSelection{ID: "t1", From: at(1), To: at(3)}, t1[1:2]},
		{history.LifecycleSelection{ID: "t1", Limit: 2}, t1[:2]},
		{history.LifecycleSelection{ID: "t1", After: 3, Limit: 2}, t1[2:]},
		{history.LifecycleSelection{ID: "t1", After: 1, Limit: 1}, t1[1:2]},
		{history.LifecycleSelection{ID: "t2", After: 2, Limit: 1}, t2[1:2]},
		{history.LifecycleSelection{ID: "t2", After: 9}, nil},
	}
	for _, tc := range tests {
		if got := lifecycle(t, st, tc.q); !slices.Equal(got, tc.want) {
			t.Errorf("Lifecycle(%+v) =\n%q\nwant\n%q", tc.q, got, tc.want)
		}
	}
	if _, err := st.Lifecycle(context.Background(), history.LifecycleSelection{}); err == nil {
		t.Error("Lifecycle without a twin id succeeded")
	}
}

func testAsOf(t *testing.T, open Opener) {
	st := openStore(t, open, t.TempDir())
	graphHistory(t, st)
	if got := describe(t, st, -1); got != "" {
		t.Errorf("before any row: %q", got)
	}
	for m, want := range graphWant {
		if got := describe(t, st, m); got != want {
			t.Errorf("AsOf(minute %d) = %s\nwant %s", m, got, want)
		}
	}
}

// testAsOfNames checks that twin ids, relationship ids and property names with quotes,
// separators and control characters come back from Past as they went in, and that a value
// set to null is not a removal.
func testAsOfNames(t *testing.T, open Opener) {
	st := openStore(t, open, t.TempDir())
	odd := []string{"it's", "a''b", "x\x1ey", "p\x1fq'", "\"q\"", "sp ace", "ünï", "'"}
	var rows history.Rows
	seq := uint64(0)
	for i, id := range odd {
		seq++
		rows.Twins = append(rows.Twins, history.TwinLifecycleEvent{Seq: seq, TwinID: id, Action: history.LifecycleCreate,
			TimeStamp: at(0), ServiceID: "svc", ModelID: "dtmi:x:T;1"})
		for j, key := range odd {
			rows.Properties = append(rows.Properties, prop(seq, 0, id, key, fmt.Sprint(i*10+j)))
		}
		relID := odd[(i+1)%len(odd)]
		seq++
		rows.Relationships = append(rows.Relationships, history.RelationshipLifecycleEvent{Seq: seq, RelationshipID: relID,
			Name: "to", Action: history.LifecycleCreate, TimeStamp: at(1), ServiceID: "svc", Source: id, Target: odd[0]})
		w := prop(seq, 1, id, odd[i], `"w"`)
		w.RelationshipID, w.RelationshipTarget = relID, odd[0]
		rows.Properties = append(rows.Properties, w)
	}
	seq++
	rows.Properties = append(rows.Properties, prop(seq, 2, odd[0], odd[1], "null"))
	write(t, st, rows, seq)

	s, err := history.AsOf(context.Background(), st, at(2))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Twins) != len(odd) || len(s.Relationships) != len(odd) {
		t.Fatalf("AsOf: %d twins and %d relationships, want %d of each", len(s.Twins), len(s.Relationships), len(odd))
	}
	for _, tw := range s.Twins {
		i := slices.Index(odd, tw.ID)
		if i < 0 || len(tw.Properties) != len(odd) {
			t.Fatalf("twin %q with %d properties, want one of %q with %d", tw.ID, len(tw.Properties), odd, len(odd))
		}
		for j, key := range odd {
			want := fmt.Sprint(i*10 + j)
			if i == 0 && j == 1 {
				want = "null"
			}
			if got := string(tw.Properties[key]); got != want {
				t.Errorf("twin %q property %q = %s, want %s", tw.ID, key, got, want)
			}
		}
	}
	for _, r := range s.Relationships {
		i := slices.Index(odd, r.SourceID)
		if i < 0 || r.ID != odd[(i+1)%len(odd)] || r.TargetID != odd[0] || string(r.Properties[odd[i]]) != `"w"` || len(r.Properties) != 1 {
			t.Errorf("relationship %+v, want %q from %q with %q=\"w\"", r, odd[(i+1)%len(odd)], r.SourceID, r.SourceID)
		}
	}
}

func testPrune(t *testing.T, open Opener) {
	st := openStore(t, open, t.TempDir())
	graphHistory(t, st)
	for cut := 0; cut <= 5; cut++ {
		// Small steps, as a pruning loop takes them.
		for {
			n, err := st.Prune(context.Background(), at(cut), 2)
			if err != nil {
				t.Fatalf("Prune(minute %d): %v", cut, err)
			}
			if n == 0 {
				break
			}
		}
		for m := cut; m < len(graphWant); m++ {
			if got := describe(t, st, m); got != graphWant[m] {
				t.Errorf("after pruning before minute %d, AsOf(minute %d) = %s\nwant %s", cut, m, got, graphWant[m])
			}
		}
	}
	// Of t1 only the newest row of each property is left (a's is its removal); the
	// relationship's row went with its deletion.
	got := collect(t, st, history.Selection{ID: "t1", AllRelationships: true})
	if want := `[5:b={"x":1} 6:a=null]`; fmt.Sprint(got) != want {
		t.Errorf("t1's rows left: %v, want %s", got, want)
	}
	if got := rowCounts(t, st); got == "" {
		t.Error("no stats")
	}
}

func testConcurrent(t *testing.T, open Opener) {
	st := openStore(t, open, t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	for range 3 {
		wg.Go(func() {
			for ctx.Err() == nil {
				for _, err := range st.Select(ctx, history.Selection{ID: "t", Key: "a"}) {
					if err != nil && ctx.Err() == nil {
						errs <- err
						return
					}
				}
				if _, err := st.Stats(ctx); err != nil && ctx.Err() == nil {
					errs <- err
					return
				}
			}
		})
	}
	for i := range 50 {
		write(t, st, history.Rows{Properties: []history.PropertyEvent{prop(uint64(i+1), i, "t", "a", fmt.Sprint(i))}}, uint64(i+1))
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if n := len(collect(t, st, history.Selection{ID: "t"})); n != 50 {
		t.Fatalf("%d rows, want 50", n)
	}
}

// RunRollup runs the suite's roll-up tests alone: a store's own tests run them again on a
// store that rolls up in small steps.
func RunRollup(t *testing.T, open Opener) {
	t.Run("Rollup", func(t *testing.T) { testRollup(t, open) })
	t.Run("RollupPrune", func(t *testing.T) { testRollupPrune(t, open) })
}

// rollupRows writes a few hours of rows of twins t1 and t2 that every roll-up must get
// right: values every three minutes of two properties, some not numbers, rows of one record that share
// a TimeStamp, several records at one TimeStamp, and relationship rows of the same
// property, which Aggregate leaves out.
func rollupRows(t *testing.T, st history.Store) uint64 {
	t.Helper()
	var rows history.Rows
	seq := uint64(0)
	for k := range 100 {
		m := 3 * k
		for i, id := range []string{"t1", "t2"} {
			seq++
			v := fmt.Sprint((m*7+i*3)%23 - 5)
			switch {
			case k%17 == 3:
				v = `"x"`
			case k%29 == 5:
				v = "null"
			case k%31 == 7:
				v = `{"n":1}`
			case k%13 == 0:
				v += ".25"
			}
			rows.Properties = append(rows.Properties, prop(seq, m, id, "temp", v), prop(seq, m, id, "hum", fmt.Sprint(m%11)))
			if k%10 == 0 {
				// Another record at the same time: first and last go by Seq.
				seq++
				rows.Properties = append(rows.Properties, prop(seq, m, id, "temp", fmt.Sprint(100+m)))
			}
			if k%6 == 1 {
				rel := prop(seq, m, id, "temp", "1000")
				rel.RelationshipID, rel.RelationshipTarget = "r", "t3"
				rows.Properties = append(rows.Properties, rel)
			}
		}
	}
	write(t, st, rows, seq)
	return seq
}

// rollupQueries are aggregations whose buckets cross hours, the watermarks the tests set
// and their ranges' ends: whole hours and not, intervals of whole hours and not.
func rollupQueries() []history.Aggregation {
	all := []string{"t1", "t2", "t3"}
	// The other property, whose roll-ups must not mix with temp's.
	out := []history.Aggregation{
		{IDs: all, Key: "hum", From: at(0), To: at(300), Interval: time.Hour},
		{IDs: all, Key: "hum", From: at(0), To: at(300), Interval: time.Hour, NoEdges: true},
	}
	ranges := [][2]time.Time{{at(0), at(300)}, {at(7).Add(13 * time.Second), at(287)}, {at(61), at(119)}, {at(-600), at(900)}}
	for _, r := range ranges {
		for _, iv := range []time.Duration{time.Hour, 2 * time.Hour, 24 * time.Hour, 90 * time.Minute} {
			for _, noEdges := range []bool{false, true} {
				out = append(out, history.Aggregation{IDs: all, Key: "temp", From: r[0], To: r[1], Interval: iv, NoEdges: noEdges})
			}
		}
	}
	return out
}

// rawAggregate aggregates q as the contract says, from the rows Select reads back.
func rawAggregate(t *testing.T, st history.Store, q history.Aggregation) []history.Bucket {
	t.Helper()
	var m history.Merger
	for _, id := range q.IDs {
		for r, err := range st.Select(context.Background(), history.Selection{ID: id, Key: q.Key, From: q.From, To: q.To}) {
			if err != nil {
				t.Fatalf("Select: %v", err)
			}
			v, ok := jsonNumber(r.Value)
			if !ok {
				continue
			}
			e := history.Edge{TimeStamp: r.TimeStamp, Seq: r.Seq, Value: v}
			m.Add(history.Partial{ID: id, Start: history.Bin(r.TimeStamp, q.Interval), Count: 1, Sum: v, Min: v, Max: v, First: e, Last: e})
		}
	}
	return m.Buckets()
}

// jsonNumber returns the value of a JSON number; ok is false for any other JSON value.
func jsonNumber(v json.RawMessage) (float64, bool) {
	var n json.Number
	if json.Unmarshal(v, &n) != nil {
		return 0, false
	}
	f, err := n.Float64()
	return f, err == nil
}

// checkAggregates fails t for every query of rollupQueries whose Aggregate differs from
// rawAggregate (averages within a relative 1e-9; First and Last only when asked for).
func checkAggregates(t *testing.T, st history.Store, stage string) {
	t.Helper()
	for _, q := range rollupQueries() {
		got, err := st.Aggregate(context.Background(), q)
		if err != nil {
			t.Fatalf("%s: Aggregate(%+v): %v", stage, q, err)
		}
		want := rawAggregate(t, st, q)
		same := len(got) == len(want)
		for i := 0; same && i < len(got); i++ {
			g, w := got[i], want[i]
			same = g.ID == w.ID && g.Start.Equal(w.Start) && g.Count == w.Count && g.Min == w.Min && g.Max == w.Max &&
				math.Abs(g.Avg-w.Avg) <= 1e-9*math.Max(1, math.Abs(w.Avg)) && (q.NoEdges || g.First == w.First && g.Last == w.Last)
		}
		if !same {
			t.Fatalf("%s: Aggregate of %s from %s to %s by %v (no edges: %v):\n got %v\nwant %v", stage, q.Key,
				q.From.Format(time.TimeOnly), q.To.Format(time.TimeOnly), q.Interval, q.NoEdges, got, want)
		}
	}
}

// rollUp calls Rollup until it is done, and fails t unless it takes at most steps calls.
func rollUp(t *testing.T, st history.Store, upTo time.Time, steps int) {
	t.Helper()
	for i := 0; ; i++ {
		if i == steps {
			t.Fatalf("Rollup(%s) not done after %d steps", upTo.Format(time.TimeOnly), steps)
		}
		done, err := st.Rollup(context.Background(), upTo)
		if err != nil {
			t.Fatalf("Rollup(%s): %v", upTo.Format(time.TimeOnly), err)
		}
		if done {
			return
		}
	}
}

func rolledUpTo(t *testing.T, st history.Store) time.Time {
	t.Helper()
	s, err := st.Stats(context.Background())
	if err != nil {
		t.Fatalf("Stats: %v", err)
	}
	return s.RolledUpTo
}

// testRollup checks that Aggregate answers the same before, while and after rows are rolled
// up, with the watermark inside an hour and rows written below it later.
func testRollup(t *testing.T, open Opener) {
	st := openStore(t, open, t.TempDir())
	seq := rollupRows(t, st)
	if w := rolledUpTo(t, st); !w.IsZero() {
		t.Fatalf("a new store is rolled up to %s", w)
	}
	checkAggregates(t, st, "nothing rolled up")

	w := at(150).Add(17 * time.Second)
	rollUp(t, st, w, 10_000)
	if got := rolledUpTo(t, st); !got.Equal(w) {
		t.Fatalf("rolled up to %s, want %s", got, w)
	}
	checkAggregates(t, st, "rolled up to minute 150")
	if tableRows(t, st, history.Tables{}.WithDefaults().Hourly()) == 0 {
		t.Fatal("the roll-up table is empty after rolling up")
	}

	// Late rows, below the watermark, in hours rolled up and in the hour it cuts, and rows
	// above it; some share the TimeStamp of rows written before, first or last in their hour.
	var late history.Rows
	for i, m := range []int{5, 57, 60, 99, 150, 151, 201} {
		seq++
		late.Properties = append(late.Properties, prop(seq, m, "t1", "temp", fmt.Sprint(-50-i)), prop(seq, m, "t2", "temp", `"late"`),
			prop(seq, m, "t3", "temp", fmt.Sprint(i)))
		rel := prop(seq, m, "t1", "temp", "-1000")
		rel.RelationshipID = "r"
		late.Properties = append(late.Properties, rel)
	}
	// A row at the watermark's instant and one just before it.
	seq++
	late.Properties = append(late.Properties, history.PropertyEvent{Seq: seq, TimeStamp: w, ID: "t2", Key: "temp",
		Value: json.RawMessage("-77"), Action: history.ActionUpdate}, history.PropertyEvent{Seq: seq, TimeStamp: w.Add(-time.Microsecond),
		ID: "t2", Key: "hum", Value: json.RawMessage("77"), Action: history.ActionUpdate})
	write(t, st, late, seq)
	// A replay of them adds nothing.
	write(t, st, late, seq)
	checkAggregates(t, st, "late rows written")

	rollUp(t, st, at(400), 10_000)
	checkAggregates(t, st, "rolled up past every row")
	// The watermark never moves back.
	if done, err := st.Rollup(context.Background(), at(100)); err != nil || !done {
		t.Fatalf("Rollup below the watermark = %v, %v; want done", done, err)
	}
	if got := rolledUpTo(t, st); !got.Equal(at(400)) {
		t.Fatalf("rolled up to %s after a Rollup below it, want %s", got, at(400))
	}
}

// testRollupPrune checks that Aggregate still answers as the raw rows left do after Prune,
// rolled up or not.
func testRollupPrune(t *testing.T, open Opener) {
	st := openStore(t, open, t.TempDir())
	rollupRows(t, st)
	rollUp(t, st, at(200), 10_000)
	hourly := history.Tables{}.WithDefaults().Hourly()
	before := tableRows(t, st, hourly)
	for _, cut := range []time.Time{at(30), at(125).Add(time.Second), at(180)} {
		for {
			n, err := st.Prune(context.Background(), cut, 50)
			if err != nil {
				t.Fatalf("Prune(%s): %v", cut.Format(time.TimeOnly), err)
			}
			if n == 0 {
				break
			}
		}
		checkAggregates(t, st, "pruned before "+cut.Format(time.TimeOnly))
	}
	if after := tableRows(t, st, hourly); after >= before {
		t.Fatalf("%s holds %d rows after pruning, %d before; want fewer", hourly, after, before)
	}
	rollUp(t, st, at(400), 10_000)
	checkAggregates(t, st, "pruned, then rolled up")
}
