package sqlite

import (
	"encoding/json"
	"errors"
	"reflect"
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
			Data: json.RawMessage(`{"patch":[{"op":"replace","path":"/t","value":21.5}]}`),
		}},
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
