package dtdl

import (
	"strings"
	"testing"
)

const vtFullTwin = `{
	"$dtId": "room1",
	"$etag": "W/\"1\"",
	"$metadata": {"$model": "dtmi:ex:Room;1", "temp": {"sourceTime": "2024-01-01T00:00:00Z"}},
	"temp": 21.5,
	"ratio": 0.5,
	"count": 3,
	"big": 9000000000,
	"name": "Room 1",
	"on": true,
	"born": "2024-02-29",
	"seen": "2024-02-29T12:00:00Z",
	"opens": "08:00:00",
	"period": "P1DT2H",
	"mode": "H",
	"level": 2,
	"address": {"city": "Oslo", "zip": 150, "where": {"type": "Point", "coordinates": [10.7, 59.9]}},
	"tags": {"red": 1, "blue": 2},
	"sites": {"hq": {"city": "Oslo"}},
	"readings": [1, 2.5],
	"matrix": [[1], [2, 3]],
	"location": {"type": "Point", "coordinates": [10.7, 59.9]},
	"route": {"type": "LineString", "coordinates": [[0, 0], [1, 1]]},
	"area": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 0]]]},
	"stops": {"type": "MultiPoint", "coordinates": [[0, 0], [1, 1]]},
	"routes": {"type": "MultiLineString", "coordinates": [[[0, 0], [1, 1]]]},
	"zones": {"type": "MultiPolygon", "coordinates": [[[[0, 0], [1, 0], [1, 1], [0, 0]]]], "bbox": [0, 0, 1, 1]},
	"thermostat": {"$metadata": {}, "setPoint": 20, "mode": "on"},
	"backup": {"$metadata": {}}
}`

func TestValidateTwin(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []ValueProblem
	}{
		{"full twin", vtFullTwin, nil},
		{"only components", `{"thermostat": {}, "backup": {"$metadata": {}}}`, nil},
		{"unknown property", `{"thermostat": {}, "backup": {}, "color": "red"}`, []ValueProblem{
			{Path: "color", Message: "'color' is not a property of dtmi:ex:Room;1"},
		}},
		{"telemetry is not a property", `{"thermostat": {}, "backup": {}, "humidity": 40}`, []ValueProblem{
			{Path: "humidity", Message: "'humidity' is not a property of dtmi:ex:Room;1"},
		}},
		{"relationship is not a property", `{"thermostat": {}, "backup": {}, "contains": "x"}`, []ValueProblem{
			{Path: "contains", Message: "'contains' is not a property of dtmi:ex:Room;1"},
		}},
		{"components missing", `{"temp": 20}`, []ValueProblem{
			{Path: "backup", Expected: "component dtmi:ex:Thermostat;1", Message: `component 'backup' is missing; every component must be present, even if empty ({"$metadata":{}})`},
			{Path: "thermostat", Expected: "component dtmi:ex:Thermostat;1", Message: `component 'thermostat' is missing; every component must be present, even if empty ({"$metadata":{}})`},
		}},
		{"component not an object", `{"thermostat": 20, "backup": {}}`, []ValueProblem{
			{Path: "thermostat", Expected: "component dtmi:ex:Thermostat;1", Message: "20 is not a JSON object; component 'thermostat' must be an object"},
		}},
		{"component null", `{"thermostat": null, "backup": {}}`, []ValueProblem{
			{Path: "thermostat", Expected: "component dtmi:ex:Thermostat;1", Message: "null is not a JSON object; component 'thermostat' must be an object"},
		}},
		{"component contents", `{"thermostat": {"$metadata": {}, "setPoint": "hot", "fan": 1}, "backup": {}}`, []ValueProblem{
			{Path: "thermostat/fan", Message: "'fan' is not a property of dtmi:ex:Thermostat;1"},
			{Path: "thermostat/setPoint", Expected: "double", Message: `"hot" is not a valid double`},
		}},
		{"property of the twin inside a component", `{"thermostat": {"temp": 1}, "backup": {}}`, []ValueProblem{
			{Path: "thermostat/temp", Message: "'temp' is not a property of dtmi:ex:Thermostat;1"},
		}},
		{"null property", `{"thermostat": {}, "backup": {}, "temp": null}`, []ValueProblem{
			{Path: "temp", Expected: "double", Message: "null is not a valid double; to unset a property, remove it"},
		}},
		{"every problem, sorted", `{
			"backup": {},
			"temp": "warm",
			"count": 2147483648,
			"mode": "high",
			"address": {"zip": 1.5, "street": "x"},
			"tags": {"red": "1"},
			"readings": [1, "x", 3],
			"area": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1]]]},
			"period": "P1Y1W",
			"$anything": "ignored"
		}`, []ValueProblem{
			{Path: "address/street", Message: "'street' is not a field of Object dtmi:ex:Address;1"},
			{Path: "address/zip", Expected: "integer", Message: "1.5 is not a valid integer; expected a whole number without fraction or exponent"},
			{Path: "area", Expected: "GeoJSON Polygon", Message: "not a valid GeoJSON Polygon: coordinates[0]: a linear ring must end with its first position"},
			{Path: "count", Expected: "integer", Message: "2147483648 is not a valid integer; expected a whole number from -2147483648 to 2147483647"},
			{Path: "mode", Expected: `one of enum values ["on","off","H"]`, Message: `"high" is not one of enum values ["on","off","H"]`},
			{Path: "period", Expected: "duration", Message: `"P1Y1W" is not a valid duration; expected an ISO 8601 duration such as "P1Y2M3DT4H5M6.5S", "PT0S" or "P3W"`},
			{Path: "readings/1", Expected: "double", Message: `"x" is not a valid double`},
			{Path: "tags/red", Expected: "integer", Message: `"1" is not a valid integer`},
			{Path: "temp", Expected: "double", Message: `"warm" is not a valid double`},
			{Path: "thermostat", Expected: "component dtmi:ex:Thermostat;1", Message: `component 'thermostat' is missing; every component must be present, even if empty ({"$metadata":{}})`},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := vtDecode(t, tt.json).(map[string]any)
			got := vtProblems(t, vtRoom.ValidateTwin(doc))
			if !equalProblems(got, tt.want) {
				t.Fatalf("ValidateTwin problems\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestValidateTwinStableOrder checks the order of problems does not follow map iteration.
func TestValidateTwinStableOrder(t *testing.T) {
	doc := vtDecode(t, `{"a": 1, "b": 2, "c": 3, "d": 4, "e": 5, "f": 6, "g": 7, "h": 8}`).(map[string]any)
	first := vtRoom.ValidateTwin(doc).Error()
	for range 20 {
		if got := vtRoom.ValidateTwin(doc).Error(); got != first {
			t.Fatalf("ValidateTwin error changed between calls:\n%s\n%s", first, got)
		}
	}
}

func TestValidatePath(t *testing.T) {
	tests := []struct {
		name string
		path string
		json string
		want []ValueProblem
	}{
		{"double", "temp", `22`, nil},
		{"double bad", "temp", `"22"`, []ValueProblem{{Path: "temp", Expected: "double", Message: `"22" is not a valid double`}}},
		{"null", "temp", `null`, []ValueProblem{{Path: "temp", Expected: "double", Message: "null is not a valid double; to unset a property, remove it"}}},
		{"enum", "mode", `"off"`, nil},
		{"whole object", "address", `{"city": "Bergen"}`, nil},
		{"object field", "address/city", `"Bergen"`, nil},
		{"object geo field", "address/where", `{"type": "Point", "coordinates": [5.3, 60.4]}`, nil},
		{"object field bad", "address/zip", `"5003"`, []ValueProblem{{Path: "address/zip", Expected: "integer", Message: `"5003" is not a valid integer`}}},
		{"object unknown field", "address/country", `"NO"`, []ValueProblem{{Path: "address/country", Message: "'country' is not a field of Object dtmi:ex:Address;1"}}},
		{"map key", "tags/red", `5`, nil},
		{"map key bad", "tags/red", `"5"`, []ValueProblem{{Path: "tags/red", Expected: "integer", Message: `"5" is not a valid integer`}}},
		{"map key with tilde", "tags/a~b", `true`, []ValueProblem{{Path: "tags/a~0b", Expected: "integer", Message: `true is not a valid integer`}}},
		{"map of objects field", "sites/hq/zip", `7`, nil},
		{"map of objects unknown field", "sites/hq/town", `"x"`, []ValueProblem{{Path: "sites/hq/town", Message: "'town' is not a field of Object dtmi:ex:Address;1"}}},
		{"array element", "readings/0", `1.5`, nil},
		{"array append", "readings/-", `1.5`, nil},
		{"array element bad", "readings/3", `"x"`, []ValueProblem{{Path: "readings/3", Expected: "double", Message: `"x" is not a valid double`}}},
		{"array bad index", "readings/01", `1`, []ValueProblem{{Path: "readings/01", Message: `'01' is not an array index (a decimal number or "-")`}}},
		{"array name index", "readings/first", `1`, []ValueProblem{{Path: "readings/first", Message: `'first' is not an array index (a decimal number or "-")`}}},
		{"nested array element", "matrix/1/0", `4`, nil},
		{"nested array row", "matrix/1", `[4, 5]`, nil},
		{"component property", "thermostat/setPoint", `19.5`, nil},
		{"component property bad", "thermostat/mode", `"eco"`, []ValueProblem{{Path: "thermostat/mode", Expected: `one of enum values ["on","off","H"]`, Message: `"eco" is not one of enum values ["on","off","H"]`}}},
		{"component unknown property", "thermostat/fan", `1`, []ValueProblem{{Path: "thermostat/fan", Message: "'fan' is not a property of dtmi:ex:Thermostat;1"}}},
		{"whole component", "thermostat", `{"$metadata": {}, "setPoint": 18}`, nil},
		{"whole component bad", "thermostat", `{"setPoint": "x"}`, []ValueProblem{{Path: "thermostat/setPoint", Expected: "double", Message: `"x" is not a valid double`}}},
		{"whole component not object", "thermostat", `5`, []ValueProblem{{Path: "thermostat", Expected: "component dtmi:ex:Thermostat;1", Message: "5 is not a JSON object; component 'thermostat' must be an object"}}},
		{"unknown property", "color", `"red"`, []ValueProblem{{Path: "color", Message: "'color' is not a property of dtmi:ex:Room;1"}}},
		{"metadata is not a property", "$metadata/temp/sourceTime", `"2024-01-01T00:00:00Z"`, []ValueProblem{{Path: "$metadata", Message: "'$metadata' is not a property of dtmi:ex:Room;1"}}},
		{"below a primitive", "temp/x", `1`, []ValueProblem{{Path: "temp", Expected: "double", Message: "a value of schema double has no member 'x'"}}},
		{"below an enum", "mode/x", `1`, []ValueProblem{{Path: "mode", Expected: `one of enum values ["on","off","H"]`, Message: "a value of schema Enum has no member 'x'"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := vtProblems(t, vtRoom.ValidatePath(strings.Split(tt.path, "/"), vtDecode(t, tt.json)))
			if !equalProblems(got, tt.want) {
				t.Fatalf("ValidatePath(%s) problems\n got %q\nwant %q", tt.path, got, tt.want)
			}
		})
	}
}

func TestCheckPath(t *testing.T) {
	tests := []struct {
		path string
		want []ValueProblem
	}{
		{"temp", nil},
		{"address/city", nil},
		{"tags/anything", nil},
		{"readings/-", nil},
		{"matrix/1/0", nil},
		{"thermostat", nil},
		{"thermostat/setPoint", nil},
		{"color", []ValueProblem{{Path: "color", Message: "'color' is not a property of dtmi:ex:Room;1"}}},
		{"address/country", []ValueProblem{{Path: "address/country", Message: "'country' is not a field of Object dtmi:ex:Address;1"}}},
		{"thermostat/fan", []ValueProblem{{Path: "thermostat/fan", Message: "'fan' is not a property of dtmi:ex:Thermostat;1"}}},
		{"readings/first", []ValueProblem{{Path: "readings/first", Message: `'first' is not an array index (a decimal number or "-")`}}},
		{"temp/x", []ValueProblem{{Path: "temp", Expected: "double", Message: "a value of schema double has no member 'x'"}}},
	}
	for _, tt := range tests {
		got := vtProblems(t, vtRoom.CheckPath(strings.Split(tt.path, "/")))
		if !equalProblems(got, tt.want) {
			t.Errorf("CheckPath(%s) problems\n got %q\nwant %q", tt.path, got, tt.want)
		}
	}
}

func TestValidatePathEmpty(t *testing.T) {
	ps := vtProblems(t, vtRoom.ValidatePath(nil, map[string]any{}))
	if len(ps) != 1 || !strings.Contains(ps[0].Message, "path is empty") {
		t.Fatalf("ValidatePath(nil) problems = %q, want one empty-path problem", ps)
	}
}

// TestValidatePathAgreesWithTwin checks that every property of a valid twin is also valid when
// written alone by a patch.
func TestValidatePathAgreesWithTwin(t *testing.T) {
	doc := vtDecode(t, vtFullTwin).(map[string]any)
	for name, v := range doc {
		if strings.HasPrefix(name, "$") {
			continue
		}
		if err := vtRoom.ValidatePath([]string{name}, v); err != nil {
			t.Errorf("ValidatePath([%s]) = %v, want nil", name, err)
		}
	}
}

func TestValidateRelationshipProperties(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []ValueProblem
	}{
		{"valid", `{"$relationshipId": "r1", "$targetId": "t", "$relationshipName": "contains", "since": "2024-01-01T00:00:00Z", "weight": 2}`, nil},
		{"no properties", `{"$targetId": "t"}`, nil},
		{"unknown and bad", `{"$targetId": "t", "since": "yesterday", "color": "red"}`, []ValueProblem{
			{Path: "color", Message: "'color' is not a property of relationship 'contains'"},
			{Path: "since", Expected: "dateTime", Message: `"yesterday" is not a valid dateTime; expected an RFC 3339 date-time such as "2024-02-29T13:45:00.5Z"`},
		}},
		{"null", `{"weight": null}`, []ValueProblem{
			{Path: "weight", Expected: "double", Message: "null is not a valid double; to unset a property, remove it"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			props := vtDecode(t, tt.json).(map[string]any)
			got := vtProblems(t, vtContains.ValidateProperties(props))
			if !equalProblems(got, tt.want) {
				t.Fatalf("ValidateProperties problems\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

// TestValidateNilSchemas checks that a model with holes (no schema, no component Interface)
// yields problems rather than panics.
func TestValidateNilSchemas(t *testing.T) {
	broken := &Interface{
		ID:         "dtmi:ex:Broken;1",
		Properties: map[string]*Property{"p": {Name: "p"}},
		Components: map[string]*Component{"c": {Name: "c"}},
	}
	ps := vtProblems(t, broken.ValidateTwin(map[string]any{"p": "x", "c": map[string]any{}}))
	if len(ps) != 2 {
		t.Fatalf("ValidateTwin problems = %q, want 2", ps)
	}
	ps = vtProblems(t, broken.ValidatePath([]string{"c", "x"}, "v"))
	if len(ps) != 1 || !strings.Contains(ps[0].Message, "no Interface") {
		t.Fatalf("ValidatePath problems = %q, want one missing-Interface problem", ps)
	}
	ps = vtProblems(t, broken.ValidatePath([]string{"p", "x"}, "v"))
	if len(ps) != 1 || !strings.Contains(ps[0].Message, "no schema") {
		t.Fatalf("ValidatePath problems = %q, want one missing-schema problem", ps)
	}
}
