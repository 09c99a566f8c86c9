package dtdl

import (
	"bytes"
	"encoding/json"
	"testing"
)

// Fixtures are built as resolved structs, independent of the parser.

func vtStd(k Kind) *Schema {
	return &Schema{Kind: k, ID: "dtmi:dtdl:instance:Schema:" + k.String() + ";3"}
}

func vtField(name string, s *Schema) *Field { return &Field{Name: name, Schema: s} }

func vtProp(name string, s *Schema) *Property { return &Property{Name: name, Schema: s} }

var (
	vtAddress = &Schema{Kind: KindObject, ID: "dtmi:ex:Address;1", Fields: []*Field{
		vtField("city", vtStd(KindString)),
		vtField("zip", vtStd(KindInteger)),
		vtField("where", vtStd(KindPoint)),
	}}
	vtMode = &Schema{Kind: KindEnum, ID: "dtmi:ex:Mode;1", ValueSchema: KindString, EnumValues: []*EnumValue{
		{Name: "on", Value: "on"},
		{Name: "off", Value: "off"},
		{Name: "high", Value: "H"},
	}}
	vtLevel = &Schema{Kind: KindEnum, ID: "dtmi:ex:Level;1", ValueSchema: KindInteger, EnumValues: []*EnumValue{
		{Name: "low", Value: 1},
		{Name: "mid", Value: 2},
		{Name: "top", Value: 3},
	}}
	vtTags = &Schema{Kind: KindMap, ID: "dtmi:ex:Tags;1",
		MapKey:   vtField("tag", vtStd(KindString)),
		MapValue: vtField("count", vtStd(KindInteger)),
	}
	vtSites = &Schema{Kind: KindMap, ID: "dtmi:ex:Sites;1",
		MapKey:   vtField("site", vtStd(KindString)),
		MapValue: vtField("address", vtAddress),
	}
	vtReadings = &Schema{Kind: KindArray, ID: "dtmi:ex:Readings;1", ElementSchema: vtStd(KindDouble)}
	vtMatrix   = &Schema{Kind: KindArray, ID: "dtmi:ex:Matrix;1",
		ElementSchema: &Schema{Kind: KindArray, ID: "dtmi:ex:Row;1", ElementSchema: vtStd(KindInteger)}}

	vtThermostat = &Interface{ID: "dtmi:ex:Thermostat;1", Version: 3, Properties: map[string]*Property{
		"setPoint": vtProp("setPoint", vtStd(KindDouble)),
		"mode":     vtProp("mode", vtMode),
	}}

	vtRoom = &Interface{
		ID:      "dtmi:ex:Room;1",
		Version: 3,
		Properties: map[string]*Property{
			"temp":     vtProp("temp", vtStd(KindDouble)),
			"ratio":    vtProp("ratio", vtStd(KindFloat)),
			"count":    vtProp("count", vtStd(KindInteger)),
			"big":      vtProp("big", vtStd(KindLong)),
			"name":     vtProp("name", vtStd(KindString)),
			"on":       vtProp("on", vtStd(KindBoolean)),
			"born":     vtProp("born", vtStd(KindDate)),
			"seen":     vtProp("seen", vtStd(KindDateTime)),
			"opens":    vtProp("opens", vtStd(KindTime)),
			"period":   vtProp("period", vtStd(KindDuration)),
			"mode":     vtProp("mode", vtMode),
			"level":    vtProp("level", vtLevel),
			"address":  vtProp("address", vtAddress),
			"tags":     vtProp("tags", vtTags),
			"sites":    vtProp("sites", vtSites),
			"readings": vtProp("readings", vtReadings),
			"matrix":   vtProp("matrix", vtMatrix),
			"location": vtProp("location", vtStd(KindPoint)),
			"route":    vtProp("route", vtStd(KindLineString)),
			"area":     vtProp("area", vtStd(KindPolygon)),
			"stops":    vtProp("stops", vtStd(KindMultiPoint)),
			"routes":   vtProp("routes", vtStd(KindMultiLineString)),
			"zones":    vtProp("zones", vtStd(KindMultiPolygon)),
		},
		Telemetries: map[string]*Telemetry{
			"humidity": {Name: "humidity", Schema: vtStd(KindDouble)},
		},
		Relationships: map[string]*Relationship{
			"contains": vtContains,
		},
		Components: map[string]*Component{
			"thermostat": {Name: "thermostat", Schema: vtThermostat},
			"backup":     {Name: "backup", Schema: vtThermostat},
		},
	}

	vtContains = &Relationship{Name: "contains", Target: "dtmi:ex:Device;1", Properties: map[string]*Property{
		"since":  vtProp("since", vtStd(KindDateTime)),
		"weight": vtProp("weight", vtStd(KindDouble)),
	}}
)

// vtDecode decodes JSON text the way the API does, with UseNumber.
func vtDecode(t testing.TB, text string) any {
	t.Helper()
	d := json.NewDecoder(bytes.NewReader([]byte(text)))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		t.Fatalf("decode %s: %v", text, err)
	}
	return v
}

// vtProblems returns the problems of err, failing the test if err is neither nil nor a
// *ValidationError with at least one problem.
func vtProblems(t testing.TB, err error) []ValueProblem {
	t.Helper()
	if err == nil {
		return nil
	}
	verr, ok := err.(*ValidationError)
	if !ok {
		t.Fatalf("error %v (%T) is not a *ValidationError", err, err)
	}
	if len(verr.Problems) == 0 {
		t.Fatalf("ValidationError without problems")
	}
	return verr.Problems
}
