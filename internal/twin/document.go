package twin

import (
	"fmt"
	"reflect"
	"sort"
	"strings"
	"time"
)

// Keys of the twin document and its $metadata.
const (
	KeyDTID           = "$dtId"
	KeyETag           = "$etag"
	KeyMetadata       = "$metadata"
	KeyModel          = "$model"
	KeyLastUpdateTime = "$lastUpdateTime"
	keyLastUpdate     = "lastUpdateTime"
	keySourceTime     = "sourceTime"
)

// TimeLayout is how twin timestamps are written: seven fractional digits and Z.
const TimeLayout = "2006-01-02T15:04:05.0000000Z"

// FormatTime formats t in UTC with TimeLayout. It is called for every write, so it writes the
// fixed-width layout by hand; years outside 0-9999, which the layout does not fit, go through
// time.Format.
func FormatTime(t time.Time) string {
	t = t.UTC()
	year, month, day := t.Date()
	if year < 0 || year > 9999 {
		return t.Format(TimeLayout)
	}
	hour, minute, sec := t.Clock()
	b := []byte(TimeLayout)
	putDigits(b[0:4], year)
	putDigits(b[5:7], int(month))
	putDigits(b[8:10], day)
	putDigits(b[11:13], hour)
	putDigits(b[14:16], minute)
	putDigits(b[17:19], sec)
	putDigits(b[20:27], t.Nanosecond()/100)
	return string(b)
}

// putDigits writes n into b as decimal digits, zero-padded to fill b.
func putDigits(b []byte, n int) {
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = byte('0' + n%10)
		n /= 10
	}
}

// ModelOf returns the $metadata.$model of a twin document, or "".
func ModelOf(doc map[string]any) string {
	meta, _ := doc[KeyMetadata].(map[string]any)
	m, _ := meta[KeyModel].(string)
	return m
}

// NewDocument builds the stored document of twin id from a PUT body: $dtId and $etag in the body
// are replaced, $metadata keeps only $model and each property's sourceTime, and every property
// (of the twin and of each component, as isComponent tells) gets lastUpdateTime now. The body
// map is consumed. It does not validate property values against the model.
func NewDocument(id, etag string, body map[string]any, isComponent func(string) bool, now string) (map[string]any, error) {
	inMeta, ok := body[KeyMetadata].(map[string]any)
	if !ok {
		return nil, InvalidTwin("The twin must have a $metadata object with $model.")
	}
	model, ok := inMeta[KeyModel].(string)
	if !ok || model == "" {
		return nil, InvalidTwin("The twin must specify its model in $metadata.$model.")
	}
	doc := make(map[string]any, len(body)+2)
	meta := map[string]any{KeyModel: model, KeyLastUpdateTime: now}
	for k, v := range body {
		switch {
		case k == KeyDTID || k == KeyETag || k == KeyMetadata:
			continue
		case strings.HasPrefix(k, "$"):
			return nil, InvalidTwin(fmt.Sprintf("'%s' is not a settable twin field.", k))
		case isComponent(k):
			c, err := newComponent(k, v, now)
			if err != nil {
				return nil, err
			}
			doc[k] = c
		default:
			doc[k] = v
			entry, err := newPropertyMetadata(k, inMeta[k], now)
			if err != nil {
				return nil, err
			}
			meta[k] = entry
		}
	}
	doc[KeyDTID] = id
	doc[KeyETag] = etag
	doc[KeyMetadata] = meta
	return doc, nil
}

// newComponent builds a stored component from the object v of a PUT body or patch: its
// properties, each with lastUpdateTime now and the sourceTime v's $metadata gives.
func newComponent(name string, v any, now string) (map[string]any, error) {
	in, ok := v.(map[string]any)
	if !ok {
		return nil, InvalidTwin(fmt.Sprintf("Component '%s' must be a JSON object.", name))
	}
	inMeta, _ := in[KeyMetadata].(map[string]any)
	c := make(map[string]any, len(in))
	meta := map[string]any{KeyLastUpdateTime: now}
	for k, pv := range in {
		if strings.HasPrefix(k, "$") {
			continue
		}
		c[k] = pv
		entry, err := newPropertyMetadata(name+"/"+k, inMeta[k], now)
		if err != nil {
			return nil, err
		}
		meta[k] = entry
	}
	c[KeyMetadata] = meta
	return c, nil
}

// newPropertyMetadata is {lastUpdateTime: now} plus the sourceTime the client wrote in in.
func newPropertyMetadata(path string, in any, now string) (map[string]any, error) {
	entry := map[string]any{keyLastUpdate: now}
	m, _ := in.(map[string]any)
	if st, ok := m[keySourceTime]; ok {
		if err := checkSourceTime(path, st); err != nil {
			return nil, err
		}
		entry[keySourceTime] = st
	}
	return entry, nil
}

// checkSourceTime accepts an RFC 3339 date-time string, with any fractional precision.
func checkSourceTime(path string, v any) error {
	s, ok := v.(string)
	if ok {
		if _, err := time.Parse(time.RFC3339Nano, s); err == nil {
			return nil
		}
	}
	return InvalidTwin(fmt.Sprintf("The sourceTime of '%s' must be an RFC 3339 date-time string.", path))
}

// Schema tells ApplyTwinPatch what it needs of the twin's model.
type Schema struct {
	// IsComponent reports whether name is a component of the model.
	IsComponent func(name string) bool
	// ValidatePath, when set, checks the value of each add and replace on a property path
	// (segments from the twin root, through the component if any).
	ValidatePath func(path []string, v any) error
	// CreateParents makes add operations create the missing objects along their property
	// path, so that a nested property can be set before its parents were (the add-or-replace
	// semantics of ingress mappings). ADT's own patches leave it false: there a missing parent
	// fails the patch.
	CreateParents bool
}

// ApplyTwinPatch applies p to a twin document in place, with ADT's path rules:
//
//   - /<prop>, /<prop>/<sub>..., /<component>/<prop>/...: property values;
//   - /$metadata/$model: add or replace migrates the twin to another model;
//   - /$metadata/<prop>/sourceTime and /<component>/$metadata/<prop>/sourceTime;
//   - a whole component (/<component>) may be added or replaced by an object.
//
// replace and remove need an existing target ("The target location specified by path segment
// '<seg>' was not found."). Each property written gets $metadata.<prop>.lastUpdateTime now
// (its sourceTime is kept unless the patch writes it), and $metadata.$lastUpdateTime of the
// twin and of each touched component becomes now. The metadata of a property the patch left
// unset is dropped. On error doc may be partly changed; callers apply to a private copy.
func ApplyTwinPatch(doc map[string]any, p Patch, s Schema, now string) error {
	meta, ok := doc[KeyMetadata].(map[string]any)
	if !ok {
		meta = map[string]any{}
		doc[KeyMetadata] = meta
	}
	var touched []touch
	for _, op := range p {
		t, err := applyTwinOp(doc, meta, op, s, now)
		if err != nil {
			return err
		}
		touched = append(touched, t)
	}
	if len(p) > 0 {
		meta[KeyLastUpdateTime] = now
	}
	for _, t := range touched {
		container, cmeta := doc, meta
		if t.component != "" {
			c, ok := doc[t.component].(map[string]any)
			if !ok {
				continue // the component was removed; ValidateTwin reports it
			}
			container, cmeta = c, componentMetadata(c)
			cmeta[KeyLastUpdateTime] = now
		}
		if t.prop == "" {
			continue
		}
		if _, set := container[t.prop]; !set {
			delete(cmeta, t.prop)
		}
	}
	return nil
}

// touch records which property (of which component, "" for the twin) an operation changed.
type touch struct {
	component, prop string
}

// applyTwinOp applies one operation to a twin document whose $metadata is meta, and reports
// the property it touched.
func applyTwinOp(doc, meta map[string]any, op Op, s Schema, now string) (touch, error) {
	segs := op.Segments
	head := segs[0]
	switch {
	case head == KeyMetadata:
		if len(segs) == 2 && segs[1] == KeyModel {
			if op.Op == OpRemove {
				return touch{}, JSONPatchInvalid("The model of a twin cannot be removed; replace /$metadata/$model instead.")
			}
			m, ok := op.Value.(string)
			if !ok || m == "" {
				return touch{}, JSONPatchInvalid("The value of /$metadata/$model must be a model id string.")
			}
			meta[KeyModel] = m
			return touch{}, nil
		}
		if len(segs) == 3 && segs[2] == keySourceTime && !strings.HasPrefix(segs[1], "$") {
			return touch{prop: segs[1]}, applySourceTime(meta, segs[1], op)
		}
		return touch{}, JSONPatchInvalid(fmt.Sprintf("The path %s cannot be patched; only /$metadata/$model and /$metadata/<property>/sourceTime can.", op.Path))
	case strings.HasPrefix(head, "$"):
		return touch{}, JSONPatchInvalid(fmt.Sprintf("The path %s cannot be patched.", op.Path))
	case s.IsComponent != nil && s.IsComponent(head):
		return applyComponentOp(doc, op, s, now)
	}
	if err := validateOp(op, s); err != nil {
		return touch{}, err
	}
	if err := applyPointer(doc, segs, op, s.CreateParents); err != nil {
		return touch{}, err
	}
	setLastUpdate(meta, head, now)
	return touch{prop: head}, nil
}

// applyComponentOp applies an operation whose path starts at a component: the whole
// component, its $metadata (sourceTime only) or a property inside it.
func applyComponentOp(doc map[string]any, op Op, s Schema, now string) (touch, error) {
	name, segs := op.Segments[0], op.Segments[1:]
	if len(segs) == 0 {
		switch op.Op {
		case OpRemove:
			if _, ok := doc[name]; !ok {
				return touch{}, notFound(name)
			}
			delete(doc, name)
		default:
			if _, ok := doc[name]; !ok && op.Op == OpReplace {
				return touch{}, notFound(name)
			}
			c, err := newComponent(name, deepCopy(op.Value), now)
			if err != nil {
				return touch{}, err
			}
			doc[name] = c
		}
		return touch{component: name}, nil
	}
	c, ok := doc[name].(map[string]any)
	if !ok {
		return touch{}, notFound(name)
	}
	cmeta := componentMetadata(c)
	head := segs[0]
	switch {
	case head == KeyMetadata:
		if len(segs) == 3 && segs[2] == keySourceTime && !strings.HasPrefix(segs[1], "$") {
			return touch{component: name, prop: segs[1]}, applySourceTime(cmeta, segs[1], op)
		}
		return touch{}, JSONPatchInvalid(fmt.Sprintf("The path %s cannot be patched; only /<component>/$metadata/<property>/sourceTime can.", op.Path))
	case strings.HasPrefix(head, "$"):
		return touch{}, JSONPatchInvalid(fmt.Sprintf("The path %s cannot be patched.", op.Path))
	}
	if err := validateOp(op, s); err != nil {
		return touch{}, err
	}
	if err := applyPointer(c, segs, op, s.CreateParents); err != nil {
		return touch{}, err
	}
	setLastUpdate(cmeta, head, now)
	return touch{component: name, prop: head}, nil
}

// componentMetadata returns the $metadata object of component c, adding one if missing.
func componentMetadata(c map[string]any) map[string]any {
	m, ok := c[KeyMetadata].(map[string]any)
	if !ok {
		m = map[string]any{}
		c[KeyMetadata] = m
	}
	return m
}

// validateOp checks the value of an add or replace with the schema's validator, if any.
func validateOp(op Op, s Schema) error {
	if op.Op == OpRemove || s.ValidatePath == nil {
		return nil
	}
	return s.ValidatePath(op.Segments, op.Value)
}

// metadataEntry returns the entry of prop in meta when it is an object. An entry that
// DecodeDocument kept as text is decoded and put back in meta as an object.
func metadataEntry(meta map[string]any, prop string) (map[string]any, bool) {
	switch e := meta[prop].(type) {
	case map[string]any:
		return e, true
	case rawJSON:
		v, err := (&decoder{s: string(e)}).document()
		if m, ok := v.(map[string]any); ok && err == nil {
			meta[prop] = m
			return m, true
		}
	}
	return nil, false
}

// setLastUpdate sets the lastUpdateTime of prop in meta, keeping its sourceTime.
func setLastUpdate(meta map[string]any, prop, now string) {
	if e, ok := metadataEntry(meta, prop); ok {
		e[keyLastUpdate] = now
		return
	}
	meta[prop] = map[string]any{keyLastUpdate: now}
}

// applySourceTime applies an operation on $metadata/<prop>/sourceTime: replace and remove need
// an existing sourceTime; add and replace need an RFC 3339 date-time.
func applySourceTime(meta map[string]any, prop string, op Op) error {
	e, ok := metadataEntry(meta, prop)
	if op.Op == OpRemove {
		if _, has := e[keySourceTime]; !has {
			return notFound(keySourceTime)
		}
		delete(e, keySourceTime)
		return nil
	}
	if op.Op == OpReplace {
		if _, has := e[keySourceTime]; !has {
			return notFound(keySourceTime)
		}
	}
	if err := checkSourceTime(prop, op.Value); err != nil {
		return err
	}
	if !ok {
		e = map[string]any{}
		meta[prop] = e
	}
	e[keySourceTime] = op.Value
	return nil
}

// applyPointer applies one operation to the object root at the path segs, through nested
// objects and arrays (an array index is a decimal number; add also takes "-", past the end).
// With createParents, an add creates the objects missing along its path. The value is copied
// into the document, so later operations never change the patch itself.
func applyPointer(root map[string]any, segs []string, op Op, createParents bool) error {
	op.Value = deepCopy(op.Value)
	_, err := applyAt(root, segs, op, createParents && op.Op == OpAdd)
	return err
}

// deepCopy copies the objects and arrays of a decoded JSON value.
func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(v))
		for k, e := range v {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		a := make([]any, len(v))
		for i, e := range v {
			a[i] = deepCopy(e)
		}
		return a
	}
	return v
}

// applyAt applies op at segs below container and returns the container, which is a new slice
// when an array grew or shrank. With create, a member missing from an object along the path
// becomes an empty object.
func applyAt(container any, segs []string, op Op, create bool) (any, error) {
	seg, last := segs[0], len(segs) == 1
	switch c := container.(type) {
	case map[string]any:
		child, ok := c[seg]
		if last {
			switch {
			case op.Op == OpAdd:
				c[seg] = op.Value
			case !ok:
				return nil, notFound(seg)
			case op.Op == OpReplace:
				c[seg] = op.Value
			default:
				delete(c, seg)
			}
			return c, nil
		}
		if !ok {
			if !create {
				return nil, notFound(seg)
			}
			child = map[string]any{}
		}
		child, err := applyAt(child, segs[1:], op, create)
		if err != nil {
			return nil, err
		}
		c[seg] = child
		return c, nil
	case []any:
		if last && op.Op == OpAdd && seg == "-" {
			return append(c, op.Value), nil
		}
		i, ok := arrayIndex(seg)
		if !ok || i > len(c) || (i == len(c) && !(last && op.Op == OpAdd)) {
			return nil, notFound(seg)
		}
		if !last {
			child, err := applyAt(c[i], segs[1:], op, create)
			if err != nil {
				return nil, err
			}
			c[i] = child
			return c, nil
		}
		switch op.Op {
		case OpAdd:
			c = append(c, nil)
			copy(c[i+1:], c[i:])
			c[i] = op.Value
		case OpReplace:
			c[i] = op.Value
		default:
			c = append(c[:i], c[i+1:]...)
		}
		return c, nil
	}
	return nil, notFound(seg)
}

// arrayIndex parses a JSON Pointer array index: "0" or a decimal number without a leading zero.
func arrayIndex(seg string) (int, bool) {
	if seg == "" || len(seg) > 9 || (seg[0] == '0' && len(seg) > 1) {
		return 0, false
	}
	n := 0
	for i := 0; i < len(seg); i++ {
		if seg[i] < '0' || seg[i] > '9' {
			return 0, false
		}
		n = n*10 + int(seg[i]-'0')
	}
	return n, true
}

// notFound is ADT's JsonPatchInvalid for a path segment that names nothing.
func notFound(seg string) *Error {
	return JSONPatchInvalid(fmt.Sprintf("The target location specified by path segment '%s' was not found.", seg))
}

// Diff returns the patch that turns twin document old into new, as a replacing PUT reports it
// in its Twin.Update event: one op per top-level property and per component property that was
// added, replaced or removed, and a replace of /$metadata/$model when the model changed.
// Metadata (timestamps, sourceTime) is not diffed. Ops are ordered by path.
func Diff(old, new map[string]any, isComponent func(string) bool) Patch {
	var p Patch
	if m := ModelOf(new); m != ModelOf(old) {
		p = append(p, Op{Op: OpReplace, Path: "/$metadata/$model", Segments: []string{KeyMetadata, KeyModel}, Value: m})
	}
	diffObjects(&p, nil, old, new, isComponent)
	sort.SliceStable(p, func(i, j int) bool { return p[i].Path < p[j].Path })
	return p
}

// diffObjects appends to p the ops turning object old into new at prefix; with isComponent,
// components present in both are diffed property by property.
func diffObjects(p *Patch, prefix []string, old, new map[string]any, isComponent func(string) bool) {
	for k, nv := range new {
		if strings.HasPrefix(k, "$") {
			continue
		}
		path := append(append([]string(nil), prefix...), k)
		ov, had := old[k]
		if prefix == nil && isComponent != nil && isComponent(k) {
			oc, ok1 := ov.(map[string]any)
			nc, ok2 := nv.(map[string]any)
			if ok1 && ok2 {
				diffObjects(p, path, oc, nc, nil)
				continue
			}
		}
		switch {
		case !had:
			*p = append(*p, Op{Op: OpAdd, Path: JoinPointer(path...), Segments: path, Value: nv})
		case !reflect.DeepEqual(ov, nv):
			*p = append(*p, Op{Op: OpReplace, Path: JoinPointer(path...), Segments: path, Value: nv})
		}
	}
	for k := range old {
		if strings.HasPrefix(k, "$") {
			continue
		}
		if _, ok := new[k]; !ok {
			path := append(append([]string(nil), prefix...), k)
			*p = append(*p, Op{Op: OpRemove, Path: JoinPointer(path...), Segments: path})
		}
	}
}

// CheckLimits reports a value that breaks ADT's size limits: a string longer than maxString
// bytes or an object key (property name) longer than maxName bytes, anywhere in v. path names
// v in the message. A limit of 0 or less is not checked. $metadata objects (service-managed)
// are skipped.
func CheckLimits(path string, v any, maxString, maxName int) error {
	switch v := v.(type) {
	case string:
		if maxString > 0 && len(v) > maxString {
			return InvalidTwin(fmt.Sprintf("The string value of '%s' is %d bytes long; the limit is %d bytes.", path, len(v), maxString))
		}
	case map[string]any:
		for k, e := range v {
			if k == KeyMetadata {
				continue
			}
			if maxName > 0 && len(k) > maxName {
				return InvalidTwin(fmt.Sprintf("A property name in '%s' is %d bytes long; the limit is %d bytes.", path, len(k), maxName))
			}
			if err := CheckLimits(path+"/"+k, e, maxString, maxName); err != nil {
				return err
			}
		}
	case []any:
		for i, e := range v {
			if err := CheckLimits(fmt.Sprintf("%s/%d", path, i), e, maxString, maxName); err != nil {
				return err
			}
		}
	}
	return nil
}
