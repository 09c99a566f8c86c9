package mapping

import (
	"strconv"

	"github.com/twinflow/twinflow/internal/twin"
)

// write is one patch entry of a mapping, evaluated for one twin.
type write struct {
	// path is the entry's JSON Pointer, segs its unescaped segments.
	path string
	segs []string
	// value is the JSON value to write; remove is set instead when the expression gave null.
	value  any
	remove bool
}

// addOrReplace turns writes into a JSON Patch that the twin service applies to doc (the
// twin's current document, or the document of the twin about to be created), so that each
// value lands at its path whether or not the path's parents exist yet.
//
// The twin service's add needs the parent of its path to exist, so a write below a missing
// object becomes an add of the first missing ancestor, holding nested objects down to the
// value; writes below the same missing ancestor share that one add ({"/a/b/c": 1, "/a/d": 2}
// with no /a gives add /a {"b":{"c":1},"d":2}). A missing array written with "-" (append)
// becomes a one-element array. A write whose parent exists, or that reaches below a
// value that is not an object or array (which the twin service then refuses, as ADT does),
// is a plain add. A removal becomes a remove when the path exists, and nothing otherwise.
// Metadata paths (/$metadata/<property>/sourceTime) are plain adds: the twin service
// creates their parents itself.
//
// writes come sorted by path, with no path below another (Definition.Validate checks this),
// so the ops are in path order and never write inside one another.
func addOrReplace(doc map[string]any, writes []write) twin.Patch {
	var p twin.Patch
	var created map[string]int // the pointer of a missing ancestor → the index of its add in p
	for _, w := range writes {
		n := len(w.segs)
		if w.remove {
			if existingDepth(doc, w.segs) == n {
				p = append(p, twin.Op{Op: twin.OpRemove, Path: w.path, Segments: w.segs})
			}
			continue
		}
		k := existingDepth(doc, w.segs[:n-1])
		if k == n-1 || isMetadataPath(w.segs) {
			p = append(p, twin.Op{Op: twin.OpAdd, Path: w.path, Segments: w.segs, Value: w.value})
			continue
		}
		ancestor, rest := w.segs[:k+1], w.segs[k+1:]
		ptr := twin.JoinPointer(ancestor...)
		if i, ok := created[ptr]; ok {
			if obj, isObj := p[i].Value.(map[string]any); isObj && insertNested(obj, rest, w.value) {
				continue
			}
			// Siblings that disagree on the ancestor's shape (/a/- and /a/b): let the
			// twin service judge the plain add.
			p = append(p, twin.Op{Op: twin.OpAdd, Path: w.path, Segments: w.segs, Value: w.value})
			continue
		}
		if created == nil {
			created = make(map[string]int)
		}
		created[ptr] = len(p)
		p = append(p, twin.Op{Op: twin.OpAdd, Path: ptr, Segments: ancestor, Value: nested(rest, w.value)})
	}
	return p
}

// isMetadataPath reports whether segs is a /$metadata/... or /<component>/$metadata/... path.
func isMetadataPath(segs []string) bool {
	return segs[0] == twin.KeyMetadata || (len(segs) > 1 && segs[1] == twin.KeyMetadata)
}

// existingDepth returns how many leading segments of segs name existing values in doc:
// object members, or elements of arrays by index.
func existingDepth(doc map[string]any, segs []string) int {
	var cur any = doc
	for i, s := range segs {
		switch c := cur.(type) {
		case map[string]any:
			child, ok := c[s]
			if !ok {
				return i
			}
			cur = child
		case []any:
			idx, err := strconv.Atoi(s)
			if err != nil || idx < 0 || idx >= len(c) || (len(s) > 1 && s[0] == '0') {
				return i
			}
			cur = c[idx]
		default:
			return i
		}
	}
	return len(segs)
}

// nested returns the value to add at a missing ancestor so that v ends up at rest below it:
// objects nested along rest, with [v] for a last segment "-" (an append to a missing array).
func nested(rest []string, v any) any {
	switch {
	case len(rest) == 0:
		return v
	case len(rest) == 1 && rest[0] == "-":
		return []any{v}
	}
	return map[string]any{rest[0]: nested(rest[1:], v)}
}

// insertNested puts v at rest below obj, creating what is missing as nested does. It reports
// false when rest leads through a value that is not an object.
func insertNested(obj map[string]any, rest []string, v any) bool {
	for i, s := range rest {
		child, ok := obj[s]
		if !ok || i == len(rest)-1 {
			obj[s] = nested(rest[i+1:], v)
			return true
		}
		m, isObj := child.(map[string]any)
		if !isObj {
			return false
		}
		obj = m
	}
	return true
}
