package dtdl

import (
	"encoding/json"
	"math"
	"strings"
	"testing"
)

// TestSchemaValidate checks every schema kind against JSON values. want is "" for a valid
// value, or a text the single problem's message must contain.
func TestSchemaValidate(t *testing.T) {
	tests := []struct {
		name   string
		schema *Schema
		json   string
		want   string
	}{
		{"boolean true", vtStd(KindBoolean), `true`, ""},
		{"boolean false", vtStd(KindBoolean), `false`, ""},
		{"boolean from string", vtStd(KindBoolean), `"true"`, `"true" is not a valid boolean`},
		{"boolean from number", vtStd(KindBoolean), `1`, `1 is not a valid boolean`},

		{"integer", vtStd(KindInteger), `42`, ""},
		{"integer negative", vtStd(KindInteger), `-7`, ""},
		{"integer max", vtStd(KindInteger), `2147483647`, ""},
		{"integer min", vtStd(KindInteger), `-2147483648`, ""},
		{"integer above max", vtStd(KindInteger), `2147483648`, "from -2147483648 to 2147483647"},
		{"integer below min", vtStd(KindInteger), `-2147483649`, "from -2147483648 to 2147483647"},
		{"integer negative zero", vtStd(KindInteger), `-0`, ""},
		{"integer with zero fraction", vtStd(KindInteger), `12.0`, `12.0 is not a valid integer; expected a whole number without fraction or exponent`},
		{"integer with exponent", vtStd(KindInteger), `1e3`, "without fraction or exponent"},
		{"integer with upper-case exponent", vtStd(KindInteger), `1E3`, "without fraction or exponent"},
		{"integer fraction", vtStd(KindInteger), `1.5`, "without fraction or exponent"},
		{"integer negative exponent", vtStd(KindInteger), `1e-1`, "without fraction or exponent"},
		{"integer far out of range", vtStd(KindInteger), `99999999999999999999999`, "from -2147483648"},
		{"integer from string", vtStd(KindInteger), `"abc"`, `"abc" is not a valid integer`},
		{"integer from numeric string", vtStd(KindInteger), `"12"`, `"12" is not a valid integer`},
		{"integer from bool", vtStd(KindInteger), `true`, `true is not a valid integer`},

		{"long max", vtStd(KindLong), `9223372036854775807`, ""},
		{"long min", vtStd(KindLong), `-9223372036854775808`, ""},
		{"long above max", vtStd(KindLong), `9223372036854775808`, "from -9223372036854775808"},
		{"long in exponent form", vtStd(KindLong), `9.223372036854775807e18`, "without fraction or exponent"},
		{"long beyond int32", vtStd(KindLong), `3000000000`, ""},
		{"long fraction", vtStd(KindLong), `3000000000.5`, "without fraction or exponent"},

		{"double", vtStd(KindDouble), `21.5`, ""},
		{"double integer text", vtStd(KindDouble), `21`, ""},
		{"double max", vtStd(KindDouble), `1.7976931348623157e308`, ""},
		{"double overflow", vtStd(KindDouble), `1e309`, "within the float64 range"},
		{"double negative overflow", vtStd(KindDouble), `-1e309`, "within the float64 range"},
		{"double underflow rounds to zero", vtStd(KindDouble), `1e-400`, ""},
		{"double from string", vtStd(KindDouble), `"21.5"`, `"21.5" is not a valid double`},
		{"double from null", vtStd(KindDouble), `null`, "null is not a valid double; to unset a property, remove it"},

		{"float", vtStd(KindFloat), `3.25`, ""},
		{"float max", vtStd(KindFloat), `3.4028234e38`, ""},
		{"float overflow", vtStd(KindFloat), `3.5e38`, "within the float32 range"},
		{"float fits double only", vtStd(KindFloat), `1e100`, "within the float32 range"},
		{"float underflow rounds to zero", vtStd(KindFloat), `1e-50`, ""},

		{"string", vtStd(KindString), `"hello"`, ""},
		{"string empty", vtStd(KindString), `""`, ""},
		{"string from number", vtStd(KindString), `5`, `5 is not a valid string`},
		{"string from object", vtStd(KindString), `{}`, `an object is not a valid string`},

		{"date", vtStd(KindDate), `"2024-03-15"`, ""},
		{"date leap day", vtStd(KindDate), `"2024-02-29"`, ""},
		{"date leap day 2000", vtStd(KindDate), `"2000-02-29"`, ""},
		{"date no leap day 2023", vtStd(KindDate), `"2023-02-29"`, "RFC 3339 full-date"},
		{"date no leap day 1900", vtStd(KindDate), `"1900-02-29"`, "RFC 3339 full-date"},
		{"date april 31", vtStd(KindDate), `"2024-04-31"`, "full-date"},
		{"date month 13", vtStd(KindDate), `"2024-13-01"`, "full-date"},
		{"date day 0", vtStd(KindDate), `"2024-01-00"`, "full-date"},
		{"date short", vtStd(KindDate), `"2024-1-01"`, "full-date"},
		{"date with time", vtStd(KindDate), `"2024-01-01T00:00:00Z"`, "full-date"},
		{"date number", vtStd(KindDate), `20240101`, "full-date"},

		{"dateTime UTC", vtStd(KindDateTime), `"2024-02-29T13:45:00Z"`, ""},
		{"dateTime fraction offset", vtStd(KindDateTime), `"2024-02-29T13:45:00.1234567+05:30"`, ""},
		{"dateTime lower-case t", vtStd(KindDateTime), `"2024-02-29t13:45:00Z"`, "date-time"},
		{"dateTime lower-case z", vtStd(KindDateTime), `"2024-02-29T13:45:00z"`, "date-time"},
		{"dateTime without offset", vtStd(KindDateTime), `"2024-02-29T13:45:00"`, "RFC 3339 date-time"},
		{"dateTime space separator", vtStd(KindDateTime), `"2024-02-29 13:45:00Z"`, "date-time"},
		{"dateTime bad day", vtStd(KindDateTime), `"2023-02-29T13:45:00Z"`, "date-time"},
		{"dateTime hour 24", vtStd(KindDateTime), `"2024-01-01T24:00:00Z"`, "date-time"},
		{"dateTime leap second", vtStd(KindDateTime), `"2016-12-31T23:59:60Z"`, "date-time"},
		{"dateTime empty fraction", vtStd(KindDateTime), `"2024-01-01T10:00:00.Z"`, "date-time"},
		{"dateTime bad offset", vtStd(KindDateTime), `"2024-01-01T10:00:00+0530"`, "date-time"},

		{"time", vtStd(KindTime), `"13:45:00"`, ""},
		{"time fraction", vtStd(KindTime), `"13:45:00.25"`, ""},
		{"time with offset", vtStd(KindTime), `"13:45:00-08:00"`, ""},
		{"time with Z", vtStd(KindTime), `"00:00:00Z"`, ""},
		{"time with lower-case z", vtStd(KindTime), `"00:00:00z"`, "RFC 3339 time"},
		{"time leap second", vtStd(KindTime), `"23:59:60Z"`, "RFC 3339 time"},
		{"time no seconds", vtStd(KindTime), `"13:45"`, "RFC 3339 time"},
		{"time minute 60", vtStd(KindTime), `"13:60:00"`, "RFC 3339 time"},
		{"time trailing junk", vtStd(KindTime), `"13:45:00 "`, "RFC 3339 time"},

		{"duration full", vtStd(KindDuration), `"P1Y2M3DT4H5M6.5S"`, ""},
		{"duration zero", vtStd(KindDuration), `"PT0S"`, ""},
		{"duration weeks", vtStd(KindDuration), `"P3W"`, ""},
		{"duration days", vtStd(KindDuration), `"P1D"`, ""},
		{"duration minutes", vtStd(KindDuration), `"PT36M"`, ""},
		{"duration weeks and days", vtStd(KindDuration), `"P1W2D"`, ""},
		{"duration weeks and time", vtStd(KindDuration), `"P2WT12H"`, ""},
		{"duration fraction of weeks", vtStd(KindDuration), `"P1.5W"`, ""},
		{"duration comma fraction", vtStd(KindDuration), `"PT1,5H"`, "ISO 8601 duration"},
		{"duration fraction on last", vtStd(KindDuration), `"P1DT1.5H"`, ""},
		{"duration empty", vtStd(KindDuration), `"P"`, "ISO 8601 duration"},
		{"duration empty time", vtStd(KindDuration), `"PT"`, "ISO 8601 duration"},
		{"duration dangling T", vtStd(KindDuration), `"P1DT"`, "ISO 8601 duration"},
		{"duration no P", vtStd(KindDuration), `"1Y"`, "ISO 8601 duration"},
		{"duration seconds in date part", vtStd(KindDuration), `"P1S"`, "ISO 8601 duration"},
		{"duration years in time part", vtStd(KindDuration), `"PT1Y"`, "ISO 8601 duration"},
		{"duration out of order", vtStd(KindDuration), `"P1M2Y"`, "ISO 8601 duration"},
		{"duration repeated", vtStd(KindDuration), `"P1D2D"`, "ISO 8601 duration"},
		{"duration fraction not last", vtStd(KindDuration), `"P1.5Y2M"`, "ISO 8601 duration"},
		{"duration weeks with years", vtStd(KindDuration), `"P1Y2W"`, "ISO 8601 duration"},
		{"duration weeks with months", vtStd(KindDuration), `"P1M2W"`, "ISO 8601 duration"},
		{"duration days then weeks", vtStd(KindDuration), `"P2D1W"`, "ISO 8601 duration"},
		{"duration negative", vtStd(KindDuration), `"-P1D"`, "ISO 8601 duration"},
		{"duration negative component", vtStd(KindDuration), `"P-1D"`, "ISO 8601 duration"},
		{"duration missing designator", vtStd(KindDuration), `"P1"`, "ISO 8601 duration"},
		{"duration lower case", vtStd(KindDuration), `"p1d"`, "ISO 8601 duration"},
		{"duration empty fraction", vtStd(KindDuration), `"PT1.S"`, "ISO 8601 duration"},
		{"duration two T", vtStd(KindDuration), `"PT1HT1M"`, "ISO 8601 duration"},
		{"duration number", vtStd(KindDuration), `60`, "ISO 8601 duration"},

		{"enum by value", vtMode, `"on"`, ""},
		{"enum by value differing from name", vtMode, `"H"`, ""},
		{"enum by name is not a value", vtMode, `"high"`, `"high" is not one of enum values ["on","off","H"]`},
		{"enum case matters", vtMode, `"ON"`, "is not one of enum values"},
		{"enum string for integer value", vtMode, `1`, "is not one of enum values"},
		{"integer enum", vtLevel, `2`, ""},
		{"integer enum decimal notation", vtLevel, `2.0`, `2.0 is not one of enum values [1,2,3]`},
		{"integer enum non-member", vtLevel, `4`, `4 is not one of enum values [1,2,3]`},
		{"integer enum by name", vtLevel, `"mid"`, `"mid" is not one of enum values [1,2,3]`},
		{"integer enum numeric string", vtLevel, `"2"`, "is not one of enum values"},

		{"object", vtAddress, `{"city":"Oslo","zip":150}`, ""},
		{"object empty", vtAddress, `{}`, ""},
		{"object with geo field", vtAddress, `{"where":{"type":"Point","coordinates":[10.7,59.9]}}`, ""},
		{"object unknown field", vtAddress, `{"city":"Oslo","country":"NO"}`, "'country' is not a field of Object dtmi:ex:Address;1"},
		{"object bad field", vtAddress, `{"zip":"0150"}`, `"0150" is not a valid integer`},
		{"object null field", vtAddress, `{"city":null}`, "null is not a valid string"},
		{"object from array", vtAddress, `[1]`, "an array is not a JSON object"},
		{"object from string", vtAddress, `"Oslo"`, `"Oslo" is not a JSON object`},

		{"map", vtTags, `{"red":1,"blue":2}`, ""},
		{"map empty", vtTags, `{}`, ""},
		{"map any key", vtTags, `{"with space/and slash":1}`, ""},
		{"map bad value", vtTags, `{"red":"x"}`, `"x" is not a valid integer`},
		{"map from array", vtTags, `[["red",1]]`, "an array is not a JSON object"},
		{"map from number", vtTags, `3`, "3 is not a JSON object"},
		{"map of objects", vtSites, `{"hq":{"city":"Oslo"},"lab":{"zip":1}}`, ""},
		{"map of objects bad field", vtSites, `{"hq":{"town":"Oslo"}}`, "'town' is not a field of Object dtmi:ex:Address;1"},

		{"array", vtReadings, `[1, 2.5, -3e2]`, ""},
		{"array empty", vtReadings, `[]`, ""},
		{"array bad element", vtReadings, `[1, "two"]`, `"two" is not a valid double`},
		{"array null element", vtReadings, `[null]`, "null is not a valid double"},
		{"array from object", vtReadings, `{"0":1}`, "an object is not a JSON array"},
		{"nested arrays", vtMatrix, `[[1,2],[3],[]]`, ""},
		{"nested arrays bad", vtMatrix, `[[1,2],[3.5]]`, "3.5 is not a valid integer"},
		{"nested arrays flat", vtMatrix, `[[1],2]`, "2 is not a JSON array"},

		{"point", vtStd(KindPoint), `{"type":"Point","coordinates":[10.7,59.9]}`, ""},
		{"point with altitude", vtStd(KindPoint), `{"type":"Point","coordinates":[10.7,59.9,12]}`, ""},
		{"point with bbox", vtStd(KindPoint), `{"type":"Point","coordinates":[1,2],"bbox":[1,2,1,2]}`, ""},
		{"point one coordinate", vtStd(KindPoint), `{"type":"Point","coordinates":[10.7]}`, "coordinates: a position is an array of 2 or 3 numbers"},
		{"point four coordinates", vtStd(KindPoint), `{"type":"Point","coordinates":[1,2,3,4]}`, "a position is an array of 2 or 3 numbers"},
		{"point string coordinate", vtStd(KindPoint), `{"type":"Point","coordinates":["1",2]}`, "a position is an array of 2 or 3 numbers"},
		{"point wrong type", vtStd(KindPoint), `{"type":"LineString","coordinates":[1,2]}`, `"type" is "LineString", not "Point"`},
		{"point type case", vtStd(KindPoint), `{"type":"point","coordinates":[1,2]}`, `not "Point"`},
		{"point missing type", vtStd(KindPoint), `{"coordinates":[1,2]}`, `the "type" member is missing`},
		{"point missing coordinates", vtStd(KindPoint), `{"type":"Point"}`, `the "coordinates" member is missing`},
		{"point foreign member", vtStd(KindPoint), `{"type":"Point","coordinates":[1,2],"crs":"x"}`, `"crs" is not a member of a GeoJSON Point`},
		{"point bad bbox", vtStd(KindPoint), `{"type":"Point","coordinates":[1,2],"bbox":[1,2]}`, `"bbox" is an array of 4 or 6 numbers`},
		{"point from array", vtStd(KindPoint), `[1,2]`, "an array is not a GeoJSON Point object"},
		{"lineString", vtStd(KindLineString), `{"type":"LineString","coordinates":[[0,0],[1,1]]}`, ""},
		{"lineString one position", vtStd(KindLineString), `{"type":"LineString","coordinates":[[0,0]]}`, "a LineString is an array of at least 2 positions"},
		{"lineString bad position", vtStd(KindLineString), `{"type":"LineString","coordinates":[[0,0],[1]]}`, "coordinates[1]: a position"},
		{"polygon", vtStd(KindPolygon), `{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}`, ""},
		{"polygon with hole", vtStd(KindPolygon), `{"type":"Polygon","coordinates":[[[0,0],[4,0],[4,4],[0,4],[0,0]],[[1,1],[2,1],[2,2],[1,1]]]}`, ""},
		{"polygon not closed", vtStd(KindPolygon), `{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,1]]]}`, "coordinates[0]: a linear ring must end with its first position"},
		{"polygon closed in other notation", vtStd(KindPolygon), `{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0.0,0e0]]]}`, ""},
		{"polygon ring too short", vtStd(KindPolygon), `{"type":"Polygon","coordinates":[[[0,0],[1,0],[0,0]]]}`, "a linear ring is an array of at least 4 positions"},
		{"polygon no rings", vtStd(KindPolygon), `{"type":"Polygon","coordinates":[]}`, "at least one linear ring"},
		{"polygon flat", vtStd(KindPolygon), `{"type":"Polygon","coordinates":[[0,0],[1,0],[1,1],[0,0]]}`, "coordinates[0]: a linear ring"},
		{"multiPoint", vtStd(KindMultiPoint), `{"type":"MultiPoint","coordinates":[[0,0],[1,1,1]]}`, ""},
		{"multiPoint empty", vtStd(KindMultiPoint), `{"type":"MultiPoint","coordinates":[]}`, ""},
		{"multiPoint bad", vtStd(KindMultiPoint), `{"type":"MultiPoint","coordinates":[0,0]}`, "coordinates[0]: a position"},
		{"multiLineString", vtStd(KindMultiLineString), `{"type":"MultiLineString","coordinates":[[[0,0],[1,1]],[[2,2],[3,3]]]}`, ""},
		{"multiLineString bad", vtStd(KindMultiLineString), `{"type":"MultiLineString","coordinates":[[[0,0],[1,1]],[[2,2]]]}`, "coordinates[1]: a LineString"},
		{"multiPolygon", vtStd(KindMultiPolygon), `{"type":"MultiPolygon","coordinates":[[[[0,0],[1,0],[1,1],[0,0]]]]}`, ""},
		{"multiPolygon not closed", vtStd(KindMultiPolygon), `{"type":"MultiPolygon","coordinates":[[[[0,0],[1,0],[1,1],[0,2]]]]}`, "coordinates[0][0]: a linear ring must end"},
		{"multiPolygon as polygon", vtStd(KindMultiPolygon), `{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}`, `not "MultiPolygon"`},

		{"invalid schema kind", &Schema{}, `1`, "invalid schema (kind invalid)"},
		{"array without element schema", &Schema{Kind: KindArray, ID: "dtmi:ex:A;1"}, `[1]`, "no schema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ps := vtProblems(t, tt.schema.Validate(vtDecode(t, tt.json)))
			if tt.want == "" {
				if len(ps) != 0 {
					t.Fatalf("Validate(%s) = %v, want valid", tt.json, ps)
				}
				return
			}
			if len(ps) != 1 {
				t.Fatalf("Validate(%s) = %v, want one problem containing %q", tt.json, ps, tt.want)
			}
			if !strings.Contains(ps[0].Message, tt.want) {
				t.Fatalf("Validate(%s) message = %q, want it to contain %q", tt.json, ps[0].Message, tt.want)
			}
		})
	}
}

// TestSchemaValidateProblemFields checks Path and Expected, not only the message.
func TestSchemaValidateProblemFields(t *testing.T) {
	tests := []struct {
		name   string
		schema *Schema
		json   string
		want   []ValueProblem
	}{
		{"integer", vtStd(KindInteger), `"abc"`, []ValueProblem{
			{Path: "", Expected: "integer", Message: `"abc" is not a valid integer`},
		}},
		{"enum", vtMode, `"dim"`, []ValueProblem{
			{Path: "", Expected: `one of enum values ["on","off","H"]`, Message: `"dim" is not one of enum values ["on","off","H"]`},
		}},
		{"object fields sorted by path", vtAddress, `{"zip":1.5,"city":7,"country":"NO"}`, []ValueProblem{
			{Path: "city", Expected: "string", Message: `7 is not a valid string`},
			{Path: "country", Expected: "", Message: `'country' is not a field of Object dtmi:ex:Address;1`},
			{Path: "zip", Expected: "integer", Message: `1.5 is not a valid integer; expected a whole number without fraction or exponent`},
		}},
		{"nested array indexes", vtMatrix, `[[1],[2,"x"]]`, []ValueProblem{
			{Path: "1/1", Expected: "integer", Message: `"x" is not a valid integer`},
		}},
		{"map key escaped in path", vtTags, `{"a/b~c":true}`, []ValueProblem{
			{Path: "a~1b~0c", Expected: "integer", Message: `true is not a valid integer`},
		}},
		{"map of objects", vtSites, `{"hq":{"zip":"x"}}`, []ValueProblem{
			{Path: "hq/zip", Expected: "integer", Message: `"x" is not a valid integer`},
		}},
		{"array expected", vtMatrix, `{}`, []ValueProblem{
			{Path: "", Expected: "Array of Array of integer", Message: `an object is not a JSON array`},
		}},
		{"nested enum named by id", &Schema{Kind: KindArray, ID: "dtmi:ex:Modes;1", ElementSchema: vtMode}, `"on"`, []ValueProblem{
			{Path: "", Expected: "Array of Enum dtmi:ex:Mode;1", Message: `"on" is not a JSON array`},
		}},
		{"nested enum element", &Schema{Kind: KindArray, ID: "dtmi:ex:Modes;1", ElementSchema: vtMode}, `["on", "dim"]`, []ValueProblem{
			{Path: "1", Expected: `one of enum values ["on","off","H"]`, Message: `"dim" is not one of enum values ["on","off","H"]`},
		}},
		{"map expected", vtSites, `[]`, []ValueProblem{
			{Path: "", Expected: "Map of Object dtmi:ex:Address;1", Message: `an array is not a JSON object`},
		}},
		{"geo", vtStd(KindPoint), `{"type":"Point","coordinates":[1]}`, []ValueProblem{
			{Path: "", Expected: "GeoJSON Point", Message: `not a valid GeoJSON Point: coordinates: a position is an array of 2 or 3 numbers`},
		}},
		{"long string shortened", vtStd(KindInteger), `"` + strings.Repeat("x", 100) + `"`, []ValueProblem{
			{Path: "", Expected: "integer", Message: `"` + strings.Repeat("x", 64) + `..." is not a valid integer`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := vtProblems(t, tt.schema.Validate(vtDecode(t, tt.json)))
			if !equalProblems(got, tt.want) {
				t.Fatalf("Validate(%s) problems\n got %q\nwant %q", tt.json, got, tt.want)
			}
		})
	}
}

func equalProblems(a, b []ValueProblem) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestValidateGoNumbers checks the Go number types accepted besides json.Number.
func TestValidateGoNumbers(t *testing.T) {
	tests := []struct {
		name   string
		schema *Schema
		v      any
		valid  bool
	}{
		{"float64 integral as integer", vtStd(KindInteger), float64(12), true},
		{"float64 fraction as integer", vtStd(KindInteger), 12.5, false},
		{"float64 beyond int32", vtStd(KindInteger), float64(1 << 31), false},
		{"float64 2^63 as long", vtStd(KindLong), math.Ldexp(1, 63), false},
		{"float64 -2^63 as long", vtStd(KindLong), -math.Ldexp(1, 63), true},
		{"int as integer", vtStd(KindInteger), 7, true},
		{"int64 beyond int32", vtStd(KindInteger), int64(1) << 40, false},
		{"int64 as long", vtStd(KindLong), int64(1) << 40, true},
		{"float64 as double", vtStd(KindDouble), 1.5, true},
		{"NaN as double", vtStd(KindDouble), math.NaN(), false},
		{"Inf as double", vtStd(KindDouble), math.Inf(1), false},
		{"float64 beyond float32", vtStd(KindFloat), 1e39, false},
		{"int as float", vtStd(KindFloat), 3, true},
		{"int as integer enum", vtLevel, 3, true},
		{"hand-made json.Number NaN", vtStd(KindDouble), json.Number("NaN"), false},
		{"hand-made json.Number hex", vtStd(KindInteger), json.Number("0x10"), false},
		{"hand-made json.Number plus", vtStd(KindInteger), json.Number("+1"), false},
		{"hand-made json.Number leading zero", vtStd(KindLong), json.Number("007"), false},
		{"hand-made json.Number empty", vtStd(KindDouble), json.Number(""), false},
		{"Go type not from JSON", vtStd(KindString), []string{"a"}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.schema.Validate(tt.v)
			vtProblems(t, err)
			if (err == nil) != tt.valid {
				t.Fatalf("Validate(%v) = %v, want valid %v", tt.v, err, tt.valid)
			}
		})
	}
}

func TestParseIntegral(t *testing.T) {
	tests := []struct {
		text  string
		bits  int
		want  int64
		class numClass
	}{
		{"0", 32, 0, numOK},
		{"-0", 32, 0, numOK},
		{"2147483647", 32, math.MaxInt32, numOK},
		{"-2147483648", 32, math.MinInt32, numOK},
		{"2147483648", 32, 0, numOutOfRange},
		{"2147483648", 64, 2147483648, numOK},
		{"9223372036854775807", 64, math.MaxInt64, numOK},
		{"-9223372036854775808", 64, math.MinInt64, numOK},
		{"9223372036854775808", 64, 0, numOutOfRange},
		{"12.0", 32, 0, numNotIntegral},
		{"-0.0", 32, 0, numNotIntegral},
		{"1e2", 64, 0, numNotIntegral},
		{"00", 32, 0, numNotNumber},
		{"01", 32, 0, numNotNumber},
		{"+1", 32, 0, numNotNumber},
		{"1.", 32, 0, numNotNumber},
		{".5", 32, 0, numNotNumber},
		{"1e", 32, 0, numNotNumber},
		{"-", 32, 0, numNotNumber},
		{"", 32, 0, numNotNumber},
		{" 1", 32, 0, numNotNumber},
		{"1_000", 32, 0, numNotNumber},
		{"0x10", 32, 0, numNotNumber},
	}
	for _, tt := range tests {
		got, class := parseIntegral(tt.text, tt.bits)
		if got != tt.want || class != tt.class {
			t.Errorf("parseIntegral(%q, %d) = %d, %d; want %d, %d", tt.text, tt.bits, got, class, tt.want, tt.class)
		}
	}
}

func TestValidationErrorMessage(t *testing.T) {
	err := vtAddress.Validate(vtDecode(t, `{"zip":"x","country":1}`))
	want := `country: 'country' is not a field of Object dtmi:ex:Address;1; zip: "x" is not a valid integer`
	if err == nil || err.Error() != want {
		t.Fatalf("Error() = %v, want %q", err, want)
	}
}

func TestValidationErrorOmitted(t *testing.T) {
	elems := make([]any, 150)
	for i := range elems {
		elems[i] = "x"
	}
	err := vtReadings.Validate(elems)
	var verr *ValidationError
	if e, ok := err.(*ValidationError); ok {
		verr = e
	} else {
		t.Fatalf("Validate = %v, want *ValidationError", err)
	}
	if len(verr.Problems) != maxProblems || verr.Omitted != 50 {
		t.Fatalf("got %d problems, %d omitted; want %d, 50", len(verr.Problems), verr.Omitted, maxProblems)
	}
	if !strings.HasSuffix(verr.Error(), "; and 50 more problems") {
		t.Fatalf("Error() does not mention the omitted problems: %q", verr.Error())
	}
}

// TestValidateDepthGuard builds an Array schema nested deeper than maxDepth and checks the
// walk stops with a problem instead of following it.
func TestValidateDepthGuard(t *testing.T) {
	s := vtStd(KindInteger)
	var v any = json.Number("1")
	for range maxDepth + 5 {
		s = &Schema{Kind: KindArray, ID: "dtmi:ex:Deep;1", ElementSchema: s}
		v = []any{v}
	}
	ps := vtProblems(t, s.Validate(v))
	if len(ps) != 1 || !strings.Contains(ps[0].Message, "nested deeper than 32 levels") {
		t.Fatalf("problems = %q, want one depth problem", ps)
	}
	if n := strings.Count(ps[0].Path, "/") + 1; n != maxDepth {
		t.Fatalf("problem path %q has %d segments, want %d", ps[0].Path, n, maxDepth)
	}
}
