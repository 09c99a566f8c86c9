package dtdl

import (
	"slices"
	"strings"
)

// quantUnit is the IRI of the unit property of the QuantitativeTypes semantic types.
const quantUnit = quantPrefix + "property:unit"

// checkAnnotations checks the rules of the Annotation and Overriding extensions that span
// elements (the "siblings" constraints of their metamodels). They run once references
// resolve, because the element a ValueAnnotation annotates may be inherited through extends:
//   - a ValueAnnotation's annotates names a Property or Telemetry among the contents of the
//     same Interface, counting those inherited through extends (or, for a property of a
//     Relationship, among the properties of that Relationship), and that element is not itself
//     a ValueAnnotation;
//   - an Override's overrides names an extension property the annotated element has: of the
//     extensions implemented here, only QuantitativeTypes defines one, the unit of its semantic
//     types;
//   - an Override's schema is the type of the property it overrides: for a unit, the unit type
//     the annotated element's unit belongs to (TemperatureUnit for a Temperature in
//     degreeFahrenheit), so that an instance gives one of that unit type's unit names;
//   - an element's property is overridden by at most one Override.
func (r *resolver) checkAnnotations() {
	for _, e := range r.roots {
		own := r.contents(e)
		siblings := r.flat(target{el: e})
		overrides := false
		for _, a := range own {
			r.checkAnnotation(a, siblings, "a content of the same Interface, counting those inherited through extends")
			overrides = overrides || a.overrides != ""
		}
		// A conflict between inherited Overrides alone needs two parents to bring them.
		if overrides || len(e.values(propExtends)) > 1 {
			r.checkUniqueOverrides(e, siblings)
		}
	}
	for _, e := range r.elems {
		if e.cls != clsRelationship {
			continue
		}
		props := r.contents(e)
		siblings := make(map[string]contentInfo, len(props))
		for _, c := range props {
			if c.name != "" {
				siblings[c.name] = contentInfo{id: c.id, cls: c.cls, el: c}
			}
		}
		for _, a := range props {
			r.checkAnnotation(a, siblings, "a property of the same Relationship")
		}
		r.checkUniqueOverrides(e, siblings)
	}
}

// annotation is what the rules need of a Property or Telemetry, whether it is an element of
// the batch or a content of a base Interface.
type annotation struct {
	name      string
	annotates string // the annotated element's name, for a ValueAnnotation
	overrides string // the overridden property's IRI, for an Override
	unit      string // the unit's IRI, for a semantically typed element
}

// annotationOf returns what the rules need of content c.
func annotationOf(c contentInfo) annotation {
	switch {
	case c.el != nil:
		return annotation{name: c.el.name, annotates: c.el.annotates, overrides: c.el.overrides, unit: c.el.unit}
	case c.prop != nil:
		return annotation{name: c.prop.Name, annotates: c.prop.Annotates, overrides: c.prop.Overrides, unit: c.prop.Unit}
	case c.tel != nil:
		return annotation{name: c.tel.Name, annotates: c.tel.Annotates, unit: c.tel.Unit}
	}
	return annotation{}
}

// checkAnnotation checks a's annotates and overrides against its siblings, when a is a
// ValueAnnotation; where says where the annotated element must be, for the problem.
func (r *resolver) checkAnnotation(a *elem, siblings map[string]contentInfo, where string) {
	if a.annotates == "" || !hasAdjunct(a, "ValueAnnotation") {
		return
	}
	t, ok := siblings[a.annotates]
	switch {
	case !ok:
		r.problem(a.loc, "annotates", "%q is not the name of %s", a.annotates, where)
		return
	case t.cls != clsProperty && t.cls != clsTelemetry:
		r.problem(a.loc, "annotates", "%q is %s; a ValueAnnotation annotates a Property or Telemetry", a.annotates, article(t.cls))
		return
	}
	target := annotationOf(t)
	if target.annotates != "" {
		r.problem(a.loc, "annotates", "%q is itself a ValueAnnotation", a.annotates)
		return
	}
	if a.overrides == "" || !hasAdjunct(a, "Override") {
		return
	}
	if a.overrides != quantUnit {
		r.problem(a.loc, "overrides", "%q has no property %s to override; an Override overrides an extension property of the element it annotates, such as the unit of a semantic type", a.annotates, a.overridden)
		return
	}
	unitType := vocab.unitTypeOf[target.unit]
	if unitType == nil {
		r.problem(a.loc, "overrides", "%q has no unit to override: it is not co-typed with a semantic type of the QuantitativeTypes extension", a.annotates)
		return
	}
	for _, rf := range a.values(propSchema) {
		if rf.builtin != unitType {
			r.problem(a.loc, "schema", "must be %s, the unit type of %q's unit %s, not %s",
				quantTerm(unitType.ID), a.annotates, quantTerm(target.unit), describeRef(rf))
		}
	}
}

// describeRef names a schema reference for a problem: "AngleUnit", "double", a DTMI, or "an
// inline Object".
func describeRef(rf ref) string {
	switch {
	case rf.builtin != nil:
		return quantTerm(rf.builtin.ID)
	case rf.el != nil:
		return "an inline " + rf.el.cls.String()
	case rf.id != "":
		return rf.id
	}
	return rf.std.String()
}

// checkUniqueOverrides reports a property of an element that more than one of the siblings
// overrides. e holds the siblings: an Interface (with its inherited contents) or a
// Relationship. A conflict an Interface inherits whole from one parent is that parent's
// problem, reported there.
func (r *resolver) checkUniqueOverrides(e *elem, siblings map[string]contentInfo) {
	type key struct{ annotates, overrides string }
	groups := map[key][]contentInfo{}
	for _, c := range siblings {
		if a := annotationOf(c); a.overrides != "" {
			k := key{a.annotates, a.overrides}
			groups[k] = append(groups[k], c)
		}
	}
	keys := make([]key, 0, len(groups))
	for k, g := range groups {
		if len(g) > 1 && !r.inheritedConflict(e, g) {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b key) int {
		return strings.Compare(a.annotates+"\x00"+a.overrides, b.annotates+"\x00"+b.overrides)
	})
	prop := "contents"
	if e.cls == clsRelationship {
		prop = "properties"
	}
	for _, k := range keys {
		names := make([]string, len(groups[k]))
		for i, c := range groups[k] {
			names[i] = `"` + annotationOf(c).name + `"`
		}
		slices.Sort(names)
		r.problem(e.loc, prop, "the %s of %q is overridden by more than one Property (%s); each property of an element can be overridden once",
			quantTerm(k.overrides), k.annotates, joinAnd(names))
	}
}

// inheritedConflict reports whether one parent of Interface e already holds two or more of the
// conflicting Overrides g.
func (r *resolver) inheritedConflict(e *elem, g []contentInfo) bool {
	if e.cls != clsInterface {
		return false
	}
	for _, p := range r.extendsTargets(e) {
		pm := r.flat(p)
		n := 0
		for _, c := range g {
			if pc, ok := pm[annotationOf(c).name]; ok && pc.id == c.id {
				n++
			}
		}
		if n > 1 {
			return true
		}
	}
	return false
}

// joinAnd joins items as "a, b and c".
func joinAnd(items []string) string {
	if len(items) < 2 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " and " + items[len(items)-1]
}
