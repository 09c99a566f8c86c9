package twin

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"

	"github.com/twinflow/twinflow/internal/jsontext"
)

// Encode encodes a decoded JSON value (nil, bool, json.Number, string, []any, map[string]any
// and the raw entries of DecodeDocument; other types go through encoding/json) as compact JSON with object keys sorted, as
// encoding/json does, but without HTML escaping and without reflection: documents are encoded
// on every write.
func Encode(v any) ([]byte, error) {
	return appendValue(make([]byte, 0, 1024), v)
}

func appendValue(b []byte, v any) ([]byte, error) {
	switch v := v.(type) {
	case nil:
		return append(b, "null"...), nil
	case bool:
		return strconv.AppendBool(b, v), nil
	case string:
		return jsontext.AppendString(b, v), nil
	case json.Number:
		if v == "" {
			return append(b, '0'), nil
		}
		if end, ok := scanNumber(string(v), 0); !ok || end != len(v) {
			return nil, fmt.Errorf("invalid number %q", string(v))
		}
		return append(b, v...), nil
	case rawJSON:
		return append(b, v...), nil
	case map[string]any:
		var buf [16]string // the keys of most objects, without a heap allocation
		keys := buf[:0]
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = jsontext.AppendString(b, k)
			b = append(b, ':')
			var err error
			if b, err = appendValue(b, v[k]); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case []any:
		b = append(b, '[')
		for i, e := range v {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendValue(b, e); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	}
	enc, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return append(b, enc...), nil
}
