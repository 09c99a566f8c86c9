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
	v, err := decodeValue(data)
	if err != nil {
		return nil, JSONPatchInvalid("The patch document is not valid JSON: " + err.Error() + ".")
	}
	raw, ok := v.([]any)
	if !ok {
		return nil, JSONPatchInvalid("The patch document must be a JSON array of operations.")
	}
	p := make(Patch, 0, len(raw))
	for _, e := range raw {
		m, ok := e.(map[string]any)
		if !ok {
			return nil, JSONPatchInvalid("Each operation of the patch document must be a JSON object.")
		}
		op, err := parseOp(m)
		if err != nil {
			return nil, err
		}
		p = append(p, op)
	}
	return p, nil
}

// parseOp checks one decoded operation object: its op, its path and (for add and replace)
// its value. Other members (from, ...) are ignored.
func parseOp(m map[string]any) (Op, error) {
	name, _ := m["op"].(string)
	switch name {
	case "":
		return Op{}, JSONPatchInvalid("Parameter op must not be empty.")
	case OpAdd, OpReplace, OpRemove:
	default:
		return Op{}, JSONPatchInvalid(fmt.Sprintf("Unsupported operation type %s.", name))
	}
	path, ok := m["path"].(string)
	if !ok {
		return Op{}, JSONPatchInvalid("Parameter path must not be empty.")
	}
	segs, err := SplitPointer(path)
	if err != nil {
		return Op{}, err
	}
	op := Op{Op: name, Path: path, Segments: segs}
	if name != OpRemove {
		v, ok := m["value"]
		if !ok {
			return Op{}, JSONPatchInvalid(fmt.Sprintf("Parameter value must be provided for operation %s on path %s.", name, path))
		}
		op.Value = v
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
