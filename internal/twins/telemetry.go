package twins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// TelemetrySource is the source name under which SendTelemetry records message ids for
// de-duplication, beside the ingress sources' (whose names cannot start with '$').
const TelemetrySource = "$telemetry"

// Telemetry is one telemetry message, as POST /digitaltwins/{id}/telemetry sends it.
type Telemetry struct {
	// TwinID is the twin that sends it; Component, when not empty, the component of the twin.
	TwinID, Component string
	// MessageID is the Message-Id header: required, unique within the twin, the event's id.
	MessageID string
	// SourceTime is the Telemetry-Source-Time header: empty, or an RFC 3339 date-time.
	SourceTime string
	// Body is the payload: a JSON object, which need not match the model (as in ADT).
	Body []byte
	// Hops is the hop count the request carried (see event.Event.Hops): 0 unless it came
	// from one of twinflow's own endpoints.
	Hops int
}

// SendTelemetry emits a telemetry event from twin m.TwinID, or from its component. The event's
// id is the message id, its source "<ServiceID>/digitaltwins/<id>", its dataschema the model
// id of the twin or of the component's schema, its subject the component name; it has no
// time. It carries m.SourceTime as written, in its telemetrySourceTime extension attribute,
// as ADT's do, and m.Hops.
//
// With Config.TelemetryDedupWindow set, the message id is recorded for the twin (with the hop
// count, see ingress.DedupID) in the same transaction as the event: a message whose id the
// twin sent within the window is a duplicate, which SendTelemetry reports with true, emitting
// nothing.
func (s *Service) SendTelemetry(ctx context.Context, m Telemetry, tr Trace) (duplicate bool, err error) {
	if m.MessageID == "" {
		return false, twin.InvalidArgument("The Message-Id header is required to send telemetry.")
	}
	if m.SourceTime != "" {
		if _, err := time.Parse(time.RFC3339Nano, m.SourceTime); err != nil {
			return false, twin.InvalidArgument("The Telemetry-Source-Time header must be an RFC 3339 date-time.")
		}
	}
	trimmed := bytes.TrimSpace(m.Body)
	if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
		return false, twin.InvalidArgument("The telemetry payload must be a JSON object.")
	}
	tr = tr.resolve()
	ev := event.Event{
		ID:              m.MessageID,
		Source:          s.cfg.ServiceID + "/digitaltwins/" + m.TwinID,
		SpecVersion:     event.SpecVersion,
		Type:            event.Telemetry,
		Subject:         m.Component,
		DataContentType: "application/json",
		TraceParent:     tr.Parent,
		TraceState:      tr.State,
		// ADT's attribute name: see event.Event.
		TelemetrySourceTime: m.SourceTime,
		Hops:                m.Hops,
		Data:                trimmed,
	}
	// emit emits the event of twin t.
	emit := func(w store.Writer, t store.Twin) error {
		ev.DataSchema = t.ModelID
		if m.Component != "" {
			iface, err := s.models.Load().iface(t.ModelID)
			if err != nil {
				return err
			}
			c, ok := iface.Components[m.Component]
			if !ok {
				return twin.ComponentNotFound(m.TwinID, m.Component)
			}
			ev.DataSchema = c.Schema.ID
		}
		return w.Emit(ev)
	}
	if s.dedup == nil {
		return false, s.st.Update(ctx, func(w store.Writer) error {
			t, err := readTwin(w, m.TwinID)
			if err != nil {
				return err
			}
			return emit(w, t)
		})
	}
	err = s.dedup.UpdateIngress(ctx, func(w store.IngressWriter) error {
		duplicate = false
		t, err := readTwin(w, m.TwinID)
		if err != nil {
			return err
		}
		now := s.cfg.Now()
		err = w.RecordMessage(store.MessageRecord{
			Source: TelemetrySource, ID: m.TwinID + "\n" + ingress.DedupID(m.MessageID, m.Hops),
			Time: now, Expires: now.Add(s.cfg.TelemetryDedupWindow),
		})
		if errors.Is(err, store.ErrDuplicate) {
			duplicate = true
			return nil
		}
		if err != nil {
			return err
		}
		return emit(w, t)
	})
	return duplicate, err
}
