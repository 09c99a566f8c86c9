package twin

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// maxDepth bounds the nesting of decoded documents, as encoding/json does.
const maxDepth = 10000

// Decode decodes one JSON value into v, as encoding/json does with UseNumber. For *any and
// *map[string]any (the documents of every request) it uses a decoder without reflection; other
// targets go through encoding/json. Text after the value is an error.
func Decode(data []byte, v any) error {
	switch p := v.(type) {
	case *any:
		val, err := decodeValue(data)
		if err != nil {
			return err
		}
		*p = val
		return nil
	case *map[string]any:
		val, err := decodeValue(data)
		if err != nil {
			return err
		}
		switch m := val.(type) {
		case map[string]any:
			*p = m
		case nil:
			*p = nil
		default:
			return fmt.Errorf("json: cannot decode %s into an object", describeJSON(val))
		}
		return nil
	}
	if !json.Valid(data) {
		_, err := decodeValue(data)
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	return dec.Decode(v)
}

// describeJSON names the JSON type of a decoded value, for error messages.
func describeJSON(v any) string {
	switch v.(type) {
	case []any:
		return "an array"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	}
	return "a value"
}

// DecodeDocument decodes a stored twin document for a patch: as Decode into a map, except that
// every object-valued member of the document's own $metadata (the per-property entries
// {"lastUpdateTime", "sourceTime"?}) is kept as its JSON text, which Encode writes back
// unchanged. ApplyTwinPatch decodes the entries it touches; the others cost no decoding.
// Components' $metadata objects are decoded as usual.
func DecodeDocument(data []byte) (map[string]any, error) {
	d := &decoder{s: string(data)}
	d.rawMetadata = true
	v, err := d.document()
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("json: cannot decode %s into an object", describeJSON(v))
	}
	return m, nil
}

// DecodeMembers decodes a JSON object as Decode into a map does, keeping only the members
// named in keep: the others are checked and skipped without being decoded, which costs a
// fraction of decoding them. A reader of a few properties of a large twin uses it.
func DecodeMembers(data []byte, keep []string) (map[string]any, error) {
	d := &decoder{s: string(data), keep: keep}
	if d.skipSpace(); d.pos >= len(d.s) || d.s[d.pos] != '{' {
		v, err := d.document()
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("json: cannot decode %s into an object", describeJSON(v))
	}
	v, err := d.document()
	if err != nil {
		return nil, err
	}
	return v.(map[string]any), nil
}

// decodeValue decodes data, which must hold exactly one JSON value between optional
// whitespace.
func decodeValue(data []byte) (any, error) {
	d := &decoder{s: string(data)}
	return d.document()
}

// document decodes the whole input: one value between optional whitespace.
func (d *decoder) document() (any, error) {
	d.skipSpace()
	v, err := d.value(0)
	if err != nil {
		return nil, err
	}
	d.skipSpace()
	if d.pos != len(d.s) {
		return nil, d.errorf("unexpected data after the JSON value")
	}
	return v, nil
}

// decoder is a recursive-descent JSON decoder producing the values encoding/json produces with
// UseNumber. It decodes from one string, so that strings without escapes and numbers share
// its memory instead of each being copied.
type decoder struct {
	s   string
	pos int
	// members is a stack of the key/value pairs of the objects being decoded: each object's
	// map is made at its final size once its last pair is read.
	members []member
	// rawMetadata keeps the object-valued members of the root object's $metadata as rawJSON.
	rawMetadata bool
	// keep, when not nil, names the only members of the root object that are decoded; the
	// others are skipped.
	keep []string
}

// member is one key/value pair of an object being decoded.
type member struct {
	key   string
	value any
}

// rawJSON is a JSON value kept as its text by DecodeDocument. Encode writes it unchanged.
type rawJSON string

// MarshalJSON returns the text, so that encoding/json writes a rawJSON as Encode does.
func (r rawJSON) MarshalJSON() ([]byte, error) {
	return []byte(r), nil
}

// errEnd reports input that stops inside a value.
var errEnd = errors.New("unexpected end of JSON input")

// errorf reports a syntax error at the current offset.
func (d *decoder) errorf(format string, args ...any) error {
	return fmt.Errorf("json: offset %d: %s", d.pos, fmt.Sprintf(format, args...))
}

// skipSpace skips JSON whitespace.
func (d *decoder) skipSpace() {
	for d.pos < len(d.s) {
		switch d.s[d.pos] {
		case ' ', '\t', '\n', '\r':
			d.pos++
		default:
			return
		}
	}
}

// value decodes the value starting at d.pos; depth is its nesting level.
func (d *decoder) value(depth int) (any, error) {
	if d.pos >= len(d.s) {
		return nil, errEnd
	}
	if depth > maxDepth {
		return nil, d.errorf("exceeded max depth")
	}
	switch c := d.s[d.pos]; {
	case c == '{':
		return d.object(depth, false)
	case c == '[':
		return d.array(depth)
	case c == '"':
		return d.string()
	case c == 't':
		return true, d.literal("true")
	case c == 'f':
		return false, d.literal("false")
	case c == 'n':
		return nil, d.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		n, err := d.number()
		if err != nil {
			return nil, err
		}
		return json.Number(n), nil
	default:
		return nil, d.errorf("invalid character %q looking for beginning of value", c)
	}
}

// literal consumes word (true, false or null).
func (d *decoder) literal(word string) error {
	if !strings.HasPrefix(d.s[d.pos:], word) {
		return d.errorf("invalid literal, want %s", word)
	}
	d.pos += len(word)
	return nil
}

// object decodes an object; a repeated key keeps its last value, as in encoding/json. With
// rawMembers, members whose value is an object are kept as rawJSON.
func (d *decoder) object(depth int, rawMembers bool) (any, error) {
	d.pos++ // {
	if d.members == nil {
		// Sized from the input, so that it rarely grows: stored twin documents take some
		// 30 bytes a member.
		d.members = make([]member, 0, min(len(d.s)/32+1, 64))
	}
	base := len(d.members)
	d.skipSpace()
	if d.pos < len(d.s) && d.s[d.pos] == '}' {
		d.pos++
		return map[string]any{}, nil
	}
	for more := true; more; {
		k, err := d.key()
		if err != nil {
			return nil, err
		}
		if depth == 0 && d.keep != nil && !slices.Contains(d.keep, k) {
			err = d.skip(depth + 1)
		} else {
			var v any
			switch {
			case d.pos < len(d.s) && d.s[d.pos] == '{' && rawMembers:
				start := d.pos
				if err = d.skip(depth + 1); err == nil {
					v = rawJSON(d.s[start:d.pos])
				}
			case d.pos < len(d.s) && d.s[d.pos] == '{' && d.rawMetadata && depth == 0 && k == KeyMetadata:
				v, err = d.object(depth+1, true)
			default:
				v, err = d.value(depth + 1)
			}
			d.members = append(d.members, member{k, v})
		}
		if err != nil {
			return nil, err
		}
		if more, err = d.next('}', "after object key:value pair"); err != nil {
			return nil, err
		}
	}
	m := make(map[string]any, len(d.members)-base)
	for _, e := range d.members[base:] {
		m[e.key] = e.value
	}
	clear(d.members[base:])
	d.members = d.members[:base]
	return m, nil
}

// key reads an object key and the colon after it, and skips the space before the value.
func (d *decoder) key() (string, error) {
	d.skipSpace()
	if d.pos >= len(d.s) {
		return "", errEnd
	}
	if d.s[d.pos] != '"' {
		return "", d.errorf("invalid character %q looking for beginning of object key string", d.s[d.pos])
	}
	k, err := d.string()
	if err != nil {
		return "", err
	}
	d.skipSpace()
	if d.pos >= len(d.s) {
		return "", errEnd
	}
	if d.s[d.pos] != ':' {
		return "", d.errorf("invalid character %q after object key", d.s[d.pos])
	}
	d.pos++
	d.skipSpace()
	return k, nil
}

// next reads what follows an object member or array element: a comma (more follow) or the
// closing byte (the last one). what names the position in the error for anything else.
func (d *decoder) next(closing byte, what string) (more bool, err error) {
	d.skipSpace()
	if d.pos >= len(d.s) {
		return false, errEnd
	}
	switch d.s[d.pos] {
	case ',':
		d.pos++
		return true, nil
	case closing:
		d.pos++
		return false, nil
	}
	return false, d.errorf("invalid character %q %s", d.s[d.pos], what)
}

// array decodes an array; an empty one is an empty, non-nil slice.
func (d *decoder) array(depth int) (any, error) {
	d.pos++ // [
	a := []any{}
	d.skipSpace()
	if d.pos < len(d.s) && d.s[d.pos] == ']' {
		d.pos++
		return a, nil
	}
	for {
		d.skipSpace()
		v, err := d.value(depth + 1)
		if err != nil {
			return nil, err
		}
		a = append(a, v)
		more, err := d.next(']', "after array element")
		if err != nil {
			return nil, err
		}
		if !more {
			return a, nil
		}
	}
}

// skip checks the value at d.pos as value does, without building it.
func (d *decoder) skip(depth int) error {
	if d.pos >= len(d.s) {
		return errEnd
	}
	if depth > maxDepth {
		return d.errorf("exceeded max depth")
	}
	var err error
	switch c := d.s[d.pos]; {
	case c == '{' || c == '[':
		d.pos++
		d.skipSpace()
		closing, what := byte('}'), "after object key:value pair"
		if c == '[' {
			closing, what = ']', "after array element"
		}
		if d.pos < len(d.s) && d.s[d.pos] == closing {
			d.pos++
			return nil
		}
		for more := true; more; {
			if c == '{' {
				if _, err := d.key(); err != nil {
					return err
				}
			} else {
				d.skipSpace()
			}
			if err := d.skip(depth + 1); err != nil {
				return err
			}
			if more, err = d.next(closing, what); err != nil {
				return err
			}
		}
	case c == '"':
		_, err = d.string()
	case c == '-' || (c >= '0' && c <= '9'):
		_, err = d.number()
	default:
		_, err = d.value(depth) // a literal, which allocates nothing, or a syntax error
	}
	return err
}

// number checks a number against the JSON grammar and returns its text.
func (d *decoder) number() (string, error) {
	end, ok := scanNumber(d.s, d.pos)
	if !ok {
		d.pos = end
		return "", d.errorf("invalid number")
	}
	n := d.s[d.pos:end]
	d.pos = end
	return n, nil
}

// scanNumber reads the JSON number at s[i:]. It returns where the number ends, or, when it
// breaks the grammar, where it does and false.
func scanNumber(s string, i int) (end int, ok bool) {
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	if i < len(s) && s[i] == '-' {
		i++
	}
	if i < len(s) && s[i] == '0' {
		i++
	} else if digits() == 0 {
		return i, false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return i, false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return i, false
		}
	}
	return i, true
}

// string decodes a string at d.pos (which is '"'), replacing invalid UTF-8 and unpaired
// surrogates by U+FFFD as encoding/json does.
func (d *decoder) string() (string, error) {
	d.pos++ // "
	start := d.pos
	// Fast path: no escapes, valid ASCII or UTF-8 (checked only when not all ASCII).
	ascii := true
	for i := start; i < len(d.s); i++ {
		c := d.s[i]
		if c >= utf8.RuneSelf {
			ascii = false
		}
		if c == '"' {
			if ascii || utf8.ValidString(d.s[start:i]) {
				d.pos = i + 1
				return d.s[start:i], nil
			}
			break
		}
		if c == '\\' || c < 0x20 {
			break
		}
	}
	var b []byte
	i := start
	for {
		if i >= len(d.s) {
			d.pos = i
			return "", errEnd
		}
		c := d.s[i]
		switch {
		case c == '"':
			d.pos = i + 1
			return string(b), nil
		case c < 0x20:
			d.pos = i
			return "", d.errorf("invalid character %q in string literal", c)
		case c == '\\':
			if i+1 >= len(d.s) {
				d.pos = i
				return "", errEnd
			}
			i++
			switch e := d.s[i]; e {
			case '"', '\\', '/':
				b = append(b, e)
				i++
			case 'b':
				b = append(b, '\b')
				i++
			case 'f':
				b = append(b, '\f')
				i++
			case 'n':
				b = append(b, '\n')
				i++
			case 'r':
				b = append(b, '\r')
				i++
			case 't':
				b = append(b, '\t')
				i++
			case 'u':
				r, ok := hex4(d.s, i+1)
				if !ok {
					d.pos = i
					return "", d.errorf("invalid escape in string literal")
				}
				i += 5
				if utf16.IsSurrogate(r) {
					r2, ok := rune(0), false
					if i+1 < len(d.s) && d.s[i] == '\\' && d.s[i+1] == 'u' {
						r2, ok = hex4(d.s, i+2)
					}
					if dec := utf16.DecodeRune(r, r2); ok && dec != utf8.RuneError {
						r = dec
						i += 6
					} else {
						r = utf8.RuneError
					}
				}
				b = utf8.AppendRune(b, r)
			default:
				d.pos = i
				return "", d.errorf("invalid escape %q in string literal", e)
			}
		case c < utf8.RuneSelf:
			b = append(b, c)
			i++
		default:
			r, size := utf8.DecodeRuneInString(d.s[i:])
			if r == utf8.RuneError && size == 1 {
				b = utf8.AppendRune(b, utf8.RuneError)
			} else {
				b = append(b, d.s[i:i+size]...)
			}
			i += size
		}
	}
}

// hex4 reads the four hex digits of a \u escape at s[i:].
func hex4(s string, i int) (rune, bool) {
	if i+4 > len(s) {
		return 0, false
	}
	var r rune
	for _, c := range s[i : i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r*16 + rune(c)
	}
	return r, true
}
