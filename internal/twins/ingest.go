package twins

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/uuid"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// Cause is what led to the changes of ApplyChanges: the message's trace context and its
// place in a chain of propagation.
type Cause struct {
	// Trace is the message's W3C trace context (its traceparent and tracestate headers). The
	// events the changes emit carry it as it is; when its Parent is empty or malformed they
	// start a new trace.
	Trace Trace
	// Depth is the propagation depth of the events the changes emit (event.Event.Depth): 0 for
	// a message from a source, n+1 for a change log event of depth n.
	Depth int
}

// Applied is what one ApplyChanges wrote. After the Update that ran it committed, pass it to
// Service.Committed.
type Applied struct {
	twins []store.Twin
}

// Committed tells the service that the Update that ran ApplyChanges committed, so that the
// twins it wrote are prepared from memory by the next API writes.
func (s *Service) Committed(a Applied) {
	for _, t := range a.twins {
		s.cache.put(t)
	}
}

// ingestedTwin is a twin as the changes of one ApplyChanges leave it so far.
type ingestedTwin struct {
	t      store.Twin
	exists bool
}

// ApplyChanges applies the changes one message causes, in order, inside w, an Update the
// caller runs (so that the message's de-duplication record, or its dead letter, commits with
// them). Each change is validated and recorded as the API validates and records the same
// change:
//
//   - a twin missing when the change names CreateModel is created first as a PUT of a twin of
//     that model with no properties (and each component empty) creates it: Twin.Create;
//   - Patch is applied as a twin PATCH is, except that add creates the objects missing along
//     its path (twin.Schema.CreateParents): Twin.Update with the patch;
//   - Telemetry is sent as POST .../telemetry sends it, with a new id: a telemetry event.
//
// Changes see the effects of the changes before them. Every error is returned before
// anything is written, so w holds either all of the changes or none. An error of kind
// twin.Error (the twin or its model is missing, the patch does not apply, a value breaks the
// model or a limit) is the message's fault; any other error is the store's.
func (s *Service) ApplyChanges(w store.Writer, changes []ingress.Change, c Cause) (Applied, error) {
	tr := c.Trace.resolve()
	ms := s.models.Load()
	now := twin.FormatTime(s.cfg.Now())
	twins := make(map[string]*ingestedTwin, len(changes))
	// write is one change's put, when put.ID is set, and its event.
	type write struct {
		put store.Twin
		ev  event.Event
	}
	var writes []write
	created := 0
	change := func(put store.Twin, typ string, data []byte) {
		ev := s.newEvent(typ, put.ID, now, tr, data)
		ev.Depth = c.Depth
		writes = append(writes, write{put: put, ev: ev})
	}
	for i, ch := range changes {
		if ch.TwinID == "" {
			return Applied{}, twin.InvalidArgument(fmt.Sprintf("Change %d names no twin.", i))
		}
		cur, ok := twins[ch.TwinID]
		if !ok {
			t, err := w.Twin(ch.TwinID)
			switch {
			case errors.Is(err, store.ErrNotFound):
				cur = &ingestedTwin{t: store.Twin{ID: ch.TwinID}}
			case err != nil:
				return Applied{}, fmt.Errorf("read twin %q: %w", ch.TwinID, err)
			default:
				cur = &ingestedTwin{t: t, exists: true}
			}
			twins[ch.TwinID] = cur
		}
		if !cur.exists {
			if ch.CreateModel == "" {
				return Applied{}, twin.TwinNotFound(ch.TwinID)
			}
			t, err := s.emptyTwin(ms, ch.TwinID, ch.CreateModel, now)
			if err != nil {
				return Applied{}, err
			}
			cur.t, cur.exists = t, true
			created++
			change(t, event.TwinCreate, t.Doc)
		}
		if len(ch.Patch) > 0 {
			_, p, err := s.parsePatch(ch.Patch, "")
			if err != nil {
				return Applied{}, err
			}
			if len(p) > 0 {
				doc, err := twin.DecodeDocument(cur.t.Doc)
				if err != nil {
					return Applied{}, fmt.Errorf("decode twin %q: %w", ch.TwinID, err)
				}
				next, data, err := s.applyPatch(ms, cur.t, doc, p, now, true)
				if err != nil {
					return Applied{}, err
				}
				cur.t = next
				change(next, event.TwinUpdate, data)
			}
		}
		if ch.Telemetry != nil {
			trimmed := bytes.TrimSpace(ch.Telemetry)
			if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
				return Applied{}, twin.InvalidArgument(fmt.Sprintf("The telemetry of twin %s must be a JSON object.", ch.TwinID))
			}
			// Like the API's telemetry (see SendTelemetry): no subject and no time.
			writes = append(writes, write{ev: event.Event{
				ID:              uuid.NewString(),
				Source:          s.cfg.ServiceID + "/digitaltwins/" + ch.TwinID,
				SpecVersion:     event.SpecVersion,
				Type:            event.Telemetry,
				DataContentType: "application/json",
				DataSchema:      cur.t.ModelID,
				TraceParent:     tr.Parent,
				TraceState:      tr.State,
				Data:            trimmed,
				Depth:           c.Depth,
			}})
		}
	}
	if created > 0 {
		n, err := w.CountTwins()
		if err != nil {
			return Applied{}, fmt.Errorf("count twins: %w", err)
		}
		if n+created > s.cfg.Limits.Twins {
			return Applied{}, twin.TwinLimitReached(s.cfg.Limits.Twins)
		}
	}

	// Everything is checked: write. Each change's put goes with its event, so the change log
	// tells each event's state (store.Change).
	var applied Applied
	for _, wr := range writes {
		if wr.put.ID != "" {
			if err := w.PutTwin(wr.put); err != nil {
				return Applied{}, fmt.Errorf("put twin %q: %w", wr.put.ID, err)
			}
		}
		if err := w.Emit(wr.ev); err != nil {
			return Applied{}, err
		}
	}
	for _, t := range twins {
		if t.exists {
			applied.twins = append(applied.twins, t.t)
		}
	}
	return applied, nil
}

// emptyTwin returns twin id of model as a PUT of it with no properties (and each component
// of the model empty) creates it, validated the same way.
func (s *Service) emptyTwin(ms *modelState, id, model, now string) (store.Twin, error) {
	body := map[string]any{twin.KeyMetadata: map[string]any{twin.KeyModel: model}}
	if iface, ok := ms.set.Interface(model); ok {
		for name := range iface.Components {
			body[name] = map[string]any{}
		}
	}
	nt, err := s.newTwin(id, body, now)
	return nt.twin, err
}
