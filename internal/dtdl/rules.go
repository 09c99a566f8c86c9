package dtdl

import (
	"strconv"
	"strings"
)

// hasAdjunct reports whether el has the extension adjunct type whose IRI ends in suffix.
func hasAdjunct(el *elem, suffix string) bool {
	for _, c := range el.cotypes {
		if c.kind == tkAdjunct && strings.HasSuffix(c.iri, suffix) {
			return true
		}
	}
	return false
}

// classRules checks the rules that involve several properties of one element.
func (p *parser) classRules(el *elem) {
	switch el.cls {
	case clsInterface:
		p.uniqueNames(el, propContents)
	case clsObject:
		p.uniqueNames(el, propFields)
	case clsRelationship:
		p.uniqueNames(el, propProperties)
	case clsEnum:
		p.uniqueNames(el, propEnumValues)
		var inline []*elem
		for _, r := range el.values(propEnumValues) {
			if r.el != nil {
				inline = append(inline, r.el)
			}
		}
		p.enumValues(el, inline)
	}
	p.cotypeRules(el)
}

// uniqueNames reports inline values of property q that share a name (names are unique among
// an Interface's contents, an Object's fields, an Enum's values and a Relationship's
// properties). Names inherited through extends are checked by the resolver.
func (p *parser) uniqueNames(el *elem, q prop) {
	seen := map[string]bool{}
	for _, r := range el.values(q) {
		if r.el == nil || r.el.name == "" {
			continue
		}
		if seen[r.el.name] {
			p.problem(el.loc, q.String(), "name %q is used more than once; names must be unique among the %s", r.el.name, q)
		}
		seen[r.el.name] = true
	}
}

// cotypeRules checks semantic types, units and adjunct types: at most one semantic type, on a
// Property or Telemetry (v3: also a Field, MapValue or command payload); a quantitative one
// needs a unit of its unit type and a numeric schema; Historized and ValueAnnotation apply to
// Properties and Telemetries, Override to Properties that are also ValueAnnotations (the
// Overriding extension's metamodel: sh:and ValueAnnotation).
func (p *parser) cotypeRules(el *elem) {
	semantic := map[string]bool{}
	for _, c := range el.cotypes {
		switch c.kind {
		case tkSemanticType:
			semantic[c.iri] = true
			ok := el.cls == clsProperty || el.cls == clsTelemetry
			if el.version == 3 {
				ok = ok || el.cls == clsField || el.cls == clsMapValue || el.cls == clsCommandRequest || el.cls == clsCommandResponse
			}
			if !ok {
				p.problem(el.loc, "@type", "a semantic type cannot be a co-type of %s", el.cls)
				continue
			}
			units, quantitative := vocab.units[c.iri]
			if !quantitative {
				continue
			}
			if el.unit != "" && !units[el.unit] {
				p.problem(el.loc, "unit", "%s is not a unit of the semantic type %s", el.unitName, semanticName(el, c))
			}
			for _, r := range el.values(propSchema) {
				switch {
				case r.el != nil:
					p.problem(el.loc, "schema", "must be a numeric schema (double, float, integer or long) for a semantic type")
				case r.builtin != nil:
					p.problem(el.loc, "schema", "must be a numeric schema (double, float, integer or long) for a semantic type, not the unit type %s", quantTerm(r.builtin.ID))
				case r.id == "":
					switch r.std {
					case KindDouble, KindFloat, KindInteger, KindLong:
					default:
						p.problem(el.loc, "schema", "must be a numeric schema (double, float, integer or long) for a semantic type, not %s", r.std)
					}
				}
			}
		case tkAdjunct:
			ok := el.cls == clsProperty || el.cls == clsTelemetry
			override := strings.HasSuffix(c.iri, "Override")
			if override {
				ok = el.cls == clsProperty
			}
			if !ok {
				p.problem(el.loc, "@type", "%s cannot be a co-type of %s", c.iri, el.cls)
			}
			if override && !hasAdjunct(el, "ValueAnnotation") {
				p.problem(el.loc, "@type", "an Override must also be co-typed ValueAnnotation, whose annotates names the element it overrides a property of")
			}
		}
	}
	if len(semantic) > 1 {
		p.problem(el.loc, "@type", "has %d semantic types; an element may have at most one", len(semantic))
	}
}

// semanticName returns the semantic type c of el as written in its @type.
func semanticName(el *elem, c meaning) string {
	for _, n := range el.typeNames {
		if m, _ := vocab.lookup(n, el.sc); m.iri == c.iri {
			return n
		}
	}
	return c.iri
}

// enumValues checks the values of an Enum against its valueSchema and each other, and turns
// them into the Go values EnumValue.Value holds: int for integer enums, string for string ones.
func (p *parser) enumValues(enum *elem, values []*elem) {
	seen := map[any]bool{}
	for _, v := range values {
		if !v.hasEnumVal {
			continue
		}
		val := v.enumValue
		if n, ok := val.(*jsonNode); ok {
			val = enumLiteral(n, enum.valueSchema)
		}
		switch enum.valueSchema {
		case KindInteger:
			if _, ok := val.(int); !ok {
				p.problem(v.loc, "enumValue", "must be an integer, as the Enum's valueSchema is integer")
				continue
			}
		case KindString:
			if _, ok := val.(string); !ok {
				p.problem(v.loc, "enumValue", "must be a string, as the Enum's valueSchema is string")
				continue
			}
		default:
			continue // the valueSchema problem is reported already
		}
		v.enumValue = val
		if seen[val] {
			p.problem(enum.loc, "enumValues", "enum value %v is used more than once", val)
		}
		seen[val] = true
	}
}

// enumLiteral converts a JSON enum value to an int (32-bit, for integer enums) or a string,
// or returns n unchanged when it is neither.
func enumLiteral(n *jsonNode, k Kind) any {
	switch {
	case n.kind == jsonString:
		return n.text
	case n.kind == jsonNumber && k == KindInteger:
		if i, err := strconv.ParseInt(n.text, 10, 32); err == nil {
			return int(i)
		}
	}
	return n
}
