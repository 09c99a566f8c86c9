package sqlite

import (
	"encoding/json"
	"errors"
	"unicode/utf8"

	"github.com/twinflow/twinflow/internal/event"
)

// errInvalidData is returned by appendEvent when an event's Data is not valid JSON.
var errInvalidData = errors.New("data is not valid JSON")

// appendEvent appends the JSON form of e to buf, as encoding/json writes it (the same names,
// empty optional attributes left out, Data verbatim) but without reflection: it is on the
// write path of every Update. It fails if e.Data is not valid JSON.
func appendEvent(buf []byte, e *event.Event) ([]byte, error) {
	if len(e.Data) > 0 && !json.Valid(e.Data) {
		return buf, errInvalidData
	}
	buf = appendField(buf, `{"id":`, e.ID)
	buf = appendField(buf, `,"source":`, e.Source)
	buf = appendField(buf, `,"specversion":`, e.SpecVersion)
	buf = appendField(buf, `,"type":`, e.Type)
	for _, f := range [...]struct{ name, value string }{
		{`,"subject":`, e.Subject},
		{`,"time":`, e.Time},
		{`,"datacontenttype":`, e.DataContentType},
		{`,"dataschema":`, e.DataSchema},
		{`,"traceparent":`, e.TraceParent},
	} {
		if f.value != "" {
			buf = appendField(buf, f.name, f.value)
		}
	}
	if len(e.Data) > 0 {
		buf = append(buf, `,"data":`...)
		buf = append(buf, e.Data...)
	}
	return append(buf, '}'), nil
}

// appendField appends name and then value as a JSON string.
func appendField(buf []byte, name, value string) []byte {
	buf = append(buf, name...)
	return appendString(buf, value)
}

// appendString appends s as a JSON string, escaping what JSON requires and, as encoding/json
// does, replacing invalid UTF-8 with U+FFFD.
func appendString(buf []byte, s string) []byte {
	const hex = "0123456789abcdef"
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= utf8.RuneSelf {
			r, size := utf8.DecodeRuneInString(s[i:])
			if r == utf8.RuneError && size == 1 {
				buf = append(buf, s[start:i]...)
				buf = append(buf, `\ufffd`...)
				i += size
				start = i
				continue
			}
			i += size
			continue
		}
		if c >= 0x20 && c != '"' && c != '\\' {
			i++
			continue
		}
		buf = append(buf, s[start:i]...)
		switch c {
		case '"', '\\':
			buf = append(buf, '\\', c)
		case '\n':
			buf = append(buf, '\\', 'n')
		case '\r':
			buf = append(buf, '\\', 'r')
		case '\t':
			buf = append(buf, '\\', 't')
		default:
			buf = append(buf, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
		}
		i++
		start = i
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}
