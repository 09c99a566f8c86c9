package dtdl

import (
	"slices"
	"strings"
)

// Limits of the DTDL specifications that resolution enforces.
const (
	maxExtendsDepth   = 10
	maxExtendsCount   = 1024 // v3: Interfaces in an extends hierarchy
	maxSchemaDepth    = 5
	maxInterfaceBytes = 1 << 20 // v3: bytes of one Interface's JSON text
	// maxContentsElements bounds (v3) the elements in an Interface's contents, counting those
	// inherited through extends and those nested in contents (schemas, fields, enum values...).
	maxContentsElements = 100000
)

// resolver links the elements of a batch to each other and to the base set, and checks the
// rules that span elements. Every walk of a graph it does (extends, schema nesting, contents)
// detects cycles and memoizes, so a hostile batch costs time linear in its size: a cycle or an
// over-deep hierarchy becomes a problem, never unbounded recursion.
type resolver struct {
	*parser
	base *ModelSet
	byID map[string]*elem
	// flatMemo holds the flattened contents of the batch's Interfaces (see flat); nested
	// counts the elements each element holds inline, at any depth.
	flatMemo map[*elem]map[string]contentInfo
	nested   map[*elem]int
}

// target is what a reference resolves to: an element of the batch or a model of the base.
type target struct {
	el     *elem
	iface  *Interface
	schema *Schema
}

// class returns the DTDL class of the target; base schemas map back from their Kind.
func (t target) class() class {
	switch {
	case t.el != nil:
		return t.el.cls
	case t.iface != nil:
		return clsInterface
	case t.schema != nil:
		switch t.schema.Kind {
		case KindArray:
			return clsArray
		case KindEnum:
			return clsEnum
		case KindMap:
			return clsMap
		case KindObject:
			return clsObject
		}
	}
	return clsNone
}

// lookup finds the element or model id names, in the batch first and then in the base.
func (r *resolver) lookup(id string) (target, bool) {
	if e, ok := r.byID[id]; ok {
		return target{el: e}, true
	}
	if i, ok := r.base.ifaces[id]; ok {
		return target{iface: i}, true
	}
	if s, ok := r.base.schemas[id]; ok {
		return target{schema: s}, true
	}
	return target{}, false
}

// resolve indexes the batch, resolves references and checks the cross-element rules. It returns
// the DTMIs that could not be resolved, sorted.
//
// Only Interfaces and complex schemas may be referred to across Interfaces ("referenceable"
// elements); other elements with an @id may be referred to from within the Interface that
// defines them. The structural checks run only once every reference resolves, since they
// follow references.
func (r *resolver) resolve() []string {
	for _, e := range r.elems {
		if e.id == "" {
			continue
		}
		if prev, dup := r.byID[e.id]; dup {
			if e.declared || prev.declared {
				r.problem(e.loc, "@id", "%q identifies more than one element", e.id)
			}
			continue
		}
		if _, inBase := r.base.ifaces[e.id]; inBase {
			r.problem(e.loc, "@id", "%q is already defined", e.id)
		} else if _, inBase := r.base.schemas[e.id]; inBase {
			r.problem(e.loc, "@id", "%q is already defined", e.id)
		}
		r.byID[e.id] = e
	}
	for _, e := range r.roots {
		if e.version == 3 && e.parent == nil && e.size > maxInterfaceBytes {
			r.problem(e.loc, "", "is %d bytes long; an Interface may be at most 1 MiB (DTDL v3)", e.size)
		}
	}
	missing := map[string]bool{}
	for _, e := range r.elems {
		for _, pv := range e.refs {
			q := pv.prop
			for _, rf := range pv.refs {
				if rf.el != nil || rf.id == "" {
					r.checkSchemaUse(e, q, rf, clsNone)
					continue
				}
				t, ok := r.lookup(rf.id)
				if !ok {
					missing[rf.id] = true
					r.problem(e.loc, q.String(), "refers to %s, which is defined neither in this batch nor among the existing models", rf.id)
					continue
				}
				want, _, _ := childClasses(e, q)
				if c := t.class(); c != clsInterface && !c.isComplexSchema() && owner(t.el) != owner(e) {
					r.problem(e.loc, q.String(), "refers to %s, which is %s of another Interface; only Interfaces, complex schemas and elements of the same Interface can be referred to by DTMI", rf.id, article(c))
					continue
				}
				if !classIn(t.class(), want) {
					r.problem(e.loc, q.String(), "refers to %s, which is %s; it must be %s", rf.id, article(t.class()), articleList(want))
					continue
				}
				r.checkSchemaUse(e, q, rf, t.class())
			}
		}
	}
	for _, e := range r.elems {
		if e.cls == clsEnum {
			var referenced []*elem
			for _, rf := range e.values(propEnumValues) {
				if t, ok := r.lookup(rf.id); rf.el == nil && ok && t.el != nil && t.el.cls == clsEnumValue {
					referenced = append(referenced, t.el)
				}
			}
			r.enumValues(e, referenced)
		}
	}
	unresolved := make([]string, 0, len(missing))
	for id := range missing {
		unresolved = append(unresolved, id)
	}
	slices.Sort(unresolved)
	if len(r.problems) > 0 || len(unresolved) > 0 {
		return unresolved
	}
	if r.checkExtends() {
		r.checkContents()
		r.checkAnnotations()
	}
	r.checkSchemaDepth()
	return unresolved
}

// articleList names classes with indefinite articles: "an Array, an Enum or a Map".
func articleList(cs []class) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = article(c)
	}
	return joinOr(names)
}

// article returns the class name with its indefinite article.
func article(c class) string {
	switch c {
	case clsInterface, clsArray, clsEnum, clsEnumValue, clsObject:
		return "an " + c.String()
	}
	return "a " + c.String()
}

// sortProblems puts the problems in the document order of the elements they concern, keeping
// the order in which they were found for problems of the same element.
func (p *parser) sortProblems() {
	if len(p.problems) < 2 {
		return
	}
	order := make(map[string]int, len(p.locs))
	for i, loc := range p.locs {
		if _, seen := order[loc]; !seen {
			order[loc] = i
		}
	}
	rank := func(pr Problem) int {
		loc := pr.Element
		for {
			if n, ok := order[loc]; ok {
				return n
			}
			i := strings.LastIndexByte(loc, '/')
			if i < 0 {
				return len(order)
			}
			loc = loc[:i]
		}
	}
	slices.SortStableFunc(p.problems, func(a, b Problem) int { return rank(a) - rank(b) })
}

// checkSchemaUse enforces that a v2 Property's schema is neither an Array nor a geospatial
// schema (which DTDL v2 defines in terms of arrays): v2 Properties must be patchable as a
// whole value.
func (r *resolver) checkSchemaUse(e *elem, q prop, rf ref, cls class) {
	if q != propSchema || e.cls != clsProperty || e.version != 2 {
		return
	}
	if rf.el != nil {
		cls = rf.el.cls
	}
	if cls == clsArray || (rf.el == nil && rf.id == "" && rf.std >= KindPoint) {
		r.problem(e.loc, "schema", "a Property's schema must not be an Array or a geospatial schema (DTDL v2)")
	}
}

// extendsTargets returns the direct extends of e, resolved.
func (r *resolver) extendsTargets(e *elem) []target {
	var out []target
	for _, rf := range e.values(propExtends) {
		if rf.el != nil {
			out = append(out, target{el: rf.el})
		} else if t, ok := r.lookup(rf.id); ok {
			out = append(out, t)
		}
	}
	return out
}

// checkExtends rejects extends cycles, hierarchies deeper than 10 and (v3) larger than 1024.
// It reports whether the hierarchies are acyclic.
func (r *resolver) checkExtends() bool {
	acyclic := true
	const (
		visiting = 1
		done     = 2
	)
	state := map[*elem]int{}
	depth := map[*elem]int{}
	baseDepth := map[string]int{}
	var visit func(e *elem) (int, bool)
	visit = func(e *elem) (int, bool) {
		switch state[e] {
		case visiting:
			return 0, false
		case done:
			return depth[e], true
		}
		state[e] = visiting
		d := 0
		for _, t := range r.extendsTargets(e) {
			var td int
			if t.el != nil {
				var ok bool
				if td, ok = visit(t.el); !ok {
					state[e] = done
					return 0, false
				}
			} else {
				td = ifaceDepth(t.iface, r.base, baseDepth)
			}
			d = max(d, td+1)
		}
		state[e], depth[e] = done, d
		return d, true
	}
	for _, e := range r.roots {
		if state[e] == done {
			continue
		}
		d, ok := visit(e)
		if !ok {
			r.problem(e.loc, "extends", "extends itself, directly or through other Interfaces")
			acyclic = false
			continue
		}
		if d > maxExtendsDepth {
			r.problem(e.loc, "extends", "the extends hierarchy is %d levels deep; at most %d are allowed", d, maxExtendsDepth)
		}
	}
	if !acyclic {
		return false
	}
	for _, e := range r.roots {
		if e.version != 3 {
			continue
		}
		if n := len(r.ancestors(e)); n > maxExtendsCount {
			r.problem(e.loc, "extends", "the extends hierarchy holds %d Interfaces; at most %d are allowed (DTDL v3)", n, maxExtendsCount)
		}
	}
	return true
}

// ifaceDepth returns the depth of the extends hierarchy of a base Interface, memoizing the
// depths it computes in memo.
func ifaceDepth(i *Interface, s *ModelSet, memo map[string]int) int {
	if d, ok := memo[i.ID]; ok {
		return d
	}
	d := 0
	for _, id := range i.Extends {
		if p, ok := s.ifaces[id]; ok {
			d = max(d, ifaceDepth(p, s, memo)+1)
		}
	}
	memo[i.ID] = d
	return d
}

// ancestors returns the ids of every Interface e extends, transitively; the batch part of the
// hierarchy must be acyclic (checkExtends has run).
func (r *resolver) ancestors(e *elem) map[string]bool {
	seen := map[string]bool{}
	var walk func(t target)
	walk = func(t target) {
		if t.el != nil {
			for _, p := range r.extendsTargets(t.el) {
				id := p.id()
				if !seen[id] {
					seen[id] = true
					walk(p)
				}
			}
			return
		}
		for _, a := range r.base.Ancestors(t.iface.ID) {
			seen[a] = true
		}
	}
	walk(target{el: e})
	return seen
}

// id returns the DTMI of the target.
func (t target) id() string {
	switch {
	case t.el != nil:
		return t.el.id
	case t.iface != nil:
		return t.iface.ID
	case t.schema != nil:
		return t.schema.ID
	}
	return ""
}

// schemaChildren returns the schemas nested directly in complex schema e.
func (r *resolver) schemaChildren(e *elem) []ref {
	switch e.cls {
	case clsArray:
		return e.values(propElementSchema)
	case clsMap:
		var out []ref
		for _, mv := range e.values(propMapValue) {
			if mv.el != nil {
				out = append(out, mv.el.values(propSchema)...)
			}
		}
		return out
	case clsObject:
		var out []ref
		for _, f := range e.values(propFields) {
			if f.el != nil {
				out = append(out, f.el.values(propSchema)...)
			}
		}
		return out
	}
	return nil
}

// checkSchemaDepth rejects schemas that contain themselves and nesting deeper than 5. Depth
// counts complex schemas along Array elementSchema, Object field schemas and Map value
// schemas: an Array of Arrays of string is 2 deep. References by DTMI are followed, into the
// base too.
func (r *resolver) checkSchemaDepth() {
	const visiting = -1
	depth := map[*elem]int{}
	var visit func(e *elem) (int, bool)
	visit = func(e *elem) (int, bool) {
		if d, ok := depth[e]; ok {
			return d, d != visiting
		}
		depth[e] = visiting
		d := 1
		for _, rf := range r.schemaChildren(e) {
			var cd int
			switch {
			case rf.el != nil:
				var ok bool
				if cd, ok = visit(rf.el); !ok {
					delete(depth, e)
					depth[e] = 0
					return 0, false
				}
			case rf.id != "":
				t, _ := r.lookup(rf.id)
				if t.el != nil {
					var ok bool
					if cd, ok = visit(t.el); !ok {
						depth[e] = 0
						return 0, false
					}
				} else if t.schema != nil {
					cd = schemaDepth(t.schema)
				}
			case rf.builtin != nil:
				cd = schemaDepth(rf.builtin)
			}
			d = max(d, cd+1)
		}
		depth[e] = d
		return d, true
	}
	for _, e := range r.elems {
		if !e.cls.isComplexSchema() {
			continue
		}
		if _, seen := depth[e]; seen {
			continue
		}
		d, ok := visit(e)
		if !ok {
			r.problem(e.loc, "", "the schema contains itself")
			continue
		}
		if d > maxSchemaDepth {
			r.problem(e.loc, "", "complex schemas are nested %d levels deep; at most %d are allowed", d, maxSchemaDepth)
		}
	}
}

// schemaDepth returns the nesting depth of complex schema s (0 for standard schemas).
func schemaDepth(s *Schema) int {
	switch s.Kind {
	case KindArray:
		return 1 + schemaDepth(s.ElementSchema)
	case KindMap:
		return 1 + schemaDepth(s.MapValue.Schema)
	case KindObject:
		d := 0
		for _, f := range s.Fields {
			d = max(d, schemaDepth(f.Schema))
		}
		return 1 + d
	case KindEnum:
		return 1
	}
	return 0
}

// contentInfo describes one content of a flattened Interface, for name checks and the
// Annotation and Overriding rules.
type contentInfo struct {
	id  string
	cls class
	// schema is the Interface of a Component.
	schema target
	// elements counts the content and the elements nested in it (1 for base contents, whose
	// nested elements are no longer known).
	elements int
	// el is the content when it is an element of the batch; prop or tel is the content of a
	// base Interface when it is a Property or Telemetry.
	el   *elem
	prop *Property
	tel  *Telemetry
}

// flat returns the contents of Interface t by name, counting those inherited through extends
// (memoized for the batch's Interfaces). The extends hierarchies must be acyclic. It reports
// names used by two different contents of one hierarchy.
func (r *resolver) flat(t target) map[string]contentInfo {
	if t.iface != nil {
		out := make(map[string]contentInfo, len(t.iface.Properties)+len(t.iface.Telemetries))
		for n, c := range t.iface.Properties {
			out[n] = contentInfo{id: c.ID, cls: clsProperty, elements: 1, prop: c}
		}
		for n, c := range t.iface.Telemetries {
			out[n] = contentInfo{id: c.ID, cls: clsTelemetry, elements: 1, tel: c}
		}
		for n, c := range t.iface.Commands {
			out[n] = contentInfo{id: c.ID, cls: clsCommand, elements: 1}
		}
		for n, c := range t.iface.Relationships {
			out[n] = contentInfo{id: c.ID, cls: clsRelationship, elements: 1}
		}
		for n, c := range t.iface.Components {
			out[n] = contentInfo{id: c.ID, cls: clsComponent, schema: target{iface: c.Schema}, elements: 1}
		}
		return out
	}
	e := t.el
	if m, ok := r.flatMemo[e]; ok {
		return m
	}
	if r.nested == nil {
		r.nested = map[*elem]int{}
		for i := len(r.elems) - 1; i >= 0; i-- {
			if x := r.elems[i]; x.parent != nil && x.cls != clsInterface {
				r.nested[x.parent] += r.nested[x] + 1
			}
		}
	}
	parents := r.extendsTargets(e)
	inherited := make([]map[string]contentInfo, len(parents))
	size := len(e.values(propContents))
	for i, p := range parents {
		inherited[i] = r.flat(p)
		size += len(inherited[i])
	}
	out := make(map[string]contentInfo, size)
	r.flatMemo[e] = out
	add := func(name string, c contentInfo) {
		if prev, ok := out[name]; ok && prev.id != c.id {
			r.problem(e.loc, "contents", "name %q is used by more than one content, counting those inherited through extends", name)
			return
		}
		out[name] = c
	}
	for _, m := range inherited {
		for n, c := range m {
			add(n, c)
		}
	}
	for _, c := range r.contents(e) {
		if c.name == "" {
			continue
		}
		info := contentInfo{id: c.id, cls: c.cls, elements: r.nested[c] + 1, el: c}
		if c.cls == clsComponent {
			for _, s := range c.values(propSchema) {
				if s.el != nil {
					info.schema = target{el: s.el}
				} else if t, ok := r.lookup(s.id); ok {
					info.schema = t
				}
			}
		}
		add(c.name, info)
	}
	return out
}

// contents returns the elements among the values of e's contents (or, for a Relationship, its
// properties), resolving references by DTMI to elements of the batch.
func (r *resolver) contents(e *elem) []*elem {
	q := propContents
	if e.cls == clsRelationship {
		q = propProperties
	}
	vals := e.values(q)
	out := make([]*elem, 0, len(vals))
	for _, rf := range vals {
		c := rf.el
		if c == nil {
			if t, ok := r.lookup(rf.id); ok {
				c = t.el
			}
		}
		if c != nil {
			out = append(out, c)
		}
	}
	return out
}

// checkContents checks names across inherited contents, that no Component's Interface holds a
// Component, and (v3) the number of elements in an Interface's contents hierarchy.
func (r *resolver) checkContents() {
	for _, e := range r.roots {
		total := 0
		for _, c := range r.flat(target{el: e}) {
			total += c.elements
			if c.cls != clsComponent || (c.schema.el == nil && c.schema.iface == nil) {
				continue
			}
			for _, inner := range r.flat(c.schema) {
				if inner.cls == clsComponent {
					r.problem(e.loc, "contents", "the Interface of Component %s holds a Component; Components must not nest", c.id)
					break
				}
			}
		}
		if e.version == 3 && total > maxContentsElements {
			r.problem(e.loc, "contents", "the contents hold %d elements, counting those inherited and nested; at most %d are allowed (DTDL v3)", total, maxContentsElements)
		}
	}
}
