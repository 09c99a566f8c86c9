package dtdl

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// ValidationError reports every problem found in a value or twin document, not only the
// first. Problems are sorted by Path (then by their order of discovery), so the same input
// always yields the same error.
type ValidationError struct {
	Problems []ValueProblem
	// Omitted counts further problems that were found but not listed: at most maxProblems are
	// kept, so a huge invalid document cannot make a huge error. When problems are omitted,
	// which ones are kept depends on map iteration order.
	Omitted int
}

// Error returns the problems as "path: message", separated by "; ".
func (e *ValidationError) Error() string {
	var b strings.Builder
	for i, p := range e.Problems {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(p.String())
	}
	if e.Omitted > 0 {
		fmt.Fprintf(&b, "; and %d more problems", e.Omitted)
	}
	return b.String()
}

// ValueProblem is one reason a value does not conform.
type ValueProblem struct {
	// Path locates the value: property, component, field and map-key names and array indexes
	// joined by "/", e.g. "thermostat/setPoint", "address/zip" or "readings/3". A name holding
	// "~" or "/" is escaped as in a JSON Pointer ("~0", "~1"). It is empty for the value itself
	// when Schema.Validate is called directly.
	Path string
	// Expected describes the schema at Path in words, e.g. "integer", "Object
	// dtmi:ex:Address;1", `one of enum values ["on","off"]`, "GeoJSON Point". It is empty when
	// nothing is expected there (an unknown property or field).
	Expected string
	// Message says what is wrong, e.g. `"abc" is not a valid integer`.
	Message string
}

// String returns "path: message", or only the message when Path is empty.
func (p ValueProblem) String() string {
	if p.Path == "" {
		return p.Message
	}
	return p.Path + ": " + p.Message
}

const (
	// maxDepth bounds the nesting the checker follows (path segments: components, properties,
	// fields, map keys, array elements). DTDL limits complex schemas to far less; the bound
	// guards against a malformed, cyclic schema tree.
	maxDepth = 32
	// maxProblems bounds the problems a ValidationError lists.
	maxProblems = 100
	// maxShownValue bounds the characters of a value quoted in a message.
	maxShownValue = 64
)

// Validate reports whether v conforms to s; it returns nil or a *ValidationError.
//
// v is a value as encoding/json decodes it with UseNumber: nil, bool, json.Number, string,
// []any or map[string]any (float64, int and int64 are accepted as numbers too).
//
// JSON null conforms to no schema, for properties, Object fields, Map values and Array elements
// alike. DTDL defines no null value (the DTDL reference parser's instance validation refuses
// null for every schema), and an ADT twin has no "set to nothing" state: a property is set or
// absent, and a JSON Patch "remove" unsets it. The message says so.
//
// Numbers: integer and long accept a JSON number in integer notation (no fraction, no exponent:
// "12" but not "12.0" or "1.2e1") within the signed 32- or 64-bit range, as the DTDL reference
// parser does. double and float accept any JSON number within the float64 or float32 range
// (overflow is refused; underflow rounds to zero). Strings that hold numbers are not numbers.
func (s *Schema) Validate(v any) error {
	var c checker
	c.value(s, v)
	return c.err()
}

// checker walks a value against a schema, tracking the path, and collects problems. Its zero
// value is ready; it lives on the caller's stack, so a walk that finds nothing allocates
// nothing.
type checker struct {
	problems []ValueProblem
	omitted  int
	depth    int
	path     [maxDepth]segment
	// pathOnly resolves paths without checking the value found there (CheckPath).
	pathOnly bool
}

// segment is one step of a path: a name, or an array index when name is empty and index >= 0.
type segment struct {
	name  string
	index int
}

// push enters a named child. It reports false (and records a problem) when the nesting is too
// deep to follow; the caller must then not descend nor pop.
func (c *checker) push(name string) bool {
	return c.pushSegment(segment{name: name, index: -1})
}

// pushIndex enters an array element.
func (c *checker) pushIndex(i int) bool {
	return c.pushSegment(segment{index: i})
}

func (c *checker) pushSegment(s segment) bool {
	if c.depth == maxDepth {
		c.report("", fmt.Sprintf("the value is nested deeper than %d levels", maxDepth))
		return false
	}
	c.path[c.depth] = s
	c.depth++
	return true
}

func (c *checker) pop() { c.depth-- }

// pathString renders the current path.
func (c *checker) pathString() string {
	var b strings.Builder
	for i, s := range c.path[:c.depth] {
		if i > 0 {
			b.WriteByte('/')
		}
		if s.name == "" && s.index >= 0 {
			b.WriteString(strconv.Itoa(s.index))
			continue
		}
		if strings.ContainsAny(s.name, "~/") {
			b.WriteString(strings.NewReplacer("~", "~0", "/", "~1").Replace(s.name))
			continue
		}
		b.WriteString(s.name)
	}
	return b.String()
}

// report records a problem at the current path.
func (c *checker) report(expected, message string) {
	if len(c.problems) == maxProblems {
		c.omitted++
		return
	}
	c.problems = append(c.problems, ValueProblem{Path: c.pathString(), Expected: expected, Message: message})
}

// err returns the collected problems as a *ValidationError, or nil if there are none.
func (c *checker) err() error {
	if len(c.problems) == 0 {
		return nil
	}
	slices.SortStableFunc(c.problems, func(a, b ValueProblem) int { return cmp.Compare(a.Path, b.Path) })
	return &ValidationError{Problems: c.problems, Omitted: c.omitted}
}

// value checks v against s at the current path.
func (c *checker) value(s *Schema, v any) {
	if s == nil {
		c.report("", "the model gives no schema for this value")
		return
	}
	if v == nil {
		c.report(describeSchema(s), fmt.Sprintf("null is not a valid %s; to unset a property, remove it", describeSchema(s)))
		return
	}
	switch s.Kind {
	case KindBoolean:
		if _, ok := v.(bool); !ok {
			c.notValid(s, v, "")
		}
	case KindString:
		if _, ok := v.(string); !ok {
			c.notValid(s, v, "")
		}
	case KindInteger:
		c.integral(s, v, 32)
	case KindLong:
		c.integral(s, v, 64)
	case KindDouble:
		c.floating(s, v, 64)
	case KindFloat:
		c.floating(s, v, 32)
	case KindDate:
		if str, ok := v.(string); !ok || !isDate(str) {
			c.notValid(s, v, `an RFC 3339 full-date such as "2024-02-29"`)
		}
	case KindDateTime:
		if str, ok := v.(string); !ok || !isDateTime(str) {
			c.notValid(s, v, `an RFC 3339 date-time such as "2024-02-29T13:45:00.5Z"`)
		}
	case KindTime:
		if str, ok := v.(string); !ok || !isTime(str) {
			c.notValid(s, v, `an RFC 3339 time such as "13:45:00" or "13:45:00.5+01:00"`)
		}
	case KindDuration:
		if str, ok := v.(string); !ok || !isDuration(str) {
			c.notValid(s, v, `an ISO 8601 duration such as "P1Y2M3DT4H5M6.5S", "PT0S" or "P3W"`)
		}
	case KindPoint, KindLineString, KindPolygon, KindMultiPoint, KindMultiLineString, KindMultiPolygon:
		m, ok := v.(map[string]any)
		if !ok {
			c.report(describeSchema(s), fmt.Sprintf("%s is not a GeoJSON %s object", describeValue(v), geoJSONType(s.Kind)))
			return
		}
		if p := geoProblem(s.Kind, m); p != "" {
			c.report(describeSchema(s), fmt.Sprintf("not a valid GeoJSON %s: %s", geoJSONType(s.Kind), p))
		}
	case KindEnum:
		c.enum(s, v)
	case KindObject:
		c.object(s, v)
	case KindMap:
		c.mapValue(s, v)
	case KindArray:
		c.array(s, v)
	default:
		c.report("", fmt.Sprintf("the model gives an invalid schema (kind %s) for this value", s.Kind))
	}
}

// notValid reports v as not a valid s, with an optional hint on the expected form.
func (c *checker) notValid(s *Schema, v any, hint string) {
	msg := fmt.Sprintf("%s is not a valid %s", describeValue(v), describeSchema(s))
	if hint != "" {
		msg += "; expected " + hint
	}
	c.report(describeSchema(s), msg)
}

func (c *checker) integral(s *Schema, v any, bits int) {
	switch _, class := integralValue(v, bits); class {
	case numNotNumber:
		c.notValid(s, v, "")
	case numNotIntegral:
		c.notValid(s, v, "a whole number without fraction or exponent")
	case numOutOfRange:
		if bits == 32 {
			c.notValid(s, v, "a whole number from -2147483648 to 2147483647")
		} else {
			c.notValid(s, v, "a whole number from -9223372036854775808 to 9223372036854775807")
		}
	}
}

func (c *checker) floating(s *Schema, v any, bits int) {
	switch floatClass(v, bits) {
	case numNotNumber:
		c.notValid(s, v, "")
	case numOutOfRange:
		if bits == 32 {
			c.notValid(s, v, "a number within the float32 range (about ±3.4e38)")
		} else {
			c.notValid(s, v, "a number within the float64 range (about ±1.8e308)")
		}
	}
}

// enum checks membership by value: the value of one of the EnumValues, never its name.
func (c *checker) enum(s *Schema, v any) {
	switch s.ValueSchema {
	case KindString:
		if str, ok := v.(string); ok {
			for _, ev := range s.EnumValues {
				if evs, ok := ev.Value.(string); ok && evs == str {
					return
				}
			}
		}
	case KindInteger:
		if n, class := integralValue(v, 32); class == numOK {
			for _, ev := range s.EnumValues {
				if evn, class := integralValue(ev.Value, 64); class == numOK && evn == n {
					return
				}
			}
		}
	}
	c.report(describeSchema(s), fmt.Sprintf("%s is not %s", describeValue(v), describeSchema(s)))
}

// object checks a JSON object against an Object schema: only declared fields, each valid; any
// field may be absent.
func (c *checker) object(s *Schema, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		c.report(describeSchema(s), fmt.Sprintf("%s is not a JSON object", describeValue(v)))
		return
	}
	for name, fv := range m {
		f := s.field(name)
		if !c.push(name) {
			return
		}
		if f == nil {
			c.report("", fmt.Sprintf("'%s' is not a field of %s", name, describeSchema(s)))
		} else {
			c.value(f.Schema, fv)
		}
		c.pop()
	}
}

// field returns the Object field called name, or nil.
func (s *Schema) field(name string) *Field {
	for _, f := range s.Fields {
		if f.Name == name {
			return f
		}
	}
	return nil
}

// mapValue checks a JSON object against a Map schema: any string keys, every value valid.
func (c *checker) mapValue(s *Schema, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		c.report(describeSchema(s), fmt.Sprintf("%s is not a JSON object", describeValue(v)))
		return
	}
	vs := s.mapValueSchema()
	for k, mv := range m {
		if !c.push(k) {
			return
		}
		c.value(vs, mv)
		c.pop()
	}
}

// mapValueSchema returns the schema of a Map's values, or nil if the Map has none.
func (s *Schema) mapValueSchema() *Schema {
	if s.MapValue == nil {
		return nil
	}
	return s.MapValue.Schema
}

// array checks a JSON array against an Array schema: every element valid.
func (c *checker) array(s *Schema, v any) {
	a, ok := v.([]any)
	if !ok {
		c.report(describeSchema(s), fmt.Sprintf("%s is not a JSON array", describeValue(v)))
		return
	}
	for i, e := range a {
		if !c.pushIndex(i) {
			return
		}
		c.value(s.ElementSchema, e)
		c.pop()
	}
}

// describeSchema names s in words for messages: "integer", "Object dtmi:ex:Address;1",
// "Array of double", "Map of string", `one of enum values ["on","off"]`, "GeoJSON Point". An
// Enum nested in an Array or Map is named "Enum <dtmi>"; its values are listed where it is
// checked.
func describeSchema(s *Schema) string {
	return describeSchemaDepth(s, 0)
}

func describeSchemaDepth(s *Schema, depth int) string {
	if s == nil {
		return "no schema"
	}
	if depth == maxDepth {
		return s.Kind.String()
	}
	switch s.Kind {
	case KindObject:
		return "Object " + s.ID
	case KindArray:
		return "Array of " + describeSchemaDepth(s.ElementSchema, depth+1)
	case KindMap:
		return "Map of " + describeSchemaDepth(s.mapValueSchema(), depth+1)
	case KindEnum:
		if depth > 0 {
			return "Enum " + s.ID
		}
		var b strings.Builder
		b.WriteString("one of enum values [")
		for i, ev := range s.EnumValues {
			if i > 0 {
				b.WriteByte(',')
			}
			text, err := json.Marshal(ev.Value)
			if err != nil {
				text = []byte(fmt.Sprint(ev.Value))
			}
			b.Write(text)
		}
		b.WriteByte(']')
		return b.String()
	}
	if t := geoJSONType(s.Kind); t != "" {
		return "GeoJSON " + t
	}
	return s.Kind.String()
}

// describeValue renders v briefly for a message: scalars as JSON text (long strings and
// numbers cut short), arrays and objects by their kind only.
func describeValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case bool:
		return strconv.FormatBool(x)
	case json.Number:
		return shorten(string(x))
	case string:
		return strconv.Quote(shorten(x))
	case float64:
		return strconv.FormatFloat(x, 'g', -1, 64)
	case int:
		return strconv.Itoa(x)
	case int64:
		return strconv.FormatInt(x, 10)
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("a Go %T", v)
}

// shorten cuts s to maxShownValue characters, marking the cut with "...".
func shorten(s string) string {
	if utf8.RuneCountInString(s) <= maxShownValue {
		return s
	}
	n := 0
	for i := range s {
		if n == maxShownValue {
			return s[:i] + "..."
		}
		n++
	}
	return s
}
