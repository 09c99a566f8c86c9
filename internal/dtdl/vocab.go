package dtdl

import "strings"

// class is a DTDL metamodel class an element can be an instance of.
type class uint8

// The instantiable DTDL classes. CommandPayload is concrete in v2 only; CommandRequest and
// CommandResponse exist in v3 only.
const (
	clsNone class = iota
	clsInterface
	clsTelemetry
	clsProperty
	clsCommand
	clsRelationship
	clsComponent
	clsCommandPayload
	clsCommandRequest
	clsCommandResponse
	clsArray
	clsEnum
	clsEnumValue
	clsMap
	clsMapKey
	clsMapValue
	clsObject
	clsField
	clsAbstract // a metamodel class that no element may declare as its type
)

var classTerms = [...]string{
	clsInterface:       "Interface",
	clsTelemetry:       "Telemetry",
	clsProperty:        "Property",
	clsCommand:         "Command",
	clsRelationship:    "Relationship",
	clsComponent:       "Component",
	clsCommandPayload:  "CommandPayload",
	clsCommandRequest:  "CommandRequest",
	clsCommandResponse: "CommandResponse",
	clsArray:           "Array",
	clsEnum:            "Enum",
	clsEnumValue:       "EnumValue",
	clsMap:             "Map",
	clsMapKey:          "MapKey",
	clsMapValue:        "MapValue",
	clsObject:          "Object",
	clsField:           "Field",
}

// String returns the DTDL term of the class.
func (c class) String() string {
	if c > clsNone && c < clsAbstract {
		return classTerms[c]
	}
	return "element"
}

// isComplexSchema reports whether c is one of the complex schema classes.
func (c class) isComplexSchema() bool {
	return c == clsArray || c == clsEnum || c == clsMap || c == clsObject
}

// abstractClassTerms are metamodel classes with a term but no instances of their own.
var abstractClassTerms = []string{
	"Entity", "NamedEntity", "SchemaField", "Schema", "PrimitiveSchema", "NumericSchema",
	"TemporalSchema", "ComplexSchema", "Content", "CommandType", "Boolean", "Date", "DateTime",
	"Double", "Duration", "Float", "Integer", "Long", "String", "Time", "Unit", "UnitAttribute",
	"SemanticType", "SemanticUnit", "LatentType", "NamedLatentType", "AdjunctType", "Alias",
}

// prop is a DTDL property.
type prop uint8

// The DTDL properties.
const (
	propNone prop = iota
	propComment
	propCommandType
	propContents
	propDescription
	propDisplayName
	propElementSchema
	propEnumValue
	propEnumValues
	propExtends
	propFields
	propLanguageMajorVersion
	propMapKey
	propMapValue
	propMaxMultiplicity
	propMinMultiplicity
	propName
	propProperties
	propRequest
	propResponse
	propSchema
	propSchemas
	propTarget
	propValueSchema
	propWritable
	propUnit      // the unit of a semantically typed element
	propAnnotates // Annotation extension
	propOverrides // Overriding extension
	propOther     // a defined property of the metamodel that no model element may carry
	propCount
)

var propTerms = [...]string{
	propComment:              "comment",
	propCommandType:          "commandType",
	propContents:             "contents",
	propDescription:          "description",
	propDisplayName:          "displayName",
	propElementSchema:        "elementSchema",
	propEnumValue:            "enumValue",
	propEnumValues:           "enumValues",
	propExtends:              "extends",
	propFields:               "fields",
	propLanguageMajorVersion: "languageMajorVersion",
	propMapKey:               "mapKey",
	propMapValue:             "mapValue",
	propMaxMultiplicity:      "maxMultiplicity",
	propMinMultiplicity:      "minMultiplicity",
	propName:                 "name",
	propProperties:           "properties",
	propRequest:              "request",
	propResponse:             "response",
	propSchema:               "schema",
	propSchemas:              "schemas",
	propTarget:               "target",
	propValueSchema:          "valueSchema",
	propWritable:             "writable",
	propUnit:                 "unit",
	propAnnotates:            "annotates",
	propOverrides:            "overrides",
}

// String returns the DTDL term of the property.
func (p prop) String() string {
	if p > propNone && int(p) < len(propTerms) && propTerms[p] != "" {
		return propTerms[p]
	}
	return "property"
}

// otherPropTerms are core context terms for properties no element of a model may carry.
var otherPropTerms = []string{"symbol", "exponent", "aliasFor", "baseUnit", "bottomUnit", "topUnit", "prefix"}

// classProps lists the properties each class has (beyond the Entity ones every class has).
var classProps = [...][]prop{
	clsInterface:       {propContents, propExtends, propSchemas},
	clsTelemetry:       {propName, propSchema},
	clsProperty:        {propName, propSchema, propWritable},
	clsCommand:         {propName, propRequest, propResponse, propCommandType},
	clsRelationship:    {propName, propMaxMultiplicity, propMinMultiplicity, propTarget, propProperties, propWritable},
	clsComponent:       {propName, propSchema},
	clsCommandPayload:  {propName, propSchema},
	clsCommandRequest:  {propName, propSchema},
	clsCommandResponse: {propName, propSchema},
	clsArray:           {propElementSchema},
	clsEnum:            {propValueSchema, propEnumValues},
	clsEnumValue:       {propName, propEnumValue},
	clsMap:             {propMapKey, propMapValue},
	clsMapKey:          {propName, propSchema},
	clsMapValue:        {propName, propSchema},
	clsObject:          {propFields},
	clsField:           {propName, propSchema},
}

// hasProp reports whether elements of class c carry property p.
func (c class) hasProp(p prop) bool {
	switch p {
	case propDisplayName, propDescription, propComment, propLanguageMajorVersion:
		return true
	}
	if c == clsNone || c >= clsAbstract {
		return false
	}
	for _, q := range classProps[c] {
		if q == p {
			return true
		}
	}
	return false
}

// ext is a bit set of the language extension contexts in scope.
type ext uint8

const (
	extQuant ext = 1 << iota
	extHistorization
	extAnnotation
	extOverriding
	extIoTCentral
)

// The context identifiers DTDL documents use.
const (
	contextV2          = "dtmi:dtdl:context;2"
	contextV3          = "dtmi:dtdl:context;3"
	contextQuant       = "dtmi:dtdl:extension:quantitativeTypes;1"
	contextHistorized  = "dtmi:dtdl:extension:historization;1"
	contextAnnotation  = "dtmi:dtdl:extension:annotation;1"
	contextOverriding  = "dtmi:dtdl:extension:overriding;1"
	contextIoTCentral  = "dtmi:iotcentral:context;2"
	quantPrefix        = "dtmi:dtdl:extension:quantitativeTypes:v1:"
	geospatialIDPrefix = "dtmi:standard:schema:geospatial:"
)

// extContexts maps the extension contexts this package implements to their bit and the DTDL
// version they belong to.
var extContexts = map[string]struct {
	bit     ext
	version int
}{
	contextQuant:      {extQuant, 3},
	contextHistorized: {extHistorization, 3},
	contextAnnotation: {extAnnotation, 3},
	contextOverriding: {extOverriding, 3},
	contextIoTCentral: {extIoTCentral, 2},
}

// termKind says what a term or IRI denotes.
type termKind uint8

const (
	tkUndefined    termKind = iota // no context in scope defines it
	tkClass                        // a DTDL class (cls says which; clsAbstract for abstract ones)
	tkProperty                     // a DTDL property (prop says which)
	tkSchema                       // a standard schema (schema says which)
	tkCommandType                  // asynchronous or synchronous
	tkSemanticType                 // a semantic type
	tkUnit                         // a unit
	tkAdjunct                      // an extension adjunct type (Historized, ValueAnnotation, Override)
	tkUnitType                     // a QuantitativeTypes unit type: an Enum schema of units
	tkOther                        // defined, but with no role in a model (v2 unit types, iotcentral schemas)
)

// meaning is what a term or IRI denotes.
type meaning struct {
	kind   termKind
	cls    class
	prop   prop
	schema Kind
	iri    string
}

// vocabulary holds the term tables of the DTDL contexts.
type vocabulary struct {
	terms [4]map[string]meaning // by DTDL version: core context terms
	ext   map[ext]map[string]meaning
	iris  map[string]meaning
	// units maps a semantic type IRI to the IRIs of the units it accepts.
	units map[string]map[string]bool
	// unitTypes maps the IRI of a QuantitativeTypes unit type to the Enum schema it names.
	unitTypes map[string]*Schema
	// unitTypeOf maps the IRI of a QuantitativeTypes unit to the unit type it belongs to.
	unitTypeOf map[string]*Schema
}

// vocab is the immutable vocabulary of DTDL v2, v3 and the implemented extensions, built once
// from the literal tables in this file and semantic_table.go.
var vocab = newVocabulary()

var standardSchemaTerms = [...]string{
	KindBoolean: "boolean", KindDate: "date", KindDateTime: "dateTime", KindDouble: "double",
	KindDuration: "duration", KindFloat: "float", KindInteger: "integer", KindLong: "long",
	KindString: "string", KindTime: "time", KindPoint: "point", KindLineString: "lineString",
	KindPolygon: "polygon", KindMultiPoint: "multiPoint", KindMultiLineString: "multiLineString",
	KindMultiPolygon: "multiPolygon",
}

// semanticTypeRow is one row of a semantic type table: the semantic type, its unit type and the
// units it accepts.
type semanticTypeRow struct {
	semanticType string
	unitType     string
	units        []string
}

// standardSchemaID returns the DTMI of standard schema k in DTDL version v.
func standardSchemaID(k Kind, v int) string {
	sfx := ";2"
	if v == 3 {
		sfx = ";3"
	}
	if k >= KindPoint {
		return geospatialIDPrefix + standardSchemaTerms[k] + sfx
	}
	return "dtmi:dtdl:instance:Schema:" + standardSchemaTerms[k] + sfx
}

func newVocabulary() *vocabulary {
	v := &vocabulary{
		ext:        map[ext]map[string]meaning{},
		iris:       map[string]meaning{},
		units:      map[string]map[string]bool{},
		unitTypes:  map[string]*Schema{},
		unitTypeOf: map[string]*Schema{},
	}
	for _, ver := range []int{2, 3} {
		sfx := ";2"
		if ver == 3 {
			sfx = ";3"
		}
		t := map[string]meaning{}
		add := func(term string, m meaning) {
			t[term] = m
			v.iris[m.iri] = m
		}
		for c := clsInterface; c < clsAbstract; c++ {
			if ver == 2 && (c == clsCommandRequest || c == clsCommandResponse) {
				continue
			}
			cls := c
			if ver == 3 && c == clsCommandPayload {
				cls = clsAbstract
			}
			add(classTerms[c], meaning{kind: tkClass, cls: cls, iri: "dtmi:dtdl:class:" + classTerms[c] + sfx})
		}
		for _, a := range abstractClassTerms {
			add(a, meaning{kind: tkClass, cls: clsAbstract, iri: "dtmi:dtdl:class:" + a + sfx})
		}
		for p := propComment; p <= propWritable; p++ {
			add(propTerms[p], meaning{kind: tkProperty, prop: p, iri: "dtmi:dtdl:property:" + propTerms[p] + sfx})
		}
		for _, o := range otherPropTerms {
			add(o, meaning{kind: tkProperty, prop: propOther, iri: "dtmi:dtdl:property:" + o + sfx})
		}
		for k := KindBoolean; k <= KindMultiPolygon; k++ {
			add(standardSchemaTerms[k], meaning{kind: tkSchema, schema: k, iri: standardSchemaID(k, ver)})
		}
		for _, ct := range []string{"asynchronous", "synchronous"} {
			add(ct, meaning{kind: tkCommandType, iri: "dtmi:dtdl:instance:CommandType:" + ct + sfx})
		}
		if ver == 2 {
			add("unit", meaning{kind: tkProperty, prop: propUnit, iri: "dtmi:dtdl:property:unit;2"})
			for _, row := range semanticTypesV2 {
				sem := meaning{kind: tkSemanticType, iri: "dtmi:standard:class:" + row.semanticType + ";2"}
				add(row.semanticType, sem)
				add(row.unitType, meaning{kind: tkOther, iri: "dtmi:standard:class:" + row.unitType + ";2"})
				set := map[string]bool{}
				for _, u := range row.units {
					m := meaning{kind: tkUnit, iri: "dtmi:standard:unit:" + u + ";2"}
					add(u, m)
					set[m.iri] = true
				}
				v.units[sem.iri] = set
			}
		}
		v.terms[ver] = t
	}

	quant := map[string]meaning{}
	addExt := func(t map[string]meaning, term string, m meaning) {
		t[term] = m
		v.iris[m.iri] = m
	}
	addExt(quant, "unit", meaning{kind: tkProperty, prop: propUnit, iri: quantPrefix + "property:unit"})
	for _, row := range semanticTypesQuant {
		sem := meaning{kind: tkSemanticType, iri: quantPrefix + "class:" + row.semanticType}
		addExt(quant, row.semanticType, sem)
		ut := meaning{kind: tkUnitType, iri: quantPrefix + "enum:" + row.unitType}
		addExt(quant, row.unitType, ut)
		enum := v.unitTypes[ut.iri]
		if enum == nil {
			enum = unitTypeSchema(ut.iri, row.units)
			v.unitTypes[ut.iri] = enum
		}
		set := map[string]bool{}
		for _, u := range row.units {
			m := meaning{kind: tkUnit, iri: quantPrefix + "unit:" + u}
			addExt(quant, u, m)
			set[m.iri] = true
			v.unitTypeOf[m.iri] = enum
		}
		v.units[sem.iri] = set
	}
	v.ext[extQuant] = quant

	hist := map[string]meaning{}
	addExt(hist, "Historized", meaning{kind: tkAdjunct, iri: "dtmi:dtdl:extension:historization:v1:Historized"})
	v.ext[extHistorization] = hist

	annot := map[string]meaning{}
	addExt(annot, "ValueAnnotation", meaning{kind: tkAdjunct, iri: "dtmi:dtdl:extension:annotation:v1:ValueAnnotation"})
	addExt(annot, "annotates", meaning{kind: tkProperty, prop: propAnnotates, iri: "dtmi:dtdl:extension:annotation:v1:ValueAnnotation:annotates"})
	v.ext[extAnnotation] = annot

	over := map[string]meaning{}
	addExt(over, "Override", meaning{kind: tkAdjunct, iri: "dtmi:dtdl:extension:overriding:v1:Override"})
	addExt(over, "overrides", meaning{kind: tkProperty, prop: propOverrides, iri: "dtmi:dtdl:extension:overriding:v1:Override:overrides"})
	v.ext[extOverriding] = over

	iot := map[string]meaning{}
	for _, s := range []string{"State", "Event", "Location", "VelocityVector", "AccelerationVector"} {
		m := meaning{kind: tkSemanticType, iri: "dtmi:iotcentral:class:" + s + ";2"}
		iot[s] = m
		v.iris[m.iri] = m
	}
	for _, s := range []string{"vector", "geopoint"} {
		m := meaning{kind: tkOther, iri: "dtmi:iotcentral:schema:" + s + ";2"}
		iot[s] = m
		v.iris[m.iri] = m
	}
	v.ext[extIoTCentral] = iot
	return v
}

// unitTypeSchema returns the Enum schema a QuantitativeTypes unit type names: string values,
// one per unit, each value and name being the unit's term (as the extension's metamodel
// defines them), identified by the unit's IRI.
func unitTypeSchema(iri string, units []string) *Schema {
	s := &Schema{Kind: KindEnum, ID: iri, ValueSchema: KindString, EnumValues: make([]*EnumValue, len(units))}
	for i, u := range units {
		s.EnumValues[i] = &EnumValue{ID: quantPrefix + "unit:" + u, Name: u, Value: u}
	}
	return s
}

// quantTerm returns the term of a QuantitativeTypes unit type, unit or property from its IRI
// ("AngleUnit" for ...:enum:AngleUnit, "unit" for ...:property:unit), or iri itself for any
// other IRI.
func quantTerm(iri string) string {
	if rest, ok := strings.CutPrefix(iri, quantPrefix); ok {
		if _, term, ok := strings.Cut(rest, ":"); ok {
			return term
		}
	}
	return iri
}

// termForm classifies how a string names something.
type termForm uint8

const (
	formTerm           termForm = iota // a bare term such as "Property"
	formDTMI                           // a valid DTMI
	formInvalidDTMI                    // starts with "dtmi:" but is not a valid DTMI
	formNotDTMINorTerm                 // an IRI of another scheme, or otherwise unusable
)

// lookup resolves s (a term or an IRI) in the contexts of sc.
func (v *vocabulary) lookup(s string, sc scope) (meaning, termForm) {
	if strings.HasPrefix(s, "dtmi:") {
		if !isDTMI(s, true) {
			return meaning{}, formInvalidDTMI
		}
		return v.iris[s], formDTMI
	}
	if !isTerm(s) {
		return meaning{}, formNotDTMINorTerm
	}
	for b := extIoTCentral; b != 0; b >>= 1 {
		if sc.exts&b != 0 {
			if m, ok := v.ext[b][s]; ok {
				return m, formTerm
			}
		}
	}
	if m, ok := v.terms[sc.version][s]; ok {
		return m, formTerm
	}
	return meaning{}, formTerm
}

// isTerm reports whether s can be a JSON-LD term (no colon, slash or '@' prefix).
func isTerm(s string) bool {
	return s != "" && !strings.ContainsAny(s, ":/#?") && s[0] != '@'
}
