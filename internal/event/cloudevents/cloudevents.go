// Package cloudevents holds what the CloudEvents 1.0 protocol bindings share: the structured
// and batched JSON forms, and the context attributes that binary-mode bindings carry as
// headers or properties (HTTP "ce-", Kafka "ce_", AMQP "cloudEvents:", NATS "ce-", MQTT 5
// user properties). In every binary binding the datacontenttype attribute travels as the
// protocol's own content type and data as the message body, so Attributes leaves both out.
package cloudevents

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

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
// telemetrySourceTime, twinflowhops), leaving out empty ones (and a zero hop count),
// datacontenttype and data.
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
	out := make([]Attribute, 0, len(all)+1)
	for _, a := range all {
		if a.Value != "" {
			out = append(out, a)
		}
	}
	if e.Hops > 0 {
		out = append(out, Attribute{event.HopsAttribute, strconv.Itoa(e.Hops)})
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
	e.Hops, _ = ParseHops(get(event.HopsAttribute))
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

// MaxHops is the largest hop count ParseHops accepts; larger values are not hop counts
// twinflow wrote.
const MaxHops = 1 << 20

// ParseHops reads a hop count as the bindings write it: a decimal integer from 0 to MaxHops,
// with optional surrounding spaces. It reports false for anything else, empty included.
func ParseHops(v string) (int, bool) {
	n, err := strconv.Atoi(strings.TrimSpace(v))
	if err != nil || n < 0 || n > MaxHops {
		return 0, false
	}
	return n, true
}

// hopsNames are the lower-case header names that carry a hop count: the plain header of
// webhook requests, the attribute as MQTT 5 user properties carry it, and the attribute with
// each binary binding's prefix.
var hopsNames = [...]string{
	strings.ToLower(event.HopsHeader),
	event.HopsAttribute,
	"ce-" + event.HopsAttribute,
	"ce_" + event.HopsAttribute,
	"cloudevents:" + event.HopsAttribute, // AMQP's cloudEvents: prefix
}

// Hops returns the hop count a received message carries among its headers, under any of the
// names twinflow's encodings give it (see event.HopsHeader and event.HopsAttribute), compared
// without regard to case: the largest valid one, or 0 when there is none.
func Hops(headers map[string]string) int {
	hops := 0
	for name, v := range headers {
		for _, hn := range hopsNames {
			if len(name) == len(hn) && strings.EqualFold(name, hn) {
				if n, ok := ParseHops(v); ok {
					hops = max(hops, n)
				}
			}
		}
	}
	return hops
}

// StructuredHops returns the hop count of a structured-mode CloudEvent body: the
// twinflowhops member (a number, or a string as binary bindings write it) of a JSON object
// that has a specversion, or 0 when body is no such event or has none. Bodies that do not
// mention the attribute are not decoded.
func StructuredHops(body []byte) int {
	b := bytes.TrimSpace(body)
	if len(b) == 0 || b[0] != '{' || !bytes.Contains(b, []byte(`"`+event.HopsAttribute+`"`)) {
		return 0
	}
	var v struct {
		SpecVersion string          `json:"specversion"`
		Hops        json.RawMessage `json:"twinflowhops"`
	}
	if json.Unmarshal(b, &v) != nil || v.SpecVersion == "" {
		return 0
	}
	raw := string(v.Hops)
	if s, err := strconv.Unquote(raw); err == nil {
		raw = s
	}
	n, _ := ParseHops(raw)
	return n
}
