package history

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// Options are the settings Derive follows.
type Options struct {
	// ServiceID, when set, is the ServiceId of every row; otherwise rows take their event's
	// source (the instance's host name), as ADT's do.
	ServiceID string
	// RecordRemovals records a property a change removed as a row with Action "delete"
	// (ADT's recordPropertyAndItemRemovals). Without it removals leave no row, as in ADT by
	// default, and history alone can no longer tell when a property stopped being set.
	RecordRemovals bool
	// RecordTelemetry records each telemetry message as a row of the telemetry table, at
	// the time Now returns. ADT records no telemetry.
	RecordTelemetry bool
	// Now is the clock of telemetry rows; nil means time.Now.
	Now func() time.Time
}

// Prior returns the newest row recorded for property key of twin id (of its relationship
// relationshipID when that is set), before the record being derived; ok is false when there
// is none. Derive asks for it only when the log no longer knows the state a change left (see
// store.Change): for the value a sub-property patch starts from, and for the sourceTime (or
// relationship target) a patched property keeps when the patch gives none.
type Prior func(id, relationshipID, key string) (row PropertyEvent, ok bool, err error)

// ErrUnknownValue is returned (wrapped) by Derive when a change patched part of a property
// whose previous value is neither known to the log nor recorded: the row for it cannot be
// written. Derive still appends the rows it could derive.
var ErrUnknownValue = errors.New("property value unknown")

// Derive appends to rows the history rows of one change log record:
//
//   - Twin.Create: a twin lifecycle row (Create) and a property row (update) for each
//     property and component the twin starts with, so history alone rebuilds every state.
//   - Twin.Update: a property row for each top-level property the patch touched (a property,
//     a sub-property, its sourceTime or a property of a component), holding the property's
//     whole new value; a removed property is a delete row when opts.RecordRemovals is set.
//     A model change alone writes no row; every row carries the new model.
//   - Twin.Delete: a twin lifecycle row (Delete).
//   - Relationship.Create, Relationship.Update, Relationship.Delete: as for twins, with
//     relationship lifecycle rows, and property rows keyed by the source twin with
//     RelationshipId and RelationshipTarget set.
//   - Telemetry: a telemetry row when opts.RecordTelemetry is set, else none.
//
// The new value of a patched property comes from the state the change left (ch.Known) or,
// when the log does not know it, from applying the patch to the value prior returns (a
// whole-property add or replace needs no prior value). Derive does no I/O besides prior.
// An event it cannot read is an error, and leaves rows as it was.
func Derive(ch store.Change, opts Options, prior Prior, rows *Rows) error {
	ev := &ch.Event
	switch ev.Type {
	case event.TwinCreate, event.TwinUpdate, event.TwinDelete,
		event.RelationshipCreate, event.RelationshipUpdate, event.RelationshipDelete:
	case event.Telemetry:
		if opts.RecordTelemetry {
			return telemetry(ch, opts, rows)
		}
		return nil
	case event.Anomaly:
		return anomaly(ch, opts, rows)
	default:
		return nil
	}
	ts, err := time.Parse(time.RFC3339Nano, ev.Time)
	if err != nil {
		return fmt.Errorf("derive rows of record %d: event time %q: %w", ch.Seq, ev.Time, err)
	}
	d := deriver{ch: ch, seq: ch.Seq, ts: ts, service: opts.ServiceID, opts: opts, prior: prior}
	if d.service == "" {
		d.service = ev.Source
	}
	n := len(rows.Properties)
	mark := [3]int{n, len(rows.Twins), len(rows.Relationships)}
	switch ev.Type {
	case event.TwinCreate:
		err = d.twinCreate(rows)
	case event.TwinDelete:
		err = d.twinDelete(rows)
	case event.TwinUpdate:
		err = d.twinUpdate(rows)
	case event.RelationshipCreate:
		err = d.relationshipCreate(rows)
	case event.RelationshipDelete:
		err = d.relationshipDelete(rows)
	case event.RelationshipUpdate:
		err = d.relationshipUpdate(rows)
	}
	if err != nil && !errors.Is(err, ErrUnknownValue) {
		rows.Properties, rows.Twins, rows.Relationships = rows.Properties[:mark[0]], rows.Twins[:mark[1]], rows.Relationships[:mark[2]]
	}
	if err != nil {
		return fmt.Errorf("derive rows of record %d (%s %s): %w", ch.Seq, ev.Type, ev.Subject, err)
	}
	return nil
}

// telemetry appends the telemetry row of record ch. The event's source is
// "<service>/digitaltwins/<id>", its subject the component, its dataschema the model.
func telemetry(ch store.Change, opts Options, rows *Rows) error {
	ev := &ch.Event
	service, id, ok := strings.Cut(ev.Source, "/digitaltwins/")
	if !ok || id == "" {
		return fmt.Errorf("derive the telemetry row of record %d: source %q names no twin", ch.Seq, ev.Source)
	}
	if opts.ServiceID != "" {
		service = opts.ServiceID
	}
	var source time.Time
	if ev.TelemetrySourceTime != "" {
		t, err := time.Parse(time.RFC3339Nano, ev.TelemetrySourceTime)
		if err != nil {
			return fmt.Errorf("derive the telemetry row of record %d: telemetrySourceTime %q: %w", ch.Seq, ev.TelemetrySourceTime, err)
		}
		source = t
	}
	now := time.Now
	if opts.Now != nil {
		now = opts.Now
	}
	rows.Telemetry = append(rows.Telemetry, TelemetryEvent{
		Seq: ch.Seq, TimeStamp: now(), SourceTimeStamp: source, ServiceID: service, ID: id,
		Component: ev.Subject, ModelID: ev.DataSchema, MessageID: ev.ID, Value: ev.Data,
	})
	return nil
}

// anomaly appends the anomaly row of record ch, whose data is the detector's (see package
// detector's AnomalyData).
func anomaly(ch store.Change, opts Options, rows *Rows) error {
	ev := &ch.Event
	var d struct {
		TwinID   string  `json:"twinId"`
		Property string  `json:"property"`
		Value    float64 `json:"value"`
		Score    float64 `json:"score"`
		Kind     string  `json:"kind"`
		Time     string  `json:"time"`
		Detector string  `json:"detector"`
	}
	if err := json.Unmarshal(ev.Data, &d); err != nil {
		return fmt.Errorf("derive the anomaly row of record %d: %w", ch.Seq, err)
	}
	at, err := time.Parse(time.RFC3339Nano, d.Time)
	if err != nil {
		return fmt.Errorf("derive the anomaly row of record %d: time %q: %w", ch.Seq, d.Time, err)
	}
	service, _, _ := strings.Cut(ev.Source, "/detectors/")
	if opts.ServiceID != "" {
		service = opts.ServiceID
	}
	rows.Anomalies = append(rows.Anomalies, AnomalyEvent{
		Seq: ch.Seq, TimeStamp: at, ServiceID: service, ID: d.TwinID, Key: d.Property, Value: d.Value,
		Score: d.Score, Kind: d.Kind, Detector: d.Detector,
	})
	return nil
}

// deriver derives the rows of one record.
type deriver struct {
	ch      store.Change
	seq     uint64
	ts      time.Time
	service string
	opts    Options
	prior   Prior
}

func (d *deriver) property(id, model, key string, value []byte, source time.Time, relID, target string) PropertyEvent {
	action := ActionUpdate
	if value == nil {
		action, value = ActionDelete, []byte("null")
	}
	return PropertyEvent{
		Seq: d.seq, TimeStamp: d.ts, SourceTimeStamp: source, ServiceID: d.service, ID: id, ModelID: model,
		Key: key, Value: value, RelationshipID: relID, RelationshipTarget: target, Action: action,
	}
}

// decodeObject decodes a JSON object.
func decodeObject(data []byte, what string) (map[string]any, error) {
	var m map[string]any
	if err := twin.Decode(data, &m); err != nil {
		return nil, fmt.Errorf("decode %s: %w", what, err)
	}
	if m == nil {
		return nil, fmt.Errorf("decode %s: not an object", what)
	}
	return m, nil
}

// decodeState decodes what update reads of a twin's or relationship's document after a
// patch: the touched properties and $metadata, skipping the rest of the document.
func decodeState(data []byte, touched []*touched, what string) (map[string]any, error) {
	keep := make([]string, 0, len(touched)+1)
	keep = append(keep, twin.KeyMetadata)
	for _, t := range touched {
		keep = append(keep, t.key)
	}
	m, err := twin.DecodeMembers(data, keep)
	if err != nil {
		return nil, fmt.Errorf("decode %s: %w", what, err)
	}
	return m, nil
}

// properties returns the names of doc's properties (members not starting with $), sorted.
func properties(doc map[string]any) []string {
	keys := make([]string, 0, len(doc))
	for k := range doc {
		if !strings.HasPrefix(k, "$") {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	return keys
}

// encodeValue encodes a top-level property value for a row: a component (an object with
// $metadata) without its $metadata.
func encodeValue(v any) ([]byte, error) {
	if m, ok := v.(map[string]any); ok {
		if _, comp := m[twin.KeyMetadata]; comp {
			c := make(map[string]any, len(m))
			for k, e := range m {
				if k != twin.KeyMetadata {
					c[k] = e
				}
			}
			v = c
		}
	}
	b, err := twin.Encode(v)
	if err != nil {
		return nil, fmt.Errorf("encode value: %w", err)
	}
	return b, nil
}

// sourceTime returns the sourceTime of the entry prop of a $metadata object, zero if none.
func sourceTime(meta any, prop string) time.Time {
	m, ok := meta.(map[string]any)
	if !ok {
		return time.Time{}
	}
	e := m[prop]
	if raw, ok := e.(json.Marshaler); ok { // DecodeDocument's raw entries
		b, err := raw.MarshalJSON()
		if err != nil {
			return time.Time{}
		}
		if err := twin.Decode(b, &e); err != nil {
			return time.Time{}
		}
	}
	em, ok := e.(map[string]any)
	if !ok {
		return time.Time{}
	}
	s, _ := em["sourceTime"].(string)
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}
	}
	return t
}

// valueSourceTime returns the sourceTime of top-level property key of doc: its entry in the
// twin's $metadata or, for a component, the newest among the entries of subs (every
// property of the component when subs is empty).
func valueSourceTime(doc map[string]any, key string, subs []string) time.Time {
	if c, ok := doc[key].(map[string]any); ok {
		if cmeta, comp := c[twin.KeyMetadata]; comp {
			if len(subs) == 0 {
				subs = properties(c)
			}
			var newest time.Time
			for _, s := range subs {
				if t := sourceTime(cmeta, s); t.After(newest) {
					newest = t
				}
			}
			return newest
		}
	}
	return sourceTime(doc[twin.KeyMetadata], key)
}

func (d *deriver) twinCreate(rows *Rows) error {
	doc, err := decodeObject(d.ch.Event.Data, "twin")
	if err != nil {
		return err
	}
	id, model := d.ch.Event.Subject, twin.ModelOf(doc)
	rows.Twins = append(rows.Twins, TwinLifecycleEvent{
		Seq: d.seq, TwinID: id, Action: LifecycleCreate, TimeStamp: d.ts, ServiceID: d.service, ModelID: model,
	})
	for _, k := range properties(doc) {
		v, err := encodeValue(doc[k])
		if err != nil {
			return fmt.Errorf("property %q: %w", k, err)
		}
		rows.Properties = append(rows.Properties, d.property(id, model, k, v, valueSourceTime(doc, k, nil), "", ""))
	}
	return nil
}

func (d *deriver) twinDelete(rows *Rows) error {
	doc, err := decodeObject(d.ch.Event.Data, "twin")
	if err != nil {
		return err
	}
	rows.Twins = append(rows.Twins, TwinLifecycleEvent{
		Seq: d.seq, TwinID: d.ch.Event.Subject, Action: LifecycleDelete, TimeStamp: d.ts, ServiceID: d.service,
		ModelID: twin.ModelOf(doc),
	})
	return nil
}

// relationship reads the fields of a relationship document.
func relationshipFields(doc map[string]any) (source, id, name, target string) {
	str := func(k string) string { s, _ := doc[k].(string); return s }
	return str("$sourceId"), str("$relationshipId"), str("$relationshipName"), str("$targetId")
}

// relationshipLifecycle appends the lifecycle row of the relationship the record's event
// carries, with action, and returns the relationship's document.
func (d *deriver) relationshipLifecycle(rows *Rows, action string) (doc map[string]any, err error) {
	doc, err = decodeObject(d.ch.Event.Data, "relationship")
	if err != nil {
		return nil, err
	}
	source, id, name, target := relationshipFields(doc)
	rows.Relationships = append(rows.Relationships, RelationshipLifecycleEvent{
		Seq: d.seq, RelationshipID: id, Name: name, Action: action, TimeStamp: d.ts, ServiceID: d.service,
		Source: source, Target: target,
	})
	return doc, nil
}

func (d *deriver) relationshipCreate(rows *Rows) error {
	doc, err := d.relationshipLifecycle(rows, LifecycleCreate)
	if err != nil {
		return err
	}
	source, id, _, target := relationshipFields(doc)
	for _, k := range properties(doc) {
		v, err := encodeValue(doc[k])
		if err != nil {
			return fmt.Errorf("property %q: %w", k, err)
		}
		rows.Properties = append(rows.Properties, d.property(source, "", k, v, time.Time{}, id, target))
	}
	return nil
}

func (d *deriver) relationshipDelete(rows *Rows) error {
	_, err := d.relationshipLifecycle(rows, LifecycleDelete)
	return err
}

// updateData is the data of a Twin.Update or Relationship.Update event.
type updateData struct {
	ModelID string          `json:"modelId"`
	Patch   json.RawMessage `json:"patch"`
}

// touched is a top-level property a patch touched, with the operations on it in order.
type touched struct {
	key string
	ops []twin.Op
	// subs are the component properties touched (for sourceTime); source is the newest
	// sourceTime the patch itself wrote.
	subs   []string
	source time.Time
}

// touchedKeys groups a patch's operations by the top-level property they touch, in the order
// each property is first touched. Operations on the model touch none. Operations on
// sourceTime are kept apart from the value operations.
func touchedKeys(p twin.Patch) []*touched {
	var out []*touched
	get := func(k string) *touched {
		for _, t := range out {
			if t.key == k {
				return t
			}
		}
		t := &touched{key: k}
		out = append(out, t)
		return t
	}
	sourceOf := func(op twin.Op) time.Time {
		s, _ := op.Value.(string)
		t, _ := time.Parse(time.RFC3339Nano, s)
		return t
	}
	for _, op := range p {
		segs := op.Segments
		if len(segs) == 0 {
			continue
		}
		switch {
		case segs[0] == twin.KeyMetadata:
			if len(segs) == 3 && segs[2] == "sourceTime" {
				t := get(segs[1])
				if st := sourceOf(op); st.After(t.source) {
					t.source = st
				}
			}
		case strings.HasPrefix(segs[0], "$"):
		case len(segs) == 4 && segs[1] == twin.KeyMetadata && segs[3] == "sourceTime":
			t := get(segs[0])
			t.subs = append(t.subs, segs[2])
			if st := sourceOf(op); st.After(t.source) {
				t.source = st
			}
		default:
			t := get(segs[0])
			t.ops = append(t.ops, op)
			if len(segs) > 1 {
				t.subs = append(t.subs, segs[1])
			}
		}
	}
	return out
}

func (d *deriver) twinUpdate(rows *Rows) error {
	var data updateData
	if err := json.Unmarshal(d.ch.Event.Data, &data); err != nil {
		return fmt.Errorf("decode update: %w", err)
	}
	p, err := twin.ParsePatch(data.Patch)
	if err != nil {
		return fmt.Errorf("decode patch: %w", err)
	}
	id, touched := d.ch.Event.Subject, touchedKeys(p)
	var state map[string]any
	if d.ch.Known && d.ch.Twin != nil {
		if state, err = decodeState(d.ch.Twin.Doc, touched, "twin"); err != nil {
			return err
		}
	}
	return d.update(rows, touched, state, id, data.ModelID, "", "")
}

func (d *deriver) relationshipUpdate(rows *Rows) error {
	var data updateData
	if err := json.Unmarshal(d.ch.Event.Data, &data); err != nil {
		return fmt.Errorf("decode update: %w", err)
	}
	p, err := twin.ParsePatch(data.Patch)
	if err != nil {
		return fmt.Errorf("decode patch: %w", err)
	}
	source, relID, ok := strings.Cut(d.ch.Event.Subject, "/relationships/")
	if !ok {
		return fmt.Errorf("subject %q does not name a relationship", d.ch.Event.Subject)
	}
	var state map[string]any
	target, touched := "", touchedKeys(p)
	if d.ch.Known && d.ch.Relationship != nil {
		if state, err = decodeState(d.ch.Relationship.Doc, touched, "relationship"); err != nil {
			return err
		}
		target = d.ch.Relationship.TargetID
	}
	return d.update(rows, touched, state, source, data.ModelID, relID, target)
}

// update appends the property rows of the properties a patch of twin id (of its relationship
// relID when set) touched, given the state the change left when known.
func (d *deriver) update(rows *Rows, touched []*touched, state map[string]any, id, model, relID, target string) error {
	var errs []error
	for _, t := range touched {
		var value []byte
		source := t.source
		if state != nil {
			if v, set := state[t.key]; set {
				var err error
				if value, err = encodeValue(v); err != nil {
					return fmt.Errorf("property %q: %w", t.key, err)
				}
			}
			if relID == "" {
				source = valueSourceTime(state, t.key, t.subs)
			}
		} else {
			v, set, prev, err := d.replay(t, id, relID)
			if err != nil {
				errs = append(errs, fmt.Errorf("property %q: %w", t.key, err))
				continue
			}
			if set {
				if value, err = encodeValue(v); err != nil {
					return fmt.Errorf("property %q: %w", t.key, err)
				}
			}
			// A value written without its sourceTime keeps the one it had, as in ADT; a
			// relationship keeps its target.
			needSource, needTarget := relID == "" && source.IsZero() && set, relID != "" && target == ""
			if prev == nil && (needSource || needTarget) && d.prior != nil {
				if row, ok, err := d.prior(id, relID, t.key); err == nil && ok {
					prev = &row
				}
			}
			if prev != nil {
				if needSource {
					source = prev.SourceTimeStamp
				}
				if needTarget {
					target = prev.RelationshipTarget
				}
			}
		}
		if value == nil {
			if !d.opts.RecordRemovals {
				continue
			}
			source = time.Time{}
		}
		rows.Properties = append(rows.Properties, d.property(id, model, t.key, value, source, relID, target))
	}
	return errors.Join(errs...)
}

// replay computes a property's new value from its operations, starting from the recorded
// value when an operation needs it. It returns the value, whether it is set, and the prior
// row it started from, if any.
func (d *deriver) replay(t *touched, id, relID string) (v any, set bool, prev *PropertyEvent, err error) {
	loaded := false
	load := func() error {
		if loaded {
			return nil
		}
		loaded = true
		if d.prior == nil {
			return nil
		}
		row, ok, err := d.prior(id, relID, t.key)
		if err != nil {
			return fmt.Errorf("read recorded value: %w", err)
		}
		if !ok || row.Action == ActionDelete {
			if ok {
				prev = &row
			}
			return nil
		}
		prev = &row
		if err := twin.Decode(row.Value, &v); err != nil {
			return fmt.Errorf("decode recorded value: %w", err)
		}
		set = true
		return nil
	}
	if len(t.ops) == 0 || len(t.ops[0].Segments) > 1 || t.ops[0].Op == twin.OpRemove {
		// A sourceTime alone, a sub-property or a removal: start from the recorded value.
		if err := load(); err != nil {
			return nil, false, nil, err
		}
		if !set && (len(t.ops) == 0 || len(t.ops[0].Segments) > 1) {
			if len(t.ops) == 0 {
				return nil, false, prev, fmt.Errorf("%w: its sourceTime changed", ErrUnknownValue)
			}
			return nil, false, prev, fmt.Errorf("%w: %s patches part of it", ErrUnknownValue, t.ops[0].Path)
		}
	}
	for _, op := range t.ops {
		if len(op.Segments) == 1 {
			if op.Op == twin.OpRemove {
				v, set = nil, false
			} else {
				v, set = op.Value, true
			}
			continue
		}
		if !set {
			return nil, false, prev, fmt.Errorf("%w: %s patches part of it", ErrUnknownValue, op.Path)
		}
		if v, err = applyPointer(v, op.Segments[1:], op); err != nil {
			return nil, false, prev, fmt.Errorf("apply %s %s to the recorded value: %w", op.Op, op.Path, err)
		}
	}
	return v, set, prev, nil
}

// applyPointer applies op at the JSON Pointer segments segs below v and returns the new v.
// Missing objects along the path are created, as a permissive replay of a patch the service
// accepted.
func applyPointer(v any, segs []string, op twin.Op) (any, error) {
	seg, last := segs[0], len(segs) == 1
	switch c := v.(type) {
	case map[string]any:
		c = copyMap(c)
		if last {
			if op.Op == twin.OpRemove {
				delete(c, seg)
			} else {
				c[seg] = op.Value
			}
			return c, nil
		}
		child, err := applyPointer(c[seg], segs[1:], op)
		if err != nil {
			return nil, err
		}
		c[seg] = child
		return c, nil
	case []any:
		c = slices.Clone(c)
		i := len(c)
		if seg != "-" {
			if _, err := fmt.Sscanf(seg, "%d", &i); err != nil || i < 0 || i > len(c) {
				return nil, fmt.Errorf("array index %q out of range", seg)
			}
		}
		if !last {
			if i >= len(c) {
				return nil, fmt.Errorf("array index %q out of range", seg)
			}
			child, err := applyPointer(c[i], segs[1:], op)
			if err != nil {
				return nil, err
			}
			c[i] = child
			return c, nil
		}
		switch {
		case op.Op == twin.OpAdd:
			c = slices.Insert(c, i, op.Value)
		case i >= len(c):
			return nil, fmt.Errorf("array index %q out of range", seg)
		case op.Op == twin.OpReplace:
			c[i] = op.Value
		default:
			c = slices.Delete(c, i, i+1)
		}
		return c, nil
	case nil:
		if op.Op == twin.OpRemove {
			return nil, fmt.Errorf("path segment %q not found", seg)
		}
		return applyPointer(map[string]any{}, segs, op)
	}
	return nil, fmt.Errorf("path segment %q is inside a value that is neither an object nor an array", seg)
}

func copyMap(m map[string]any) map[string]any {
	c := make(map[string]any, len(m)+1)
	for k, v := range m {
		c[k] = v
	}
	return c
}

// Overlay returns a Prior that looks in rows first, newest first, and asks next otherwise:
// what a writer uses while rows of its batch are not written yet. next may be nil. rows may
// grow between calls but must not shrink or change while the Prior is in use: it indexes
// the rows it has seen, so that each lookup costs the same however large the batch.
func Overlay(rows *Rows, next Prior) Prior {
	var (
		newest  map[propertyKey]int // index in rows.Properties of each key's newest row
		indexed int                 // rows.Properties[:indexed] are in newest
	)
	return func(id, relationshipID, key string) (PropertyEvent, bool, error) {
		if newest == nil {
			newest = make(map[propertyKey]int)
		}
		for ; indexed < len(rows.Properties); indexed++ {
			r := &rows.Properties[indexed]
			newest[propertyKey{r.ID, r.RelationshipID, r.Key}] = indexed
		}
		if i, ok := newest[propertyKey{id, relationshipID, key}]; ok {
			return rows.Properties[i], true, nil
		}
		if next == nil {
			return PropertyEvent{}, false, nil
		}
		return next(id, relationshipID, key)
	}
}
