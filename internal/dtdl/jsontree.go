package dtdl

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// jsonKind is the JSON type of a jsonNode.
type jsonKind uint8

const (
	jsonNull jsonKind = iota
	jsonBool
	jsonNumber
	jsonString
	jsonArray
	jsonObject
)

// String names the JSON type the way a modeller reads it in an error message.
func (k jsonKind) String() string {
	switch k {
	case jsonNull:
		return "null"
	case jsonBool:
		return "a boolean"
	case jsonNumber:
		return "a number"
	case jsonString:
		return "a string"
	case jsonArray:
		return "an array"
	default:
		return "an object"
	}
}

// jsonNode is one decoded JSON value. Unlike map[string]any it keeps object members in document
// order (DTDL reports problems in document order) and numbers as written (integer checks must
// see "1.0" and "1e3" as they are).
type jsonNode struct {
	kind    jsonKind
	boolean bool
	text    string // string value, or the literal of a number
	items   []*jsonNode
	members []jsonMember
	// start and end are the byte offsets of an object or array in the document.
	start, end int
}

// jsonMember is one member of a JSON object.
type jsonMember struct {
	key   string
	value *jsonNode
}

// member returns the value of the object member named key, or nil.
func (n *jsonNode) member(key string) *jsonNode {
	for i := range n.members {
		if n.members[i].key == key {
			return n.members[i].value
		}
	}
	return nil
}

// maxJSONDepth bounds the nesting of a document so that decoding never recurses without limit.
// DTDL's own limits (schema depth 5, extends depth 10) are far below it.
const maxJSONDepth = 256

var errJSONTooDeep = errors.New("JSON nesting is deeper than 256 levels")

// decodeJSON decodes one JSON text. A leading UTF-8 byte order mark is skipped.
func decodeJSON(data []byte) (*jsonNode, error) {
	if len(data) >= 3 && data[0] == 0xEF && data[1] == 0xBB && data[2] == 0xBF {
		data = data[3:]
	}
	if !json.Valid(data) {
		var v any
		if err := json.Unmarshal(data, &v); err != nil {
			return nil, err
		}
		return nil, errors.New("invalid JSON")
	}
	d := jsonDecoder{data: data}
	return d.value(0)
}

// jsonDecoder builds a jsonNode tree from text that json.Valid has accepted, so it only has to
// handle well-formed input.
type jsonDecoder struct {
	data []byte
	pos  int
	slab []jsonNode // nodes are carved from blocks, not allocated one by one
}

// node returns a new node of kind k.
func (d *jsonDecoder) node(k jsonKind) *jsonNode {
	if len(d.slab) == 0 {
		d.slab = make([]jsonNode, 256)
	}
	n := &d.slab[0]
	d.slab = d.slab[1:]
	n.kind = k
	return n
}

func (d *jsonDecoder) skipSpace() {
	for d.pos < len(d.data) {
		switch d.data[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

func (d *jsonDecoder) value(depth int) (*jsonNode, error) {
	if depth > maxJSONDepth {
		return nil, errJSONTooDeep
	}
	d.skipSpace()
	switch c := d.data[d.pos]; c {
	case '{':
		n := d.node(jsonObject)
		n.start = d.pos
		d.pos++
		d.skipSpace()
		if d.data[d.pos] == '}' {
			d.pos++
			n.end = d.pos
			return n, nil
		}
		for {
			d.skipSpace()
			key := d.str()
			d.skipSpace()
			d.pos++ // ':'
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			n.members = append(n.members, jsonMember{key: key, value: v})
			d.skipSpace()
			if d.data[d.pos] == ',' {
				d.pos++
				continue
			}
			d.pos++ // '}'
			n.end = d.pos
			return n, nil
		}
	case '[':
		d.pos++
		n := d.node(jsonArray)
		d.skipSpace()
		if d.data[d.pos] == ']' {
			d.pos++
			return n, nil
		}
		for {
			v, err := d.value(depth + 1)
			if err != nil {
				return nil, err
			}
			n.items = append(n.items, v)
			d.skipSpace()
			if d.data[d.pos] == ',' {
				d.pos++
				continue
			}
			d.pos++ // ']'
			return n, nil
		}
	case '"':
		n := d.node(jsonString)
		n.text = d.str()
		return n, nil
	case 't':
		d.pos += 4
		n := d.node(jsonBool)
		n.boolean = true
		return n, nil
	case 'f':
		d.pos += 5
		return d.node(jsonBool), nil
	case 'n':
		d.pos += 4
		return d.node(jsonNull), nil
	default:
		start := d.pos
		for d.pos < len(d.data) && isNumberByte(d.data[d.pos]) {
			d.pos++
		}
		n := d.node(jsonNumber)
		n.text = string(d.data[start:d.pos])
		return n, nil
	}
}

// isNumberByte reports whether c can be part of a JSON number.
func isNumberByte(c byte) bool {
	return (c >= '0' && c <= '9') || c == '-' || c == '+' || c == '.' || c == 'e' || c == 'E'
}

// str decodes the string starting at the current position (an opening quote).
func (d *jsonDecoder) str() string {
	d.pos++
	start := d.pos
	for d.data[d.pos] != '"' && d.data[d.pos] != '\\' {
		d.pos++
	}
	if d.data[d.pos] == '"' {
		s := string(d.data[start:d.pos])
		d.pos++
		return s
	}
	buf := append([]byte(nil), d.data[start:d.pos]...)
	for {
		c := d.data[d.pos]
		switch c {
		case '"':
			d.pos++
			return string(buf)
		case '\\':
			d.pos++
			e := d.data[d.pos]
			d.pos++
			switch e {
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r := d.hex4()
				if utf16.IsSurrogate(r) && d.pos+6 <= len(d.data) && d.data[d.pos] == '\\' && d.data[d.pos+1] == 'u' {
					save := d.pos
					d.pos += 2
					if r2 := utf16.DecodeRune(r, d.hex4()); r2 != utf8.RuneError {
						r = r2
					} else {
						d.pos = save
					}
				}
				buf = utf8.AppendRune(buf, r)
			default: // '"', '\\', '/'
				buf = append(buf, e)
			}
		default:
			buf = append(buf, c)
			d.pos++
		}
	}
}

func (d *jsonDecoder) hex4() rune {
	v, _ := strconv.ParseUint(string(d.data[d.pos:d.pos+4]), 16, 32)
	d.pos += 4
	return rune(v)
}
