package dtdl

import "strings"

// context applies the @context value c, found on an element, to the scope of its parent; top
// is set for the @context of a document's Interface. It returns the element's scope and
// whether the element can be read at all: an unusable context (no DTDL version, a version that
// does not exist, a nested context raising the version) makes reading the element pointless,
// while an undefined extension context is only reported, so that the element's other problems
// are found too.
//
// The rules, from the DTDL specifications and the conformance corpus:
//   - A context is a string or an array of strings, each a DTMI with a version.
//   - A document's Interface must name "dtmi:dtdl:context;2" or ";3". When it names both, the
//     last one wins; IoT Central's context, which implies v2, may come before it; any other
//     context must come after it.
//   - A nested context may keep or lower the DTDL version (a v3 Interface can hold v2 contents)
//     but not raise it.
//   - An extension context this package implements (QuantitativeTypes, Historization,
//     Annotation and Overriding for v3, IoT Central for v2) brings its terms into scope. Any
//     other context is an undefined extension: an error, unless AllowUndefinedExtensions is
//     set, in which case it licenses undefined co-types and properties in its scope.
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

// acceptsOlderVersion reports whether the values of q may be elements of an earlier DTDL
// version than the element holding them. The v3 metamodel types these properties as
// "Content;3 or Content;2" (and likewise for Interface, Schema and Property); the others name a
// v3 class only.
func acceptsOlderVersion(q prop) bool {
	switch q {
	case propContents, propExtends, propSchema, propElementSchema, propProperties:
		return true
	}
	return false
}
