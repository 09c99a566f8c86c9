package twin

import (
	"bytes"
	"fmt"
	"strings"

	"github.com/twinflow/twinflow/internal/jsontext"
)

// The JSON Patch operations ADT supports.
const (
	OpAdd     = "add"
	OpReplace = "replace"
	OpRemove  = "remove"
)

// Op is one JSON Patch (RFC 6902) operation.
type Op struct {
	// Op is OpAdd, OpReplace or OpRemove.
	Op string
	// Path is the JSON Pointer as written; Segments is it split and unescaped (~1 → /, ~0 → ~).
	Path     string
	Segments []string
	// Value is the operation's value (add and replace only).
	Value any
}

// MarshalJSON encodes the operation as {"op","path"[,"value"]}.
func (o Op) MarshalJSON() ([]byte, error) {
	return o.appendJSON(nil)
}

// appendJSON appends the operation's JSON form to b.
func (o Op) appendJSON(b []byte) ([]byte, error) {
	b = append(b, `{"op":`...)
	b = jsontext.AppendString(b, o.Op)
	b = append(b, `,"path":`...)
	b = jsontext.AppendString(b, o.Path)
	if o.Op != OpRemove {
		b = append(b, `,"value":`...)
		var err error
		if b, err = appendValue(b, o.Value); err != nil {
			return nil, fmt.Errorf("encode value of %s %s: %w", o.Op, o.Path, err)
		}
	}
	return append(b, '}'), nil
}

// Patch is a JSON Patch document: operations applied in order.
type Patch []Op

// AppendJSON appends the patch's JSON form (an array, "[]" when empty) to b.
func (p Patch) AppendJSON(b []byte) ([]byte, error) {
	b = append(b, '[')
	for i, op := range p {
		if i > 0 {
			b = append(b, ',')
		}
		var err error
		if b, err = op.appendJSON(b); err != nil {
			return nil, err
		}
	}
	return append(b, ']'), nil
}

// ParsePatch decodes a JSON Patch document. Only add, replace and remove are allowed; every
// problem is a JsonPatchInvalid *Error with ADT's wording.
func ParsePatch(data []byte) (Patch, error) {
	elems, isArray, err := (&decoder{s: string(data)}).patchDocument()
	if err != nil {
		return nil, JSONPatchInvalid("The patch document is not valid JSON: " + err.Error() + ".")
	}
	if !isArray {
		return nil, JSONPatchInvalid("The patch document must be a JSON array of operations.")
	}
	p := make(Patch, 0, len(elems))
	for _, e := range elems {
		if !e.object {
			return nil, JSONPatchInvalid("Each operation of the patch document must be a JSON object.")
		}
		op, err := e.parse()
		if err != nil {
			return nil, err
		}
		p = append(p, op)
	}
	return p, nil
}

// rawOp is one element of a patch document's array, as far as an operation reads it.
type rawOp struct {
	// object is whether the element is an object; the other fields are unset if not.
	object bool
	// op and path are the strings of the members of those names, "" and false when a member
	// is missing or not a string (the last one counts when a name repeats).
	op, path   string
	pathString bool
	// value is the value member; hasValue reports whether there is one.
	value    any
	hasValue bool
}

// patchDocument decodes a whole patch document. For an array it returns what each element
// holds for an operation; any other document is checked and reported as not an array. Other
// members of the operations (from, ...) are checked and dropped.
func (d *decoder) patchDocument() (elems []rawOp, isArray bool, err error) {
	d.skipSpace()
	if d.pos >= len(d.s) || d.s[d.pos] != '[' {
		_, err := d.document()
		return nil, false, err
	}
	d.pos++ // [
	d.skipSpace()
	if d.pos < len(d.s) && d.s[d.pos] == ']' {
		d.pos++
	} else {
		for more := true; more; {
			d.skipSpace()
			e, err := d.patchElement()
			if err != nil {
				return nil, false, err
			}
			elems = append(elems, e)
			if more, err = d.next(']', "after array element"); err != nil {
				return nil, false, err
			}
		}
	}
	d.skipSpace()
	if d.pos != len(d.s) {
		return nil, false, d.errorf("unexpected data after the JSON value")
	}
	return elems, true, nil
}

// patchElement decodes one element of a patch document's array.
func (d *decoder) patchElement() (rawOp, error) {
	if d.pos >= len(d.s) || d.s[d.pos] != '{' {
		_, err := d.value(1)
		return rawOp{}, err
	}
	d.pos++ // {
	e := rawOp{object: true}
	d.skipSpace()
	if d.pos < len(d.s) && d.s[d.pos] == '}' {
		d.pos++
		return e, nil
	}
	for more := true; more; {
		k, err := d.key()
		if err != nil {
			return e, err
		}
		switch k {
		case "op":
			e.op, _, err = d.stringValue(2)
		case "path":
			e.path, e.pathString, err = d.stringValue(2)
		case "value":
			e.value, err = d.value(2)
			e.hasValue = true
		default:
			_, err = d.value(2)
		}
		if err != nil {
			return e, err
		}
		if more, err = d.next('}', "after object key:value pair"); err != nil {
			return e, err
		}
	}
	return e, nil
}

// stringValue decodes the value at d.pos and returns it when it is a string (without the
// allocation value makes to return it as an any).
func (d *decoder) stringValue(depth int) (s string, isString bool, err error) {
	if d.pos < len(d.s) && d.s[d.pos] == '"' {
		s, err = d.string()
		return s, err == nil, err
	}
	_, err = d.value(depth)
	return "", false, err
}

// parse checks one operation: its op, its path and (for add and replace) its value.
func (e rawOp) parse() (Op, error) {
	switch e.op {
	case "":
		return Op{}, JSONPatchInvalid("Parameter op must not be empty.")
	case OpAdd, OpReplace, OpRemove:
	default:
		return Op{}, JSONPatchInvalid(fmt.Sprintf("Unsupported operation type %s.", e.op))
	}
	if !e.pathString {
		return Op{}, JSONPatchInvalid("Parameter path must not be empty.")
	}
	segs, err := SplitPointer(e.path)
	if err != nil {
		return Op{}, err
	}
	op := Op{Op: e.op, Path: e.path, Segments: segs}
	if e.op != OpRemove {
		if !e.hasValue {
			return Op{}, JSONPatchInvalid(fmt.Sprintf("Parameter value must be provided for operation %s on path %s.", e.op, e.path))
		}
		op.Value = e.value
	}
	return op, nil
}

// SplitPointer splits a JSON Pointer (RFC 6901) into unescaped segments. The pointer must
// name something below the root: "" (the whole document) is refused, as is a stray "~".
func SplitPointer(path string) ([]string, error) {
	if path == "" || path[0] != '/' {
		return nil, JSONPatchInvalid(fmt.Sprintf("The path %q is not a valid JSON pointer below the document root.", path))
	}
	segs := strings.Split(path[1:], "/")
	for i, s := range segs {
		if !strings.Contains(s, "~") {
			continue
		}
		u, ok := unescapeSegment(s)
		if !ok {
			return nil, JSONPatchInvalid(fmt.Sprintf("The path segment '%s' has an invalid escape; only ~0 and ~1 are allowed.", s))
		}
		segs[i] = u
	}
	return segs, nil
}

// unescapeSegment undoes RFC 6901 escaping; it reports false for a "~" not followed by 0 or 1.
func unescapeSegment(s string) (string, bool) {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '~' {
			b.WriteByte(s[i])
			continue
		}
		if i+1 == len(s) {
			return "", false
		}
		switch s[i+1] {
		case '0':
			b.WriteByte('~')
		case '1':
			b.WriteByte('/')
		default:
			return "", false
		}
		i++
	}
	return b.String(), true
}

// EscapeSegment escapes one JSON Pointer segment (~ → ~0, / → ~1).
func EscapeSegment(s string) string {
	if !strings.ContainsAny(s, "~/") {
		return s
	}
	return strings.NewReplacer("~", "~0", "/", "~1").Replace(s)
}

// JoinPointer builds a JSON Pointer from unescaped segments.
func JoinPointer(segs ...string) string {
	var b strings.Builder
	for _, s := range segs {
		b.WriteByte('/')
		b.WriteString(EscapeSegment(s))
	}
	return b.String()
}

// Within returns the patch with every path moved below prefix (used for component patches,
// whose paths are relative to the component).
func (p Patch) Within(prefix string) Patch {
	out := make(Patch, len(p))
	for i, op := range p {
		op.Segments = append([]string{prefix}, op.Segments...)
		op.Path = "/" + EscapeSegment(prefix) + op.Path
		out[i] = op
	}
	return out
}

// writeJSONString writes s as a JSON string.
func writeJSONString(b *bytes.Buffer, s string) {
	b.Write(jsontext.AppendString(nil, s))
}
