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

// Cause is what led to the changes of PrepareChanges: the message's trace context and its
// place in a chain of propagation.
type Cause struct {
	// Trace is the message's W3C trace context (its traceparent and tracestate headers). The
	// events the changes emit carry it as it is; when its Parent is empty or malformed they
	// start a new trace.
	Trace Trace
	// Depth is the propagation depth of the events the changes emit (event.Event.Depth): 0 for
	// a message from a source, n+1 for a change log event of depth n.
	Depth int
	// Hops is the hop count of the events the changes emit (event.Event.Hops): the message's.
	Hops int
}

// Applied is what one Prepared.Commit wrote. After the Update that ran it
// committed, pass it to Service.Committed.
type Applied struct {
	twins []store.Twin
}

// Committed tells the service that the Update that wrote a were committed, so that the twins
// it wrote are prepared from memory by the next writes.
func (s *Service) Committed(a Applied) {
	for _, t := range a.twins {
		s.cache.put(t)
	}
}

// CachedTwin returns twin id as the service last wrote it, if it still holds it in memory. It
// is a hint that may be stale (see twinCache): changes prepared from it are checked when they
// commit (Prepared.Commit).
func (s *Service) CachedTwin(id string) (store.Twin, bool) {
	return s.cache.get(id)
}

// TwinSource reads the twins PrepareChanges starts from: twin id, and false when there is none.
type TwinSource func(id string) (store.Twin, bool, error)

// Prepared is the changes of one message, validated against the twins they start from and
// ready to be committed.
type Prepared struct {
	// bases are the twins the changes start from: their ETags, "" for a twin that was
	// missing.
	bases   map[string]string
	writes  []ingestWrite
	created int
	limit   int
	// twins are the twins the changes leave, in the order they were first changed.
	twins []store.Twin
}

// ingestWrite is one change's put, when put.ID is set, and its event.
type ingestWrite struct {
	put store.Twin
	ev  event.Event
}

// PrepareChanges validates the changes one message causes against the twins read gives, and
// prepares their writes and events as the API prepares the same changes:
//
//   - a twin missing when the change names CreateModel is created first as a PUT of a twin of
//     that model with no properties (and each component empty) creates it: Twin.Create;
//   - Patch is applied as a twin PATCH is, except that add creates the objects missing along
//     its path (twin.Schema.CreateParents): Twin.Update with the patch;
//   - Telemetry is sent as POST .../telemetry sends it, with a new id: a telemetry event.
//
// Changes see the effects of the changes before them. An error of kind twin.Error (the twin
// or its model is missing, the patch does not apply, a value breaks the model or a limit) is
// the message's fault; any other error is read's. PrepareChanges writes nothing, and needs
// no store writer: it may run outside the store's writer, on twins from CachedTwin or a
// snapshot, for Commit to check them, or inside the Update that commits, reading its Writer.
func (s *Service) PrepareChanges(read TwinSource, changes []ingress.Change, c Cause) (*Prepared, error) {
	tr := c.Trace.resolve()
	ms := s.models.Load()
	now := twin.FormatTime(s.cfg.Now())
	p := &Prepared{bases: make(map[string]string, len(changes)), limit: s.cfg.Limits.Twins}
	current := make(map[string]*ingestedTwin, len(changes))
	change := func(put store.Twin, typ string, data []byte) {
		ev := s.newEvent(typ, put.ID, now, tr, data)
		ev.Depth, ev.Hops = c.Depth, c.Hops
		p.writes = append(p.writes, ingestWrite{put: put, ev: ev})
	}
	for i, ch := range changes {
		if ch.TwinID == "" {
			return nil, twin.InvalidArgument(fmt.Sprintf("Change %d names no twin.", i))
		}
		cur, ok := current[ch.TwinID]
		if !ok {
			t, found, err := read(ch.TwinID)
			if err != nil {
				return nil, fmt.Errorf("read twin %q: %w", ch.TwinID, err)
			}
			cur = &ingestedTwin{t: t, exists: found}
			if !found {
				cur.t = store.Twin{ID: ch.TwinID}
			}
			current[ch.TwinID] = cur
			p.bases[ch.TwinID] = cur.t.ETag
		}
		if !cur.exists {
			if ch.CreateModel == "" {
				return nil, twin.TwinNotFound(ch.TwinID)
			}
			t, err := s.emptyTwin(ms, ch.TwinID, ch.CreateModel, now)
			if err != nil {
				return nil, err
			}
			cur.t, cur.exists = t, true
			p.created++
			change(t, event.TwinCreate, t.Doc)
		}
		if len(ch.Patch) > 0 {
			_, patch, err := s.parsePatch(ch.Patch, "")
			if err != nil {
				return nil, err
			}
			if len(patch) > 0 {
				doc, err := twin.DecodeDocument(cur.t.Doc)
				if err != nil {
					return nil, fmt.Errorf("decode twin %q: %w", ch.TwinID, err)
				}
				next, data, err := s.applyPatch(ms, cur.t, doc, patch, now, true)
				if err != nil {
					return nil, err
				}
				cur.t = next
				change(next, event.TwinUpdate, data)
			}
		}
		if ch.Telemetry != nil {
			trimmed := bytes.TrimSpace(ch.Telemetry)
			if len(trimmed) == 0 || trimmed[0] != '{' || !json.Valid(trimmed) {
				return nil, twin.InvalidArgument(fmt.Sprintf("The telemetry of twin %s must be a JSON object.", ch.TwinID))
			}
			// Like the API's telemetry (see SendTelemetry): no subject and no time.
			p.writes = append(p.writes, ingestWrite{ev: event.Event{
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
				Hops:            c.Hops,
			}})
		}
	}
	for _, ch := range changes {
		if cur := current[ch.TwinID]; cur != nil && cur.exists {
			p.twins = append(p.twins, cur.t)
			delete(current, ch.TwinID)
		}
	}
	return p, nil
}

// Twins returns the twins the changes leave, in the order they were first changed.
func (p *Prepared) Twins() []store.Twin { return p.twins }

// Applied returns what Commit writes, for Service.Committed.
func (p *Prepared) Applied() Applied { return Applied{twins: p.twins} }

// Commit writes the prepared changes inside w. It fails with ErrStale, writing nothing, when a
// twin they start from is no longer as it was read (it changed, appeared or went), and with
// TwinLimitReached, the message's fault, when the twins they create would pass the limit.
// Any other error is w's.
func (p *Prepared) Commit(w store.Writer) error {
	for id, etag := range p.bases {
		cur, err := w.Twin(id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if etag != "" {
				return ErrStale
			}
		case err != nil:
			return fmt.Errorf("read twin %q: %w", id, err)
		case cur.ETag != etag:
			return ErrStale
		}
	}
	if p.created > 0 {
		n, err := w.CountTwins()
		if err != nil {
			return fmt.Errorf("count twins: %w", err)
		}
		if n+p.created > p.limit {
			return twin.TwinLimitReached(p.limit)
		}
	}
	// Each change's put goes with its event, so the change log tells each event's state
	// (store.Change).
	for _, wr := range p.writes {
		if wr.put.ID != "" {
			if err := w.PutTwin(wr.put); err != nil {
				return fmt.Errorf("put twin %q: %w", wr.put.ID, err)
			}
		}
		if err := w.Emit(wr.ev); err != nil {
			return err
		}
	}
	return nil
}

// ingestedTwin is a twin as the changes of one PrepareChanges leave it so far.
type ingestedTwin struct {
	t      store.Twin
	exists bool
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
