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
	Hops: 2, Data: json.RawMessage(`{"temperature":21.5}`),
}

func TestAttributes(t *testing.T) {
	want := []Attribute{
		{"id", "m-1"}, {"source", "tf.local/digitaltwins/t1"}, {"specversion", "1.0"},
		{"type", "microsoft.iot.telemetry"}, {"subject", "comp1"}, {"dataschema", "dtmi:example:T;1"},
		{"traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"},
		{"tracestate", "rojo=00f067aa0ba902b7"}, {"telemetrySourceTime", "2026-01-01T12:00:00.5Z"},
		{"twinflowhops", "2"},
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
	const want = `{"id":"m-1","source":"tf.local/digitaltwins/t1","specversion":"1.0","type":"microsoft.iot.telemetry","subject":"comp1","datacontenttype":"application/json","dataschema":"dtmi:example:T;1","traceparent":"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01","tracestate":"rojo=00f067aa0ba902b7","telemetrySourceTime":"2026-01-01T12:00:00.5Z","twinflowhops":2,"data":{"temperature":21.5}}`
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

func TestParseHops(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int
		ok   bool
	}{
		{"0", 0, true},
		{"7", 7, true},
		{" 8 ", 8, true},
		{"1048576", MaxHops, true},
		{"1048577", 0, false},
		{"-1", 0, false},
		{"", 0, false},
		{"1.5", 0, false},
		{"two", 0, false},
		{"99999999999999999999999", 0, false},
	} {
		if got, ok := ParseHops(tc.in); got != tc.want || ok != tc.ok {
			t.Errorf("ParseHops(%q) = %d, %v; want %d, %v", tc.in, got, ok, tc.want, tc.ok)
		}
	}
}

func TestHops(t *testing.T) {
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    int
	}{
		{"none", nil, 0},
		{"unrelated", map[string]string{"content-type": "application/json", "hops": "3"}, 0},
		{"webhook header", map[string]string{"twinflow-hops": "3"}, 3},
		{"webhook header as Go writes it", map[string]string{"Twinflow-Hops": "4"}, 4},
		{"HTTP and NATS binary mode", map[string]string{"ce-twinflowhops": "5"}, 5},
		{"Kafka binary mode", map[string]string{"ce_twinflowhops": "6"}, 6},
		{"AMQP application property", map[string]string{"cloudEvents:twinflowhops": "7"}, 7},
		{"MQTT 5 user property", map[string]string{"twinflowhops": "1"}, 1},
		{"the largest of several", map[string]string{"twinflow-hops": "2", "ce-twinflowhops": "3"}, 3},
		{"invalid values are ignored", map[string]string{"twinflow-hops": "x", "ce-twinflowhops": "-4"}, 0},
	} {
		if got := Hops(tc.headers); got != tc.want {
			t.Errorf("%s: Hops(%v) = %d, want %d", tc.name, tc.headers, got, tc.want)
		}
	}
}

func TestStructuredHops(t *testing.T) {
	for _, tc := range []struct {
		body string
		want int
	}{
		{`{"specversion":"1.0","id":"1","twinflowhops":3,"data":{}}`, 3},
		{` {"twinflowhops":"4","specversion":"1.0"}`, 4},
		{`{"id":"1","twinflowhops":3}`, 0},              // not a CloudEvent
		{`{"specversion":"1.0","twinflowhops":-3}`, 0},  // not a hop count
		{`{"specversion":"1.0","data":{"t":21}}`, 0},    // none
		{`[{"specversion":"1.0","twinflowhops":3}]`, 0}, // a batch is not one event
		{`{"specversion":"1.0","twinflowhops":3`, 0},    // not JSON
		{`plain text "twinflowhops"`, 0},
	} {
		if got := StructuredHops([]byte(tc.body)); got != tc.want {
			t.Errorf("StructuredHops(%s) = %d, want %d", tc.body, got, tc.want)
		}
	}
}
