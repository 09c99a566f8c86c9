// Package cloudevents holds what the CloudEvents 1.0 protocol bindings share: the structured
// and batched JSON forms, and the context attributes that binary-mode bindings carry as
// headers or properties (HTTP "ce-", Kafka "ce_", AMQP "cloudEvents:", NATS "ce-", MQTT 5
// user properties). In every binary binding the datacontenttype attribute travels as the
// protocol's own content type and data as the message body, so Attributes leaves both out.
package cloudevents

import (
	"encoding/json"
	"fmt"

	"github.com/twinflow/twinflow/internal/event"
)

// Media types of the structured and batched JSON forms.
const (
	StructuredContentType = "application/cloudevents+json; charset=utf-8"
	BatchContentType      = "application/cloudevents-batch+json; charset=utf-8"
)

// Attribute is one context attribute by its CloudEvents name.
type Attribute struct {
	Name, Value string
}

// Attributes returns e's context and extension attributes in a fixed order (id, source,
// specversion, type, subject, time, dataschema, traceparent, tracestate,
// telemetrySourceTime), leaving out empty ones, datacontenttype and data.
func Attributes(e *event.Event) []Attribute {
	all := [...]Attribute{
		{"id", e.ID},
		{"source", e.Source},
		{"specversion", e.SpecVersion},
		{"type", e.Type},
		{"subject", e.Subject},
		{"time", e.Time},
		{"dataschema", e.DataSchema},
		{"traceparent", e.TraceParent},
		{"tracestate", e.TraceState},
		{"telemetrySourceTime", e.TelemetrySourceTime},
	}
	out := make([]Attribute, 0, len(all))
	for _, a := range all {
		if a.Value != "" {
			out = append(out, a)
		}
	}
	return out
}

// FromAttributes rebuilds an event from a binary-mode message: get returns the value of the
// attribute of that name ("" if absent), contentType is the protocol's content type and data
// the body. It fails when a required attribute (id, source, specversion, type) is missing.
func FromAttributes(get func(name string) string, contentType string, data []byte) (event.Event, error) {
	e := event.Event{
		ID:          get("id"),
		Source:      get("source"),
		SpecVersion: get("specversion"),
		Type:        get("type"),
		Subject:     get("subject"),
		Time:        get("time"),
		DataSchema:  get("dataschema"),
		TraceParent: get("traceparent"),
		TraceState:  get("tracestate"),
		// The name as Attributes writes it; HTTP header lookups ignore case anyway.
		TelemetrySourceTime: get("telemetrySourceTime"),
		DataContentType:     contentType,
	}
	if len(data) > 0 {
		e.Data = json.RawMessage(data)
	}
	if e.ID == "" || e.Source == "" || e.SpecVersion == "" || e.Type == "" {
		return event.Event{}, fmt.Errorf("decode binary-mode CloudEvent: missing a required attribute (id %q, source %q, specversion %q, type %q)", e.ID, e.Source, e.SpecVersion, e.Type)
	}
	return e, nil
}

// Structured returns e in the structured JSON form. Data is embedded as JSON, so it must be
// valid JSON.
func Structured(e *event.Event) ([]byte, error) {
	b, err := json.Marshal(e)
	if err != nil {
		return nil, fmt.Errorf("encode CloudEvent %q: %w", e.ID, err)
	}
	return b, nil
}

// Batch returns events as a JSON array of structured events, the batched form.
func Batch(events []event.Event) ([]byte, error) {
	b, err := json.Marshal(events)
	if err != nil {
		return nil, fmt.Errorf("encode CloudEvents batch: %w", err)
	}
	return b, nil
}
