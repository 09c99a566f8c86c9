package dtdl

import (
	"fmt"
	"strings"
)

// ValidateTwin checks a twin document's content against the Interface and returns nil or a
// *ValidationError listing every problem.
//
// Only declared properties and components may appear. Every declared component must be
// present, as a JSON object (possibly empty but for its "$metadata"), and its contents are
// checked against the component's Interface by the same rules. Each property value must be
// valid against its schema (see Schema.Validate; JSON null is refused). Keys starting with "$"
// ($dtId, $etag, $metadata, ...) are ignored at the top level and inside components: checking
// them is the caller's business.
//
// Telemetry names are not properties: a twin holds no telemetry values.
func (i *Interface) ValidateTwin(doc map[string]any) error {
	var c checker
	c.contents(i, doc)
	return c.err()
}

// ValidatePath checks one value written at path, as a JSON Patch add or replace op does.
//
// path holds the JSON Pointer's segments, already unescaped: ["thermostat", "setPoint"],
// ["address", "city"], ["tags", "red"]. It is resolved through components, properties, Object
// fields, Map keys (any key) and Array indexes (a decimal index or "-"; the index is not checked
// against any current array), and v is checked against the schema found there. A path that
// ends at a component checks v as that component's whole contents (see ValidateTwin). A path
// that does not resolve is a problem ("'foo' is not a property of dtmi:..."), as is an empty
// one; "$metadata" paths are not properties and must be handled by the caller.
//
// ValidatePath allocates nothing when v is valid.
func (i *Interface) ValidatePath(path []string, v any) error {
	var c checker
	c.atPath(i, path, v)
	return c.err()
}

// CheckPath checks that path names something an instance of the Interface can hold, as
// ValidatePath resolves it, without a value to check there: for rules that know where they
// will write before they know what. It returns nil or a *ValidationError naming the segment
// that does not resolve.
func (i *Interface) CheckPath(path []string) error {
	c := checker{pathOnly: true}
	c.atPath(i, path, nil)
	return c.err()
}

// ValidateProperties checks a relationship's properties against the Relationship's declared
// Properties: only declared names, each value valid. Keys starting with "$" ($relationshipId,
// $targetId, $relationshipName, $etag, ...) are ignored.
func (r *Relationship) ValidateProperties(props map[string]any) error {
	var c checker
	for name, v := range props {
		if strings.HasPrefix(name, "$") {
			continue
		}
		if !c.push(name) {
			continue
		}
		if p, ok := r.Properties[name]; ok {
			c.value(p.Schema, v)
		} else {
			c.report("", fmt.Sprintf("'%s' is not a property of relationship '%s'", name, r.Name))
		}
		c.pop()
	}
	return c.err()
}

// contents checks the properties and components of an Interface instance: a twin document or
// a component object.
func (c *checker) contents(iface *Interface, doc map[string]any) {
	if iface == nil {
		c.report("", "the model gives no Interface for this component")
		return
	}
	for name, v := range doc {
		if strings.HasPrefix(name, "$") {
			continue
		}
		if !c.push(name) {
			return
		}
		if p, ok := iface.Properties[name]; ok {
			c.value(p.Schema, v)
		} else if comp, ok := iface.Components[name]; ok {
			c.component(comp, v)
		} else {
			c.report("", fmt.Sprintf("'%s' is not a property of %s", name, iface.ID))
		}
		c.pop()
	}
	for name, comp := range iface.Components {
		if _, ok := doc[name]; ok {
			continue
		}
		if !c.push(name) {
			return
		}
		c.report(describeComponent(comp), fmt.Sprintf(`component '%s' is missing; every component must be present, even if empty ({"$metadata":{}})`, name))
		c.pop()
	}
}

// component checks v, at the component's path, as the contents of the component.
func (c *checker) component(comp *Component, v any) {
	m, ok := v.(map[string]any)
	if !ok {
		c.report(describeComponent(comp), fmt.Sprintf("%s is not a JSON object; component '%s' must be an object", describeValue(v), comp.Name))
		return
	}
	c.contents(comp.Schema, m)
}

func describeComponent(comp *Component) string {
	if comp.Schema == nil {
		return "component"
	}
	return "component " + comp.Schema.ID
}

// atPath resolves path from iface and checks v there.
func (c *checker) atPath(iface *Interface, path []string, v any) {
	if len(path) == 0 {
		c.report("", "the path is empty; it must name a property or component")
		return
	}
	for {
		name := path[0]
		if !c.push(name) {
			return
		}
		if p, ok := iface.Properties[name]; ok {
			c.schemaPath(p.Schema, path[1:], v)
			return
		}
		comp, ok := iface.Components[name]
		if !ok {
			c.report("", fmt.Sprintf("'%s' is not a property of %s", name, iface.ID))
			return
		}
		if len(path) == 1 {
			if !c.pathOnly {
				c.component(comp, v)
			}
			return
		}
		if comp.Schema == nil {
			c.report("", "the model gives no Interface for this component")
			return
		}
		iface, path = comp.Schema, path[1:]
	}
}

// schemaPath descends from s through rest (Object fields, Map keys, Array indexes) and checks
// v against the schema it reaches.
func (c *checker) schemaPath(s *Schema, rest []string, v any) {
	for _, seg := range rest {
		if s == nil {
			c.report("", "the model gives no schema for this value")
			return
		}
		parent := s
		switch s.Kind {
		case KindObject:
			f := s.field(seg)
			if f == nil {
				if c.push(seg) {
					c.report("", fmt.Sprintf("'%s' is not a field of %s", seg, describeSchema(s)))
				}
				return
			}
			s = f.Schema
		case KindMap:
			s = s.mapValueSchema()
		case KindArray:
			if !isArrayIndex(seg) {
				if c.push(seg) {
					c.report("", fmt.Sprintf("'%s' is not an array index (a decimal number or \"-\")", seg))
				}
				return
			}
			s = s.ElementSchema
		default:
			c.report(describeSchema(parent), fmt.Sprintf("a value of schema %s has no member '%s'", parent.Kind, seg))
			return
		}
		if !c.push(seg) {
			return
		}
	}
	if !c.pathOnly {
		c.value(s, v)
	}
}

// isArrayIndex reports whether seg is a JSON Pointer array index: "0", a decimal number without
// leading zeros, or "-" (past the end, where JSON Patch add appends).
func isArrayIndex(seg string) bool {
	if seg == "-" || seg == "0" {
		return true
	}
	if seg == "" || seg[0] == '0' {
		return false
	}
	_, ok := digits(seg)
	return ok && len(seg) <= 9
}
