package twins

import (
	"context"
	"reflect"
	"testing"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/tracecontext"
	"github.com/twinflow/twinflow/internal/twin"
)

func TestSendTelemetry(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	e.putRoom("r1")
	if err := e.g.SendTelemetry(ctx, "r1", "", "m-1", "2024-05-01T09:59:59Z", []byte(` {"temp": 21.5} `), trace); err != nil {
		t.Fatal(err)
	}
	if err := e.g.SendTelemetry(ctx, "r1", "therm", "m-2", "", []byte(`{"anything":[1,2]}`), trace); err != nil {
		t.Fatal(err)
	}
	evs := e.events()
	want := []event.Event{
		{ID: "m-1", Source: serviceID + "/digitaltwins/r1", SpecVersion: "1.0", Type: event.Telemetry, DataContentType: "application/json",
			DataSchema: "dtmi:ex:Room;1", TraceParent: tp, TraceState: ts, TelemetrySourceTime: "2024-05-01T09:59:59Z",
			Data: []byte(`{"temp": 21.5}`)},
		{ID: "m-2", Source: serviceID + "/digitaltwins/r1", SpecVersion: "1.0", Type: event.Telemetry, Subject: "therm", DataContentType: "application/json",
			DataSchema: "dtmi:ex:Thermostat;1", TraceParent: tp, TraceState: ts, Data: []byte(`{"anything":[1,2]}`)},
	}
	if len(evs) != 2 {
		t.Fatalf("events %+v", evs)
	}
	for i := range want {
		sameJSON(t, evs[i].Data, string(want[i].Data))
		evs[i].Data = want[i].Data
		if !reflect.DeepEqual(evs[i], want[i]) {
			t.Errorf("event %d = %+v\nwant      %+v", i, evs[i], want[i])
		}
	}

	tests := []struct {
		name, id, component, messageID, sourceTime, body string
		kind                                             twin.Kind
	}{
		{"no message id", "r1", "", "", "", `{}`, twin.KindInvalidArgument},
		{"array body", "r1", "", "m", "", `[1]`, twin.KindInvalidArgument},
		{"malformed body", "r1", "", "m", "", `{"a":`, twin.KindInvalidArgument},
		{"bad source time", "r1", "", "m", "yesterday", `{}`, twin.KindInvalidArgument},
		{"missing twin", "nope", "", "m", "", `{}`, twin.KindTwinNotFound},
		{"missing component", "r1", "nope", "m", "", `{}`, twin.KindComponentNotFound},
		{"property is no component", "r1", "temp", "m", "", `{}`, twin.KindComponentNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := e.g.SendTelemetry(ctx, tt.id, tt.component, tt.messageID, tt.sourceTime, []byte(tt.body), trace)
			wantErr(t, err, tt.kind, "")
		})
	}
	e.noEvents()
}

// TestTraceWithoutParent checks that a write whose trace has no well-formed parent starts a
// new trace, without the state that came with it.
func TestTraceWithoutParent(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	e.putRoom("r1")
	e.events()
	for _, parent := range []string{"", "garbage", "00-0AF7651916CD43DD8448EB211C80319C-B7AD6B7169203331-01"} {
		tr := Trace{Parent: parent, State: ts}
		if _, err := e.g.PatchTwin(ctx, "r1", []byte(`[{"op":"replace","path":"/temp","value":1}]`), "", tr); err != nil {
			t.Fatal(err)
		}
		if err := e.g.SendTelemetry(ctx, "r1", "", "m", "", []byte(`{}`), tr); err != nil {
			t.Fatal(err)
		}
		evs := e.events()
		if len(evs) != 2 {
			t.Fatalf("events for %q: %+v", parent, evs)
		}
		for _, ev := range evs {
			if _, ok := tracecontext.ParseParent(ev.TraceParent); !ok || ev.TraceParent == parent || ev.TraceState != "" {
				t.Errorf("%s for parent %q carries traceparent %q, tracestate %q; want a new trace without state", ev.Type, parent, ev.TraceParent, ev.TraceState)
			}
		}
	}
}
