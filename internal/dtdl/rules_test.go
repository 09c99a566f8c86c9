package dtdl

import (
	"strings"
	"testing"
)

// v3 wraps contents in a DTDL v3 Interface with the given extra contexts.
func v3(contexts, contents string) string {
	ctx := `"dtmi:dtdl:context;3"`
	if contexts != "" {
		ctx = `["dtmi:dtdl:context;3",` + contexts + `]`
	}
	return `{"@context":` + ctx + `,"@id":"dtmi:ex:rules;1","@type":"Interface","contents":[` + contents + `]}`
}

func TestParseRules(t *testing.T) {
	const (
		quant = `"dtmi:dtdl:extension:quantitativeTypes;1"`
		hist  = `"dtmi:dtdl:extension:historization;1"`
		annot = `"dtmi:dtdl:extension:annotation;1"`
		over  = `"dtmi:dtdl:extension:overriding;1"`
	)
	tests := []struct {
		name  string
		doc   string
		allow bool
		// problem is a substring of the expected error; "" means the document is valid.
		problem string
	}{
		{"historized property", v3(hist, `{"@type":["Property","Historized"],"name":"p","schema":"double"}`), false, ""},
		{"historized needs its context", v3("", `{"@type":["Property","Historized"],"name":"p","schema":"double"}`), false, `"Historized" is not defined`},
		{"historized relationship", v3(hist, `{"@type":["Relationship","Historized"],"name":"r"}`), false, "cannot be a co-type of Relationship"},
		{"value annotation", v3(annot, `{"@type":"Property","name":"p","schema":"double"},{"@type":["Property","ValueAnnotation"],"name":"q","schema":"string","annotates":"p"}`), false, ""},
		{"value annotation of a missing sibling", v3(annot, `{"@type":["Property","ValueAnnotation"],"name":"q","schema":"string","annotates":"nope"}`), false, `"nope" is not the name of a content`},
		{"value annotation of an annotation", v3(annot, `{"@type":"Property","name":"p","schema":"double"},{"@type":["Property","ValueAnnotation"],"name":"q","schema":"string","annotates":"p"},{"@type":["Property","ValueAnnotation"],"name":"r","schema":"string","annotates":"q"}`), false, `"q" is itself a ValueAnnotation`},
		{"value annotation needs annotates", v3(annot, `{"@type":["Property","ValueAnnotation"],"name":"q","schema":"string"}`), false, "annotates: is required"},
		{"override", v3(quant+","+annot+","+over, `{"@type":["Property","Temperature"],"name":"p","schema":"double","unit":"kelvin"},{"@type":["Property","ValueAnnotation","Override"],"name":"q","schema":"TemperatureUnit","annotates":"p","overrides":"unit"}`), false, ""},
		{"override by IRIs", v3(quant+","+annot+","+over, `{"@type":["Property","Temperature"],"name":"p","schema":"double","unit":"kelvin"},{"@type":["Property","ValueAnnotation","Override"],"name":"q","schema":"dtmi:dtdl:extension:quantitativeTypes:v1:enum:TemperatureUnit","annotates":"p","overrides":"dtmi:dtdl:extension:quantitativeTypes:v1:property:unit"}`), false, ""},
		{"override needs the unit's context", v3(annot+","+over, `{"@type":"Property","name":"p","schema":"double"},{"@type":["Property","ValueAnnotation","Override"],"name":"q","schema":"string","annotates":"p","overrides":"unit"}`), false, `overrides: "unit" is not a defined term`},
		{"override of an element without a unit", v3(quant+","+annot+","+over, `{"@type":"Property","name":"p","schema":"double"},{"@type":["Property","ValueAnnotation","Override"],"name":"q","schema":"TemperatureUnit","annotates":"p","overrides":"unit"}`), false, `"p" has no unit to override`},
		{"override with the wrong unit type", v3(quant+","+annot+","+over, `{"@type":["Telemetry","Temperature"],"name":"t","schema":"double","unit":"kelvin"},{"@type":["Property","ValueAnnotation","Override"],"name":"q","schema":"AngleUnit","annotates":"t","overrides":"unit"}`), false, `schema: must be TemperatureUnit, the unit type of "t"'s unit kelvin, not AngleUnit`},
		{"override of a DTDL property", v3(quant+","+annot+","+over, `{"@type":["Telemetry","Temperature"],"name":"t","schema":"double","unit":"kelvin"},{"@type":["Property","ValueAnnotation","Override"],"name":"q","schema":"string","annotates":"t","overrides":"schema"}`), false, `"schema" is a property of the DTDL language`},
		{"override without ValueAnnotation", v3(quant+","+annot+","+over, `{"@type":["Telemetry","Temperature"],"name":"t","schema":"double","unit":"kelvin"},{"@type":["Property","Override"],"name":"q","schema":"TemperatureUnit","overrides":"unit"}`), false, "an Override must also be co-typed ValueAnnotation"},
		{"unit type as a plain schema", v3(quant, `{"@type":"Property","name":"u","schema":"AngleUnit","writable":true}`), false, ""},
		{"unit type as an element schema", v3(quant, `{"@type":"Property","name":"u","schema":{"@type":"Array","elementSchema":"VelocityUnit"}}`), false, ""},
		{"unit type needs its context", v3("", `{"@type":"Property","name":"u","schema":"AngleUnit"}`), false, `"AngleUnit" is neither a DTMI nor a term defined here`},
		{"unit type is no map key", v3(quant, `{"@type":"Property","name":"p","schema":{"@type":"Map","mapKey":{"name":"k","schema":"AngleUnit"},"mapValue":{"name":"v","schema":"string"}}}`), false, `"AngleUnit" does not name the string schema`},
		{"unit type is not numeric", v3(quant, `{"@type":["Property","Angle"],"name":"a","schema":"AngleUnit","unit":"radian"}`), false, "not the unit type AngleUnit"},
		{"v2 unit type is no schema", `{"@context":"dtmi:dtdl:context;2","@id":"dtmi:ex:h;1","@type":"Interface","contents":[{"@type":"Property","name":"u","schema":"AngleUnit"}]}`, false, `"AngleUnit" does not name Array, Enum, Map or Object`},
		{"quantitative type", v3(quant, `{"@type":["Telemetry","Temperature"],"name":"t","schema":"double","unit":"kelvin"}`), false, ""},
		{"quantitative type on a field", v3(quant, `{"@type":"Telemetry","name":"t","schema":{"@type":"Object","fields":[{"@type":["Field","Mass"],"name":"m","schema":"float","unit":"kilogram"}]}}`), false, ""},
		{"unitless quantity", v3(quant, `{"@type":["Telemetry","RelativeHumidity"],"name":"h","schema":"double","unit":"percent"}`), false, ""},
		{"v2 unitless quantity", `{"@context":"dtmi:dtdl:context;2","@id":"dtmi:ex:h;1","@type":"Interface","contents":[{"@type":["Telemetry","RelativeHumidity"],"name":"h","schema":"double","unit":"percent"}]}`, false, ""},
		{"wrong unit", v3(quant, `{"@type":["Telemetry","Temperature"],"name":"t","schema":"double","unit":"kilogram"}`), false, "kilogram is not a unit of the semantic type Temperature"},
		{"unit required", v3(quant, `{"@type":["Telemetry","Temperature"],"name":"t","schema":"double"}`), false, "unit: is required"},
		{"undefined extension allowed", v3(`"dtmi:acme:ext;1"`, `{"@type":["Property","Acme"],"name":"p","schema":"string","acmeLevel":3}`), true, ""},
		{"undefined extension disallowed", v3(`"dtmi:acme:ext;1"`, `{"@type":["Property","Acme"],"name":"p","schema":"string"}`), false, "undefined extensions are not allowed"},
		{"undefined property needs an undefined co-type", v3(`"dtmi:acme:ext;1"`, `{"@type":"Property","name":"p","schema":"string","acmeLevel":3}`), true, "acmeLevel: is not a property of Property"},
		{"full IRI property names", v3("", `{"@type":"Property","dtmi:dtdl:property:name;3":"p","dtmi:dtdl:property:schema;3":"string","dtmi:dtdl:property:comment;3":"c"}`), false, ""},
		{"term and IRI for one property", v3("", `{"@type":"Property","name":"p","dtmi:dtdl:property:name;3":"q","schema":"string"}`), false, "is given twice"},
		{"localized strings", v3("", `{"@type":"Property","name":"p","schema":"string","displayName":[{"@value":"Hi","@language":"en"},{"@value":"Ciao","@language":"it"}]}`), false, ""},
		{"duplicate language", v3("", `{"@type":"Property","name":"p","schema":"string","displayName":["Hi",{"@value":"Hello","@language":"en"}]}`), false, `more than one value for language "en"`},
		{"value objects", v3("", `{"@type":"Property","name":"p","schema":"string","writable":{"@value":true,"@type":"xsd:boolean"}}`), false, ""},
		{"map key must be string", v3("", `{"@type":"Property","name":"p","schema":{"@type":"Map","mapKey":{"name":"k","schema":"integer"},"mapValue":{"name":"v","schema":"string"}}}`), false, "schema of a MapKey must be string"},
		{"duplicate enum values", v3("", `{"@type":"Property","name":"p","schema":{"@type":"Enum","valueSchema":"string","enumValues":[{"name":"a","enumValue":"x"},{"name":"b","enumValue":"x"}]}}`), false, "is used more than once"},
		{"component in component", `[` + v3("", `{"@type":"Component","name":"c","schema":"dtmi:ex:mid;1"}`) + `,{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:mid;1","@type":"Interface","contents":[{"@type":"Component","name":"d","schema":"dtmi:ex:leaf;1"}]},{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:leaf;1","@type":"Interface"}]`, false, "Components must not nest"},
		{"inherited name clash", `[{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:a;1","@type":"Interface","extends":"dtmi:ex:b;1","contents":[{"@type":"Property","name":"p","schema":"string"}]},{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:b;1","@type":"Interface","contents":[{"@type":"Telemetry","name":"p","schema":"string"}]}]`, false, `name "p" is used by more than one content`},
		{"reserved prefix", `{"@context":"dtmi:dtdl:context;3","@id":"dtmi:dtdl:mine;1","@type":"Interface"}`, false, "reserved prefix"},
		{"v2 needs a version", `{"@context":"dtmi:dtdl:context;2","@id":"dtmi:ex:noversion","@type":"Interface"}`, false, "must be a DTMI with a major version"},
		{"v3 minor version", `{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:minor;1.2","@type":"Interface"}`, false, ""},
		{"leading BOM", "\uFEFF" + v3("", ""), false, ""},
		{"not JSON", `{"@context":`, false, "is not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([][]byte{[]byte(tt.doc)}, nil, Options{AllowUndefinedExtensions: tt.allow})
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
