package twins

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// apply prepares changes inside one Update, reading its Writer, and commits them there; when
// the Update committed, it tells the service.
func (e *env) apply(changes []ingress.Change, c Cause) error {
	var p *Prepared
	err := e.st.Update(context.Background(), func(w store.Writer) error {
		var err error
		p, err = e.g.PrepareChanges(func(id string) (store.Twin, bool, error) {
			t, err := w.Twin(id)
			if errors.Is(err, store.ErrNotFound) {
				return store.Twin{}, false, nil
			}
			return t, err == nil, err
		}, changes, c)
		if err != nil {
			return err
		}
		return p.Commit(w)
	})
	if err == nil {
		e.g.Committed(p.Applied())
	}
	return err
}

func TestPrepareChangesCreatesPatchesAndSendsTelemetry(t *testing.T) {
	e := newRoomEnv(t)
	err := e.apply([]ingress.Change{{
		TwinID:      "r1",
		CreateModel: "dtmi:ex:Room;1",
		// The address object is created by the add of its member.
		Patch:     []byte(`[{"op":"add","path":"/temp","value":19.5},{"op":"add","path":"/address/city","value":"Oslo"}]`),
		Telemetry: []byte(` {"temp":19.5} `),
	}}, Cause{Trace: trace, Depth: 2})
	if err != nil {
		t.Fatal(err)
	}
	evs := e.events()
	if len(evs) != 3 || evs[0].Type != event.TwinCreate || evs[1].Type != event.TwinUpdate || evs[2].Type != event.Telemetry {
		t.Fatalf("events = %+v; want Twin.Create, Twin.Update, telemetry", evs)
	}
	for _, ev := range evs {
		if ev.TraceParent != tp || ev.TraceState != ts || ev.Depth != 2 {
			t.Errorf("event %s carries trace %q %q depth %d; want the message's and depth 2", ev.Type, ev.TraceParent, ev.TraceState, ev.Depth)
		}
	}
	// The twin is created empty, with its component, as a PUT would create it.
	sameJSON(t, evs[0].Data, `{"$dtId":"r1","$etag":`+quote(twinETag(t, evs[0].Data))+`,
		"therm":{"$metadata":{"$lastUpdateTime":"`+nowText+`"}},
		"$metadata":{"$model":"dtmi:ex:Room;1","$lastUpdateTime":"`+nowText+`"}}`)
	sameJSON(t, evs[1].Data, `{"modelId":"dtmi:ex:Room;1","patch":[
		{"op":"add","path":"/temp","value":19.5},{"op":"add","path":"/address/city","value":"Oslo"}]}`)
	if evs[1].Subject != "r1" || evs[2].Source != serviceID+"/digitaltwins/r1" || evs[2].DataSchema != "dtmi:ex:Room;1" ||
		evs[2].Subject != "" || evs[2].Time != "" || string(evs[2].Data) != `{"temp":19.5}` || !uuidRE.MatchString(evs[2].ID) {
		t.Errorf("update and telemetry events = %+v, %+v", evs[1], evs[2])
	}
	got, err := e.g.Twin(context.Background(), "r1")
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, got.Doc, `{"$dtId":"r1","$etag":`+quote(got.ETag)+`,"temp":19.5,"address":{"city":"Oslo"},
		"therm":{"$metadata":{"$lastUpdateTime":"`+nowText+`"}},
		"$metadata":{"$model":"dtmi:ex:Room;1","$lastUpdateTime":"`+nowText+`",
			"temp":{"lastUpdateTime":"`+nowText+`"},"address":{"lastUpdateTime":"`+nowText+`"}}}`)

	// A second message finds the twin (from the service's cache too: an API patch with its
	// ETag works) and replaces the value.
	if err := e.apply([]ingress.Change{{TwinID: "r1", CreateModel: "dtmi:ex:Room;1", Patch: []byte(`[{"op":"add","path":"/temp","value":20}]`)}}, Cause{}); err != nil {
		t.Fatal(err)
	}
	evs = e.events()
	if len(evs) != 1 || evs[0].Type != event.TwinUpdate || evs[0].Depth != 0 {
		t.Fatalf("events = %+v; want one Twin.Update at depth 0", evs)
	}
	if _, ok := e.g.cache.get("r1"); !ok {
		t.Error("the twin written is not in the service's cache")
	}
	cur, _ := e.g.Twin(context.Background(), "r1")
	if _, err := e.g.PatchTwin(context.Background(), "r1", []byte(`[{"op":"replace","path":"/temp","value":21}]`), cur.ETag, trace); err != nil {
		t.Fatalf("PatchTwin after ingest: %v", err)
	}
}

func twinETag(t *testing.T, doc []byte) string {
	t.Helper()
	d, err := twin.DecodeDocument(doc)
	if err != nil {
		t.Fatal(err)
	}
	s, _ := d[twin.KeyETag].(string)
	return s
}

func TestPrepareChangesSeesEarlierChanges(t *testing.T) {
	e := newRoomEnv(t)
	e.putRoom("r1")
	err := e.apply([]ingress.Change{
		{TwinID: "r1", Patch: []byte(`[{"op":"add","path":"/tags/a","value":"1"}]`)},
		{TwinID: "r1", Patch: []byte(`[{"op":"add","path":"/tags/b","value":"2"}]`)},
	}, Cause{})
	if err != nil {
		t.Fatal(err)
	}
	if evs := e.events(); len(evs) != 2 {
		t.Fatalf("events = %+v; want two updates", evs)
	}
	got, _ := e.g.Twin(context.Background(), "r1")
	d, _ := twin.DecodeDocument(got.Doc)
	if tags, _ := d["tags"].(map[string]any); len(tags) != 2 {
		t.Errorf("tags = %v; want a and b", d["tags"])
	}
}

func TestPrepareChangesWritesNothingOnError(t *testing.T) {
	e := newRoomEnv(t)
	e.putRoom("r1")
	tests := []struct {
		name    string
		changes []ingress.Change
		kind    twin.Kind
		msg     string
	}{
		{"missing twin", []ingress.Change{{TwinID: "nope", Patch: []byte(`[{"op":"add","path":"/temp","value":1}]`)}},
			twin.KindTwinNotFound, "nope"},
		{"missing model", []ingress.Change{{TwinID: "new", CreateModel: "dtmi:ex:Missing;1"}},
			twin.KindValidationFailed, "dtmi:ex:Missing;1 or one of its dependencies does not exist."},
		{"wrong type", []ingress.Change{{TwinID: "r1", Patch: []byte(`[{"op":"add","path":"/temp","value":"warm"}]`)}},
			twin.KindValidationFailed, ""},
		{"unknown property", []ingress.Change{{TwinID: "r1", Patch: []byte(`[{"op":"add","path":"/color","value":"red"}]`)}},
			twin.KindValidationFailed, ""},
		{"bad patch", []ingress.Change{{TwinID: "r1", Patch: []byte(`[{"op":"move","path":"/temp"}]`)}},
			twin.KindJSONPatchInvalid, ""},
		{"telemetry not an object", []ingress.Change{{TwinID: "r1", Telemetry: []byte(`[1]`)}},
			twin.KindInvalidArgument, "telemetry"},
		{"no twin id", []ingress.Change{{Patch: []byte(`[]`)}}, twin.KindInvalidArgument, "no twin"},
		// The first change is good: it must not be written either.
		{"good then bad", []ingress.Change{
			{TwinID: "r2", CreateModel: "dtmi:ex:Room;1", Patch: []byte(`[{"op":"add","path":"/temp","value":1}]`)},
			{TwinID: "r1", Patch: []byte(`[{"op":"add","path":"/temp","value":true}]`)},
		}, twin.KindValidationFailed, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wantErr(t, e.apply(tt.changes, Cause{}), tt.kind, tt.msg)
			e.noEvents()
			if _, err := e.g.Twin(context.Background(), "r2"); !errors.As(err, new(*twin.Error)) {
				t.Errorf("twin r2 after a failed apply: %v; want it missing", err)
			}
		})
	}
}

func TestPrepareChangesTwinLimit(t *testing.T) {
	e := newEnv(t, Limits{Twins: 1})
	if _, err := e.g.AddModels(context.Background(), []byte(models)); err != nil {
		t.Fatal(err)
	}
	e.events()
	create := func(id string) []ingress.Change {
		return []ingress.Change{{TwinID: id, CreateModel: "dtmi:ex:Device;1"}}
	}
	if err := e.apply(create("d1"), Cause{}); err != nil {
		t.Fatal(err)
	}
	e.events()
	wantErr(t, e.apply(create("d2"), Cause{}), twin.KindTwinLimitReached, "")
	e.noEvents()
}

// TestPreparedCommitChecksWhatItRead prepares changes from a snapshot, changes the twins
// behind them, and commits: the commit fails with ErrStale and writes nothing.
func TestPreparedCommitChecksWhatItRead(t *testing.T) {
	e := newRoomEnv(t)
	ctx := context.Background()
	e.putRoom("r1")
	snapshot := func(id string) (store.Twin, bool, error) {
		tw, err := e.g.Twin(ctx, id)
		if err != nil {
			return store.Twin{}, false, nil
		}
		return tw, true, nil
	}
	prepare := func(changes ...ingress.Change) *Prepared {
		t.Helper()
		p, err := e.g.PrepareChanges(snapshot, changes, Cause{})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	commit := func(p *Prepared) error {
		return e.st.Update(ctx, func(w store.Writer) error { return p.Commit(w) })
	}
	patch := ingress.Change{TwinID: "r1", Patch: []byte(`[{"op":"add","path":"/temp","value":30}]`)}
	create := ingress.Change{TwinID: "r2", CreateModel: "dtmi:ex:Room;1"}

	// Prepared from the state of the moment: it commits, and tells what it left.
	p := prepare(patch)
	if err := commit(p); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if tw := p.Twins(); len(tw) != 1 || tw[0].ID != "r1" {
		t.Errorf("Twins = %+v", tw)
	}
	e.events()

	// The twin changed after the preparation.
	p = prepare(patch)
	if _, err := e.g.PatchTwin(ctx, "r1", []byte(`[{"op":"add","path":"/temp","value":31}]`), "", trace); err != nil {
		t.Fatal(err)
	}
	e.events()
	if err := commit(p); !errors.Is(err, ErrStale) {
		t.Errorf("Commit after the twin changed = %v; want ErrStale", err)
	}
	// A twin prepared as missing appeared.
	p = prepare(create)
	e.putRoom("r2")
	if err := commit(p); !errors.Is(err, ErrStale) {
		t.Errorf("Commit after the twin appeared = %v; want ErrStale", err)
	}
	e.noEvents()
	if got, _ := e.g.Twin(ctx, "r1"); !strings.Contains(string(got.Doc), `"temp":31`) {
		t.Errorf("r1 after stale commits = %s", got.Doc)
	}
}
