package twins

import (
	"context"
	"fmt"
	"reflect"
	"testing"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// newGraphEnv has rooms r1, r2, r3 (Room;1), device d1 (Device;1) and sensor s1 (Sensor;1).
func newGraphEnv(t *testing.T) *env {
	e := newRoomEnv(t)
	for _, id := range []string{"r1", "r2", "r3"} {
		e.putRoom(id)
	}
	e.putTwin("d1", `{"$metadata":{"$model":"dtmi:ex:Device;1"},"serial":"A"}`)
	e.putTwin("s1", `{"$metadata":{"$model":"dtmi:ex:Sensor;1"}}`)
	return e
}

func relDoc(src, id, name, target, etag, props string) string {
	return `{"$relationshipId":"` + id + `","$etag":` + quote(etag) + `,"$sourceId":"` + src + `","$relationshipName":"` + name + `","$targetId":"` + target + `"` + props + `}`
}

func TestPutRelationship(t *testing.T) {
	ctx := context.Background()
	e := newGraphEnv(t)
	rel, err := e.g.PutRelationship(ctx, "r1", "c1", []byte(`{"$relationshipId":"x","$sourceId":"y","$targetId":"d1","$relationshipName":"contains","since":"2020"}`), "*", trace)
	if err != nil {
		t.Fatal(err)
	}
	want := relDoc("r1", "c1", "contains", "d1", rel.ETag, `,"since":"2020"`)
	if string(rel.Doc) != want {
		t.Fatalf("document %s\nwant     %s", rel.Doc, want)
	}
	if rel.SourceID != "r1" || rel.ID != "c1" || rel.Name != "contains" || rel.TargetID != "d1" {
		t.Fatalf("relationship %+v", rel)
	}
	e.wantEvent(event.RelationshipCreate, "r1/relationships/c1", want)
	got, err := e.g.Relationship(ctx, "r1", "c1")
	if err != nil || !reflect.DeepEqual(got, rel) {
		t.Fatalf("Relationship = %+v, %v", got, err)
	}

	_, err = e.g.PutRelationship(ctx, "r1", "c1", []byte(`{"$targetId":"d1","$relationshipName":"contains"}`), "*", trace)
	wantErr(t, err, twin.KindPreconditionFailed, "If-None-Match: * header was specified but a relationship with the id c1 was found. Please specify a different relationship id.")
	e.noEvents()

	// A replace reports what changed; a target that extends the declared one is accepted.
	rel2, err := e.g.PutRelationship(ctx, "r1", "c1", []byte(`{"$targetId":"s1","$relationshipName":"contains"}`), "", trace)
	if err != nil {
		t.Fatal(err)
	}
	if rel2.ETag == rel.ETag {
		t.Fatal("replace kept the ETag")
	}
	e.wantEvent(event.RelationshipUpdate, "r1/relationships/c1", `{"modelId":"dtmi:ex:Room;1","patch":[{"op":"replace","path":"/$targetId","value":"s1"},{"op":"remove","path":"/since"}]}`)

	// Untargeted relationships take any twin.
	if _, err := e.g.PutRelationship(ctx, "r1", "n1", []byte(`{"$targetId":"d1","$relationshipName":"near"}`), "", trace); err != nil {
		t.Fatal(err)
	}
	e.events()
}

func TestPutRelationshipErrors(t *testing.T) {
	ctx := context.Background()
	e := newGraphEnv(t)
	if _, err := e.g.PutRelationship(ctx, "r1", "a1", []byte(`{"$targetId":"r2","$relationshipName":"adjacent"}`), "", trace); err != nil {
		t.Fatal(err)
	}
	e.events()
	tests := []struct {
		name, src, id, body, ifNoneMatch string
		kind                             twin.Kind
		msg                              string
	}{
		{"no target", "r1", "x", `{"$relationshipName":"contains"}`, "", twin.KindInvalidArgument, "$targetId"},
		{"no name", "r1", "x", `{"$targetId":"d1"}`, "", twin.KindInvalidRelationship, "$relationshipName"},
		{"target missing", "r1", "x", `{"$targetId":"nope","$relationshipName":"contains"}`, "", twin.KindTargetTwinNotFound, "nope"},
		{"source missing", "nope", "x", `{"$targetId":"d1","$relationshipName":"contains"}`, "", twin.KindTwinNotFound, "nope"},
		{"to itself", "r1", "x", `{"$targetId":"r1","$relationshipName":"near"}`, "", twin.KindOperationNotAllowed, ""},
		{"undeclared name", "r1", "x", `{"$targetId":"d1","$relationshipName":"owns"}`, "", twin.KindInvalidRelationship, "owns"},
		{"name from the target's model", "d1", "x", `{"$targetId":"r1","$relationshipName":"contains"}`, "", twin.KindInvalidRelationship, ""},
		{"wrong target model", "r1", "x", `{"$targetId":"r2","$relationshipName":"contains"}`, "", twin.KindInvalidRelationship, "dtmi:ex:Device;1"},
		{"max multiplicity", "r1", "x", `{"$targetId":"r3","$relationshipName":"adjacent"}`, "", twin.KindInvalidRelationship, "maxMultiplicity"},
		{"undeclared property", "r1", "x", `{"$targetId":"d1","$relationshipName":"contains","color":"red"}`, "", twin.KindValidationFailed, "color"},
		{"wrong property type", "r1", "x", `{"$targetId":"d1","$relationshipName":"contains","since":2020}`, "", twin.KindValidationFailed, "since"},
		{"bad if-none-match", "r1", "x", `{"$targetId":"d1","$relationshipName":"contains"}`, "x", twin.KindInvalidArgument, ""},
		{"not an object", "r1", "x", `[]`, "", twin.KindInvalidArgument, ""},
		{"empty id", "r1", "", `{"$targetId":"d1","$relationshipName":"contains"}`, "", twin.KindInvalidArgument, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.g.PutRelationship(ctx, tt.src, tt.id, []byte(tt.body), tt.ifNoneMatch, trace)
			wantErr(t, err, tt.kind, tt.msg)
		})
	}
	e.noEvents()
	// Replacing the one adjacent relationship is not over maxMultiplicity.
	if _, err := e.g.PutRelationship(ctx, "r1", "a1", []byte(`{"$targetId":"r3","$relationshipName":"adjacent"}`), "", trace); err != nil {
		t.Fatal(err)
	}
}

func TestRelationshipLimits(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Limits{OutgoingRelationships: 2, IncomingRelationships: 3})
	if _, err := e.g.AddModels(ctx, []byte(models)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"r1", "r2", "r3", "d1"} {
		e.putRoom(id)
	}
	put := func(src, id, target string) error {
		_, err := e.g.PutRelationship(ctx, src, id, []byte(`{"$targetId":"`+target+`","$relationshipName":"near"}`), "", trace)
		return err
	}
	for _, r := range [][3]string{{"r1", "a", "d1"}, {"r1", "b", "d1"}, {"r2", "a", "d1"}} {
		if err := put(r[0], r[1], r[2]); err != nil {
			t.Fatal(err)
		}
	}
	wantErr(t, put("r1", "c", "r2"), twin.KindLimitExceeded, "2 outgoing")
	wantErr(t, put("r3", "a", "d1"), twin.KindLimitExceeded, "3 incoming")
	if err := put("r1", "a", "d1"); err != nil {
		t.Fatalf("replacing at the limit: %v", err)
	}
}

func TestPatchRelationship(t *testing.T) {
	ctx := context.Background()
	e := newGraphEnv(t)
	rel, err := e.g.PutRelationship(ctx, "r1", "c1", []byte(`{"$targetId":"d1","$relationshipName":"contains","since":"2020"}`), "", trace)
	if err != nil {
		t.Fatal(err)
	}
	e.events()
	etag, err := e.g.PatchRelationship(ctx, "r1", "c1", []byte(`[{"op":"replace","path":"/since","value":"2021"}]`), rel.ETag, trace)
	if err != nil {
		t.Fatal(err)
	}
	e.wantEvent(event.RelationshipUpdate, "r1/relationships/c1", `{"modelId":"dtmi:ex:Room;1","patch":[{"op":"replace","path":"/since","value":"2021"}]}`)
	got, err := e.g.Relationship(ctx, "r1", "c1")
	if err != nil || got.ETag != etag || string(got.Doc) != relDoc("r1", "c1", "contains", "d1", etag, `,"since":"2021"`) {
		t.Fatalf("Relationship = %s %v", got.Doc, err)
	}
	if same, err := e.g.PatchRelationship(ctx, "r1", "c1", []byte(`[]`), "", trace); err != nil || same != etag {
		t.Fatalf("empty patch = %q, %v; want %q", same, err, etag)
	}
	e.noEvents()
	tests := []struct {
		name, src, id, patch, ifMatch string
		kind                          twin.Kind
		msg                           string
	}{
		{"target", "r1", "c1", `[{"op":"replace","path":"/$targetId","value":"s1"}]`, "", twin.KindJSONPatchInvalid, "$targetId"},
		{"name", "r1", "c1", `[{"op":"replace","path":"/$relationshipName","value":"near"}]`, "", twin.KindJSONPatchInvalid, ""},
		{"stale", "r1", "c1", `[{"op":"remove","path":"/since"}]`, rel.ETag, twin.KindPreconditionFailed, ""},
		{"malformed if-match", "r1", "c1", `[{"op":"remove","path":"/since"}]`, "nope", twin.KindInvalidArgument, ""},
		{"undeclared", "r1", "c1", `[{"op":"add","path":"/color","value":"red"}]`, "", twin.KindValidationFailed, "color"},
		{"wrong type", "r1", "c1", `[{"op":"add","path":"/since","value":1}]`, "", twin.KindValidationFailed, "since"},
		{"missing path", "r1", "c1", `[{"op":"remove","path":"/nope"}]`, "", twin.KindJSONPatchInvalid, "'nope'"},
		{"missing relationship", "r1", "zz", `[]`, "", twin.KindRelationshipNotFound, "zz"},
		{"missing twin", "nope", "c1", `[]`, "", twin.KindTwinNotFound, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.g.PatchRelationship(ctx, tt.src, tt.id, []byte(tt.patch), tt.ifMatch, trace)
			wantErr(t, err, tt.kind, tt.msg)
		})
	}
	e.noEvents()
}

func TestDeleteRelationship(t *testing.T) {
	ctx := context.Background()
	e := newGraphEnv(t)
	rel, err := e.g.PutRelationship(ctx, "r1", "c1", []byte(`{"$targetId":"d1","$relationshipName":"contains"}`), "", trace)
	if err != nil {
		t.Fatal(err)
	}
	e.events()
	wantErr(t, e.g.DeleteRelationship(ctx, "r1", "c1", `W/"stale"`, trace), twin.KindPreconditionFailed, "")
	wantErr(t, e.g.DeleteRelationship(ctx, "r1", "zz", "", trace), twin.KindRelationshipNotFound, "")
	wantErr(t, e.g.DeleteRelationship(ctx, "nope", "c1", "", trace), twin.KindTwinNotFound, "")
	if err := e.g.DeleteRelationship(ctx, "r1", "c1", rel.ETag, trace); err != nil {
		t.Fatal(err)
	}
	e.wantEvent(event.RelationshipDelete, "r1/relationships/c1", string(rel.Doc))
	_, err = e.g.Relationship(ctx, "r1", "c1")
	wantErr(t, err, twin.KindRelationshipNotFound, "There is no relationship with the ID c1 on the digital twin r1.")
}

func relIDs(rels []store.Relationship) []string {
	out := []string{}
	for _, r := range rels {
		out = append(out, r.SourceID+"/"+r.ID)
	}
	return out
}

func TestListRelationships(t *testing.T) {
	ctx := context.Background()
	e := newGraphEnv(t)
	for i := range 5 {
		name := "near"
		if i%2 == 0 {
			name = "contains"
		}
		if _, err := e.g.PutRelationship(ctx, "r1", fmt.Sprintf("x%d", i), []byte(`{"$targetId":"d1","$relationshipName":"`+name+`"}`), "", trace); err != nil {
			t.Fatal(err)
		}
	}
	for _, src := range []string{"r2", "r3"} {
		if _, err := e.g.PutRelationship(ctx, src, "y", []byte(`{"$targetId":"d1","$relationshipName":"near"}`), "", trace); err != nil {
			t.Fatal(err)
		}
	}
	var all []string
	after := ""
	for {
		page, next, err := e.g.Relationships(ctx, "r1", "", after, 2)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, relIDs(page)...)
		if next == "" {
			break
		}
		after = next
	}
	if want := []string{"r1/x0", "r1/x1", "r1/x2", "r1/x3", "r1/x4"}; !reflect.DeepEqual(all, want) {
		t.Fatalf("paged = %v; want %v", all, want)
	}
	page, next, err := e.g.Relationships(ctx, "r1", "contains", "", 0)
	if want := []string{"r1/x0", "r1/x2", "r1/x4"}; err != nil || next != "" || !reflect.DeepEqual(relIDs(page), want) {
		t.Fatalf("by name = %v %q %v", relIDs(page), next, err)
	}
	page, _, err = e.g.Relationships(ctx, "r2", "contains", "", 0)
	if err != nil || len(page) != 0 {
		t.Fatalf("none = %v %v", page, err)
	}
	_, _, err = e.g.Relationships(ctx, "nope", "", "", 0)
	wantErr(t, err, twin.KindTwinNotFound, "")

	all = nil
	after = ""
	for {
		page, next, err := e.g.IncomingRelationships(ctx, "d1", after, 3)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, relIDs(page)...)
		if next == "" {
			break
		}
		after = next
	}
	if want := []string{"r1/x0", "r1/x1", "r1/x2", "r1/x3", "r1/x4", "r2/y", "r3/y"}; !reflect.DeepEqual(all, want) {
		t.Fatalf("incoming = %v; want %v", all, want)
	}
	_, _, err = e.g.IncomingRelationships(ctx, "nope", "", 0)
	wantErr(t, err, twin.KindTwinNotFound, "")
}
