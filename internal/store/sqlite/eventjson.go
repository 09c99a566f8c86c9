package sqlite

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"

	"github.com/twinflow/twinflow/internal/jsontext"

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
		{`,"tracestate":`, e.TraceState},
		{`,"telemetrySourceTime":`, e.TelemetrySourceTime},
	} {
		if f.value != "" {
			buf = appendField(buf, f.name, f.value)
		}
	}
	if e.Hops != 0 {
		buf = append(buf, `,"`+event.HopsAttribute+`":`...)
		buf = strconv.AppendInt(buf, int64(e.Hops), 10)
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
	return jsontext.AppendString(buf, value)
}

// decodeEvent decodes into e a log record's event, as appendEvent wrote it. Records in that
// form (attributes in appendEvent's order, strings without escapes, data last) take a fast
// path: the attributes share one string allocation and e.Data aliases buf, which the caller
// must not reuse. Anything else, such as escaped strings, is decoded by encoding/json, so
// every record decodes as json.Unmarshal would decode it. The fast path does not validate
// e.Data: appendEvent wrote only valid JSON.
func decodeEvent(buf []byte, e *event.Event) error {
	if decodeEventFast(buf, e) {
		return nil
	}
	*e = event.Event{}
	return json.Unmarshal(buf, e)
}

// The event attributes decodeEventFast knows, indexes into its spans.
const (
	attrID = iota
	attrSource
	attrSpecVersion
	attrType
	attrSubject
	attrTime
	attrDataContentType
	attrDataSchema
	attrTraceParent
	attrTraceState
	attrTelemetrySourceTime
	attrCount
)

// decodeEventFast decodes buf into e and reports true if buf is in appendEvent's form;
// otherwise it reports false and e is unspecified.
func decodeEventFast(buf []byte, e *event.Event) bool {
	n := len(buf)
	if n < 2 || buf[0] != '{' || buf[n-1] != '}' {
		return false
	}
	var (
		spans [attrCount]struct{ lo, hi int }
		data  []byte
		hops  int
	)
	i := 1
	for i < n-1 {
		if buf[i] != '"' {
			return false
		}
		k := i + 1
		for k < n && buf[k] != '"' {
			if buf[k] == '\\' {
				return false
			}
			k++
		}
		if k+1 >= n || buf[k+1] != ':' {
			return false
		}
		key := buf[i+1 : k]
		i = k + 2
		if string(key) == "data" {
			// data is the last member: its value must end where the object does.
			j := valueEnd(buf, i)
			if j < 0 || j != n-1 {
				return false
			}
			data = buf[i:j:j]
			break
		}
		if string(key) == event.HopsAttribute {
			// A non-negative integer as strconv writes it; anything else leaves the fast path.
			j := i
			for j < n && j-i < 10 && buf[j] >= '0' && buf[j] <= '9' {
				hops = hops*10 + int(buf[j]-'0')
				j++
			}
			if j == i || (buf[i] == '0' && j-i > 1) {
				return false
			}
			switch i = j; {
			case buf[i] == ',' && i+1 < n-1:
				i++
			case i == n-1:
			default:
				return false
			}
			continue
		}
		var attr int
		switch string(key) {
		case "id":
			attr = attrID
		case "source":
			attr = attrSource
		case "specversion":
			attr = attrSpecVersion
		case "type":
			attr = attrType
		case "subject":
			attr = attrSubject
		case "time":
			attr = attrTime
		case "datacontenttype":
			attr = attrDataContentType
		case "dataschema":
			attr = attrDataSchema
		case "traceparent":
			attr = attrTraceParent
		case "tracestate":
			attr = attrTraceState
		case "telemetrySourceTime":
			attr = attrTelemetrySourceTime
		default:
			return false
		}
		if i >= n || buf[i] != '"' {
			return false
		}
		lo := i + 1
		ascii := true
		for i = lo; i < n && buf[i] != '"'; i++ {
			switch c := buf[i]; {
			case c == '\\' || c < 0x20:
				return false
			case c >= utf8.RuneSelf:
				ascii = false
			}
		}
		if i >= n || (!ascii && !utf8.Valid(buf[lo:i])) {
			return false
		}
		spans[attr] = struct{ lo, hi int }{lo, i}
		i++
		switch {
		case buf[i] == ',' && i+1 < n-1:
			i++
		case i == n-1:
		default:
			return false
		}
	}
	end := 0
	for _, sp := range spans {
		end = max(end, sp.hi)
	}
	s := string(buf[:end])
	str := func(attr int) string { return s[spans[attr].lo:spans[attr].hi] }
	*e = event.Event{
		ID: str(attrID), Source: str(attrSource), SpecVersion: str(attrSpecVersion), Type: str(attrType),
		Subject: str(attrSubject), Time: str(attrTime), DataContentType: str(attrDataContentType),
		DataSchema: str(attrDataSchema), TraceParent: str(attrTraceParent), TraceState: str(attrTraceState),
		TelemetrySourceTime: str(attrTelemetrySourceTime), Hops: hops, Data: data,
	}
	return true
}

// valueEnd returns the index just after the JSON value starting at buf[i], or -1 if none
// starts there. It finds the value's extent (nesting, strings and their escapes) without
// validating it.
func valueEnd(buf []byte, i int) int {
	if i >= len(buf) {
		return -1
	}
	switch buf[i] {
	case '{', '[':
		depth := 0
		for ; i < len(buf); i++ {
			switch buf[i] {
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			case '"':
				if i = stringEnd(buf, i); i < 0 {
					return -1
				}
				i-- // the loop steps past the closing quote
			}
		}
		return -1
	case '"':
		return stringEnd(buf, i)
	}
	start := i
	for i < len(buf) && (buf[i] >= '0' && buf[i] <= '9' || buf[i] >= 'a' && buf[i] <= 'z' || buf[i] == '-' || buf[i] == '+' || buf[i] == '.' || buf[i] == 'E') {
		i++
	}
	if i == start {
		return -1
	}
	return i
}

// stringEnd returns the index just after the JSON string whose opening quote is buf[i], or
// -1 if it does not end.
func stringEnd(buf []byte, i int) int {
	for i++; i < len(buf); i++ {
		switch buf[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}
