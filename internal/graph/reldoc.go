package graph

import (
	"bytes"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// A relationship document as twinflow encodes it (twin.EncodeRelationship) starts with
// $relationshipId, $etag, $sourceId, $relationshipName and $targetId, in that order, then
// holds its properties. The index keeps such a document compact: the $etag's JSON string
// followed by the properties as an object of their own, since the id, the name and the two
// twins' ids are in the Rel already; Doc puts the document together again, byte for byte. A
// document of another shape is kept whole.

// compactRel returns sr's document compact, with the length of its $etag's JSON string, or
// the document as it is with 0 when it does not have the shape a compact one can be made of.
func compactRel(sr store.Relationship) (doc []byte, etagLen uint16) {
	d := []byte(sr.Doc)
	var ok bool
	if d, ok = cutMember(d, `{"`+twin.KeyRelationshipID+`":`, sr.ID); !ok {
		return sr.Doc, 0
	}
	rest, ok := bytes.CutPrefix(d, []byte(`,"`+twin.KeyETag+`":`))
	if !ok || len(rest) == 0 || rest[0] != '"' {
		return sr.Doc, 0
	}
	end := skipString(rest, 0)
	etag := rest[:end]
	if len(etag) < 2 || len(etag) >= 1<<16 || etag[len(etag)-1] != '"' {
		return sr.Doc, 0
	}
	d = rest[end:]
	for _, m := range [...]struct{ key, val string }{
		{twin.KeySourceID, sr.SourceID}, {twin.KeyRelationshipName, sr.Name}, {twin.KeyTargetID, sr.TargetID},
	} {
		if d, ok = cutMember(d, `,"`+m.key+`":`, m.val); !ok {
			return sr.Doc, 0
		}
	}
	// d is the properties: "}" or ",<members>}".
	if len(d) == 0 || d[0] != '}' && d[0] != ',' {
		return sr.Doc, 0
	}
	out := make([]byte, 0, len(etag)+len(d)+1)
	out = append(out, etag...)
	out = append(out, '{')
	if d[0] == ',' {
		d = d[1:]
	}
	return append(out, d...), uint16(len(etag))
}

// cutMember returns d after prefix and the JSON string of val, or false when d does not
// start so. Only strings that need no escaping are matched.
func cutMember(d []byte, prefix, val string) ([]byte, bool) {
	if !plainString(val) {
		return nil, false
	}
	n := len(prefix) + len(val) + 2
	if len(d) < n || string(d[:len(prefix)]) != prefix || d[len(prefix)] != '"' ||
		string(d[len(prefix)+1:n-1]) != val || d[n-1] != '"' {
		return nil, false
	}
	return d[n:], true
}

// plainString reports whether s encodes in JSON as itself in quotes.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

// props returns the object of r's properties in a compact document.
func (r *Rel) props() []byte { return r.doc[r.etagLen:] }

// Doc returns the relationship's JSON document. It must not be modified.
func (r *Rel) Doc() []byte {
	if r.etagLen == 0 {
		return r.doc
	}
	props := r.props()
	b := make([]byte, 0, len(r.doc)+len(r.id)+len(r.src.id)+len(r.name)+len(r.dst.id)+96)
	b = append(b, `{"`+twin.KeyRelationshipID+`":"`...)
	b = append(b, r.id...)
	b = append(b, `","`+twin.KeyETag+`":`...)
	b = append(b, r.doc[:r.etagLen]...)
	b = append(b, `,"`+twin.KeySourceID+`":"`...)
	b = append(b, r.src.id...)
	b = append(b, `","`+twin.KeyRelationshipName+`":"`...)
	b = append(b, r.name...)
	b = append(b, `","`+twin.KeyTargetID+`":"`...)
	b = append(b, r.dst.id...)
	b = append(b, '"')
	if len(props) > 2 { // "{...}" with members
		b = append(b, ',')
		return append(b, props[1:]...)
	}
	return append(b, '}')
}

// lookupRel resolves path in r's document.
func lookupRel(r *Rel, path []string) ([]byte, any, bool) {
	if r.etagLen == 0 {
		v, ok := descend(r.doc, path)
		return v, nil, ok
	}
	var s string
	switch path[0] {
	case twin.KeyRelationshipID:
		s = r.id
	case twin.KeySourceID:
		s = r.src.id
	case twin.KeyRelationshipName:
		s = r.name
	case twin.KeyTargetID:
		s = r.dst.id
	case twin.KeyETag:
		if len(path) > 1 {
			return nil, nil, false
		}
		return r.doc[:r.etagLen], nil, true
	default:
		v, ok := descend(r.props(), path)
		return v, nil, ok
	}
	if len(path) > 1 {
		return nil, nil, false // a string has no members
	}
	return nil, s, true
}
