package mapping

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twin"
	"github.com/twinflow/twinflow/internal/twins"
)

var _ Graph = (*graph.Index)(nil)

const applyModels = `[
 {"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Thermostat;1","@type":"Interface",
  "contents":[{"@type":"Property","name":"setPoint","schema":"double","writable":true}]},
 {"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Room;1","@type":"Interface",
  "contents":[
   {"@type":"Property","name":"temp","schema":"double","writable":true},
   {"@type":"Property","name":"seen","schema":"dateTime","writable":true},
   {"@type":"Property","name":"address","writable":true,"schema":{"@type":"Object","fields":[{"name":"city","schema":"string"},{"name":"zip","schema":"string"}]}},
   {"@type":"Property","name":"tags","writable":true,"schema":{"@type":"Map","mapKey":{"name":"tag","schema":"string"},"mapValue":{"name":"value","schema":"string"}}},
   {"@type":"Property","name":"readings","writable":true,"schema":{"@type":"Array","elementSchema":"double"}},
   {"@type":"Component","name":"therm","schema":"dtmi:ex:Thermostat;1"},
   {"@type":"Relationship","name":"contains"}]}
]`

// serviceEnv is a real twin service on SQLite, with a graph index over it.
type serviceEnv struct {
	t     *testing.T
	ctx   context.Context
	st    *sqlite.Store
	svc   *twins.Service
	index *graph.Index
}

func newServiceEnv(t *testing.T) *serviceEnv {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(sqlite.Config{Dir: t.TempDir(), NoSync: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := twins.New(twins.Config{ServiceID: "tf.test"}, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddModels(ctx, []byte(applyModels)); err != nil {
		t.Fatal(err)
	}
	x, err := graph.New(ctx, graph.Config{}, st, svc.Models, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &serviceEnv{t: t, ctx: ctx, st: st, svc: svc, index: x}
}

// Twin implements ingress.TwinReader over the service.
func (e *serviceEnv) Twin(id string) ([]byte, bool, error) {
	tw, err := e.svc.Twin(e.ctx, id)
	var te *twin.Error
	if errors.As(err, &te) && te.Kind == twin.KindTwinNotFound {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return tw.Doc, true, nil
}

// apply applies changes as the ingress runner does: create the twin if it is missing (with
// every component of its model, empty), patch it, send the telemetry.
func (e *serviceEnv) apply(changes []ingress.Change) {
	e.t.Helper()
	for i, c := range changes {
		if c.CreateModel != "" {
			iface, ok := e.svc.Models().Interface(c.CreateModel)
			if !ok {
				e.t.Fatalf("change %d: no model %s", i, c.CreateModel)
			}
			doc := map[string]any{twin.KeyMetadata: map[string]any{twin.KeyModel: c.CreateModel}}
			for name := range iface.Components {
				doc[name] = map[string]any{twin.KeyMetadata: map[string]any{}}
			}
			body, _ := json.Marshal(doc)
			if _, err := e.svc.PutTwin(e.ctx, c.TwinID, body, "*", twins.Trace{}); err != nil {
				e.t.Fatalf("change %d: create %s: %v", i, c.TwinID, err)
			}
		}
		if c.Patch != nil {
			if _, err := e.svc.PatchTwin(e.ctx, c.TwinID, c.Patch, "", twins.Trace{}); err != nil {
				e.t.Fatalf("change %d: patch %s with %s: %v", i, c.TwinID, c.Patch, err)
			}
		}
		if c.Telemetry != nil {
			if _, err := e.svc.SendTelemetry(e.ctx, twins.Telemetry{TwinID: c.TwinID, MessageID: fmt.Sprint("m", i), Body: c.Telemetry}, twins.Trace{}); err != nil {
				e.t.Fatalf("change %d: telemetry %s: %v", i, c.TwinID, err)
			}
		}
	}
}

// props returns twin id's properties: its document without $-keys, components without
// their $metadata.
func (e *serviceEnv) props(id string) map[string]any {
	e.t.Helper()
	data, ok, err := e.Twin(id)
	if err != nil || !ok {
		e.t.Fatalf("twin %s: %v %v", id, ok, err)
	}
	var doc map[string]any
	if err := json.Unmarshal(data, &doc); err != nil {
		e.t.Fatal(err)
	}
	for k, v := range doc {
		if k[0] == '$' {
			delete(doc, k)
		} else if m, ok := v.(map[string]any); ok {
			delete(m, twin.KeyMetadata)
		}
	}
	return doc
}

// TestPatchesApply maps messages and applies the changes with the real twin service: the
// add-or-replace patches land whether or not their parents exist, on existing twins and on
// twins the mapping creates, and removals and sourceTime apply.
func TestPatchesApply(t *testing.T) {
	e := newServiceEnv(t)
	if _, err := e.svc.PutTwin(e.ctx, "room1", []byte(`{"$metadata":{"$model":"dtmi:ex:Room;1"},"therm":{"$metadata":{}},"tags":{"blue":"#00f"}}`), "", twins.Trace{}); err != nil {
		t.Fatal(err)
	}
	set := compileFor(t, e, Definition{
		Source:  "s",
		TwinIDs: "message.body.rooms",
		Patch: map[string]string{
			"/address/city":                        "message.body.city",
			"/address/zip":                         "message.body.zip",
			"/tags/red":                            "'#f00'",
			"/readings/-":                          "message.body.t",
			"/therm/setPoint":                      "message.body.t",
			"/temp":                                "message.body.t",
			"/seen":                                "message.time",
			"/$metadata/temp/sourceTime":           "message.time",
			"/therm/$metadata/setPoint/sourceTime": "message.time",
		},
		Telemetry:  "{'t': message.body.t}",
		CreateTwin: &CreateTwin{Model: "dtmi:ex:Room;1"},
	})
	at := time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC)
	msg := func(t float64) ingress.Message {
		return ingress.Message{Time: at, Body: fmt.Appendf(nil, `{"rooms":["room1","room2"],"city":"Bergen","zip":"5003","t":%v}`, t)}
	}
	e.apply(mapOK(t, e, set, msg(19.5)))
	want := map[string]any{
		"address":  map[string]any{"city": "Bergen", "zip": "5003"},
		"tags":     map[string]any{"blue": "#00f", "red": "#f00"},
		"readings": []any{19.5},
		"therm":    map[string]any{"setPoint": 19.5},
		"temp":     19.5,
		"seen":     "2024-05-01T10:00:00Z",
	}
	if got := e.props("room1"); !reflect.DeepEqual(got, want) {
		t.Errorf("room1 after the first message:\n got %v\nwant %v", got, want)
	}
	delete(want["tags"].(map[string]any), "blue")
	if got := e.props("room2"); !reflect.DeepEqual(got, want) {
		t.Errorf("room2 (created) after the first message:\n got %v\nwant %v", got, want)
	}

	// The second message finds every parent in place.
	e.apply(mapOK(t, e, set, msg(20)))
	if got := e.props("room2")["readings"]; !reflect.DeepEqual(got, []any{19.5, 20.0}) {
		t.Errorf("room2 readings after the second message = %v, want [19.5 20]", got)
	}
	data, _, _ := e.Twin("room1")
	var doc struct {
		Metadata struct {
			Temp struct {
				SourceTime string `json:"sourceTime"`
			} `json:"temp"`
		} `json:"$metadata"`
	}
	if err := json.Unmarshal(data, &doc); err != nil || doc.Metadata.Temp.SourceTime != "2024-05-01T10:00:00Z" {
		t.Errorf("room1 $metadata.temp.sourceTime = %q (%v), want the message's time", doc.Metadata.Temp.SourceTime, err)
	}

	// null removes what exists and skips what does not.
	remove := compileFor(t, e, Definition{Source: "s", TwinID: "'room1'", Patch: map[string]string{
		"/temp": "null", "/address/city": "null", "/readings/7": "null", "/therm/setPoint": "message.body.?nothing",
	}})
	e.apply(mapOK(t, e, remove, ingress.Message{Body: []byte(`{}`)}))
	got := e.props("room1")
	if _, ok := got["temp"]; ok {
		t.Errorf("room1 still has temp: %v", got)
	}
	if !reflect.DeepEqual(got["address"], map[string]any{"zip": "5003"}) || got["therm"].(map[string]any)["setPoint"] != 20.0 {
		t.Errorf("room1 after removals = %v", got)
	}
}

// TestPropagationThroughGraph runs ADT's thermostat-to-room rule over the real graph index:
// the room is found by its contains relationship to the thermostat.
func TestPropagationThroughGraph(t *testing.T) {
	e := newServiceEnv(t)
	for _, body := range []struct{ id, doc string }{
		{"room21", `{"$metadata":{"$model":"dtmi:ex:Room;1"},"therm":{"$metadata":{}}}`},
		{"room22", `{"$metadata":{"$model":"dtmi:ex:Room;1"},"therm":{"$metadata":{}}}`},
		{"thermostat67", `{"$metadata":{"$model":"dtmi:ex:Thermostat;1"},"setPoint":18}`},
	} {
		if _, err := e.svc.PutTwin(e.ctx, body.id, []byte(body.doc), "", twins.Trace{}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []string{"room21", "room22"} {
		if _, err := e.svc.PutRelationship(e.ctx, r, "c-"+r, []byte(`{"$relationshipName":"contains","$targetId":"thermostat67"}`), "", twins.Trace{}); err != nil {
			t.Fatal(err)
		}
	}
	rule := compileFor(t, e, Definition{
		Source:    EventsSource,
		Condition: "message.headers.type == 'Microsoft.DigitalTwins.Twin.Update' && message.body.modelId == 'dtmi:ex:Thermostat;1'",
		TwinIDs:   "incoming(message.headers.subject, 'contains')",
		Patch:     map[string]string{"/temp": "message.body.patch.filter(p, p.path == '/setPoint')[0].value"},
	})
	// The update's own event, as the change log holds it.
	if _, err := e.svc.PatchTwin(e.ctx, "thermostat67", []byte(`[{"op":"replace","path":"/setPoint","value":21.5}]`), "", twins.Trace{}); err != nil {
		t.Fatal(err)
	}
	ev := lastEvent(t, e)
	e.apply(mapOK(t, e, rule, ingress.EventMessage(ev)))
	for _, r := range []string{"room21", "room22"} {
		if got := e.props(r)["temp"]; got != 21.5 {
			t.Errorf("%s temp = %v, want 21.5", r, got)
		}
	}
}

// compileFor compiles def with the service's models and graph.
func compileFor(t *testing.T, e *serviceEnv, def Definition) *Mapping {
	t.Helper()
	m, err := Compile(def, Config{}, Deps{Models: e.svc.Models(), Graph: e.index})
	if err != nil {
		t.Fatalf("Compile: %v", err)
	}
	return m
}

// mapOK maps msg through the service's twins.
func mapOK(t *testing.T, e *serviceEnv, m *Mapping, msg ingress.Message) []ingress.Change {
	t.Helper()
	changes, err := m.Map(e.ctx, msg, e)
	if err != nil {
		t.Fatalf("Map: %v", err)
	}
	return changes
}

// lastEvent returns the last event of the change log.
func lastEvent(t *testing.T, e *serviceEnv) event.Event {
	t.Helper()
	last := e.st.Log().Last()
	recs, err := e.st.Log().Read(e.ctx, last-1, 1)
	if err != nil || len(recs) != 1 {
		t.Fatalf("read the last event: %v %v", recs, err)
	}
	return recs[0].Event
}
