package dtdl

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// scope is the JSON-LD context an element is read in.
type scope struct {
	version int
	exts    ext
	// undefinedCtx is set when a context this package does not implement is in scope (allowed
	// only with AllowUndefinedExtensions); it licenses undefined co-types and properties.
	undefinedCtx bool
}

// elem is a model element as read from a document, before references are resolved.
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

	refs []propValues // element-valued properties, in document order

	size   int   // bytes of JSON text (Interfaces)
	parent *elem // the element holding this one inline, nil for roots

	built any // the resolved model object, once built
}

// ref is one value of an element-valued property: an inline element, a standard schema, or a
// reference by DTMI to an element defined elsewhere.
type ref struct {
	id  string
	el  *elem
	std Kind
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

// parser reads documents into elems, collecting problems.
type parser struct {
	opts     Options
	problems []Problem
	// locs lists element locations in document order, so that problems found while resolving
	// can be reported in document order too.
	locs  []string
	elems []*elem // every element, in document order
	roots []*elem // every Interface with a declared id, in document order
}

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

// context applies the @context value c to the parent scope.
func (p *parser) context(c *jsonNode, parent scope, top bool, loc string) (scope, bool) {
	sc := parent
	var ids []string
	switch c.kind {
	case jsonString:
		ids = []string{c.text}
	case jsonArray:
		for _, it := range c.items {
			if it.kind != jsonString {
				p.problem(loc, "@context", "must be a string or an array of strings; an element is %s", it.kind)
				return sc, false
			}
			ids = append(ids, it.text)
		}
	default:
		p.problem(loc, "@context", "must be a string or an array of strings, not %s", c.kind)
		return sc, false
	}
	ok, sawDTDL := true, false
	for i, id := range ids {
		if strings.HasPrefix(id, "dtmi:dtdl:context;") {
			v := 0
			switch id {
			case contextV2:
				v = 2
			case contextV3:
				v = 3
			}
			switch {
			case v == 0:
				p.problem(loc, "@context", "%q is not a DTDL version this parser supports (2 or 3)", id)
				ok = false
			case !top && v > parent.version:
				p.problem(loc, "@context", "%q cannot raise the DTDL version of an element inside a DTDL v%d document", id, parent.version)
				ok = false
			case i != 0 && (sc.exts != 0 || sc.undefinedCtx) && !(sc.exts == extIoTCentral && v == 2):
				p.problem(loc, "@context", "the DTDL context %q must come first, before any extension context", id)
				ok = false
			default:
				sc.version = v
				sawDTDL = true
			}
			continue
		}
		if !isDTMI(id, false) || !strings.Contains(id, ";") {
			p.problem(loc, "@context", "%q is not a DTMI with a version, as a context identifier must be", id)
			continue
		}
		if id == contextIoTCentral && top && sc.version == 0 {
			sc.exts |= extIoTCentral
			continue
		}
		if e, known := extContexts[id]; known && (e.version == sc.version || sc.version == 0) {
			sc.exts |= e.bit
			continue
		}
		if top && sc.version == 0 {
			p.problem(loc, "@context", "must start with %q or %q; %q comes before it", contextV2, contextV3, id)
			return sc, false
		}
		if !p.opts.AllowUndefinedExtensions {
			p.problem(loc, "@context", "%q is not a context this DTDL version defines; undefined extensions are not allowed", id)
			continue
		}
		sc.undefinedCtx = true
	}
	if sc.version == 0 || (top && !sawDTDL) {
		p.problem(loc, "@context", "must include %q or %q", contextV2, contextV3)
		return sc, false
	}
	return sc, ok
}

// isName reports whether s matches ^[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?$, the pattern of
// DTDL names.
func isName(s string) bool {
	if s == "" || s[len(s)-1] == '_' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		case (c >= '0' && c <= '9') || c == '_':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// element reads one element: n must be a JSON object whose class is one of want (or infer
// when @type is absent). parent and via say where the element sits, for assigned identifiers.
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

	var deferred []jsonMember
	var defProps []prop
	var seen [propCount]string // the key each property was given under
	for _, m := range n.members {
		key := m.key
		if strings.HasPrefix(key, "@") {
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

// acceptsOlderVersion reports whether the values of q may be elements of an earlier DTDL
// version than the element holding them.
func acceptsOlderVersion(q prop) bool {
	switch q {
	case propContents, propExtends, propSchema, propElementSchema, propProperties:
		return true
	}
	return false
}

// assignID returns the identifier the specification assigns to an element without @id.
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

func classIn(c class, want []class) bool {
	for _, w := range want {
		if w == c {
			return true
		}
	}
	return false
}

func classList(cs []class) string {
	if len(cs) == 0 {
		return "the string schema"
	}
	names := make([]string, len(cs))
	for i, c := range cs {
		names[i] = c.String()
	}
	if len(names) == 1 {
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// types reads @type into el.cls and its co-types.
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

// carries reports whether el may have property q.
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

func hasAdjunct(el *elem, suffix string) bool {
	for _, c := range el.cotypes {
		if c.kind == tkAdjunct && strings.HasSuffix(c.iri, suffix) {
			return true
		}
	}
	return false
}

// foreignProperty handles a member that is not a property of el's class.
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

// required reports missing required properties.
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

// values returns the values of a property: the items of an array, or the value itself.
func values(n *jsonNode) []*jsonNode {
	if n.kind == jsonArray {
		return n.items
	}
	return []*jsonNode{n}
}

// literal reads a property whose value is a literal (or a term, for valueSchema and friends).
func (p *parser) literal(el *elem, q prop, n *jsonNode) {
	prop := q.String()
	switch q {
	case propDisplayName, propDescription:
		max := 512
		if q == propDisplayName && el.version == 2 {
			max = 64
		}
		m := p.langString(el, prop, n, max)
		if q == propDisplayName {
			el.displayName = m
		} else {
			el.description = m
		}
		return
	case propLanguageMajorVersion:
		p.problem(el.loc, prop, "must not be given in a model")
		return
	case propOther:
		p.problem(el.loc, prop, "is not a property of %s", el.cls)
		return
	}
	vals := values(n)
	if len(vals) != 1 {
		p.problem(el.loc, prop, "must have exactly one value, not %d", len(vals))
		return
	}
	v := vals[0]
	switch q {
	case propComment, propName, propAnnotates:
		s, ok := p.stringValue(el, prop, v)
		if !ok {
			return
		}
		switch q {
		case propComment:
			if len([]rune(s)) > 512 {
				p.problem(el.loc, prop, "must be at most 512 characters")
			}
			el.comment = s
		case propName:
			max := 512
			if el.version == 2 {
				max = 64
			}
			if !isName(s) || len(s) > max {
				p.problem(el.loc, prop, "%q must match ^[a-zA-Z](?:[a-zA-Z0-9_]*[a-zA-Z0-9])?$ and be at most %d characters (DTDL v%d)", s, max, el.version)
				return
			}
			el.name = s
		}
	case propWritable:
		if b, ok := p.typedValue(el, prop, v, jsonBool, "xsd:boolean"); ok {
			el.writable = b.boolean
		}
	case propMinMultiplicity, propMaxMultiplicity:
		nv, ok := p.typedValue(el, prop, v, jsonNumber, "xsd:integer")
		if !ok {
			return
		}
		i, err := strconv.Atoi(nv.text)
		if err != nil {
			p.problem(el.loc, prop, "must be an integer, not %s", nv.text)
			return
		}
		if q == propMinMultiplicity {
			if i != 0 {
				p.problem(el.loc, prop, "must be 0")
			}
			el.minMult = i
			return
		}
		if i < 1 || (el.version == 2 && i > 500) {
			if el.version == 2 {
				p.problem(el.loc, prop, "must be between 1 and 500 (DTDL v2)")
			} else {
				p.problem(el.loc, prop, "must be at least 1")
			}
			return
		}
		el.maxMult = i
	case propTarget:
		if v.kind != jsonString {
			p.problem(el.loc, prop, "must be the DTMI of an Interface, not %s", v.kind)
			return
		}
		if msg := checkRefID(v.text, el.version); msg != "" {
			p.problem(el.loc, prop, "%q %s", v.text, msg)
			return
		}
		el.target = v.text
	case propEnumValue:
		switch {
		case v.kind == jsonString || v.kind == jsonNumber:
			el.enumValue, el.hasEnumVal = v, true
		case v.kind == jsonObject:
			if lit, ok := p.representational(el, prop, v, ""); ok && (lit.kind == jsonString || lit.kind == jsonNumber) {
				el.enumValue, el.hasEnumVal = lit, true
			} else if ok {
				p.problem(el.loc, prop, "must be an integer or a string")
			}
		default:
			p.problem(el.loc, prop, "must be an integer or a string, not %s", v.kind)
		}
	case propValueSchema:
		m, ok := p.termValue(el, prop, v)
		if !ok {
			return
		}
		if m.kind != tkSchema || (m.schema != KindInteger && m.schema != KindString) {
			p.problem(el.loc, prop, "must be integer or string")
			return
		}
		el.valueSchema = m.schema
	case propCommandType:
		m, ok := p.termValue(el, prop, v)
		if ok && m.kind != tkCommandType {
			p.problem(el.loc, prop, "must be asynchronous or synchronous")
		}
	case propUnit:
		m, ok := p.termValue(el, prop, v)
		if !ok {
			return
		}
		if m.kind != tkUnit {
			p.problem(el.loc, prop, "%q is not a unit", v.text)
			return
		}
		el.unit, el.unitName = m.iri, v.text
	case propOverrides:
		if v.kind != jsonString {
			p.problem(el.loc, prop, "must be a term or IRI, not %s", v.kind)
		}
	}
}

// checkRefID reports what is wrong with s as a reference to a model element, or "".
func checkRefID(s string, v int) string {
	if !isDTMI(s, false) {
		return "is not a valid DTMI"
	}
	if v == 2 {
		_, ver, hasVer := strings.Cut(s, ";")
		if !hasVer || strings.Contains(ver, ".") {
			return "must be a DTMI with a major version and no minor version (DTDL v2)"
		}
	}
	return ""
}

// termValue resolves a value that must be a term or DTMI naming a defined instance.
func (p *parser) termValue(el *elem, prop string, v *jsonNode) (meaning, bool) {
	if v.kind != jsonString {
		p.problem(el.loc, prop, "must be a term or DTMI, not %s", v.kind)
		return meaning{}, false
	}
	m, _ := vocab.lookup(v.text, el.sc)
	if m.kind == tkUndefined {
		p.problem(el.loc, prop, "%q is not a defined term or DTMI", v.text)
		return meaning{}, false
	}
	return m, true
}

// stringValue reads a string literal, plain or as {"@value": ..., "@type": "xsd:string"}.
func (p *parser) stringValue(el *elem, prop string, v *jsonNode) (string, bool) {
	if v.kind == jsonObject {
		lit, ok := p.representational(el, prop, v, "xsd:string")
		if !ok {
			return "", false
		}
		v = lit
	}
	if v.kind != jsonString {
		p.problem(el.loc, prop, "must be a string, not %s", v.kind)
		return "", false
	}
	return v.text, true
}

// typedValue reads a literal of JSON kind k, plain or as {"@value": ..., "@type": xsdType}.
func (p *parser) typedValue(el *elem, prop string, v *jsonNode, k jsonKind, xsdType string) (*jsonNode, bool) {
	if v.kind == jsonObject {
		lit, ok := p.representational(el, prop, v, xsdType)
		if !ok {
			return nil, false
		}
		v = lit
	}
	if v.kind != k || (k == jsonNumber && strings.ContainsAny(v.text, ".eE")) {
		want := k.String()
		if xsdType == "xsd:integer" {
			want = "an integer"
		}
		p.problem(el.loc, prop, "must be %s", want)
		return nil, false
	}
	return v, true
}

// representational reads a JSON-LD value object {"@value": v, "@type": t}.
func (p *parser) representational(el *elem, prop string, v *jsonNode, xsdType string) (*jsonNode, bool) {
	var val *jsonNode
	ok := true
	for _, m := range v.members {
		switch m.key {
		case "@value":
			val = m.value
		case "@type":
			if xsdType != "" && !isXSDType(m.value, xsdType) {
				p.problem(el.loc, prop, "a value object's @type must be %q", xsdType)
				ok = false
			}
		default:
			if el.version == 3 || !strings.HasPrefix(m.key, "@") || m.key == "@id" || m.key == "@context" || m.key == "@graph" {
				p.problem(el.loc, prop, "a value object may hold only @value and @type, not %q", m.key)
				ok = false
			}
		}
	}
	if val == nil {
		p.problem(el.loc, prop, "a value object must have @value")
		return nil, false
	}
	return val, ok
}

// isXSDType reports whether t names the XML Schema datatype xsdType ("xsd:boolean"), as a
// compact or full IRI, alone or as the one item of an array.
func isXSDType(t *jsonNode, xsdType string) bool {
	full := "http://www.w3.org/2001/XMLSchema#" + strings.TrimPrefix(xsdType, "xsd:")
	vs := values(t)
	return len(vs) == 1 && vs[0].kind == jsonString && (vs[0].text == xsdType || vs[0].text == full)
}

var languageTag = regexp.MustCompile(`^[a-zA-Z]{2,3}(?:-[a-zA-Z0-9]{1,8})*$`)

// langString reads a localizable string: a string, a language map, or an array of strings and
// {"@value", "@language"} objects.
func (p *parser) langString(el *elem, prop string, n *jsonNode, max int) map[string]string {
	out := map[string]string{}
	add := func(lang, text string) {
		if lang == "" {
			lang = "en" // the default language of DTDL documents
		}
		if len([]rune(text)) > max {
			p.problem(el.loc, prop, "must be at most %d characters", max)
			return
		}
		if _, dup := out[lang]; dup {
			p.problem(el.loc, prop, "has more than one value for language %q (a value without a language is English)", lang)
			return
		}
		out[lang] = text
	}
	switch n.kind {
	case jsonString:
		add("", n.text)
	case jsonObject:
		for _, m := range n.members {
			if !languageTag.MatchString(m.key) {
				p.problem(el.loc, prop, "%q is not a language code", m.key)
				continue
			}
			if m.value.kind != jsonString {
				p.problem(el.loc, prop, "the text for language %q must be a string, not %s", m.key, m.value.kind)
				continue
			}
			add(m.key, m.value.text)
		}
	case jsonArray:
		for _, it := range n.items {
			switch it.kind {
			case jsonString:
				add("", it.text)
			case jsonObject:
				var val, lang *jsonNode
				bad := false
				for _, m := range it.members {
					switch m.key {
					case "@value":
						val = m.value
					case "@language":
						lang = m.value
					default:
						if el.version == 3 || !strings.HasPrefix(m.key, "@") || m.key == "@id" || m.key == "@context" || m.key == "@graph" {
							p.problem(el.loc, prop, "a localized value may hold only @value and @language, not %q", m.key)
							bad = true
						}
					}
				}
				if bad {
					continue
				}
				if val == nil || val.kind != jsonString {
					p.problem(el.loc, prop, "a localized value must have a string @value")
					continue
				}
				l := ""
				if lang != nil {
					if lang.kind != jsonString || !languageTag.MatchString(lang.text) {
						p.problem(el.loc, prop, "@language must be a language code")
						continue
					}
					l = lang.text
				}
				add(l, val.text)
			default:
				p.problem(el.loc, prop, "must hold strings or {\"@value\", \"@language\"} objects, not %s", it.kind)
			}
		}
	default:
		p.problem(el.loc, prop, "must be a string, a language map or an array of localized strings, not %s", n.kind)
	}
	return out
}

// elementValued reads a property whose values are elements: inline objects or references.
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
// when the value has no @type, and whether an inline value needs an @id.
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
