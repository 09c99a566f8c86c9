package detector

import (
	"encoding/json"
	"reflect"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// pointsCase is a change log record for the extraction tests: a Twin.Update of twin t1 with
// patch and, when known, the document it left; or an event of another type with data.
type pointsCase struct {
	name  string
	typ   string // event type, Twin.Update when empty
	data  string // the event's data, {"modelId":...,"patch":patch} when empty
	patch string
	doc   string // the state the change left; with known
	known bool
	time  string // the event's time, a fixed valid one when empty
	// fast marks the records that must be read without Derive.
	fast bool
}

func (c pointsCase) change() store.Change {
	typ, data, ts := c.typ, c.data, c.time
	if typ == "" {
		typ = event.TwinUpdate
	}
	if data == "" {
		data = `{"modelId":"dtmi:x:Room;1","patch":` + c.patch + `}`
	}
	if ts == "" {
		ts = "2026-03-01T10:00:00.123456789Z"
	}
	ch := store.Change{
		Record: event.Record{Seq: 7, Event: event.Event{Type: typ, Subject: "t1", Source: "host", Time: ts, Data: json.RawMessage(data)}},
		Known:  c.known,
	}
	if c.known && c.doc != "" {
		ch.Twin = &store.Twin{ID: "t1", Doc: json.RawMessage(c.doc)}
	}
	return ch
}

// pointsCases are the record shapes the extraction is checked on.
var pointsCases = []pointsCase{
	{name: "replace", patch: `[{"op":"replace","path":"/temp","value":21.5}]`, known: true, fast: true,
		doc: `{"$dtId":"t1","$etag":"W/\"1\"","temp":21.5,"hum":40,"$metadata":{"$model":"dtmi:x:Room;1","temp":{"lastUpdateTime":"2026-03-01T10:00:00Z"}}}`},
	{name: "replace with sourceTime in state", patch: `[{"op":"replace","path":"/temp","value":21.5}]`, known: true, fast: true,
		doc: `{"temp":21.5,"$metadata":{"temp":{"lastUpdateTime":"2026-03-01T10:00:00Z","sourceTime":"2026-02-01T00:00:00.1234567+02:00"}}}`},
	{name: "add", patch: `[{"op":"add","path":"/temp","value":-3e2}]`, known: true, fast: true,
		doc: `{"temp":-3e2,"$metadata":{}}`},
	{name: "remove", patch: `[{"op":"remove","path":"/temp"}]`, known: true, fast: true,
		doc: `{"hum":1,"$metadata":{"temp":{"sourceTime":"2026-02-01T00:00:00Z"}}}`},
	{name: "sourceTime set by the patch", patch: `[{"op":"add","path":"/$metadata/temp/sourceTime","value":"2026-02-02T00:00:00Z"}]`,
		known: true, fast: true, doc: `{"temp":5,"$metadata":{"temp":{"sourceTime":"2026-02-02T00:00:00Z"}}}`},
	{name: "value and sourceTime by the patch", known: true, fast: true,
		patch: `[{"op":"replace","path":"/temp","value":6},{"op":"add","path":"/$metadata/temp/sourceTime","value":"2026-02-03T00:00:00Z"}]`,
		doc:   `{"temp":6,"$metadata":{"temp":{"sourceTime":"2026-02-03T00:00:00Z","lastUpdateTime":"x"}}}`},
	{name: "two watched, in patch order", known: true, fast: true,
		patch: `[{"op":"replace","path":"/hum","value":41},{"op":"replace","path":"/other","value":1},{"op":"replace","path":"/temp","value":22},{"op":"replace","path":"/hum","value":42}]`,
		doc:   `{"temp":22,"other":1,"hum":42,"$metadata":{"hum":{"sourceTime":"2026-01-01T00:00:00Z"}}}`},
	{name: "unwatched only", patch: `[{"op":"replace","path":"/other","value":1}]`, known: true, fast: true,
		doc: `{"temp":22,"other":1,"$metadata":{}}`},
	{name: "model change only", patch: `[{"op":"replace","path":"/$metadata/$model","value":"dtmi:x:Other;1"}]`, known: true, fast: true,
		doc: `{"temp":22,"$metadata":{"$model":"dtmi:x:Other;1"}}`},
	{name: "nested path into an object", patch: `[{"op":"add","path":"/temp/x","value":1}]`, known: true, fast: true,
		doc: `{"temp":{"x":1},"$metadata":{}}`},
	{name: "component", patch: `[{"op":"replace","path":"/temp/v","value":1}]`, known: true, fast: true,
		doc: `{"temp":{"v":1,"$metadata":{"v":{"sourceTime":"2026-01-01T00:00:00Z"}}},"$metadata":{}}`},
	{name: "component sourceTime", patch: `[{"op":"add","path":"/temp/$metadata/v/sourceTime","value":"2026-01-01T00:00:00Z"}]`,
		known: true, fast: true, doc: `{"temp":{"v":1,"$metadata":{"v":{"sourceTime":"2026-01-01T00:00:00Z"}}},"$metadata":{}}`},
	{name: "string value", patch: `[{"op":"replace","path":"/temp","value":"21"}]`, known: true, fast: true,
		doc: `{"temp":"21","$metadata":{}}`},
	{name: "bool, null and array values", known: true, fast: true,
		patch: `[{"op":"replace","path":"/temp","value":true},{"op":"add","path":"/hum","value":null},{"op":"add","path":"/p3","value":[1]}]`,
		doc:   `{"temp":true,"hum":null,"p3":[1],"$metadata":{}}`},
	{name: "number out of range", patch: `[{"op":"replace","path":"/temp","value":1e400}]`, known: true, fast: true,
		doc: `{"temp":1e400,"$metadata":{}}`},
	{name: "number forms", known: true, fast: true,
		patch: `[{"op":"replace","path":"/temp","value":-0},{"op":"replace","path":"/hum","value":0.5E-3},{"op":"replace","path":"/p3","value":12345678901234567890}]`,
		doc:   `{"temp":-0,"hum":0.5E-3,"p3":12345678901234567890,"$metadata":{}}`},
	{name: "sourceTime not a time", patch: `[{"op":"replace","path":"/temp","value":1}]`, known: true, fast: true,
		doc: `{"temp":1,"$metadata":{"temp":{"sourceTime":"yesterday"}}}`},
	{name: "sourceTime not a string", patch: `[{"op":"replace","path":"/temp","value":1}]`, known: true, fast: true,
		doc: `{"temp":1,"$metadata":{"temp":{"sourceTime":5}}}`},
	{name: "metadata entry not an object", patch: `[{"op":"replace","path":"/temp","value":1}]`, known: true, fast: true,
		doc: `{"temp":1,"$metadata":{"temp":"x"}}`},
	{name: "metadata not an object", patch: `[{"op":"replace","path":"/temp","value":1}]`, known: true, fast: true,
		doc: `{"temp":1,"$metadata":[]}`},
	{name: "repeated members: the last counts", patch: `[{"op":"replace","path":"/temp","value":2}]`, known: true, fast: true,
		doc: `{"temp":1,"$metadata":{"temp":{"sourceTime":"2026-01-01T00:00:00Z"}},"temp":2,"$metadata":{"temp":{"sourceTime":"2026-01-05T00:00:00Z","sourceTime":"2026-01-06T00:00:00Z"}}}`},
	{name: "metadata repeated without the entry", patch: `[{"op":"replace","path":"/temp","value":2}]`, known: true, fast: true,
		doc: `{"temp":2,"$metadata":{"temp":{"sourceTime":"2026-01-01T00:00:00Z"}},"$metadata":{}}`},
	{name: "unicode and escapes elsewhere", patch: `[{"op":"replace","path":"/temp","value":2,"from":"/x"}]`, known: true, fast: true,
		doc: ` { "name" : "Kühlraum \"3\" \u00e9" , "temp" : 2 , "$metadata" : { "name" : { "sourceTime" : "\u0032" } } } `},
	{name: "whitespace around everything", data: " {\n\"patch\" : [ { \"path\" : \"/temp\" , \"op\" : \"replace\" , \"value\" : { \"a\" : [ 1 , 2 ] } } ] ,\"modelId\":null } ",
		known: true, fast: true, doc: `{"temp":3}`},
	{name: "path of the root's empty name", patch: `[{"op":"add","path":"/","value":1}]`, known: true, fast: true,
		doc: `{"":1,"temp":3}`},
	{name: "empty patch", patch: `[]`, known: true, fast: true, doc: `{"temp":3}`},

	// Records read through Derive.
	{name: "escaped member name in the state", patch: `[{"op":"replace","path":"/temp","value":4}]`, known: true,
		doc: `{"te\u006dp":4,"$metadata":{}}`},
	{name: "escaped sourceTime", patch: `[{"op":"replace","path":"/temp","value":4}]`, known: true,
		doc: `{"temp":4,"$metadata":{"temp":{"sourceTime":"2026-01-01T00:00:00\u005a"}}}`},
	{name: "escaped path", patch: `[{"op":"replace","path":"/te\u006dp","value":4}]`, known: true, doc: `{"temp":4}`},
	{name: "pointer escape", patch: `[{"op":"replace","path":"/a~1b","value":4}]`, known: true, doc: `{"a/b":4,"temp":1}`},
	{name: "state not JSON", patch: `[{"op":"replace","path":"/temp","value":4}]`, known: true, doc: `{"temp":4,`},
	{name: "state not an object", patch: `[{"op":"replace","path":"/temp","value":4}]`, known: true, doc: `[4]`},
	{name: "state not UTF-8", patch: `[{"op":"replace","path":"/temp","value":4}]`, known: true, doc: "{\"n\":\"\xff\",\"temp\":4}"},
	{name: "unsupported op", patch: `[{"op":"move","from":"/hum","path":"/temp"}]`, known: true, doc: `{"temp":4}`},
	{name: "no value", patch: `[{"op":"add","path":"/temp"}]`, known: true, doc: `{"temp":4}`},
	{name: "path not a pointer", patch: `[{"op":"add","path":"temp","value":1}]`, known: true, doc: `{"temp":4}`},
	{name: "op not a string", patch: `[{"op":1,"path":"/temp","value":1}]`, known: true, doc: `{"temp":4}`},
	{name: "patch not an array", patch: `{"op":"add","path":"/temp","value":1}`, known: true, doc: `{"temp":4}`},
	{name: "operation not an object", patch: `[1]`, known: true, doc: `{"temp":4}`},
	{name: "no patch", data: `{"modelId":"dtmi:x:Room;1"}`, known: true, doc: `{"temp":4}`},
	{name: "model id not a string", data: `{"modelId":5,"patch":[{"op":"replace","path":"/temp","value":4}]}`, known: true, doc: `{"temp":4}`},
	{name: "member name in other case", data: `{"modelId":"m","Patch":[{"op":"replace","path":"/temp","value":4}]}`, known: true, doc: `{"temp":4}`},
	{name: "data not JSON", data: `{"modelId":"m","patch":[`, known: true, doc: `{"temp":4}`},
	{name: "event time not a time", patch: `[{"op":"replace","path":"/temp","value":4}]`, known: true, doc: `{"temp":4}`, time: "noon"},
	{name: "state unknown", patch: `[{"op":"replace","path":"/temp","value":4},{"op":"add","path":"/$metadata/temp/sourceTime","value":"2026-01-01T00:00:00Z"}]`},
	{name: "state unknown, part of a value", patch: `[{"op":"replace","path":"/temp/x","value":4},{"op":"replace","path":"/hum","value":4}]`},
	{name: "state unknown, sourceTime only", patch: `[{"op":"add","path":"/$metadata/temp/sourceTime","value":"2026-01-01T00:00:00Z"}]`},
	{name: "twin deleted by the change", patch: `[{"op":"replace","path":"/temp","value":4}]`, known: true},
	{name: "create", typ: event.TwinCreate, known: true,
		data: `{"$dtId":"t1","temp":20,"hum":"x","other":3,"comp":{"temp":1,"$metadata":{}},"$metadata":{"$model":"m","temp":{"sourceTime":"2026-01-01T00:00:00Z"}}}`},
	{name: "create not an object", typ: event.TwinCreate, data: `[1]`},
	{name: "delete", typ: event.TwinDelete, data: `{"$dtId":"t1","temp":20,"$metadata":{"$model":"m"}}`},
	{name: "relationship update", typ: event.RelationshipUpdate, data: `{"modelId":"","patch":[{"op":"replace","path":"/temp","value":4}]}`},
	{name: "telemetry", typ: event.Telemetry, data: `{"temp":4}`},
}

// pointsProperties are the watched properties of the extraction tests.
var pointsProperties = []string{"temp", "hum", "p3"}

// TestPointsEqualDerived checks that the points streaming takes of each record are those
// pointOf takes of the rows history.Derive makes of it, with the same error, and that the
// records the server writes are read without Derive.
func TestPointsEqualDerived(t *testing.T) {
	for _, c := range pointsCases {
		t.Run(c.name, func(t *testing.T) {
			ch := c.change()
			checkPoints(t, &ch)
			x := extractor{properties: pointsProperties}
			fast := ch.Event.Type == event.TwinUpdate && ch.Known && ch.Twin != nil
			if fast {
				_, fast = x.updatePoints(&ch, nil)
			}
			if fast != c.fast {
				t.Errorf("read without Derive: %v, want %v", fast, c.fast)
			}
		})
	}
}

// checkPoints fails t if the points of ch differ from the derived ones.
func checkPoints(t *testing.T, ch *store.Change) {
	t.Helper()
	x := extractor{properties: pointsProperties}
	want, wantErr := x.derivedPoints(ch, nil)
	got, err := x.points(ch, nil)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("points = %+v, want (derived) %+v", got, want)
	}
	// An update touching no watched property reports no error where Derive may.
	if (err != nil) != (wantErr != nil) && !(err == nil && len(want) == 0 && len(x.touched) == 0) {
		t.Errorf("error = %v, want (derived) %v", err, wantErr)
	}
	if err != nil && wantErr != nil && err.Error() != wantErr.Error() {
		t.Errorf("error = %v, want (derived) %v", err, wantErr)
	}
}

// TestPointsValues checks the points of a few records against values written out, so that
// the derived points the other tests compare with are points indeed.
func TestPointsValues(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm.UTC()
	}
	tests := map[string][]watchedPoint{
		"replace":                           {{"temp", point{at("2026-03-01T10:00:00.123456Z"), 21.5}}},
		"replace with sourceTime in state":  {{"temp", point{at("2026-01-31T22:00:00.123456Z"), 21.5}}},
		"two watched, in patch order":       {{"hum", point{at("2026-01-01T00:00:00Z"), 42}}, {"temp", point{at("2026-03-01T10:00:00.123456Z"), 22}}},
		"repeated members: the last counts": {{"temp", point{at("2026-01-06T00:00:00Z"), 2}}},
		"number forms":                      {{"temp", point{at("2026-03-01T10:00:00.123456Z"), 0}}, {"hum", point{at("2026-03-01T10:00:00.123456Z"), 0.0005}}, {"p3", point{at("2026-03-01T10:00:00.123456Z"), 12345678901234567890}}},
		"remove":                            nil,
		"create":                            {{"temp", point{at("2026-01-01T00:00:00Z"), 20}}},
	}
	for _, c := range pointsCases {
		want, ok := tests[c.name]
		if !ok {
			continue
		}
		delete(tests, c.name)
		ch := c.change()
		x := extractor{properties: pointsProperties}
		got, err := x.points(&ch, nil)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("%s: points = %+v, %v; want %+v", c.name, got, err, want)
		}
	}
	for name := range tests {
		t.Errorf("no case %q", name)
	}
}

// FuzzPoints checks the extraction against Derive on updates of any patch and state.
func FuzzPoints(f *testing.F) {
	for _, c := range pointsCases {
		if c.typ == "" && c.data == "" && c.known {
			f.Add(c.patch, c.doc)
		}
	}
	f.Fuzz(func(t *testing.T, patch, doc string) {
		ch := pointsCase{patch: patch, doc: doc, known: true}.change()
		checkPoints(t, &ch)
	})
}
