package dtdl

import (
	"fmt"
	"strconv"
	"strings"
)

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
		values := map[string]bool{}
		for _, r := range el.values(propEnumValues) {
			if r.el == nil || !r.el.hasEnumVal {
				continue
			}
			v := r.el.enumValue.(*jsonNode)
			switch el.valueSchema {
			case KindInteger:
				i, err := strconv.ParseInt(v.text, 10, 32)
				if v.kind != jsonNumber || err != nil {
					p.problem(r.el.loc, "enumValue", "must be an integer, as the Enum's valueSchema is integer")
					continue
				}
				r.el.enumValue = int(i)
			case KindString:
				if v.kind != jsonString {
					p.problem(r.el.loc, "enumValue", "must be a string, as the Enum's valueSchema is string")
					continue
				}
				r.el.enumValue = v.text
			default:
				continue
			}
			key := fmt.Sprint(r.el.enumValue)
			if values[key] {
				p.problem(el.loc, "enumValues", "enum value %s is used more than once", v.text)
			}
			values[key] = true
		}
	}
	p.cotypeRules(el)
}

// uniqueNames reports inline values of property q that share a name.
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

// cotypeRules checks semantic types, units and adjunct types.
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
			if strings.HasSuffix(c.iri, "Override") {
				ok = el.cls == clsProperty
			}
			if !ok {
				p.problem(el.loc, "@type", "%s cannot be a co-type of %s", c.iri, el.cls)
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
