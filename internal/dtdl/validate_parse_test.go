package dtdl

import (
	"strings"
	"testing"
)

// vtModels is a DTDL v3 model set exercising the validators through Parse, so the resolved
// structs they read are the parser's, not hand-built ones.
const vtModels = `[
{
	"@context": "dtmi:dtdl:context;3",
	"@id": "dtmi:ex:Base;1",
	"@type": "Interface",
	"contents": [
		{"@type": "Property", "name": "serial", "schema": "string"}
	]
},
{
	"@context": "dtmi:dtdl:context;3",
	"@id": "dtmi:ex:Fan;1",
	"@type": "Interface",
	"contents": [
		{"@type": "Property", "name": "speed", "schema": {
			"@type": "Enum", "valueSchema": "integer", "enumValues": [
				{"name": "low", "enumValue": 1},
				{"name": "high", "enumValue": 3}
			]
		}}
	]
},
{
	"@context": "dtmi:dtdl:context;3",
	"@id": "dtmi:ex:Hall;1",
	"@type": "Interface",
	"extends": "dtmi:ex:Base;1",
	"schemas": [
		{"@id": "dtmi:ex:Hall:Address;1", "@type": "Object", "fields": [
			{"name": "city", "schema": "string"},
			{"name": "floor", "schema": "integer"}
		]}
	],
	"contents": [
		{"@type": "Property", "name": "address", "schema": "dtmi:ex:Hall:Address;1"},
		{"@type": "Property", "name": "state", "schema": {
			"@type": "Enum", "valueSchema": "string", "enumValues": [
				{"name": "open", "enumValue": "OPEN"},
				{"name": "closed", "enumValue": "CLOSED"}
			]
		}},
		{"@type": "Property", "name": "levels", "schema": {
			"@type": "Map",
			"mapKey": {"name": "level", "schema": "string"},
			"mapValue": {"name": "lux", "schema": "double"}
		}},
		{"@type": "Property", "name": "history", "schema": {"@type": "Array", "elementSchema": "dateTime"}},
		{"@type": "Property", "name": "spot", "schema": "point"},
		{"@type": "Component", "name": "fan", "schema": "dtmi:ex:Fan;1"},
		{"@type": "Relationship", "name": "feeds", "properties": [
			{"@type": "Property", "name": "share", "schema": "float"}
		]}
	]
}
]`

func vtParsedHall(t testing.TB) *Interface {
	t.Helper()
	set, err := Parse([][]byte{[]byte(vtModels)}, nil, Options{})
	if err != nil {
		t.Fatalf("parse the test models: %v", err)
	}
	hall, ok := set.Interface("dtmi:ex:Hall;1")
	if !ok {
		t.Fatal("dtmi:ex:Hall;1 is not in the parsed set")
	}
	return hall
}

func TestValidateParsedModel(t *testing.T) {
	hall := vtParsedHall(t)
	tests := []struct {
		name string
		json string
		want []string // "path: message" of each problem
	}{
		{"valid", `{
			"$metadata": {"$model": "dtmi:ex:Hall;1"},
			"serial": "H-1",
			"address": {"city": "Oslo", "floor": 2},
			"state": "OPEN",
			"levels": {"ground": 120.5, "roof": 80},
			"history": ["2024-01-01T00:00:00Z"],
			"spot": {"type": "Point", "coordinates": [10.7, 59.9]},
			"fan": {"$metadata": {}, "speed": 3}
		}`, nil},
		{"inherited property checked", `{"serial": 5, "fan": {}}`, []string{
			"serial: 5 is not a valid string",
		}},
		{"declared Object schema by id", `{"address": {"floor": "2", "zone": "A"}, "fan": {}}`, []string{
			`address/floor: "2" is not a valid integer`,
			"address/zone: 'zone' is not a field of Object dtmi:ex:Hall:Address;1",
		}},
		{"string enum by value, not name", `{"state": "open", "fan": {}}`, []string{
			`state: "open" is not one of enum values ["OPEN","CLOSED"]`,
		}},
		{"integer enum in a component", `{"fan": {"speed": 2}}`, []string{
			"fan/speed: 2 is not one of enum values [1,3]",
		}},
		{"map and array values", `{"levels": {"ground": "bright"}, "history": ["yesterday"], "fan": {}}`, []string{
			`history/0: "yesterday" is not a valid dateTime; expected an RFC 3339 date-time such as "2024-02-29T13:45:00.5Z"`,
			`levels/ground: "bright" is not a valid double`,
		}},
		{"component missing", `{"serial": "H-1"}`, []string{
			`fan: component 'fan' is missing; every component must be present, even if empty ({"$metadata":{}})`,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc := vtDecode(t, tt.json).(map[string]any)
			var got []string
			for _, p := range vtProblems(t, hall.ValidateTwin(doc)) {
				got = append(got, p.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("ValidateTwin problems\n got %q\nwant %q", got, tt.want)
			}
		})
	}
}

func TestValidateParsedPathsAndRelationship(t *testing.T) {
	hall := vtParsedHall(t)
	if err := hall.ValidatePath([]string{"fan", "speed"}, vtDecode(t, `1`)); err != nil {
		t.Errorf("ValidatePath(fan/speed, 1) = %v, want nil", err)
	}
	if err := hall.ValidatePath([]string{"address", "city"}, vtDecode(t, `"Bergen"`)); err != nil {
		t.Errorf("ValidatePath(address/city) = %v, want nil", err)
	}
	if err := hall.ValidatePath([]string{"levels", "attic"}, vtDecode(t, `"dark"`)); err == nil {
		t.Error(`ValidatePath(levels/attic, "dark") = nil, want an error`)
	}
	feeds := hall.Relationships["feeds"]
	if feeds == nil {
		t.Fatal("relationship feeds is missing from the parsed Interface")
	}
	if err := feeds.ValidateProperties(vtDecode(t, `{"$targetId": "x", "share": 0.5}`).(map[string]any)); err != nil {
		t.Errorf("ValidateProperties(share 0.5) = %v, want nil", err)
	}
	ps := vtProblems(t, feeds.ValidateProperties(vtDecode(t, `{"share": 1e39, "owner": "me"}`).(map[string]any)))
	if len(ps) != 2 || ps[0].Path != "owner" || ps[1].Path != "share" || ps[1].Expected != "float" {
		t.Errorf("ValidateProperties problems = %q, want owner (unknown) and share (float)", ps)
	}
}
