package twin

import (
	"bytes"
	"fmt"
	"sort"
	"strings"
)

// Keys of a relationship document.
const (
	KeyRelationshipID   = "$relationshipId"
	KeySourceID         = "$sourceId"
	KeyTargetID         = "$targetId"
	KeyRelationshipName = "$relationshipName"
)

// RelationshipBody is a relationship PUT body taken apart.
type RelationshipBody struct {
	TargetID string
	Name     string
	// Properties are the body's keys that do not start with "$".
	Properties map[string]any
}

// ParseRelationshipBody takes a decoded relationship PUT body apart. $targetId is required
// (InvalidArgument) and so is $relationshipName (InvalidRelationship); $relationshipId,
// $sourceId and $etag are ignored (the path and the service decide them), any other "$" key is
// InvalidArgument.
func ParseRelationshipBody(body map[string]any) (RelationshipBody, error) {
	var rb RelationshipBody
	rb.TargetID, _ = body[KeyTargetID].(string)
	if rb.TargetID == "" {
		return rb, InvalidArgument("The relationship must have a non-empty $targetId string.")
	}
	rb.Name, _ = body[KeyRelationshipName].(string)
	if rb.Name == "" {
		return rb, InvalidRelationship("The relationship must have a non-empty $relationshipName string.")
	}
	rb.Properties = make(map[string]any, len(body))
	for k, v := range body {
		switch k {
		case KeyTargetID, KeyRelationshipName, KeyRelationshipID, KeySourceID, KeyETag:
			continue
		}
		if strings.HasPrefix(k, "$") {
			return rb, InvalidArgument(fmt.Sprintf("'%s' is not a settable relationship field.", k))
		}
		rb.Properties[k] = v
	}
	return rb, nil
}

// RelationshipProperties returns the keys of a decoded relationship document that do not start
// with "$".
func RelationshipProperties(doc map[string]any) map[string]any {
	props := make(map[string]any, len(doc))
	for k, v := range doc {
		if !strings.HasPrefix(k, "$") {
			props[k] = v
		}
	}
	return props
}

// EncodeRelationship encodes a relationship document in ADT's field order: $relationshipId,
// $etag, $sourceId, $relationshipName, $targetId, then the properties by name.
func EncodeRelationship(sourceID, id, name, targetID, etag string, props map[string]any) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"$relationshipId":`)
	writeJSONString(&b, id)
	b.WriteString(`,"$etag":`)
	writeJSONString(&b, etag)
	b.WriteString(`,"$sourceId":`)
	writeJSONString(&b, sourceID)
	b.WriteString(`,"$relationshipName":`)
	writeJSONString(&b, name)
	b.WriteString(`,"$targetId":`)
	writeJSONString(&b, targetID)
	keys := make([]string, 0, len(props))
	for k := range props {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v, err := Encode(props[k])
		if err != nil {
			return nil, fmt.Errorf("encode relationship property %q: %w", k, err)
		}
		b.WriteByte(',')
		writeJSONString(&b, k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// ApplyRelationshipPatch applies p to a relationship's properties in place. Paths starting with
// "$" ($targetId, $relationshipName, ...) cannot be patched: JsonPatchInvalid.
func ApplyRelationshipPatch(props map[string]any, p Patch) error {
	for _, op := range p {
		if strings.HasPrefix(op.Segments[0], "$") {
			return JSONPatchInvalid(fmt.Sprintf("The path %s cannot be patched; only relationship properties can.", op.Path))
		}
		if err := applyPointer(props, op.Segments, op, false); err != nil {
			return err
		}
	}
	return nil
}

// DiffProperties returns the patch turning relationship properties old into new (for the
// Relationship.Update event of a replacing PUT), ordered by path.
func DiffProperties(old, new map[string]any) Patch {
	var p Patch
	diffObjects(&p, nil, old, new, nil)
	sort.SliceStable(p, func(i, j int) bool { return p[i].Path < p[j].Path })
	return p
}
