package dtdl

import (
	"regexp"
	"strconv"
	"strings"
)

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

// values returns the values of a property: the items of an array, or the value itself.
func values(n *jsonNode) []*jsonNode {
	if n.kind == jsonArray {
		return n.items
	}
	return []*jsonNode{n}
}

// literal reads a property whose value is a literal, or a term naming an instance (valueSchema,
// commandType, unit). Literals may be written plainly or as JSON-LD value objects, and as an
// array of one value; an empty array was already treated as an absent property.
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
		case propAnnotates:
			el.annotates = s
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
		// The Overriding extension: a term or IRI naming an extension property (one no DTDL
		// version defines, such as QuantitativeTypes' unit) of the annotated element. Whether
		// that element has it is checked once references are resolved.
		m, ok := p.termValue(el, prop, v)
		switch {
		case !ok:
		case m.kind != tkProperty:
			p.problem(el.loc, prop, "%q is not a property; an Override names the extension property it overrides, such as unit", v.text)
		case strings.HasPrefix(m.iri, "dtmi:dtdl:property:"):
			p.problem(el.loc, prop, "%q is a property of the DTDL language; only a property an extension defines can be overridden", v.text)
		default:
			el.overrides, el.overridden = m.iri, v.text
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

// representational reads a JSON-LD value object {"@value": v, "@type": t}. @type is optional
// but must name the expected XSD datatype when present; v3 allows no other member, v2 only
// tolerates other keywords (not @id, @context or @graph).
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

// languageTag matches the language tags DTDL accepts: a two- or three-letter primary language
// and optional subtags ("en", "en-US", "zh-Hant-TW").
var languageTag = regexp.MustCompile(`^[a-zA-Z]{2,3}(?:-[a-zA-Z0-9]{1,8})*$`)

// langString reads a localizable string: a string, a language map, or an array of strings and
// {"@value", "@language"} objects. A string without a language is English, so it conflicts
// with an explicit "en" value. Each text is limited to max characters.
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
