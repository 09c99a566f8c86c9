// Package event defines the CloudEvents 1.0 shape of the events twinflow emits and the event
// types it knows. It is pure data: encodings for each protocol live with their connectors.
package event

import "encoding/json"

// The event types twinflow emits, as ADT names them.
const (
	TwinCreate         = "Microsoft.DigitalTwins.Twin.Create"
	TwinUpdate         = "Microsoft.DigitalTwins.Twin.Update"
	TwinDelete         = "Microsoft.DigitalTwins.Twin.Delete"
	RelationshipCreate = "Microsoft.DigitalTwins.Relationship.Create"
	RelationshipUpdate = "Microsoft.DigitalTwins.Relationship.Update"
	RelationshipDelete = "Microsoft.DigitalTwins.Relationship.Delete"
	Telemetry          = "microsoft.iot.telemetry"
)

// Anomaly is the type of twinflow's own event for a point an anomaly detector found anomalous
// (package detector documents its data).
const Anomaly = "Twinflow.Anomaly"

// SpecVersion is the CloudEvents specification version of every event.
const SpecVersion = "1.0"

// HopsAttribute is the name of the CloudEvents extension attribute that carries Event.Hops.
// CloudEvents attribute names are lower-case letters and digits, so it has no separator; the
// binary bindings prefix it as they prefix every attribute (ce-twinflowhops over HTTP and
// NATS, ce_twinflowhops over Kafka, cloudEvents:twinflowhops over AMQP).
const HopsAttribute = "twinflowhops"

// HopsHeader is the plain HTTP header that also carries Event.Hops on every request a webhook
// endpoint makes, whatever its mode, for receivers that do not read CloudEvents attributes.
const HopsHeader = "Twinflow-Hops"

// RelationshipSubject returns the subject of the events about relationship id of twin
// sourceID: "<sourceID>/relationships/<id>", as ADT writes it.
func RelationshipSubject(sourceID, id string) string {
	return sourceID + "/relationships/" + id
}

// Event is one CloudEvents 1.0 event. Empty optional attributes are left out of its JSON form.
// Data holds the event's JSON payload verbatim.
//
// Besides the context attributes of the specification it carries the extension attributes
// ADT's events carry: traceparent and tracestate (the CloudEvents distributed tracing
// extension) and, on telemetry, telemetrySourceTime; and twinflow's own twinflowhops (see
// Hops). Every encoding carries them all.
type Event struct {
	ID          string `json:"id"`
	Source      string `json:"source"`
	SpecVersion string `json:"specversion"`
	Type        string `json:"type"`
	Subject     string `json:"subject,omitempty"`
	// Time is the RFC 3339 time of the operation, formatted by the producer (ADT writes seven
	// fractional digits and Z).
	Time            string `json:"time,omitempty"`
	DataContentType string `json:"datacontenttype,omitempty"`
	DataSchema      string `json:"dataschema,omitempty"`
	// TraceParent and TraceState are the W3C trace context of the operation that caused the
	// event.
	TraceParent string `json:"traceparent,omitempty"`
	TraceState  string `json:"tracestate,omitempty"`
	// TelemetrySourceTime is the RFC 3339 time a telemetry message was measured, as its
	// sender wrote it in the Telemetry-Source-Time header. ADT names the attribute in camel
	// case, although CloudEvents asks for lower-case names; bindings whose names are case
	// insensitive (HTTP headers) may deliver it as telemetrysourcetime.
	TelemetrySourceTime string `json:"telemetrySourceTime,omitempty"`
	// Hops counts the times the chain of messages that caused the event left twinflow
	// through an endpoint and came back in, through the telemetry API or a source: 0 for an
	// event an outside request or message caused. The relay of an endpoint sends an event
	// with Hops+1, in the extension attribute twinflowhops (HopsAttribute), and dead-letters
	// it instead once that passes its limit, so a route that feeds itself, directly or
	// through other systems that carry the attribute on, ends in a dead letter.
	Hops int             `json:"twinflowhops,omitempty"`
	Data json.RawMessage `json:"data,omitempty"`
	// Depth counts the propagation steps that led to the event: 0 for a change made through
	// the API or by a source's message, n+1 for a change a mapping of the change log ($events)
	// made because of an event of depth n. It bounds propagation chains and cycles. It is not
	// a CloudEvents attribute: the change log keeps it beside the event, and encodings leave
	// it out.
	Depth int `json:"-"`
}

// Record is an event as the change log holds it: Seq numbers records from 1 in commit order,
// without gaps.
type Record struct {
	Seq   uint64
	Event Event
}
