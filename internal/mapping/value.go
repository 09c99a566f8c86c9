package mapping

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"

	"github.com/twinflow/twinflow/internal/twin"
)

// bodyValue returns message.body for a message body: the JSON value when the body is JSON,
// else the body as a string (invalid UTF-8 replaced by U+FFFD).
func bodyValue(body []byte) ref.Val {
	var v any
	if err := twin.Decode(body, &v); err == nil {
		return jsonAdapter{}.NativeToValue(v)
	}
	return types.String(strings.ToValidUTF8(string(body), "\uFFFD"))
}

// jsonAdapter is the CEL type adapter of the mapping environments. It adapts JSON documents
// decoded by twin.Decode (numbers as json.Number) lazily, as expressions reach into them,
// and leaves everything else to CEL's default adapter.
//
// Objects become maps with string keys, arrays lists, and every number a double, as in
// CEL's own mapping of JSON (google.protobuf.Value): a number's CEL type does not depend on
// whether the sender happened to write a fraction, so an expression that works for 21.5
// works for 21. A number beyond the range of doubles is an infinity, which cannot be
// written back.
type jsonAdapter struct{}

// NativeToValue implements types.Adapter.
func (a jsonAdapter) NativeToValue(v any) ref.Val {
	switch v := v.(type) {
	case nil:
		return types.NullValue
	case bool:
		return types.Bool(v)
	case string:
		return types.String(v)
	case json.Number:
		f, err := strconv.ParseFloat(string(v), 64)
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return types.WrapErr(err)
		}
		return types.Double(f)
	case map[string]any:
		return types.NewMap(a, v)
	case []any:
		return types.NewList(a, v)
	}
	return types.DefaultTypeAdapter.NativeToValue(v)
}

// decodeDoc decodes a twin document for patches (Go values) and for CEL (their adaptation).
func decodeDoc(data []byte) (map[string]any, ref.Val, error) {
	var doc map[string]any
	if err := twin.Decode(data, &doc); err != nil {
		return nil, nil, err
	}
	return doc, jsonAdapter{}.NativeToValue(doc), nil
}

// errNotJSON is wrapped by the errors of toJSON.
var errNotJSON = errors.New("not representable as JSON")

// toJSON converts a CEL value to the JSON value it stands for, as the package twin encodes it
// (nil, bool, string, json.Number, []any, map[string]any):
//
//   - null, bool, string, lists, and maps with string keys as themselves;
//   - int, uint and double as JSON numbers, exactly (a double in its shortest form that reads
//     back as the same double: 21.0 is 21, 0.1 is 0.1); NaN and infinities fail;
//   - timestamps as RFC 3339 strings in UTC, as DTDL's dateTime and the protobuf JSON
//     mapping write them.
//
// Anything else fails: bytes (write base64 or string(b) instead), durations (write
// string(d), "3600s"), types, optionals inside a value, maps with other keys. Values nested
// deeper than maxJSONDeep fail too.
func toJSON(v ref.Val) (any, error) {
	return toJSONAt(v, 0)
}

func toJSONAt(v ref.Val, depth int) (any, error) {
	if depth > maxJSONDeep {
		return nil, fmt.Errorf("%w: nested deeper than %d levels", errNotJSON, maxJSONDeep)
	}
	switch v := v.(type) {
	case types.Null:
		return nil, nil
	case types.Bool:
		return bool(v), nil
	case types.String:
		return string(v), nil
	case types.Int:
		return json.Number(strconv.FormatInt(int64(v), 10)), nil
	case types.Uint:
		return json.Number(strconv.FormatUint(uint64(v), 10)), nil
	case types.Double:
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return nil, fmt.Errorf("%w: the double %v", errNotJSON, f)
		}
		return json.Number(formatDouble(f)), nil
	case types.Timestamp:
		return v.Time.UTC().Format(time.RFC3339Nano), nil
	case types.Bytes:
		return nil, fmt.Errorf("%w: bytes; write base64.encode(b) or string(b) instead", errNotJSON)
	case types.Duration:
		return nil, fmt.Errorf("%w: a duration; write string(d) instead", errNotJSON)
	case traits.Mapper:
		return mapToJSON(v, depth)
	case traits.Lister:
		n, ok := v.Size().(types.Int)
		if !ok {
			return nil, fmt.Errorf("%w: a list without a size", errNotJSON)
		}
		out := make([]any, n)
		for i := range out {
			e, err := toJSONAt(v.Get(types.Int(i)), depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = e
		}
		return out, nil
	case *types.Err:
		return nil, v
	}
	return nil, fmt.Errorf("%w: a value of type %s", errNotJSON, v.Type().TypeName())
}

// mapToJSON converts a CEL map whose keys are strings.
func mapToJSON(m traits.Mapper, depth int) (map[string]any, error) {
	n, _ := m.Size().(types.Int)
	out := make(map[string]any, n)
	for it := m.Iterator(); it.HasNext() == types.True; {
		k := it.Next()
		ks, ok := k.(types.String)
		if !ok {
			return nil, fmt.Errorf("%w: a map with a key of type %s; JSON object keys are strings", errNotJSON, k.Type().TypeName())
		}
		e, err := toJSONAt(m.Get(k), depth+1)
		if err != nil {
			return nil, err
		}
		out[string(ks)] = e
	}
	return out, nil
}

// formatDouble formats a finite double as encoding/json does: the shortest decimal that
// reads back as f, in exponent form only for very large or small magnitudes.
func formatDouble(f float64) string {
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	b := strconv.AppendFloat(make([]byte, 0, 24), f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		if n := len(b); n >= 4 && b[n-4] == 'e' && b[n-3] == '-' && b[n-2] == '0' {
			b[n-2] = b[n-1]
			b = b[:n-1]
		}
	}
	return string(b)
}
