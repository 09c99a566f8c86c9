package ingress

import (
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/event"
)

// EventsSource is the name of the source whose messages are twinflow's own change events;
// mappings name it to propagate changes through the graph.
const EventsSource = "$events"

// EventMessage returns the message a mapping whose source is EventsSource sees for one of
// twinflow's change events:
//
//   - message.body is the event's data: for Twin.Update {"modelId": ..., "patch": [...]},
//     for Twin.Create and Twin.Delete the twin, for relationship events the relationship,
//     for telemetry the telemetry payload;
//   - message.headers holds the CloudEvents attributes type, subject, id, source and time
//     (always present, empty when the event has none): message.headers.type is
//     "Microsoft.DigitalTwins.Twin.Update", message.headers.subject the twin's id (for
//     relationship events "<source twin>/relationships/<id>"; for telemetry the component,
//     or empty, and the twin's id ends the source, "<service>/digitaltwins/<id>");
//   - message.topic is "$events", message.key is empty, message.time the event's time (now for an event without one, such
//     as telemetry).
//
// The message's ID is the event's id, and its Order the id of the twin the event is about,
// so that the events of one twin are mapped in order.
func EventMessage(e event.Event) Message {
	at, err := time.Parse(time.RFC3339Nano, e.Time)
	if err != nil {
		at = time.Now()
	}
	order, _, _ := strings.Cut(e.Subject, "/relationships/")
	if e.Type == event.Telemetry {
		_, order, _ = strings.Cut(e.Source, "/digitaltwins/")
	}
	return Message{
		ID:    e.ID,
		Topic: EventsSource,
		Headers: map[string]string{
			"type": e.Type, "subject": e.Subject, "id": e.ID, "source": e.Source, "time": e.Time,
		},
		Body:  e.Data,
		Time:  at,
		Order: order,
	}
}
