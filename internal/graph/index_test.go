package graph

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

const models = `[
 {"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Space;1","@type":"Interface",
  "contents":[{"@type":"Property","name":"name","schema":"string","writable":true},
              {"@type":"Relationship","name":"contains","properties":[{"@type":"Property","name":"n","schema":"integer"}]}]},
 {"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Room;1","@type":"Interface","extends":"dtmi:ex:Space;1",
  "contents":[{"@type":"Property","name":"temperature","schema":"double","writable":true}]}
]`

type env struct {
	t     *testing.T
	ctx   context.Context
	store *sqlite.Store
	twins *twins.Service
	// readBack hides that the store's log carries the states of changes, so the index reads
	// them back from the store.
	readBack bool
}

// logOnly is a store whose Log is a plain store.Log.
type logOnly struct{ store.Store }

func (s logOnly) Log() store.Log { return struct{ store.Log }{s.Store.Log()} }

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

func (e *env) twin(id, model, props string) {
	e.t.Helper()
	body := fmt.Sprintf(`{"$metadata":{"$model":%q}%s}`, model, props)
	if _, err := e.twins.PutTwin(e.ctx, id, []byte(body), "", twins.Trace{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) rel(src, id, target string, n int) {
	e.t.Helper()
	body := fmt.Sprintf(`{"$relationshipName":"contains","$targetId":%q,"n":%d}`, target, n)
	if _, err := e.twins.PutRelationship(e.ctx, src, id, []byte(body), "", twins.Trace{}); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) index() *Index {
	e.t.Helper()
	var st store.Store = e.store
	if e.readBack {
		st = logOnly{st}
	}
	x, err := New(e.ctx, Config{LoadBatch: 2}, st, e.twins.Models, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return x
}

// snapshot describes the index: every twin with its model, temperature and relationships.
func snapshot(t *testing.T, x *Index) []string {
	t.Helper()
	var out []string
	err := x.Read(context.Background(), func(r *Reader) error {
		for i := range r.TwinSlots() {
			tw := r.TwinAt(i)
			if tw == nil {
				continue
			}
			temp, _ := r.LookupTwin(tw, []string{"temperature"})
			var edges []string // in no particular order in the index
			for _, rel := range tw.Out() {
				n, _ := r.LookupRel(rel, []string{"n"})
				edges = append(edges, fmt.Sprintf(" -%s(%s,n=%v)->%s", rel.Name(), rel.ID(), n, rel.Target().ID()))
			}
			for _, rel := range tw.In() {
				edges = append(edges, fmt.Sprintf(" <-%s-%s", rel.ID(), rel.Source().ID()))
			}
			slices.Sort(edges)
			col := math.NaN()
			if c, ok := r.NumberColumn("temperature"); ok {
				col = c[tw.Slot()]
			}
			s := fmt.Sprintf("%s %s temp=%v col=%v", tw.ID(), r.ModelIDs()[tw.Model()], temp, col)
			for _, edge := range edges {
				s += edge
			}
			if got, ok := r.Twin(tw.ID()); !ok || got != tw {
				t.Errorf("Twin(%q) does not return the twin of its slot", tw.ID())
			}
			if !slices.Contains(r.TwinsOfModel(tw.Model()), int32(tw.Slot())) {
				t.Errorf("twin %q missing from its model's list", tw.ID())
			}
			out = append(out, s)
		}
		rels := 0
		for i := range r.RelSlots() {
			if r.RelAt(i) != nil {
				rels++
			}
		}
		if rels != r.RelCount() {
			t.Errorf("%d relationships in slots, RelCount %d", rels, r.RelCount())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(out)
	return out
}

func (e *env) write() {
	e.twin("s1", "dtmi:ex:Space;1", `,"name":"hall"`)
	e.twin("r1", "dtmi:ex:Room;1", `,"temperature":20`)
	e.twin("r2", "dtmi:ex:Room;1", `,"temperature":25`)
	e.twin("r3", "dtmi:ex:Room;1", ``)
	e.rel("s1", "c1", "r1", 1)
	e.rel("s1", "c2", "r2", 2)
	e.rel("r1", "c3", "r2", 3)
}

func (e *env) change() {
	ctx := e.ctx
	if _, err := e.twins.PatchTwin(ctx, "r1", []byte(`[{"op":"replace","path":"/temperature","value":30}]`), "", twins.Trace{}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.twins.PatchTwin(ctx, "r2", []byte(`[{"op":"remove","path":"/temperature"}]`), "", twins.Trace{}); err != nil {
		e.t.Fatal(err)
	}
	if _, err := e.twins.PatchRelationship(ctx, "s1", "c2", []byte(`[{"op":"replace","path":"/n","value":20}]`), "", twins.Trace{}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.twins.DeleteRelationship(ctx, "r1", "c3", "", twins.Trace{}); err != nil {
		e.t.Fatal(err)
	}
	if err := e.twins.DeleteTwin(ctx, "r3", "", twins.Trace{}); err != nil {
		e.t.Fatal(err)
	}
	e.twin("s1", "dtmi:ex:Room;1", `,"temperature":1`) // replace with another model
	e.twin("r4", "dtmi:ex:Room;1", ``)                 // reuses r3's slot
	e.rel("r4", "c4", "s1", 4)
}

// TestBuildAndFollow checks that an index built before the writes and kept current from the
// log agrees with one built from the store after them, at each step.
func TestBuildAndFollow(t *testing.T) {
	for _, readBack := range []bool{false, true} {
		t.Run(fmt.Sprint("readBack=", readBack), func(t *testing.T) { testBuildAndFollow(t, readBack) })
	}
}

func testBuildAndFollow(t *testing.T, readBack bool) {
	e := newEnv(t)
	e.readBack = readBack
	live := e.index()
	e.write()
	built := e.index()
	want := []string{
		"r1 dtmi:ex:Room;1 temp=20 col=20 -contains(c3,n=3)->r2 <-c1-s1",
		"r2 dtmi:ex:Room;1 temp=25 col=25 <-c2-s1 <-c3-r1",
		"r3 dtmi:ex:Room;1 temp=<nil> col=NaN",
		"s1 dtmi:ex:Space;1 temp=<nil> col=NaN -contains(c1,n=1)->r1 -contains(c2,n=2)->r2",
	}
	for name, x := range map[string]*Index{"built": built, "followed": live} {
		if got := snapshot(t, x); !slices.Equal(got, want) {
			t.Errorf("%s index:\n got %q\nwant %q", name, got, want)
		}
	}
	e.change()
	want = []string{
		"r1 dtmi:ex:Room;1 temp=30 col=30 <-c1-s1",
		"r2 dtmi:ex:Room;1 temp=<nil> col=NaN <-c2-s1",
		"r4 dtmi:ex:Room;1 temp=<nil> col=NaN -contains(c4,n=4)->s1",
		"s1 dtmi:ex:Room;1 temp=1 col=1 -contains(c1,n=1)->r1 -contains(c2,n=20)->r2 <-c4-r4",
	}
	for name, x := range map[string]*Index{"built": e.index(), "followed": live, "followed again": built} {
		if got := snapshot(t, x); !slices.Equal(got, want) {
			t.Errorf("%s index:\n got %q\nwant %q", name, got, want)
		}
	}
}

// TestRun checks that Run applies records without any reader asking, and returns when its
// context ends.
func TestRun(t *testing.T) {
	e := newEnv(t)
	x := e.index()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	e.write()
	last := e.store.Log().Last()
	deadline := time.Now().Add(10 * time.Second)
	for x.Applied() < last {
		if time.Now().After(deadline) {
			t.Fatalf("Run applied up to %d of %d", x.Applied(), last)
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v, want context.Canceled", err)
	}
	if got := snapshot(t, x); len(got) != 4 {
		t.Fatalf("index after Run: %q", got)
	}
}

// TestLogGap prunes log records the index has not applied yet: following must fail, naming
// the gap, rather than read on past it and keep the state from before the missing records.
func TestLogGap(t *testing.T) {
	for _, readBack := range []bool{false, true} {
		t.Run(fmt.Sprint("readBack=", readBack), func(t *testing.T) {
			e := newEnv(t)
			e.readBack = readBack
			x := e.index()
			applied := x.Applied()
			e.write()
			e.twin("r9", "dtmi:ex:Room;1", ``) // the newest record, which the log keeps
			err := e.store.UpdateDelivery(e.ctx, func(w store.DeliveryWriter) error {
				_, err := w.PruneLog(math.MaxInt64, time.Now().Add(time.Hour), 1000)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
			if err := x.Sync(e.ctx); !errors.Is(err, ErrLogGap) {
				t.Fatalf("Sync after the log lost records the index had not applied = %v, want ErrLogGap", err)
			}
			if err := x.Read(e.ctx, func(*Reader) error { return nil }); !errors.Is(err, ErrLogGap) {
				t.Errorf("Read = %v, want ErrLogGap", err)
			}
			if x.Applied() != applied {
				t.Errorf("Applied moved from %d to %d across the gap", applied, x.Applied())
			}
			ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
			defer cancel()
			if err := x.Run(ctx); !errors.Is(err, ErrLogGap) {
				t.Errorf("Run = %v, want ErrLogGap", err)
			}
		})
	}
}

func TestJSON(t *testing.T) {
	doc := []byte(` { "a" : 1.5 , "b":{"c":[1,{"d":"}"}],"e\"q":"x\u0041","f":null},"g":true,"h":"plain","esc\u0069":2,"p":"a\\\"b\\","q":-3e2}`)
	for _, tc := range []struct {
		path []string
		want any
		ok   bool
	}{
		{[]string{"a"}, 1.5, true},
		{[]string{"b", "e\"q"}, "xA", true},
		{[]string{"b", "f"}, nil, true},
		{[]string{"b", "c"}, json.RawMessage(`[1,{"d":"}"}]`), true},
		{[]string{"g"}, true, true},
		{[]string{"h"}, "plain", true},
		{[]string{"esci"}, 2.0, true},
		{[]string{"p"}, `a\"b\`, true},
		{[]string{"q"}, -300.0, true},
		{[]string{"b", "missing"}, nil, false},
		{[]string{"a", "x"}, nil, false},
		{[]string{"zz"}, nil, false},
	} {
		raw, ok := descend(doc, tc.path)
		var got any
		if ok {
			got, ok = value(raw)
		}
		if ok != tc.ok || fmt.Sprint(got) != fmt.Sprint(tc.want) {
			t.Errorf("%q: got %v, %v; want %v, %v", tc.path, got, ok, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		raw  string
		want float64
	}{
		{`12`, 12}, {`-0.5`, -0.5}, {`1e3`, 1000}, {`"12"`, math.NaN()}, {`true`, math.NaN()},
		{`null`, math.NaN()}, {`{"a":1}`, math.NaN()}, {`-`, math.NaN()}, {``, math.NaN()},
	} {
		if got := number([]byte(tc.raw)); got != tc.want && !(math.IsNaN(got) && math.IsNaN(tc.want)) {
			t.Errorf("number(%s) = %v, want %v", tc.raw, got, tc.want)
		}
	}
	for _, bad := range []string{``, `{`, `{"a"`, `{"a":`, `{"a":1,`, `[1,2]`, `"s"`, `{"a":{"b":`} {
		if _, ok := member([]byte(bad), "b"); ok {
			t.Errorf("member found b in %q", bad)
		}
	}
}

func FuzzMember(f *testing.F) {
	f.Add([]byte(`{"a":{"b":[1,"x"]},"c":"d"}`), "a")
	f.Fuzz(func(t *testing.T, doc []byte, name string) {
		v, ok := member(doc, name)
		if ok {
			value(v)
			descend(v, []string{name, name})
		}
	})
}

// TestReadYourWritesConcurrently runs writers and the follower together: after each
// acknowledged patch, the writer's next Read sees it, whatever the follower is doing.
func TestReadYourWritesConcurrently(t *testing.T) {
	e := newEnv(t)
	x := e.index()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- x.Run(ctx) }()
	const writers, patches = 4, 30
	for w := range writers {
		e.twin(fmt.Sprintf("w%d", w), "dtmi:ex:Room;1", `,"temperature":0`)
	}
	errs := make(chan error, writers)
	for w := range writers {
		go func() {
			id := fmt.Sprintf("w%d", w)
			for i := 1; i <= patches; i++ {
				patch := fmt.Sprintf(`[{"op":"replace","path":"/temperature","value":%d}]`, i)
				if _, err := e.twins.PatchTwin(e.ctx, id, []byte(patch), "", twins.Trace{}); err != nil {
					errs <- err
					return
				}
				var got any
				err := x.Read(e.ctx, func(r *Reader) error {
					tw, ok := r.Twin(id)
					if !ok {
						return fmt.Errorf("twin %s missing", id)
					}
					got, _ = r.LookupTwin(tw, []string{"temperature"})
					return nil
				})
				if err != nil {
					errs <- err
					return
				}
				if got != float64(i) {
					errs <- fmt.Errorf("%s: read %v right after writing %d", id, got, i)
					return
				}
			}
			errs <- nil
		}()
	}
	for range writers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
}

// BenchmarkPutTwin measures applying a changed twin of ten numeric properties to an index
// of 10,000 such twins: the index's share of following a patch, without the store read.
func BenchmarkPutTwin(b *testing.B) {
	st, err := sqlite.Open(sqlite.Config{Dir: b.TempDir(), NoSync: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	g, err := twins.New(twins.Config{ServiceID: "tf.bench"}, st, nil)
	if err != nil {
		b.Fatal(err)
	}
	x, err := New(context.Background(), Config{}, st, g.Models, nil)
	if err != nil {
		b.Fatal(err)
	}
	const n = 10000
	twins := make([]store.Twin, n)
	for i := range twins {
		doc := fmt.Sprintf(`{"$dtId":"t%d","$etag":"W/\"e\"","$metadata":{"$model":"dtmi:ex:Room;1"}`, i)
		for p := range 10 {
			doc += fmt.Sprintf(`,"p%d":%d.5`, p, i+p)
		}
		twins[i] = store.Twin{ID: fmt.Sprintf("t%d", i), ModelID: "dtmi:ex:Room;1", Doc: []byte(doc + "}")}
		x.putTwin(twins[i])
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		x.putTwin(twins[i%n])
		i++
	}
}
