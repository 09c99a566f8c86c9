package webhook

import (
	"encoding/json"
	"fmt"

	"github.com/twinflow/twinflow/internal/event"
)

// gridEvent is one event in the Event Grid event schema, as ADT sends it to an Event Grid
// topic: the CloudEvents payload is nested under data.data.
type gridEvent struct {
	ID              string   `json:"id"`
	Subject         string   `json:"subject"`
	Data            gridData `json:"data"`
	EventType       string   `json:"eventType"`
	DataVersion     string   `json:"dataVersion"`
	MetadataVersion string   `json:"metadataVersion"`
	EventTime       string   `json:"eventTime"`
	Topic           string   `json:"topic,omitempty"`
}

// gridData is the data of an Event Grid schema event: the event's data, and its content type,
// data schema and extension attributes, which ADT adds as properties of this object.
type gridData struct {
	Data                json.RawMessage `json:"data,omitempty"`
	ContentType         string          `json:"contenttype,omitempty"`
	TraceParent         string          `json:"traceparent,omitempty"`
	TraceState          string          `json:"tracestate,omitempty"`
	TelemetrySourceTime string          `json:"telemetrySourceTime,omitempty"`
	DataSchema          string          `json:"dataschema,omitempty"`
}

// zeroTime is the eventTime ADT writes for events without a time (telemetry).
const zeroTime = "0001-01-01T00:00:00Z"

// eventGridBatch encodes events as a JSON array of Event Grid schema events, with topic as
// their topic, or each event's source if topic is empty, or none if omitTopic.
func eventGridBatch(events []event.Event, topic string, omitTopic bool) ([]byte, error) {
	out := make([]gridEvent, len(events))
	for i := range events {
		e := &events[i]
		t := e.Time
		if t == "" {
			t = zeroTime
		}
		tp := topic
		if tp == "" && !omitTopic {
			tp = e.Source
		}
		out[i] = gridEvent{
			ID: e.ID, Subject: e.Subject, EventType: e.Type, DataVersion: "1.0", MetadataVersion: "1",
			EventTime: t, Topic: tp,
			Data: gridData{Data: e.Data, ContentType: e.DataContentType, TraceParent: e.TraceParent,
				TraceState: e.TraceState, TelemetrySourceTime: e.TelemetrySourceTime, DataSchema: e.DataSchema},
		}
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("encode Event Grid batch: %w", err)
	}
	return b, nil
}
