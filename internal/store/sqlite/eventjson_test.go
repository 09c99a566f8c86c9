package sqlite

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/event"
)

func TestAppendEvent(t *testing.T) {
	for _, tc := range []struct {
		name string
		e    event.Event
	}{
		{"required only", event.Event{ID: "1", Source: "s", SpecVersion: "1.0", Type: event.TwinCreate}},
		{"every attribute", event.Event{
			ID: "1", Source: "https://example.net/", SpecVersion: "1.0", Type: event.TwinUpdate,
			Subject: "room/1", Time: "2026-01-02T03:04:05.0000000Z", DataContentType: "application/json",
			DataSchema: "dtmi:example:Room;1", TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			TraceState: "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7", TelemetrySourceTime: "2026-01-02T03:04:04.123456789+01:00",
			Hops: 3, Data: json.RawMessage(`{"patch":[{"op":"replace","path":"/t","value":21.5}]}`),
		}},
		{"negative hops", event.Event{ID: "1", Source: "s", SpecVersion: "1.0", Type: "t", Hops: -2}},
		{"escapes", event.Event{
			ID: "quote \" backslash \\ newline \n tab \t return \r nul \x00 bell \x07", Source: "<&>",
			SpecVersion: "1.0", Type: "é ü 日本 \u2028",
		}},
		{"invalid UTF-8", event.Event{ID: "a\xffb\xc3", Source: "s", SpecVersion: "1.0", Type: "t"}},
		{"data of every kind", event.Event{ID: "1", Source: "s", SpecVersion: "1.0", Type: "t", Data: json.RawMessage(`[1,"two",null,true]`)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := appendEvent(nil, &tc.e)
			if err != nil {
				t.Fatalf("appendEvent: %v", err)
			}
			want, err := json.Marshal(tc.e)
			if err != nil {
				t.Fatal(err)
			}
			// encoding/json escapes <, >, & and U+2028/9 for HTML; both forms decode alike.
			var fromGot, fromWant event.Event
			if err := json.Unmarshal(got, &fromGot); err != nil {
				t.Fatalf("appendEvent wrote invalid JSON %s: %v", got, err)
			}
			if err := json.Unmarshal(want, &fromWant); err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(fromGot, fromWant) {
				t.Errorf("appendEvent wrote %s, which decodes to %+v; encoding/json's %s decodes to %+v", got, fromGot, want, fromWant)
			}
		})
	}
}

func TestAppendEventRejectsInvalidData(t *testing.T) {
	e := event.Event{ID: "1", Source: "s", SpecVersion: "1.0", Type: "t", Data: json.RawMessage(`{"open":`)}
	if _, err := appendEvent(nil, &e); !errors.Is(err, errInvalidData) {
		t.Errorf("appendEvent of invalid data returned %v, want errInvalidData", err)
	}
}

// decodeCases are stored events in appendEvent's form and in others, each of which
// decodeEvent must decode as encoding/json does.
var decodeCases = []struct{ name, json string }{
	{"required only", `{"id":"1","source":"s","specversion":"1.0","type":"t"}`},
	{"every attribute", `{"id":"1","source":"https://example.net/","specversion":"1.0","type":"Microsoft.DigitalTwins.Twin.Update","subject":"room/1","time":"2026-01-02T03:04:05.0000000Z","datacontenttype":"application/json","dataschema":"dtmi:example:Room;1","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"congo=t61rcWkgMzE,rojo=00f067aa0ba902b7","telemetrySourceTime":"2026-01-02T03:04:04.123456789+01:00","data":{"patch":[{"op":"replace","path":"/t","value":"}]\"{["}]}}`},
	{"data array", `{"id":"1","source":"s","specversion":"1.0","type":"t","data":[1,"two",null,true]}`},
	{"data string", `{"id":"1","source":"s","specversion":"1.0","type":"t","data":"a \"b\" \\"}`},
	{"data number", `{"id":"1","source":"s","specversion":"1.0","type":"t","data":-1.5E+3}`},
	{"data null", `{"id":"1","source":"s","specversion":"1.0","type":"t","data":null}`},
	{"non-ASCII", `{"id":"é ü 日本","source":"s","specversion":"1.0","type":"t"}`},
	{"empty object", `{}`},
	{"hops", `{"id":"1","source":"s","specversion":"1.0","type":"t","twinflowhops":12,"data":{"a":1}}`},
	{"hops last", `{"id":"1","source":"s","specversion":"1.0","type":"t","twinflowhops":8}`},
	// The forms below leave the fast path.
	{"escapes", `{"id":"quote \" backslash \\ newline \n \u0000","source":"\u003c","specversion":"1.0","type":"t"}`},
	{"invalid UTF-8", "{\"id\":\"a\xffb\",\"source\":\"s\",\"specversion\":\"1.0\",\"type\":\"t\"}"},
	{"whitespace", `{ "id": "1", "source":"s","specversion":"1.0","type":"t", "data": {"a": 1} }`},
	{"data not last", `{"data":{"a":1},"id":"1","source":"s","specversion":"1.0","type":"t"}`},
	{"scalar data not last", `{"data":1,"id":"1","source":"s","specversion":"1.0","type":"t"}`},
	{"other order", `{"type":"t","id":"1","source":"s","specversion":"1.0"}`},
	{"unknown member", `{"id":"1","source":"s","specversion":"1.0","type":"t","x":"y"}`},
	{"non-string attribute", `{"id":1,"source":"s","specversion":"1.0","type":"t"}`},
	{"trailing comma", `{"id":"1","source":"s","specversion":"1.0","type":"t",}`},
	{"unterminated data", `{"id":"1","source":"s","specversion":"1.0","type":"t","data":{"a":1}`},
	{"not an object", `[]`},
	{"negative hops", `{"id":"1","source":"s","specversion":"1.0","type":"t","twinflowhops":-1}`},
	{"hops with a leading zero", `{"id":"1","source":"s","specversion":"1.0","type":"t","twinflowhops":07}`},
	{"fractional hops", `{"id":"1","source":"s","specversion":"1.0","type":"t","twinflowhops":1.5}`},
	{"huge hops", `{"id":"1","source":"s","specversion":"1.0","type":"t","twinflowhops":123456789012345678901}`},
	{"hops as a string", `{"id":"1","source":"s","specversion":"1.0","type":"t","twinflowhops":"2"}`},
}

func TestDecodeEvent(t *testing.T) {
	for _, tc := range decodeCases {
		t.Run(tc.name, func(t *testing.T) {
			var want event.Event
			wantErr := json.Unmarshal([]byte(tc.json), &want)
			got := event.Event{ID: "left over"}
			err := decodeEvent([]byte(tc.json), &got)
			if (err != nil) != (wantErr != nil) {
				t.Fatalf("decodeEvent(%s) returned %v, encoding/json %v", tc.json, err, wantErr)
			}
			if err == nil && !reflect.DeepEqual(got, want) {
				t.Errorf("decodeEvent(%s) = %+v, encoding/json decodes %+v", tc.json, got, want)
			}
		})
	}
}

// TestDecodeEventFastPath checks that what appendEvent writes takes the fast path.
func TestDecodeEventFastPath(t *testing.T) {
	for _, tc := range decodeCases[:10] {
		var e event.Event
		if !decodeEventFast([]byte(tc.json), &e) {
			t.Errorf("%s: %s left the fast path", tc.name, tc.json)
		}
	}
}

// FuzzDecodeEvent checks that decodeEvent reads back what appendEvent wrote, and that any
// record in which data is the last member, when encoding/json accepts it, decodes alike.
func FuzzDecodeEvent(f *testing.F) {
	for _, tc := range decodeCases {
		f.Add([]byte(tc.json))
	}
	f.Fuzz(func(t *testing.T, record []byte) {
		var want event.Event
		if json.Unmarshal(record, &want) != nil {
			return
		}
		var got event.Event
		if err := decodeEvent(record, &got); err != nil {
			t.Fatalf("decodeEvent(%q): %v; encoding/json accepts it", record, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decodeEvent(%q) = %+v, encoding/json decodes %+v", record, got, want)
		}
		rewritten, err := appendEvent(nil, &want)
		if err != nil {
			t.Fatal(err)
		}
		var back event.Event
		if err := decodeEvent(rewritten, &back); err != nil {
			t.Fatalf("decodeEvent(%q) of appendEvent's record: %v", rewritten, err)
		}
		if !reflect.DeepEqual(back, want) {
			t.Errorf("appendEvent then decodeEvent of %+v gave %+v", want, back)
		}
	})
}

func BenchmarkDecodeEvent(b *testing.B) {
	e := event.Event{
		ID: "3f2a9c1e-0d4b-4c8e-9a57-2b6f1e0c7d93", Source: "twinflow.example", SpecVersion: "1.0",
		Type: event.TwinUpdate, Subject: "room-17", Time: "2026-11-25T10:00:00.0000000Z",
		DataContentType: "application/json", TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
		Data: json.RawMessage(`{"modelId":"dtmi:example:Room;1","patch":[{"op":"replace","path":"/note","value":"` + strings.Repeat("x", 940) + `"}]}`),
	}
	record, err := appendEvent(nil, &e)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("decodeEvent", func(b *testing.B) {
		b.SetBytes(int64(len(record)))
		for b.Loop() {
			var got event.Event
			if err := decodeEvent(record, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding/json", func(b *testing.B) {
		b.SetBytes(int64(len(record)))
		for b.Loop() {
			var got event.Event
			if err := json.Unmarshal(record, &got); err != nil {
				b.Fatal(err)
			}
		}
	})
}
