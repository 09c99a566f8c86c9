package twins

import (
	"context"
	"log/slog"
	"reflect"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/tracecontext"
	"github.com/twinflow/twinflow/internal/twin"
)

func TestSendTelemetry(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	e.putRoom("r1")
	if _, err := e.g.SendTelemetry(ctx, Telemetry{TwinID: "r1", MessageID: "m-1", SourceTime: "2024-05-01T09:59:59Z", Body: []byte(` {"temp": 21.5} `)}, trace); err != nil {
		t.Fatal(err)
	}
	if _, err := e.g.SendTelemetry(ctx, Telemetry{TwinID: "r1", Component: "therm", MessageID: "m-2", Body: []byte(`{"anything":[1,2]}`), Hops: 3}, trace); err != nil {
		t.Fatal(err)
	}
	evs := e.events()
	want := []event.Event{
		{ID: "m-1", Source: serviceID + "/digitaltwins/r1", SpecVersion: "1.0", Type: event.Telemetry, DataContentType: "application/json",
			DataSchema: "dtmi:ex:Room;1", TraceParent: tp, TraceState: ts, TelemetrySourceTime: "2024-05-01T09:59:59Z",
			Data: []byte(`{"temp": 21.5}`)},
		{ID: "m-2", Source: serviceID + "/digitaltwins/r1", SpecVersion: "1.0", Type: event.Telemetry, Subject: "therm", DataContentType: "application/json",
			DataSchema: "dtmi:ex:Thermostat;1", TraceParent: tp, TraceState: ts, Hops: 3, Data: []byte(`{"anything":[1,2]}`)},
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
			_, err := e.g.SendTelemetry(ctx, Telemetry{TwinID: tt.id, Component: tt.component, MessageID: tt.messageID, SourceTime: tt.sourceTime, Body: []byte(tt.body)}, trace)
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
		if _, err := e.g.SendTelemetry(ctx, Telemetry{TwinID: "r1", MessageID: "m", Body: []byte(`{}`)}, tr); err != nil {
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

// TestSendTelemetryDedup checks that, with a de-duplication window, a message id the twin sent
// within it emits nothing, while the same id from another twin, at another hop count or
// after the window is a new message.
func TestSendTelemetryDedup(t *testing.T) {
	ctx := context.Background()
	st, err := sqlite.Open(sqlite.Config{Dir: t.TempDir(), NoSync: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := clock
	g, err := New(Config{ServiceID: serviceID, Now: func() time.Time { return now }, TelemetryDedupWindow: time.Minute}, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st, g: g}
	if _, err := g.AddModels(ctx, []byte(models)); err != nil {
		t.Fatal(err)
	}
	e.putRoom("r1")
	e.putRoom("r2")
	e.events()
	for _, tc := range []struct {
		name    string
		m       Telemetry
		advance time.Duration
		dup     bool
		kind    twin.Kind
	}{
		{name: "first", m: Telemetry{TwinID: "r1", MessageID: "a"}},
		{name: "again", m: Telemetry{TwinID: "r1", MessageID: "a"}, dup: true},
		{name: "again from the component", m: Telemetry{TwinID: "r1", Component: "therm", MessageID: "a"}, dup: true},
		{name: "another twin", m: Telemetry{TwinID: "r2", MessageID: "a"}},
		{name: "another id", m: Telemetry{TwinID: "r1", MessageID: "b"}},
		{name: "back around a loop", m: Telemetry{TwinID: "r1", MessageID: "a", Hops: 1}},
		{name: "back around the loop again, redelivered", m: Telemetry{TwinID: "r1", MessageID: "a", Hops: 1}, dup: true},
		{name: "a missing twin records nothing", m: Telemetry{TwinID: "r3", MessageID: "c"}, kind: twin.KindTwinNotFound},
		{name: "within the window", m: Telemetry{TwinID: "r1", MessageID: "a"}, advance: 59 * time.Second, dup: true},
		{name: "after the window", m: Telemetry{TwinID: "r1", MessageID: "a"}, advance: time.Minute},
		{name: "remembered anew", m: Telemetry{TwinID: "r1", MessageID: "a"}, dup: true},
	} {
		now = now.Add(tc.advance)
		tc.m.Body = []byte(`{"n":1}`)
		dup, err := g.SendTelemetry(ctx, tc.m, trace)
		if tc.kind != 0 {
			wantErr(t, err, tc.kind, "")
			e.noEvents()
			continue
		}
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		evs := e.events()
		if dup != tc.dup || len(evs) != map[bool]int{true: 0, false: 1}[tc.dup] {
			t.Errorf("%s: duplicate %v with %d events, want duplicate %v", tc.name, dup, len(evs), tc.dup)
		}
	}
	if _, err := New(Config{TelemetryDedupWindow: -time.Second}, st, nil); err == nil {
		t.Error("New with a negative window succeeded")
	}
}
