// Package dtdl parses, validates and resolves Digital Twins Definition Language (DTDL) v2 and
// v3 models, and validates JSON values and twin documents against them.
//
// The package is pure logic: no I/O, no globals. Parse turns a batch of DTDL documents into an
// immutable, resolved ModelSet; the twin API calls the ModelSet's validators on every write.
//
// Values handed to validators are the Go values that encoding/json produces when decoding with
// UseNumber: nil, bool, json.Number, string, []any and map[string]any.
package dtdl

// Kind names the kind of a Schema.
type Kind uint8

// The schema kinds. The primitive and geospatial kinds are the standard schemas of the DTDL
// specifications; Array, Enum, Map and Object are the complex schemas.
const (
	KindInvalid Kind = iota
	KindBoolean
	KindDate
	KindDateTime
	KindDouble
	KindDuration
	KindFloat
	KindInteger
	KindLong
	KindString
	KindTime
	KindPoint
	KindLineString
	KindPolygon
	KindMultiPoint
	KindMultiLineString
	KindMultiPolygon
	KindArray
	KindEnum
	KindMap
	KindObject
)

// String returns the DTDL term for the kind ("integer", "Object", ...).
func (k Kind) String() string {
	if int(k) < len(kindTerms) {
		return kindTerms[k]
	}
	return "invalid"
}

var kindTerms = [...]string{
	KindInvalid:         "invalid",
	KindBoolean:         "boolean",
	KindDate:            "date",
	KindDateTime:        "dateTime",
	KindDouble:          "double",
	KindDuration:        "duration",
	KindFloat:           "float",
	KindInteger:         "integer",
	KindLong:            "long",
	KindString:          "string",
	KindTime:            "time",
	KindPoint:           "point",
	KindLineString:      "lineString",
	KindPolygon:         "polygon",
	KindMultiPoint:      "multiPoint",
	KindMultiLineString: "multiLineString",
	KindMultiPolygon:    "multiPolygon",
	KindArray:           "Array",
	KindEnum:            "Enum",
	KindMap:             "Map",
	KindObject:          "Object",
}

// Schema is a resolved DTDL schema. Which fields are set depends on Kind; a standard (primitive
// or geospatial) schema has only Kind and ID. Schemas form a tree (DTDL forbids cycles) and are
// shared, never mutated, once a ModelSet holds them.
type Schema struct {
	Kind Kind
	// ID is the schema's DTMI: the standard one for primitive and geospatial schemas, the
	// declared @id, or the identifier the specification assigns to an element without one.
	ID string
	// DisplayName and Description are language maps (language code to text).
	DisplayName map[string]string
	Description map[string]string
	Comment     string

	// ElementSchema is the element schema of an Array.
	ElementSchema *Schema

	// ValueSchema is the value schema of an Enum: KindInteger or KindString.
	ValueSchema Kind
	// EnumValues are the values of an Enum, in declaration order.
	EnumValues []*EnumValue

	// MapKey and MapValue describe a Map. MapKey's schema is always KindString.
	MapKey   *Field
	MapValue *Field

	// Fields are the fields of an Object, in declaration order.
	Fields []*Field
}

// EnumValue is one value of an Enum schema.
type EnumValue struct {
	ID          string
	Name        string
	DisplayName map[string]string
	Description map[string]string
	// Value is the enum value: a string, or an int for integer enums.
	Value any
}

// Field is a named schema: a field of an Object, or the key or value of a Map.
type Field struct {
	ID          string
	Name        string
	DisplayName map[string]string
	Description map[string]string
	Schema      *Schema
}

// Property is a Property content of an Interface.
type Property struct {
	ID          string
	Name        string
	DisplayName map[string]string
	Description map[string]string
	Comment     string
	Schema      *Schema
	Writable    bool
	// Types holds the element's co-types beyond "Property" (semantic types, extension
	// adjuncts such as "Historized"), as written or expanded to DTMIs.
	Types []string
	// Unit is the DTMI of the unit of a semantically typed Property, if any.
	Unit string
	// Annotates is, for a Property co-typed ValueAnnotation (Annotation extension), the name
	// of the sibling Property or Telemetry it annotates.
	Annotates string
	// Overrides is, for a Property co-typed Override (Overriding extension), the DTMI of the
	// extension property of the annotated element that the Property's value overrides in an
	// instance, such as dtmi:dtdl:extension:quantitativeTypes:v1:property:unit. The
	// Property's Schema is then the type of that property: for a unit, the unit type (an Enum
	// of unit names) of the annotated element's semantic type.
	Overrides string
	// DefinedIn is the DTMI of the Interface that declares this Property (for inherited
	// contents it differs from the Interface that holds it).
	DefinedIn string
}

// Telemetry is a Telemetry content of an Interface.
type Telemetry struct {
	ID          string
	Name        string
	DisplayName map[string]string
	Description map[string]string
	Comment     string
	Schema      *Schema
	Types       []string
	Unit        string
	// Annotates is, for a Telemetry co-typed ValueAnnotation, the name of the sibling
	// Property or Telemetry it annotates.
	Annotates string
	DefinedIn string
}

// Command is a Command content of an Interface. Request and Response are nil when absent.
type Command struct {
	ID          string
	Name        string
	DisplayName map[string]string
	Description map[string]string
	Comment     string
	Request     *Field
	Response    *Field
	DefinedIn   string
}

// Relationship is a Relationship content of an Interface.
type Relationship struct {
	ID          string
	Name        string
	DisplayName map[string]string
	Description map[string]string
	Comment     string
	// Target is the DTMI of the Interface that targets must be (or extend); empty means any.
	Target string
	// MinMultiplicity and MaxMultiplicity bound the number of relationships of this name
	// from one twin; MaxMultiplicity 0 means unbounded.
	MinMultiplicity int
	MaxMultiplicity int
	Writable        bool
	// Properties are the relationship's own properties, by name.
	Properties map[string]*Property
	DefinedIn  string
}

// Component is a Component content of an Interface.
type Component struct {
	ID          string
	Name        string
	DisplayName map[string]string
	Description map[string]string
	Comment     string
	// Schema is the component's Interface, resolved.
	Schema    *Interface
	DefinedIn string
}

// Interface is a resolved DTDL Interface. Its content maps are flattened: they hold the
// Interface's own contents and everything inherited through extends.
type Interface struct {
	ID string
	// Version is the DTDL language major version the Interface was written in: 2 or 3.
	Version     int
	DisplayName map[string]string
	Description map[string]string
	Comment     string
	// Extends lists the DTMIs of the Interfaces this one extends directly, as declared.
	Extends []string

	Properties    map[string]*Property
	Telemetries   map[string]*Telemetry
	Commands      map[string]*Command
	Relationships map[string]*Relationship
	Components    map[string]*Component

	// Schemas are the reusable complex schemas declared in the Interface's "schemas".
	Schemas []*Schema
}
