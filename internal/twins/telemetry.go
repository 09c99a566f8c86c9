package twins

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// SendTelemetry emits a telemetry event from twin id, or from its component when component is
// not empty. messageID (the Message-Id header) is required and becomes the event id; body must
// be a JSON object and is the event data as sent (it need not match the model, as in ADT). The
// event's source is "<ServiceID>/digitaltwins/<id>", its dataschema the model id of the twin or
// of the component's schema, its subject the component name; it has no time. sourceTime (the
// Telemetry-Source-Time header) must be an RFC 3339 date-time when given; the event carries it
// as written, in its telemetrySourceTime extension attribute, as ADT's do.
func (s *Service) SendTelemetry(ctx context.Context, id, component, messageID, sourceTime string, body []byte, tr Trace) error {
	if messageID == "" {
		return twin.InvalidArgument("The Message-Id header is required to send telemetry.")
	}
	if sourceTime != "" {
		if _, err := time.Parse(time.RFC3339Nano, sourceTime); err != nil {
			return twin.InvalidArgument("The Telemetry-Source-Time header must be an RFC 3339 date-time.")
		}
	}
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return twin.InvalidArgument("The telemetry payload must be a JSON object.")
	}
	tr = tr.resolve()
	ev := event.Event{
		ID:              messageID,
		Source:          s.cfg.ServiceID + "/digitaltwins/" + id,
		SpecVersion:     event.SpecVersion,
		Type:            event.Telemetry,
		Subject:         component,
		DataContentType: "application/json",
		TraceParent:     tr.Parent,
		TraceState:      tr.State,
		// ADT's attribute name: see event.Event.
		TelemetrySourceTime: sourceTime,
		Data:                trimmed,
	}
	return s.st.Update(ctx, func(w store.Writer) error {
		t, err := readTwin(w, id)
		if err != nil {
			return err
		}
		ev.DataSchema = t.ModelID
		if component != "" {
			iface, err := s.models.Load().iface(t.ModelID)
			if err != nil {
				return err
			}
			c, ok := iface.Components[component]
			if !ok {
				return twin.ComponentNotFound(id, component)
			}
			ev.DataSchema = c.Schema.ID
		}
		return w.Emit(ev)
	})
}
