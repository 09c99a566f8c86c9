package cloudevents

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/event"
)

var telemetry = event.Event{
	ID: "m-1", Source: "tf.local/digitaltwins/t1", SpecVersion: "1.0", Type: event.Telemetry,
	Subject: "comp1", DataContentType: "application/json", DataSchema: "dtmi:example:T;1",
	TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	TraceState:  "rojo=00f067aa0ba902b7", TelemetrySourceTime: "2026-01-01T12:00:00.5Z",
	Data: json.RawMessage(`{"temperature":21.5}`),
}

func TestAttributes(t *testing.T) {
	want := []Attribute{
		{"id", "m-1"}, {"source", "tf.local/digitaltwins/t1"}, {"specversion", "1.0"},
		{"type", "microsoft.iot.telemetry"}, {"subject", "comp1"}, {"dataschema", "dtmi:example:T;1"},
		{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		{"tracestate", "rojo=00f067aa0ba902b7"}, {"telemetrySourceTime", "2026-01-01T12:00:00.5Z"},
	}
	if got := Attributes(&telemetry); !reflect.DeepEqual(got, want) {
		t.Errorf("Attributes = %v, want %v", got, want)
	}
	minimal := event.Event{ID: "1", Source: "s", SpecVersion: "1.0", Type: "t", Time: "2026-01-01T00:00:00Z"}
	want = []Attribute{{"id", "1"}, {"source", "s"}, {"specversion", "1.0"}, {"type", "t"}, {"time", "2026-01-01T00:00:00Z"}}
	if got := Attributes(&minimal); !reflect.DeepEqual(got, want) {
		t.Errorf("Attributes = %v, want %v", got, want)
	}
}

func TestFromAttributesRoundTrip(t *testing.T) {
	m := map[string]string{}
	for _, a := range Attributes(&telemetry) {
		m[a.Name] = a.Value
	}
	got, err := FromAttributes(func(n string) string { return m[n] }, telemetry.DataContentType, telemetry.Data)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, telemetry) {
		t.Errorf("round trip = %+v, want %+v", got, telemetry)
	}
	delete(m, "source")
	if _, err := FromAttributes(func(n string) string { return m[n] }, "", nil); err == nil || !strings.Contains(err.Error(), "missing a required attribute") {
		t.Errorf("FromAttributes without source = %v", err)
	}
}

func TestStructuredAndBatch(t *testing.T) {
	const want = `{"id":"m-1","source":"tf.local/digitaltwins/t1","specversion":"1.0","type":"microsoft.iot.telemetry","subject":"comp1","datacontenttype":"application/json","dataschema":"dtmi:example:T;1","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"rojo=00f067aa0ba902b7","telemetrySourceTime":"2026-01-01T12:00:00.5Z","data":{"temperature":21.5}}`
	got, err := Structured(&telemetry)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Errorf("Structured =\n%s\nwant\n%s", got, want)
	}
	batch, err := Batch([]event.Event{telemetry, telemetry})
	if err != nil {
		t.Fatal(err)
	}
	if string(batch) != "["+want+","+want+"]" {
		t.Errorf("Batch = %s", batch)
	}
	bad := telemetry
	bad.Data = json.RawMessage(`{not json`)
	if _, err := Structured(&bad); err == nil {
		t.Error("Structured with invalid JSON data succeeded")
	}
}
