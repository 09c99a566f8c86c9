package twins

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twin"
)

const (
	serviceID = "tf.example.net"
	tp        = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	ts        = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
	nowText   = "2024-05-01T10:00:00.1234567Z"
)

var (
	clock = time.Date(2024, 5, 1, 10, 0, 0, 123456789, time.UTC)
	trace = Trace{Parent: tp, State: ts}
)

// models is the fixture: a Room (extending Space) with a Thermostat component and
// relationships to Devices and other Rooms; Room;2 adds a Light component.
var models = `[
 {"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Thermostat;1","@type":"Interface","displayName":"Thermostat",
  "contents":[{"@type":"Property","name":"setPoint","schema":"double","writable":true},{"@type":"Property","name":"mode","schema":"string","writable":true}]},
 {"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Light;1","@type":"Interface",
  "contents":[{"@type":"Property","name":"on","schema":"boolean","writable":true}]},
 {"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Device;1","@type":"Interface",
  "contents":[{"@type":"Property","name":"serial","schema":"string","writable":true}]},
 {"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Sensor;1","@type":"Interface","extends":"dtmi:ex:Device;1","contents":[]},
 {"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Space;1","@type":"Interface","description":{"en":"A space","de":"Ein Raum"},
  "contents":[{"@type":"Property","name":"name","schema":"string","writable":true}]},
 {"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Room;1","@type":"Interface","extends":"dtmi:ex:Space;1",
  "contents":[
   {"@type":"Property","name":"temp","schema":"double","writable":true},
   {"@type":"Property","name":"hum","schema":"integer","writable":true},
   {"@type":"Property","name":"tags","writable":true,"schema":{"@type":"Map","mapKey":{"name":"tag","schema":"string"},"mapValue":{"name":"value","schema":"string"}}},
   {"@type":"Property","name":"address","writable":true,"schema":{"@type":"Object","fields":[{"name":"city","schema":"string"},{"name":"zip","schema":"string"}]}},
   {"@type":"Component","name":"therm","schema":"dtmi:ex:Thermostat;1"},
   {"@type":"Relationship","name":"contains","target":"dtmi:ex:Device;1","properties":[{"@type":"Property","name":"since","schema":"string"}]},
   {"@type":"Relationship","name":"adjacent","target":"dtmi:ex:Room;1","maxMultiplicity":1},
   {"@type":"Relationship","name":"near"}]},
 {"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Room;2","@type":"Interface","extends":"dtmi:ex:Room;1",
  "contents":[{"@type":"Component","name":"light","schema":"dtmi:ex:Light;1"}]}
]`

type env struct {
	t      *testing.T
	st     store.Store
	g      *Service
	cursor uint64
}

func newEnv(t *testing.T, limits Limits) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := sqlite.Open(sqlite.Config{Dir: dir, NoSync: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g, err := New(Config{ServiceID: serviceID, Now: func() time.Time { return clock }, Limits: limits}, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &env{t: t, st: st, g: g}
}

// newRoomEnv is newEnv with the fixture models loaded.
func newRoomEnv(t *testing.T) *env {
	e := newEnv(t, Limits{})
	if _, err := e.g.AddModels(context.Background(), []byte(models)); err != nil {
		t.Fatalf("AddModels: %v", err)
	}
	return e
}

// events returns the events logged since the previous call.
func (e *env) events() []event.Event {
	e.t.Helper()
	if e.st.Log().Last() == e.cursor {
		return nil
	}
	recs, err := e.st.Log().Read(context.Background(), e.cursor, 10_000)
	if err != nil {
		e.t.Fatal(err)
	}
	out := make([]event.Event, len(recs))
	for i, r := range recs {
		out[i] = r.Event
		e.cursor = r.Seq
	}
	return out
}

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)

// wantEvent checks the one event logged since the last check; its data is compared as JSON.
func (e *env) wantEvent(typ, subject, data string) event.Event {
	e.t.Helper()
	evs := e.events()
	if len(evs) != 1 {
		e.t.Fatalf("got %d events %+v; want one %s", len(evs), evs, typ)
	}
	ev := evs[0]
	if !uuidRE.MatchString(ev.ID) {
		e.t.Errorf("event id %q is not a uuid", ev.ID)
	}
	want := event.Event{ID: ev.ID, Source: serviceID, SpecVersion: "1.0", Type: typ, Subject: subject, Time: nowText,
		DataContentType: "application/json", TraceParent: tp, TraceState: ts, Data: ev.Data}
	if !reflect.DeepEqual(ev, want) {
		e.t.Errorf("event = %+v\nwant    %+v", ev, want)
	}
	sameJSON(e.t, ev.Data, data)
	return ev
}

func (e *env) noEvents() {
	e.t.Helper()
	if evs := e.events(); len(evs) != 0 {
		e.t.Fatalf("unexpected events %+v", evs)
	}
}

func sameJSON(t *testing.T, got []byte, want string) {
	t.Helper()
	var g, w any
	if err := json.Unmarshal(got, &g); err != nil {
		t.Fatalf("decode %s: %v", got, err)
	}
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("decode want %s: %v", want, err)
	}
	if !reflect.DeepEqual(g, w) {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
}

// wantErr checks err is a *twin.Error of the kind, and (when msg is not empty) that its
// message or its first detail contains msg.
func wantErr(t *testing.T, err error, kind twin.Kind, msg string) {
	t.Helper()
	var te *twin.Error
	if !errors.As(err, &te) {
		t.Fatalf("error = %v; want %v", err, kind)
	}
	if te.Kind != kind {
		t.Fatalf("error = %v %q %v; want %v", te.Kind, te.Message, te.Details, kind)
	}
	if msg == "" {
		return
	}
	text := te.Message
	for _, d := range te.Details {
		text += "\n" + d.Message
	}
	if !strings.Contains(text, msg) {
		t.Fatalf("error %q details %v; want it to contain %q", te.Message, te.Details, msg)
	}
}

// roomDoc is the stored document of a room created with putRoom.
func roomDoc(id, etag string) string {
	return `{"$dtId":"` + id + `","$etag":` + quote(etag) + `,"name":"Lab","temp":21.5,
	"therm":{"setPoint":20,"$metadata":{"$lastUpdateTime":"` + nowText + `","setPoint":{"lastUpdateTime":"` + nowText + `"}}},
	"$metadata":{"$model":"dtmi:ex:Room;1","$lastUpdateTime":"` + nowText + `",
		"name":{"lastUpdateTime":"` + nowText + `"},
		"temp":{"lastUpdateTime":"` + nowText + `","sourceTime":"2024-04-30T23:59:59.123456789Z"}}}`
}

const roomBody = `{"$dtId":"ignored","$etag":"W/\"ignored\"","name":"Lab","temp":21.5,
	"$metadata":{"$model":"dtmi:ex:Room;1","temp":{"sourceTime":"2024-04-30T23:59:59.123456789Z"}},
	"therm":{"setPoint":20,"$metadata":{}}}`

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

func (e *env) putRoom(id string) store.Twin {
	e.t.Helper()
	tw, err := e.g.PutTwin(context.Background(), id, []byte(roomBody), "", trace)
	if err != nil {
		e.t.Fatalf("PutTwin %s: %v", id, err)
	}
	e.events()
	return tw
}

func (e *env) putTwin(id, body string) store.Twin {
	e.t.Helper()
	tw, err := e.g.PutTwin(context.Background(), id, []byte(body), "", trace)
	if err != nil {
		e.t.Fatalf("PutTwin %s: %v", id, err)
	}
	e.events()
	return tw
}
