package detector

import (
	"bytes"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/store"
)

// watchedPoint is a point of one watched property of a change's twin.
type watchedPoint struct {
	property string
	point    point
}

// extractor takes the points of a detector's watched properties from change log records. It
// keeps scratch space between calls, so it is not safe for concurrent use.
type extractor struct {
	// properties are the watched properties (Definition.Properties).
	properties []string
	rows       history.Rows
	// touched are the indexes in properties of the watched properties an update touched, in
	// the order it first touched them; found holds, at the same index, what the twin's
	// document holds of each.
	touched []int
	found   []foundProperty
}

// foundProperty is what a twin's document holds of a property: its value's JSON text (nil
// when the document has none) and the text of its $metadata sourceTime when that is a string
// without escapes.
type foundProperty struct {
	value, source []byte
}

// points appends to out the points that record ch gives of the watched properties of its
// subject, and returns the error history.Derive returns for ch. They are exactly the points
// pointOf takes from the property rows history.Derive makes of ch, without prior rows as
// streaming has none, for a watched property, in the same order: streaming and backtests
// score the same points, backtests taking theirs from the rows history recorded.
//
// The Twin.Update of a twin whose new state the log knows, the bulk of the log, is read
// without decoding: the patch for the watched properties it touches, and the new state for
// their values and sourceTimes, every part checked to be JSON the decoders Derive uses accept.
// Any other record, or one whose text is not in the plain form the server writes (escaped
// names, strings that are not UTF-8, ...), goes through Derive. An update that touches no
// watched property gives no point without its event time or stored state being read, so
// no error is reported for it where Derive would report one for those (the server writes
// neither wrong).
func (x *extractor) points(ch *store.Change, out []watchedPoint) ([]watchedPoint, error) {
	if ch.Event.Type == event.TwinUpdate && ch.Known && ch.Twin != nil {
		if pts, ok := x.updatePoints(ch, out); ok {
			return pts, nil
		}
	}
	return x.derivedPoints(ch, out)
}

// derivedPoints is points through history.Derive, for every record.
func (x *extractor) derivedPoints(ch *store.Change, out []watchedPoint) ([]watchedPoint, error) {
	x.rows.Reset()
	err := history.Derive(*ch, history.Options{}, noPrior, &x.rows)
	for i := range x.rows.Properties {
		row := &x.rows.Properties[i]
		if row.ID != ch.Event.Subject || x.index(row.Key) < 0 {
			continue
		}
		if p, ok := pointOf(row); ok {
			out = append(out, watchedPoint{property: row.Key, point: p})
		}
	}
	return out, err
}

// index returns the index of property name among the watched ones, -1 if it is none.
func (x *extractor) index(name string) int {
	for i, p := range x.properties {
		if p == name {
			return i
		}
	}
	return -1
}

// indexBytes is index for a name as JSON text holds it.
func (x *extractor) indexBytes(name []byte) int {
	for i, p := range x.properties {
		if string(name) == p {
			return i
		}
	}
	return -1
}

// updatePoints is points for a Twin.Update whose new state ch holds, read without decoding.
// It reports false, having appended nothing, where it cannot tell the points that way.
func (x *extractor) updatePoints(ch *store.Change, out []watchedPoint) ([]watchedPoint, bool) {
	patch, ok := updatePatch(ch.Event.Data)
	if !ok || !x.touchedBy(patch) {
		return out, false
	}
	if len(x.touched) == 0 {
		return out, true
	}
	if !x.find(ch.Twin.Doc) {
		return out, false
	}
	committed, err := time.Parse(time.RFC3339Nano, ch.Event.Time)
	if err != nil {
		return out, false // Derive's error
	}
	for i, idx := range x.touched {
		f := &x.found[i]
		// pointOf of the row: a JSON number that a float64 holds.
		if len(f.value) == 0 || f.value[0] != '-' && (f.value[0] < '0' || f.value[0] > '9') {
			continue
		}
		v, err := strconv.ParseFloat(string(f.value), 64)
		if err != nil {
			continue
		}
		t := committed
		if f.source != nil {
			if st, err := time.Parse(time.RFC3339Nano, string(f.source)); err == nil {
				t = st
			}
		}
		out = append(out, watchedPoint{property: x.properties[idx], point: point{Time: t.UTC().Truncate(time.Microsecond), Value: v}})
	}
	return out, true
}

// updatePatch returns the patch of a Twin.Update's data, {"modelId": "...", "patch": [...]},
// checking the whole text; false for anything else.
func updatePatch(data []byte) (patch []byte, ok bool) {
	sc := scanner{s: data}
	ok = sc.object(0, func(key []byte) bool {
		switch string(key) {
		case "modelId":
			if sc.peek() == '"' {
				return sc.skip(1)
			}
			return sc.literal("null")
		case "patch":
			start := sc.pos
			if !sc.skip(1) {
				return false
			}
			patch = sc.s[start:sc.pos]
			return true
		}
		return false // encoding/json matches names case-insensitively
	}) && sc.end()
	return patch, ok && patch != nil
}

// touchedBy sets x.touched to the watched properties patch touches, as history.Derive groups
// its operations: a property is touched by an operation on it or below it, or on its
// sourceTime in the twin's $metadata or a component's. It reports false for a patch that
// is not a valid one of add, replace and remove operations with plain paths.
func (x *extractor) touchedBy(patch []byte) bool {
	x.touched = x.touched[:0]
	sc := scanner{s: patch}
	return sc.array(0, func() bool {
		var (
			op, path []byte
			hasValue bool
		)
		ok := sc.object(1, func(key []byte) bool {
			switch string(key) {
			case "op", "path":
				if sc.peek() != '"' {
					return false
				}
				s, plain, ok := sc.str()
				if !ok || !plain {
					return false
				}
				if string(key) == "op" {
					op = s
				} else {
					path = s
				}
				return true
			case "value":
				hasValue = true
			}
			return sc.skip(2)
		})
		if !ok || path == nil || len(path) == 0 || path[0] != '/' || bytes.IndexByte(path, '~') >= 0 {
			return false
		}
		switch string(op) {
		case "add", "replace":
			if !hasValue {
				return false
			}
		case "remove":
		default:
			return false
		}
		first, rest, _ := bytes.Cut(path[1:], []byte("/"))
		switch {
		case string(first) == "$metadata":
			// /$metadata/<property>/sourceTime
			if name, field, ok := bytes.Cut(rest, []byte("/")); ok && string(field) == "sourceTime" {
				x.touch(name)
			}
		case len(first) > 0 && first[0] == '$':
		default:
			x.touch(first)
		}
		return true
	}) && sc.end()
}

// touch records that the patch touches property name, if it is watched.
func (x *extractor) touch(name []byte) {
	idx := x.indexBytes(name)
	if idx < 0 {
		return
	}
	for _, t := range x.touched {
		if t == idx {
			return
		}
	}
	x.touched = append(x.touched, idx)
}

// find fills x.found with what the twin document doc holds of the touched properties,
// checking the whole text; false if it cannot. A member repeated counts with its last
// occurrence, as when it is decoded.
func (x *extractor) find(doc []byte) bool {
	x.found = append(x.found[:0], make([]foundProperty, len(x.touched))...)
	at := func(name []byte) *foundProperty {
		idx := x.indexBytes(name)
		for i, t := range x.touched {
			if t == idx {
				return &x.found[i]
			}
		}
		return nil
	}
	sc := scanner{s: doc}
	return sc.object(0, func(key []byte) bool {
		if string(key) == "$metadata" {
			for i := range x.found {
				x.found[i].source = nil // a later $metadata replaces an earlier one
			}
			if sc.peek() != '{' {
				return sc.skip(1)
			}
			return sc.object(1, func(name []byte) bool {
				f := at(name)
				if f == nil {
					return sc.skip(2)
				}
				f.source = nil
				if sc.peek() != '{' {
					return sc.skip(2)
				}
				return sc.object(2, func(field []byte) bool {
					if string(field) != "sourceTime" {
						return sc.skip(3)
					}
					f.source = nil
					if sc.peek() != '"' {
						return sc.skip(3)
					}
					s, plain, ok := sc.str()
					if ok && plain {
						f.source = s
					}
					return ok && plain
				})
			})
		}
		f := at(key)
		if f == nil {
			return sc.skip(1)
		}
		start := sc.pos
		if !sc.skip(1) {
			return false
		}
		f.value = sc.s[start:sc.pos]
		return true
	}) && sc.end()
}

// maxScanDepth bounds the nesting scanner accepts, below the decoders' bound.
const maxScanDepth = 1000

// scanner reads JSON text (RFC 8259) strictly: valid UTF-8 and nesting below maxScanDepth,
// so that the text it accepts is text every decoder of the module accepts, as the same
// values. Object names are read only when they have no escapes.
type scanner struct {
	s   []byte
	pos int
}

func (sc *scanner) space() {
	for sc.pos < len(sc.s) {
		switch sc.s[sc.pos] {
		case ' ', '\t', '\n', '\r':
			sc.pos++
		default:
			return
		}
	}
}

// peek returns the byte at the scanner's position, 0 at the end.
func (sc *scanner) peek() byte {
	if sc.pos < len(sc.s) {
		return sc.s[sc.pos]
	}
	return 0
}

// eat skips c if it is next.
func (sc *scanner) eat(c byte) bool {
	if sc.peek() == c {
		sc.pos++
		return true
	}
	return false
}

// end reports whether only space is left.
func (sc *scanner) end() bool {
	sc.space()
	return sc.pos == len(sc.s)
}

// object reads the object at the position, calling member with each member's name (which
// has no escapes) and the position at its value, which member must read.
func (sc *scanner) object(depth int, member func(name []byte) bool) bool {
	sc.space()
	if depth > maxScanDepth || !sc.eat('{') {
		return false
	}
	sc.space()
	if sc.eat('}') {
		return true
	}
	for {
		sc.space()
		if sc.peek() != '"' {
			return false
		}
		name, plain, ok := sc.str()
		if !ok || !plain {
			return false
		}
		sc.space()
		if !sc.eat(':') {
			return false
		}
		sc.space()
		if !member(name) {
			return false
		}
		sc.space()
		if !sc.eat(',') {
			return sc.eat('}')
		}
	}
}

// array reads the array at the position, calling elem at each element, which it must read.
func (sc *scanner) array(depth int, elem func() bool) bool {
	sc.space()
	if depth > maxScanDepth || !sc.eat('[') {
		return false
	}
	sc.space()
	if sc.eat(']') {
		return true
	}
	for {
		sc.space()
		if !elem() {
			return false
		}
		sc.space()
		if !sc.eat(',') {
			return sc.eat(']')
		}
	}
}

// skip reads the value at the position, of nesting depth.
func (sc *scanner) skip(depth int) bool {
	sc.space()
	switch c := sc.peek(); {
	case c == '{':
		if depth > maxScanDepth {
			return false
		}
		sc.pos++
		sc.space()
		if sc.eat('}') {
			return true
		}
		for {
			sc.space()
			if sc.peek() != '"' {
				return false
			}
			if _, _, ok := sc.str(); !ok {
				return false
			}
			sc.space()
			if !sc.eat(':') || !sc.skip(depth+1) {
				return false
			}
			sc.space()
			if !sc.eat(',') {
				return sc.eat('}')
			}
		}
	case c == '[':
		return sc.array(depth, func() bool { return sc.skip(depth + 1) })
	case c == '"':
		_, _, ok := sc.str()
		return ok
	case c == '-' || c >= '0' && c <= '9':
		return sc.number()
	case c == 't':
		return sc.literal("true")
	case c == 'f':
		return sc.literal("false")
	case c == 'n':
		return sc.literal("null")
	}
	return false
}

// literal reads word.
func (sc *scanner) literal(word string) bool {
	if len(sc.s)-sc.pos < len(word) || string(sc.s[sc.pos:sc.pos+len(word)]) != word {
		return false
	}
	sc.pos += len(word)
	return true
}

// number reads a number.
func (sc *scanner) number() bool {
	digits := func() int {
		n := 0
		for sc.pos < len(sc.s) && sc.s[sc.pos] >= '0' && sc.s[sc.pos] <= '9' {
			sc.pos++
			n++
		}
		return n
	}
	sc.eat('-')
	switch {
	case sc.eat('0'):
	case digits() == 0:
		return false
	}
	if sc.eat('.') && digits() == 0 {
		return false
	}
	if sc.eat('e') || sc.eat('E') {
		if !sc.eat('+') {
			sc.eat('-')
		}
		if digits() == 0 {
			return false
		}
	}
	return true
}

// str reads a string and returns its text between the quotes, and whether that has no
// escapes (so that it is the string's value).
func (sc *scanner) str() (text []byte, plain, ok bool) {
	sc.pos++ // "
	start, plain := sc.pos, true
	for sc.pos < len(sc.s) {
		switch c := sc.s[sc.pos]; {
		case c == '"':
			sc.pos++
			return sc.s[start : sc.pos-1], plain, true
		case c == '\\':
			plain = false
			if sc.pos+1 >= len(sc.s) {
				return nil, false, false
			}
			switch sc.s[sc.pos+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				sc.pos += 2
			case 'u':
				if len(sc.s)-sc.pos < 6 {
					return nil, false, false
				}
				for _, h := range sc.s[sc.pos+2 : sc.pos+6] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return nil, false, false
					}
				}
				sc.pos += 6
			default:
				return nil, false, false
			}
		case c < 0x20:
			return nil, false, false
		case c < utf8.RuneSelf:
			sc.pos++
		default:
			r, size := utf8.DecodeRune(sc.s[sc.pos:])
			if r == utf8.RuneError && size == 1 {
				return nil, false, false
			}
			sc.pos += size
		}
	}
	return nil, false, false
}
