package dtdl

import (
	"strings"
	"testing"
)

// iface3 returns a DTDL v3 Interface with the QuantitativeTypes, Annotation and Overriding
// contexts; extends may be empty.
func iface3(id, extends, contents string) string {
	ext := ""
	if extends != "" {
		ext = `"extends":` + extends + `,`
	}
	return `{"@context":["dtmi:dtdl:context;3","dtmi:dtdl:extension:quantitativeTypes;1","dtmi:dtdl:extension:annotation;1","dtmi:dtdl:extension:overriding;1"],` +
		`"@id":"` + id + `","@type":"Interface",` + ext + `"contents":[` + contents + `]}`
}

const (
	tempTelemetry = `{"@type":["Telemetry","Temperature"],"name":"currentTemp","schema":"double","unit":"degreeFahrenheit"}`
	tempOverride  = `{"@type":["Property","ValueAnnotation","Override"],"name":"currentTempUnit","annotates":"currentTemp","overrides":"unit","schema":"TemperatureUnit","writable":true}`
)

func TestAnnotationRules(t *testing.T) {
	tests := []struct {
		name string
		docs []string
		// problem is a substring of the expected error; "" means the batch is valid.
		problem string
	}{
		{"the Overriding extension's first example", []string{iface3("dtmi:com:example:Sensor;1", "", tempTelemetry+","+tempOverride)}, ""},
		{"the Overriding extension's second example", []string{
			`{"@context":["dtmi:dtdl:context;3","dtmi:dtdl:extension:quantitativeTypes;1","dtmi:dtdl:extension:overriding;1"],"@id":"dtmi:com:example:BaseSensor;1","@type":"Interface","contents":[` + tempTelemetry + `]}`,
			iface3("dtmi:com:example:Sensor;1", `"dtmi:com:example:BaseSensor;1"`, tempOverride),
		}, ""},
		{"the Annotation extension's example, inherited", []string{
			`{"@context":["dtmi:dtdl:context;3","dtmi:dtdl:extension:quantitativeTypes;1"],"@id":"dtmi:com:example:BaseSensor;1","@type":"Interface","contents":[` + tempTelemetry + `]}`,
			`{"@context":["dtmi:dtdl:context;3","dtmi:dtdl:extension:quantitativeTypes;1","dtmi:dtdl:extension:annotation;1"],"@id":"dtmi:com:example:Sensor;1","@type":"Interface","extends":"dtmi:com:example:BaseSensor;1","contents":[` +
				`{"@type":["Telemetry","ValueAnnotation"],"name":"currentTempAccuracy","annotates":"currentTemp","schema":"double"},` +
				`{"@type":["Property","ValueAnnotation"],"name":"currentTempLastCalibrated","annotates":"currentTemp","schema":"date","writable":true}]}`,
		}, ""},
		{"annotation of a sibling with an @id", []string{iface3("dtmi:ex:a;1", "", `{"@id":"dtmi:ex:a:t;1","@type":["Telemetry","Temperature"],"name":"t","schema":"double","unit":"kelvin"},`+
			`{"@type":["Property","ValueAnnotation","Override"],"name":"u","annotates":"t","overrides":"unit","schema":"TemperatureUnit"}`)}, ""},
		{"annotation of a Command", []string{iface3("dtmi:ex:a;1", "", `{"@type":"Command","name":"c"},{"@type":["Property","ValueAnnotation"],"name":"p","annotates":"c","schema":"string"}`)},
			`annotates: "c" is a Command; a ValueAnnotation annotates a Property or Telemetry`},
		{"annotation of itself", []string{iface3("dtmi:ex:a;1", "", `{"@type":["Property","ValueAnnotation"],"name":"p","annotates":"p","schema":"string"}`)},
			`"p" is itself a ValueAnnotation`},
		{"annotation of an inherited annotation", []string{
			iface3("dtmi:ex:base;1", "", tempTelemetry+","+tempOverride),
			iface3("dtmi:ex:a;1", `"dtmi:ex:base;1"`, `{"@type":["Property","ValueAnnotation"],"name":"note","annotates":"currentTempUnit","schema":"string"}`),
		}, `"currentTempUnit" is itself a ValueAnnotation`},
		{"annotation of a missing element names inheritance", []string{iface3("dtmi:ex:a;1", "", tempOverride)},
			`annotates: "currentTemp" is not the name of a content of the same Interface, counting those inherited through extends`},
		{"override of an element of a Component", []string{iface3("dtmi:ex:a;1", "", `{"@type":"Component","name":"c","schema":"dtmi:ex:b;1"},{"@type":["Property","ValueAnnotation","Override"],"name":"u","annotates":"c","overrides":"unit","schema":"TemperatureUnit"}`),
			iface3("dtmi:ex:b;1", "", tempTelemetry)}, `"c" is a Component`},
		{"override of annotates", []string{iface3("dtmi:ex:a;1", "", tempTelemetry+`,{"@type":["Property","ValueAnnotation","Override"],"name":"u","annotates":"currentTemp","overrides":"annotates","schema":"string"}`)},
			`overrides: "currentTemp" has no property annotates to override`},
		{"override of a semantic type", []string{iface3("dtmi:ex:a;1", "", tempTelemetry+`,{"@type":["Property","ValueAnnotation","Override"],"name":"u","annotates":"currentTemp","overrides":"Temperature","schema":"string"}`)},
			`overrides: "Temperature" is not a property`},
		{"override with a schema that is not a unit type", []string{iface3("dtmi:ex:a;1", "", tempTelemetry+`,{"@type":["Property","ValueAnnotation","Override"],"name":"u","annotates":"currentTemp","overrides":"unit","schema":{"@type":"Enum","valueSchema":"string","enumValues":[{"name":"kelvin","enumValue":"kelvin"}]}}`)},
			`schema: must be TemperatureUnit, the unit type of "currentTemp"'s unit degreeFahrenheit, not an inline Enum`},
		{"override of a DTDL v2 unit", []string{
			`{"@context":"dtmi:dtdl:context;2","@id":"dtmi:ex:old;1","@type":"Interface","contents":[{"@type":["Telemetry","Temperature"],"name":"currentTemp","schema":"double","unit":"degreeFahrenheit"}]}`,
			iface3("dtmi:ex:a;1", `"dtmi:ex:old;1"`, tempOverride),
		}, `"currentTemp" has no unit to override`},
		{"override by a Telemetry", []string{iface3("dtmi:ex:a;1", "", tempTelemetry+`,{"@type":["Telemetry","ValueAnnotation","Override"],"name":"u","annotates":"currentTemp","overrides":"unit","schema":"TemperatureUnit"}`)},
			"Override cannot be a co-type of Telemetry"},
		{"override of a relationship property", []string{iface3("dtmi:ex:a;1", "", `{"@type":"Relationship","name":"feeds","properties":[`+
			`{"@type":["Property","Power"],"name":"load","schema":"double","unit":"kilowatt"},`+
			`{"@type":["Property","ValueAnnotation","Override"],"name":"loadUnit","annotates":"load","overrides":"unit","schema":"PowerUnit"}]}`)}, ""},
		{"override of a relationship property with the wrong unit type", []string{iface3("dtmi:ex:a;1", "", `{"@type":"Relationship","name":"feeds","properties":[`+
			`{"@type":["Property","Power"],"name":"load","schema":"double","unit":"kilowatt"},`+
			`{"@type":["Property","ValueAnnotation","Override"],"name":"loadUnit","annotates":"load","overrides":"unit","schema":"EnergyUnit"}]}`)},
			`schema: must be PowerUnit, the unit type of "load"'s unit kilowatt, not EnergyUnit`},
		{"annotation of a content outside the relationship", []string{iface3("dtmi:ex:a;1", "", tempTelemetry+`,{"@type":"Relationship","name":"feeds","properties":[`+
			`{"@type":["Property","ValueAnnotation","Override"],"name":"u","annotates":"currentTemp","overrides":"unit","schema":"TemperatureUnit"}]}`)},
			`"currentTemp" is not the name of a property of the same Relationship`},
		{"two overrides of one unit in a relationship", []string{iface3("dtmi:ex:a;1", "", `{"@type":"Relationship","name":"feeds","properties":[`+
			`{"@type":["Property","Power"],"name":"load","schema":"double","unit":"kilowatt"},`+
			`{"@type":["Property","ValueAnnotation","Override"],"name":"a","annotates":"load","overrides":"unit","schema":"PowerUnit"},`+
			`{"@type":["Property","ValueAnnotation","Override"],"name":"b","annotates":"load","overrides":"unit","schema":"PowerUnit"}]}`)},
			`properties: the unit of "load" is overridden by more than one Property ("a" and "b")`},
		{"overrides brought together by two parents", []string{
			iface3("dtmi:ex:root;1", "", tempTelemetry),
			iface3("dtmi:ex:left;1", `"dtmi:ex:root;1"`, `{"@type":["Property","ValueAnnotation","Override"],"name":"leftUnit","annotates":"currentTemp","overrides":"unit","schema":"TemperatureUnit"}`),
			iface3("dtmi:ex:right;1", `"dtmi:ex:root;1"`, `{"@type":["Property","ValueAnnotation","Override"],"name":"rightUnit","annotates":"currentTemp","overrides":"unit","schema":"TemperatureUnit"}`),
			iface3("dtmi:ex:both;1", `["dtmi:ex:left;1","dtmi:ex:right;1"]`, ""),
		}, `dtmi:ex:both;1: contents: the unit of "currentTemp" is overridden by more than one Property ("leftUnit" and "rightUnit")`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			docs := make([][]byte, len(tt.docs))
			for i, d := range tt.docs {
				docs[i] = []byte(d)
			}
			_, err := Parse(docs, nil, Options{})
			switch {
			case tt.problem == "" && err != nil:
				t.Fatalf("want valid, got %v", err)
			case tt.problem != "" && err == nil:
				t.Fatalf("want a problem containing %q, got none", tt.problem)
			case tt.problem != "" && !strings.Contains(err.Error(), tt.problem):
				t.Fatalf("want a problem containing %q, got %v", tt.problem, err)
			}
		})
	}
}

// TestOverrideOfBaseContent overrides units of contents that an earlier batch defined, as an
// ontology uploaded in several calls does.
func TestOverrideOfBaseContent(t *testing.T) {
	base := mustParse(t, nil, []byte(iface3("dtmi:ex:Base;1", "",
		tempTelemetry+`,{"@type":["Property","Angle"],"name":"heading","schema":"double","unit":"degreeOfArc","writable":true},`+
			`{"@type":["Property","ValueAnnotation","Override"],"name":"headingUnit","annotates":"heading","overrides":"unit","schema":"AngleUnit","writable":true}`)))

	s := mustParse(t, base, []byte(iface3("dtmi:ex:Sensor;1", `"dtmi:ex:Base;1"`, tempOverride)))
	sensor, _ := s.Interface("dtmi:ex:Sensor;1")
	p := sensor.Properties["currentTempUnit"]
	if p.Annotates != "currentTemp" || p.Overrides != quantUnit || p.Schema.ID != quantPrefix+"enum:TemperatureUnit" {
		t.Fatalf("currentTempUnit = annotates %q, overrides %q, schema %q", p.Annotates, p.Overrides, p.Schema.ID)
	}
	if h := sensor.Properties["headingUnit"]; h.Annotates != "heading" || h.Overrides != quantUnit || h.Schema.ID != quantPrefix+"enum:AngleUnit" {
		t.Fatalf("inherited headingUnit = %+v", h)
	}
	if err := sensor.ValidateTwin(map[string]any{"currentTempUnit": "degreeCelsius", "headingUnit": "radian"}); err != nil {
		t.Errorf("valid units: %v", err)
	}
	if err := sensor.ValidatePath([]string{"currentTempUnit"}, "radian"); err == nil {
		t.Error("an AngleUnit unit was accepted for a TemperatureUnit")
	}

	for _, tt := range []struct{ name, contents, problem string }{
		{"wrong unit type", `{"@type":["Property","ValueAnnotation","Override"],"name":"u","annotates":"currentTemp","overrides":"unit","schema":"AngleUnit"}`,
			`schema: must be TemperatureUnit, the unit type of "currentTemp"'s unit degreeFahrenheit, not AngleUnit`},
		{"second override of an inherited override's unit", `{"@type":["Property","ValueAnnotation","Override"],"name":"u","annotates":"heading","overrides":"unit","schema":"AngleUnit"}`,
			`the unit of "heading" is overridden by more than one Property ("headingUnit" and "u")`},
		{"annotation of a base annotation", `{"@type":["Property","ValueAnnotation"],"name":"u","annotates":"headingUnit","schema":"string"}`,
			`"headingUnit" is itself a ValueAnnotation`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([][]byte{[]byte(iface3("dtmi:ex:Sensor;1", `"dtmi:ex:Base;1"`, tt.contents))}, base, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.problem) {
				t.Fatalf("want a problem containing %q, got %v", tt.problem, err)
			}
		})
	}
}
