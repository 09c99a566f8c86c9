package graph

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"unsafe"
)

// The helpers below walk JSON text that is known to be valid (documents the store holds,
// encoded by twinflow), so they check only what they need to stay in bounds: on malformed
// input they return "not found" or stop early, never panic.

// skipSpace returns the index of the first non-space byte of b at or after i.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index just past the JSON value that starts at b[i] (after spaces).
func skipValue(b []byte, i int) int {
	i = skipSpace(b, i)
	if i >= len(b) {
		return len(b)
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				i = skipString(b, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return len(b)
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\n' && b[i] != '\t' && b[i] != '\r' {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i] == '"'. It jumps from
// quote to quote (bytes.IndexByte is vectorised); a quote ends the string unless an odd number
// of backslashes precede it.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		i += j
		k := i // the opening quote stops this walk back
		for b[k-1] == '\\' {
			k--
		}
		if (i-k)%2 == 0 {
			return i + 1
		}
	}
	return len(b)
}

// eachMember calls fn with the raw key (quotes included) and value of every member of the
// object obj, in order, until fn returns false. It does nothing when obj is not an object.
func eachMember(obj []byte, fn func(key, val []byte) bool) {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return
	}
	i++
	for {
		i = skipSpace(obj, i)
		if i >= len(obj) || obj[i] != '"' {
			return
		}
		kend := skipString(obj, i)
		key := obj[i:kend]
		i = skipSpace(obj, kend)
		if i >= len(obj) || obj[i] != ':' {
			return
		}
		vstart := skipSpace(obj, i+1)
		vend := skipValue(obj, vstart)
		if !fn(key, obj[vstart:vend]) {
			return
		}
		i = skipSpace(obj, vend)
		if i >= len(obj) || obj[i] != ',' {
			return
		}
		i++
	}
}

// keyString decodes a raw JSON key (with its quotes).
func keyString(raw []byte) string {
	if len(raw) < 2 {
		return ""
	}
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw[1 : len(raw)-1])
	}
	var s string
	_ = json.Unmarshal(raw, &s)
	return s
}

// keyEquals reports whether the raw JSON key equals name.
func keyEquals(raw []byte, name string) bool {
	if len(raw) == len(name)+2 && string(raw[1:len(raw)-1]) == name {
		return true
	}
	return bytes.IndexByte(raw, '\\') >= 0 && keyString(raw) == name
}

// member returns the value of member name of the object obj.
func member(obj []byte, name string) (val []byte, ok bool) {
	eachMember(obj, func(k, v []byte) bool {
		if keyEquals(k, name) {
			val, ok = v, true
			return false
		}
		return true
	})
	return val, ok
}

// descend follows path from the JSON value v through nested objects.
func descend(v []byte, path []string) ([]byte, bool) {
	for _, name := range path {
		var ok bool
		if v, ok = member(v, name); !ok {
			return nil, false
		}
	}
	return v, true
}

// number returns the raw JSON value v as a number, or NaN when it is not one.
func number(v []byte) float64 {
	if len(v) == 0 || (v[0] != '-' && (v[0] < '0' || v[0] > '9')) {
		return math.NaN()
	}
	f, err := strconv.ParseFloat(unsafe.String(&v[0], len(v)), 64)
	if err != nil {
		return math.NaN()
	}
	return f
}

// value turns the raw JSON value v into an expression value: nil, bool, float64 or string,
// or a json.RawMessage for objects and arrays (which the caller must not modify).
func value(v []byte) (any, bool) {
	if len(v) == 0 {
		return nil, false
	}
	switch v[0] {
	case '"':
		if len(v) < 2 || v[len(v)-1] != '"' {
			return nil, false // cut short
		}
		if bytes.IndexByte(v, '\\') < 0 {
			return string(v[1 : len(v)-1]), true
		}
		var s string
		if json.Unmarshal(v, &s) != nil {
			return nil, false
		}
		return s, true
	case '{', '[':
		return json.RawMessage(v), true
	case 't':
		return true, true
	case 'f':
		return false, true
	case 'n':
		return nil, true
	}
	// The document is never modified, so the string may share its bytes; this keeps a
	// numeric comparison free of allocations beyond the result.
	f, err := strconv.ParseFloat(unsafe.String(&v[0], len(v)), 64)
	if err != nil {
		return nil, false
	}
	return f, true
}
