package dtdl

import (
	"fmt"
	"strconv"
	"strings"
)

// Parse parses a batch of DTDL documents (each one JSON Interface or a JSON array of them; a
// leading UTF-8 BOM is accepted) and resolves it against base (may be nil). References may point
// into the batch (any order) or into base. It returns a new ModelSet = base + batch (base is not
// changed), or an *Error listing every problem. Nothing of a failing batch is added.
func Parse(docs [][]byte, base *ModelSet, opts Options) (*ModelSet, error) {
	if base == nil {
		base = &ModelSet{}
	}
	p := &parser{opts: opts}
	for i, d := range docs {
		p.document(d, i)
	}
	r := &resolver{parser: p, base: base, byID: make(map[string]*elem, len(p.elems)), flatMemo: map[*elem]map[string]contentInfo{}}
	unresolved := r.resolve()
	p.sortProblems()
	if len(p.problems) > 0 || len(unresolved) > 0 {
		return nil, &Error{Problems: p.problems, Unresolved: unresolved}
	}
	return r.build(), nil
}

// scope is the JSON-LD context an element is read in: the DTDL version, the extension
// contexts whose terms are defined, and whether an undefined extension context is in scope.
// Each element inherits its parent's scope and may extend it with its own @context.
type scope struct {
	version int
	exts    ext
	// undefinedCtx is set when a context this package does not implement is in scope (allowed
	// only with AllowUndefinedExtensions); it licenses undefined co-types and properties.
	undefinedCtx bool
}

// elem is a model element as read from a document, before references are resolved. One type
// serves every class: the parser fills the fields the element's class has, the resolver checks
// the rules that span elements, and build turns resolved elems into the model types. Keeping
// one flat type keeps the hot path free of reflection and interface dispatch.
type elem struct {
	cls      class
	id       string
	declared bool   // id came from @id (otherwise it was assigned)
	loc      string // how problems name the element: its declared id, else a JSON path
	version  int
	sc       scope

	cotypes   []meaning // semantic types and adjunct types among @type
	typeNames []string  // co-types beyond the class, as written
	undefined bool      // @type includes an undefined or irrelevant co-type

	name        string
	displayName map[string]string
	description map[string]string
	comment     string
	writable    bool
	minMult     int
	maxMult     int
	target      string
	enumValue   any
	hasEnumVal  bool
	valueSchema Kind
	unit        string
	unitName    string // the unit as written
	annotates   string // the name of the sibling a ValueAnnotation annotates
	overrides   string // the IRI of the extension property an Override overrides
	overridden  string // the overridden property as written

	refs []propValues // element-valued properties, in document order

	size   int   // bytes of JSON text (Interfaces)
	parent *elem // the element holding this one inline, nil for roots

	built any // the resolved model object, once built
}

// ref is one value of an element-valued property: an inline element, a standard schema, a
// schema an extension defines (a QuantitativeTypes unit type), or a reference by DTMI to an
// element defined elsewhere.
type ref struct {
	id      string
	el      *elem
	std     Kind
	builtin *Schema
}

// propValues holds the values of one element-valued property.
type propValues struct {
	prop prop
	refs []ref
}

// values returns the values of element-valued property q of e.
func (e *elem) values(q prop) []ref {
	for i := range e.refs {
		if e.refs[i].prop == q {
			return e.refs[i].refs
		}
	}
	return nil
}

// add appends a value to element-valued property q of e.
func (e *elem) add(q prop, r ref) {
	for i := range e.refs {
		if e.refs[i].prop == q {
			e.refs[i].refs = append(e.refs[i].refs, r)
			return
		}
	}
	e.refs = append(e.refs, propValues{prop: q, refs: []ref{r}})
}

// parser reads documents into elems, collecting problems. It never stops at the first
// problem: a document reports all its errors.
type parser struct {
	opts     Options
	problems []Problem
	// locs lists element locations in document order, so that problems found while resolving
	// can be reported in document order too.
	locs  []string
	elems []*elem // every element, in document order
	roots []*elem // every Interface with a declared id, in document order
}

// problem records a problem; format and args are as for fmt.Sprintf.
func (p *parser) problem(element string, property string, format string, args ...any) {
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	p.problems = append(p.problems, Problem{Element: element, Property: property, Message: msg})
}

// locate records the next location in document order.
func (p *parser) locate(loc string) {
	p.locs = append(p.locs, loc)
}

// document reads one document: an Interface or an array of Interfaces.
func (p *parser) document(data []byte, index int) {
	where := "document " + strconv.Itoa(index+1)
	p.locate(where)
	root, err := decodeJSON(data)
	if err != nil {
		p.problem(where, "", "is not valid JSON: %v", err)
		return
	}
	var tops []*jsonNode
	switch root.kind {
	case jsonObject:
		tops = []*jsonNode{root}
	case jsonArray:
		tops = root.items
	default:
		p.problem(where, "", "must be a JSON object (one Interface) or an array of Interfaces, not %s", root.kind)
		return
	}
	for i, n := range tops {
		loc := where
		if root.kind == jsonArray {
			loc = fmt.Sprintf("%s[%d]", where, i)
		}
		if n.kind != jsonObject {
			p.problem(loc, "", "must be a JSON object (an Interface), not %s", n.kind)
			continue
		}
		p.locate(loc)
		if id := n.member("@id"); id != nil && id.kind == jsonString {
			loc = id.text
			p.locate(loc)
		}
		c := n.member("@context")
		if c == nil {
			p.problem(loc, "@context", "is required at the top level of a document and must start with %q or %q", contextV2, contextV3)
			continue
		}
		sc, ok := p.context(c, scope{}, true, loc)
		if !ok {
			continue
		}
		el := p.element(n, sc, []class{clsInterface}, clsNone, nil, propNone, "", loc)
		if el != nil {
			el.size = n.end - n.start
		}
	}
}

// element reads one element: n must be a JSON object whose class is one of want (or infer
// when @type is absent). parent and via say where the element sits, for assigned identifiers;
// index is its position among the values of via; loc names it in problems until its @id is
// known. It returns nil when the element is unusable (no class, the wrong class, an Interface
// without an id); its problems are recorded either way.
//
// Members are read in two passes: literals first, so that the element's name (and thus its
// assigned identifier) is known before its nested elements, whose identifiers derive from it.
func (p *parser) element(n *jsonNode, sc scope, want []class, infer class, parent *elem, via prop, index string, loc string) *elem {
	if c := n.member("@context"); c != nil && parent != nil {
		var ok bool
		if sc, ok = p.context(c, sc, false, loc); !ok {
			return nil
		}
		if sc.version < parent.version && !acceptsOlderVersion(via) {
			p.problem(loc, "@context", "a DTDL v%d element cannot be the value of %s in a DTDL v%d element", sc.version, via, parent.version)
			return nil
		}
	}
	el := &elem{loc: loc, version: sc.version, sc: sc, parent: parent}
	p.locate(loc)
	if idn := n.member("@id"); idn != nil {
		switch {
		case idn.kind != jsonString:
			p.problem(loc, "@id", "must be a string, not %s", idn.kind)
		default:
			if msg := checkModelID(idn.text, sc.version); msg != "" {
				p.problem(loc, "@id", "%q %s", idn.text, msg)
			} else {
				el.id, el.declared, el.loc = idn.text, true, idn.text
				p.locate(el.loc)
			}
		}
	}
	if !p.types(n.member("@type"), el, infer) {
		return nil
	}
	if !classIn(el.cls, want) {
		p.problem(el.loc, "@type", "must be %s here, not %s", classList(want), el.cls)
		return nil
	}
	if el.cls == clsInterface {
		if el.declared && len(el.id) > 128 {
			p.problem(el.loc, "@id", "an Interface identifier must be at most 128 characters")
		}
		if !el.declared {
			if n.member("@id") == nil {
				p.problem(loc, "@id", "is required on an Interface")
			}
			return nil
		}
	}

	// The element-valued members, read once the element's identifier is known. Few elements
	// have more than four, so the backing arrays usually stay on the stack.
	deferred := make([]jsonMember, 0, 4)
	defProps := make([]prop, 0, 4)
	var seen [propCount]string // the key each property was given under
	for _, m := range n.members {
		key := m.key
		if strings.HasPrefix(key, "@") {
			// v3 restricts keywords to @context, @id and @type; v2 tolerates others (they are
			// only "not recommended") except @graph, which would make the element a graph.
			switch key {
			case "@context", "@id", "@type":
			default:
				if sc.version == 3 || key == "@graph" {
					p.problem(el.loc, key, "the JSON-LD keyword %q is not allowed on a DTDL element", key)
				}
			}
			continue
		}
		if m.value.kind == jsonArray && len(m.value.items) == 0 {
			continue // no values: the same as an absent property
		}
		// A member names a DTDL property by term ("schema") or by IRI
		// ("dtmi:dtdl:property:schema;3"), but not both at once.
		mn, form := vocab.lookup(key, sc)
		if mn.kind == tkProperty && p.carries(el, mn.prop) {
			if prev := seen[mn.prop]; prev != "" {
				p.problem(el.loc, mn.prop.String(), "is given twice, as %q and as %q", prev, key)
				continue
			}
			seen[mn.prop] = key
			if isElementValued(mn.prop) {
				deferred = append(deferred, m)
				defProps = append(defProps, mn.prop)
				continue
			}
			p.literal(el, mn.prop, m.value)
			continue
		}
		p.foreignProperty(el, key, mn, form)
	}
	p.required(el, &seen)

	if !el.declared {
		el.id = assignID(parent, via, el.name, index)
	}
	p.elems = append(p.elems, el)
	if el.cls == clsInterface {
		p.roots = append(p.roots, el)
	}
	for i, m := range deferred {
		p.elementValued(el, defProps[i], m.value)
	}
	p.classRules(el)
	return el
}

// assignID returns the identifier the specification assigns to an element without @id: the
// parent's DTMI with ":_<property>" inserted before the version, plus ":__<name>" for the
// properties whose values are named (contents, fields, enumValues, properties). For example,
// Telemetry "currentDistance" in the contents of dtmi:com:example:anInterface;1 is
// dtmi:com:example:anInterface:_contents:__currentDistance;1, and its inline schema is
// dtmi:com:example:anInterface:_contents:__currentDistance:_schema;1.
func assignID(parent *elem, via prop, name, index string) string {
	if parent == nil {
		return ""
	}
	base, ver, hasVer := strings.Cut(parent.id, ";")
	seg := ":_" + via.String()
	switch via {
	case propContents, propFields, propEnumValues, propProperties:
		if name != "" {
			seg += ":__" + name
		} else {
			seg += ":__" + index
		}
	}
	if hasVer {
		return base + seg + ";" + ver
	}
	return base + seg
}

// classIn reports whether c is one of want.
func classIn(c class, want []class) bool {
	for _, w := range want {
		if w == c {
			return true
		}
	}
	return false
}

// classList names classes for a message: "Array, Enum, Map or Object".
func classList(cs []class) string {
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.String()
	}
	return joinOr(names)
}

// joinOr joins items as "a, b or c". No items stand for the only schema a MapKey accepts.
func joinOr(items []string) string {
	switch len(items) {
	case 0:
		return "the string schema"
	case 1:
		return items[0]
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}

// types reads @type into el.cls and its co-types, and reports whether the element has a
// usable class.
//
// Exactly one DTDL class must be named (repeating it, or naming it once by term and once by
// IRI, is only "not recommended"). The other entries are co-types: semantic types and
// extension adjuncts defined by a context in scope, or undefined ones. The metamodel's
// "apocrypha" rules decide what undefined co-types are tolerated:
//   - v2 always tolerates undefined terms and strings that are neither DTMIs nor terms, and
//     tolerates unknown DTMIs and irrelevant terms ("boolean") with AllowUndefinedExtensions;
//   - v3 tolerates undefined terms, unknown DTMIs and irrelevant terms only with
//     AllowUndefinedExtensions and an undefined context in scope;
//   - neither tolerates a malformed DTMI ("dtmi:foo//bar").
func (p *parser) types(t *jsonNode, el *elem, infer class) bool {
	if t == nil {
		if infer == clsNone {
			p.problem(el.loc, "@type", "is required")
			return false
		}
		el.cls = infer
		return true
	}
	var names []string
	switch t.kind {
	case jsonString:
		names = []string{t.text}
	case jsonArray:
		for _, it := range t.items {
			if it.kind != jsonString {
				p.problem(el.loc, "@type", "must be a string or an array of strings; an element is %s", it.kind)
				return false
			}
			names = append(names, it.text)
		}
	default:
		p.problem(el.loc, "@type", "must be a string or an array of strings, not %s", t.kind)
		return false
	}
	ok := true
	for _, name := range names {
		m, form := vocab.lookup(name, el.sc)
		switch {
		case form == formInvalidDTMI:
			p.problem(el.loc, "@type", "%q is not a valid DTMI", name)
			ok = false
		case form == formNotDTMINorTerm:
			if el.version == 3 {
				p.problem(el.loc, "@type", "%q is neither a DTMI nor a term", name)
				ok = false
			}
		case m.kind == tkClass && m.cls != clsAbstract:
			if el.cls != clsNone && el.cls != m.cls {
				p.problem(el.loc, "@type", "names two classes, %s and %s; an element has exactly one", el.cls, m.cls)
				ok = false
			}
			el.cls = m.cls
		case m.kind == tkClass:
			p.problem(el.loc, "@type", "%q is an abstract class; no element can be of that type", name)
			ok = false
		case m.kind == tkSemanticType || m.kind == tkAdjunct:
			el.cotypes = append(el.cotypes, m)
			el.typeNames = append(el.typeNames, name)
		case m.kind == tkUndefined && form == formTerm && el.version == 2:
			el.undefined = true
			el.typeNames = append(el.typeNames, name)
		default:
			el.undefined = true
			el.typeNames = append(el.typeNames, name)
			if !p.opts.AllowUndefinedExtensions || !el.sc.undefinedCtx {
				// Not fatal: the element's properties are still checked.
				if m.kind == tkUndefined && form == formTerm {
					p.problem(el.loc, "@type", "%q is not defined by any context in scope; undefined extensions are not allowed", name)
				} else {
					p.problem(el.loc, "@type", "%q is not a co-type that applies here", name)
				}
			}
		}
	}
	if el.cls == clsNone {
		if ok {
			p.problem(el.loc, "@type", "must include a DTDL class such as Interface, Property or Object")
		}
		return false
	}
	return ok
}

// carries reports whether el may have property q: the properties of its class, plus those
// its co-types bring (unit for semantic types, annotates and overrides for the Annotation and
// Overriding adjuncts).
func (p *parser) carries(el *elem, q prop) bool {
	switch q {
	case propUnit:
		for _, c := range el.cotypes {
			if c.kind == tkSemanticType {
				return true
			}
		}
		return false
	case propAnnotates:
		return hasAdjunct(el, "ValueAnnotation")
	case propOverrides:
		return hasAdjunct(el, "Override")
	}
	return el.cls.hasProp(q)
}

// foreignProperty handles a member that is not a property of el's class. The metamodel lets
// such members through only on an element that has an undefined co-type
// ("propertyNeedsCotype"): in v2 always, in v3 only with AllowUndefinedExtensions and an
// undefined context in scope, and never when the member's name is a malformed DTMI or neither
// a DTMI nor a term.
func (p *parser) foreignProperty(el *elem, key string, m meaning, form termForm) {
	if el.version == 2 {
		if !el.undefined {
			p.problem(el.loc, key, "is not a property of %s; a property outside DTDL needs an undefined co-type on the element", el.cls)
		}
		return
	}
	switch form {
	case formInvalidDTMI:
		if el.version == 3 {
			p.problem(el.loc, key, "is not a valid DTMI, so it cannot name a property")
		}
		return
	case formNotDTMINorTerm:
		if el.version == 3 {
			p.problem(el.loc, key, "is neither a DTMI nor a term, so it cannot name a property")
		}
		return
	}
	if p.opts.AllowUndefinedExtensions && el.sc.undefinedCtx && el.undefined {
		return
	}
	switch {
	case m.kind == tkUndefined && form == formTerm:
		p.problem(el.loc, key, "is not a property of %s and no context in scope defines it", el.cls)
	default:
		p.problem(el.loc, key, "is not a property of %s", el.cls)
	}
}

func isElementValued(q prop) bool {
	switch q {
	case propContents, propExtends, propSchemas, propSchema, propElementSchema, propEnumValues,
		propMapKey, propMapValue, propFields, propRequest, propResponse, propProperties:
		return true
	}
	return false
}

// required reports missing required properties (sh:minCount 1 in the metamodel). v2 also
// requires at least one enum value and one field; v3 dropped those minimums.
func (p *parser) required(el *elem, seen *[propCount]string) {
	need := func(q prop) {
		if seen[q] == "" {
			p.problem(el.loc, q.String(), "is required on %s", el.cls)
		}
	}
	switch el.cls {
	case clsInterface:
	case clsArray:
		need(propElementSchema)
	case clsEnum:
		need(propValueSchema)
		if el.version == 2 {
			need(propEnumValues)
		}
	case clsMap:
		need(propMapKey)
		need(propMapValue)
	case clsObject:
		if el.version == 2 {
			need(propFields)
		}
	case clsEnumValue:
		need(propName)
		need(propEnumValue)
	case clsCommand, clsRelationship:
		need(propName)
	default:
		need(propName)
		need(propSchema)
	}
	for _, c := range el.cotypes {
		if _, quantitative := vocab.units[c.iri]; quantitative {
			need(propUnit)
			break
		}
	}
	if hasAdjunct(el, "ValueAnnotation") {
		need(propAnnotates)
	}
	if hasAdjunct(el, "Override") {
		need(propOverrides)
	}
}

// elementValued reads a property whose values are elements: inline objects, references by
// DTMI, or terms naming standard schemas. It enforces the per-property value counts (v2 caps
// contents and relationship properties at 300, extends at 2, enum values at 100 and fields at
// 30; singular properties take one value) and records references for the resolver.
func (p *parser) elementValued(el *elem, q prop, n *jsonNode) {
	prop := q.String()
	vals := values(n)
	max := -1
	switch q {
	case propSchema, propElementSchema, propMapKey, propMapValue, propRequest, propResponse:
		max = 1
	case propContents, propProperties:
		if el.version == 2 {
			max = 300
		}
	case propExtends:
		if el.version == 2 {
			max = 2
		}
	case propEnumValues:
		if el.version == 2 {
			max = 100
		}
	case propFields:
		if el.version == 2 {
			max = 30
		}
	}
	if max >= 0 && len(vals) > max {
		p.problem(el.loc, prop, "has %d values; at most %d are allowed (DTDL v%d)", len(vals), max, el.version)
		return
	}
	if len(vals) == 0 && max == 1 {
		p.problem(el.loc, prop, "must have a value")
		return
	}
	want, infer, needID := childClasses(el, q)
	for i, v := range vals {
		loc := el.loc + "/" + prop
		if n.kind == jsonArray {
			loc += "[" + strconv.Itoa(i) + "]"
		}
		switch v.kind {
		case jsonString:
			m, form := vocab.lookup(v.text, el.sc)
			switch {
			case m.kind == tkSchema:
				switch {
				case el.cls == clsMapKey && m.schema != KindString:
					p.problem(el.loc, prop, "the schema of a MapKey must be string")
					continue
				case el.cls != clsMapKey && !classIn(clsArray, want):
					p.problem(el.loc, prop, "%q is a standard schema; %s is required here", v.text, classList(want))
					continue
				}
				el.add(q, ref{std: m.schema})
			case m.kind == tkUnitType && classIn(clsEnum, want):
				el.add(q, ref{builtin: vocab.unitTypes[m.iri]})
			case m.kind != tkUndefined:
				p.problem(el.loc, prop, "%q does not name %s", v.text, classList(want))
			case form == formDTMI:
				if msg := checkRefID(v.text, el.version); msg != "" {
					p.problem(el.loc, prop, "%q %s", v.text, msg)
					continue
				}
				el.add(q, ref{id: v.text})
			default:
				p.problem(el.loc, prop, "%q is neither a DTMI nor a term defined here", v.text)
			}
		case jsonObject:
			if needID && v.member("@id") == nil {
				p.problem(loc, "@id", "is required on an element that is the value of %s", prop)
				continue
			}
			child := p.element(v, el.sc, want, infer, el, q, strconv.Itoa(i), loc)
			if child != nil {
				el.add(q, ref{id: child.id, el: child})
			}
		default:
			p.problem(el.loc, prop, "must be a DTMI, a term or an object, not %s", v.kind)
		}
	}
}

var schemaClasses = []class{clsArray, clsEnum, clsMap, clsObject}

// childClasses returns the classes a value of property q of el may have, the class to infer
// when the value has no @type ("typeInferable" in the metamodel), and whether an inline value
// needs an @id (properties whose values must be IRIs: extends, schemas, a Component's schema).
func childClasses(el *elem, q prop) (want []class, infer class, needID bool) {
	switch q {
	case propContents:
		return []class{clsTelemetry, clsProperty, clsCommand, clsRelationship, clsComponent}, clsNone, false
	case propExtends:
		return []class{clsInterface}, clsNone, true
	case propSchemas:
		return schemaClasses, clsNone, true
	case propSchema:
		switch el.cls {
		case clsComponent:
			return []class{clsInterface}, clsNone, true
		case clsMapKey:
			return nil, clsNone, false
		}
		return schemaClasses, clsNone, false
	case propElementSchema:
		return schemaClasses, clsNone, false
	case propEnumValues:
		return []class{clsEnumValue}, clsEnumValue, false
	case propMapKey:
		return []class{clsMapKey}, clsMapKey, false
	case propMapValue:
		return []class{clsMapValue}, clsMapValue, false
	case propFields:
		return []class{clsField}, clsField, false
	case propRequest:
		if el.version == 2 {
			return []class{clsCommandPayload}, clsCommandPayload, false
		}
		return []class{clsCommandRequest}, clsCommandRequest, false
	case propResponse:
		if el.version == 2 {
			return []class{clsCommandPayload}, clsCommandPayload, false
		}
		return []class{clsCommandResponse}, clsCommandResponse, false
	case propProperties:
		return []class{clsProperty}, clsNone, false
	}
	return nil, clsNone, false
}
