package twins

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/twin"
)

func TestPutTwin(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	tw, err := e.g.PutTwin(ctx, "r1", []byte(roomBody), "*", trace)
	if err != nil {
		t.Fatal(err)
	}
	if tw.ID != "r1" || tw.ModelID != "dtmi:ex:Room;1" || !strings.HasPrefix(tw.ETag, `W/"`) {
		t.Fatalf("PutTwin = %+v", tw)
	}
	sameJSON(t, tw.Doc, roomDoc("r1", tw.ETag))
	e.wantEvent(event.TwinCreate, "r1", roomDoc("r1", tw.ETag))
	got, err := e.g.Twin(ctx, "r1")
	if err != nil || got.ETag != tw.ETag || string(got.Doc) != string(tw.Doc) {
		t.Fatalf("Twin = %+v, %v", got, err)
	}

	_, err = e.g.PutTwin(ctx, "r1", []byte(roomBody), "*", trace)
	wantErr(t, err, twin.KindPreconditionFailed, "If-None-Match: * header was specified but a twin with the id r1 was found.")
	_, err = e.g.PutTwin(ctx, "r1", []byte(roomBody), tw.ETag, trace)
	wantErr(t, err, twin.KindInvalidArgument, "If-None-Match")
	e.noEvents()

	// Replacing reports the patch from the old document to the new one.
	tw2, err := e.g.PutTwin(ctx, "r1", []byte(`{"$metadata":{"$model":"dtmi:ex:Room;1"},"temp":22,"hum":40,"therm":{"setPoint":20,"mode":"eco"}}`), "", trace)
	if err != nil {
		t.Fatal(err)
	}
	if tw2.ETag == tw.ETag {
		t.Fatal("replace kept the ETag")
	}
	e.wantEvent(event.TwinUpdate, "r1", `{"modelId":"dtmi:ex:Room;1","patch":[
		{"op":"add","path":"/hum","value":40},
		{"op":"remove","path":"/name"},
		{"op":"replace","path":"/temp","value":22},
		{"op":"add","path":"/therm/mode","value":"eco"}]}`)

	// A replace to another model reports the model change.
	if _, err := e.g.PutTwin(ctx, "r1", []byte(`{"$metadata":{"$model":"dtmi:ex:Room;2"},"temp":22,"hum":40,"therm":{"setPoint":20,"mode":"eco"},"light":{"on":true}}`), "", trace); err != nil {
		t.Fatal(err)
	}
	e.wantEvent(event.TwinUpdate, "r1", `{"modelId":"dtmi:ex:Room;2","patch":[
		{"op":"replace","path":"/$metadata/$model","value":"dtmi:ex:Room;2"},
		{"op":"add","path":"/light","value":{"on":true,"$metadata":{"$lastUpdateTime":"`+nowText+`","on":{"lastUpdateTime":"`+nowText+`"}}}}]}`)
}

func TestPutTwinErrors(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	e2 := newEnv(t, Limits{RequestBytes: 200, StringBytes: 10, PropertyNameBytes: 8})
	if _, err := e2.g.AddModels(ctx, []byte(models)); err != nil {
		t.Fatal(err)
	}
	room := func(extra string) string {
		return `{"$metadata":{"$model":"dtmi:ex:Room;1"},"therm":{}` + extra + `}`
	}
	tests := []struct {
		name     string
		g        *Service
		id, body string
		kind     twin.Kind
		msg      string
	}{
		{"unknown model", e.g, "x", `{"$metadata":{"$model":"dtmi:samples:DTTestBuilding;2"}}`, twin.KindValidationFailed, "dtmi:samples:DTTestBuilding;2 or one of its dependencies does not exist."},
		{"no model", e.g, "x", `{"name":"a"}`, twin.KindValidationFailed, "$metadata"},
		{"not an object", e.g, "x", `[1]`, twin.KindInvalidArgument, ""},
		{"null", e.g, "x", `null`, twin.KindInvalidArgument, ""},
		{"malformed", e.g, "x", `{"a":`, twin.KindInvalidArgument, ""},
		{"empty id", e.g, "", room(""), twin.KindInvalidArgument, ""},
		{"missing component", e.g, "x", `{"$metadata":{"$model":"dtmi:ex:Room;1"}}`, twin.KindValidationFailed, "therm"},
		{"undeclared property", e.g, "x", room(`,"color":"red"`), twin.KindValidationFailed, "color"},
		{"wrong type", e.g, "x", room(`,"temp":"warm"`), twin.KindValidationFailed, "temp"},
		{"wrong type in component", e.g, "x", `{"$metadata":{"$model":"dtmi:ex:Room;1"},"therm":{"setPoint":"high"}}`, twin.KindValidationFailed, "setPoint"},
		{"bad sourceTime", e.g, "x", `{"$metadata":{"$model":"dtmi:ex:Room;1","temp":{"sourceTime":"noon"}},"temp":1,"therm":{}}`, twin.KindValidationFailed, "sourceTime"},
		{"body too large", e2.g, "x", room(`,"name":"` + strings.Repeat("a", 200) + `"`), twin.KindLimitExceeded, "the limit is 200 bytes"},
		{"string too long", e2.g, "x", room(`,"name":"abcdefghijk"`), twin.KindValidationFailed, "the limit is 10 bytes"},
		{"name too long", e2.g, "x", room(`,"address":{"abcdefghi":"x"}`), twin.KindValidationFailed, "the limit is 8 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.g.PutTwin(ctx, tt.id, []byte(tt.body), "", trace)
			wantErr(t, err, tt.kind, tt.msg)
			if _, err := tt.g.Twin(ctx, tt.id); err == nil {
				t.Fatal("the twin was stored")
			}
		})
	}
	e.noEvents()
	e2.noEvents()
	e3 := newEnv(t, Limits{TwinBytes: 300})
	if _, err := e3.g.AddModels(ctx, []byte(models)); err != nil {
		t.Fatal(err)
	}
	_, err := e3.g.PutTwin(ctx, "x", []byte(roomBody), "", trace)
	wantErr(t, err, twin.KindLimitExceeded, "the limit is 300 bytes")

	e4 := newEnv(t, Limits{Twins: 2})
	if _, err := e4.g.AddModels(ctx, []byte(models)); err != nil {
		t.Fatal(err)
	}
	e4.putRoom("a")
	e4.putRoom("b")
	e4.putRoom("b") // replacing is not creating
	_, err = e4.g.PutTwin(ctx, "c", []byte(roomBody), "", trace)
	wantErr(t, err, twin.KindTwinLimitReached, "limit of 2 twins")

	_, err = e.g.Twin(ctx, "nope")
	wantErr(t, err, twin.KindTwinNotFound, "There is no digital twin instance that exists with the ID nope. Please verify that the twin id is valid and ensure that the twin is not deleted. See section on querying the twins https://aka.ms/adtv2query.")
}

func TestPatchTwin(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	tw := e.putRoom("r1")
	patch := `[{"op":"replace","path":"/temp","value":23.5},{"op":"add","path":"/address","value":{"city":"Oslo"}},
		{"op":"add","path":"/address/zip","value":"0150"},{"op":"remove","path":"/name"},
		{"op":"add","path":"/therm/mode","value":"eco"},{"op":"add","path":"/$metadata/hum/sourceTime","value":"2024-01-01T00:00:00Z"},
		{"op":"add","path":"/hum","value":40}]`
	etag, err := e.g.PatchTwin(ctx, "r1", []byte(patch), tw.ETag, trace)
	if err != nil {
		t.Fatal(err)
	}
	if etag == tw.ETag || !strings.HasPrefix(etag, `W/"`) {
		t.Fatalf("new etag %q", etag)
	}
	e.wantEvent(event.TwinUpdate, "r1", `{"modelId":"dtmi:ex:Room;1","patch":`+patch+`}`)
	got, err := e.g.Twin(ctx, "r1")
	if err != nil || got.ETag != etag {
		t.Fatalf("Twin = %+v, %v", got, err)
	}
	sameJSON(t, got.Doc, `{"$dtId":"r1","$etag":`+quote(etag)+`,"temp":23.5,"hum":40,"address":{"city":"Oslo","zip":"0150"},
	"therm":{"setPoint":20,"mode":"eco","$metadata":{"$lastUpdateTime":"`+nowText+`","setPoint":{"lastUpdateTime":"`+nowText+`"},"mode":{"lastUpdateTime":"`+nowText+`"}}},
	"$metadata":{"$model":"dtmi:ex:Room;1","$lastUpdateTime":"`+nowText+`",
		"temp":{"lastUpdateTime":"`+nowText+`","sourceTime":"2024-04-30T23:59:59.123456789Z"},
		"hum":{"lastUpdateTime":"`+nowText+`","sourceTime":"2024-01-01T00:00:00Z"},
		"address":{"lastUpdateTime":"`+nowText+`"}}}`)

	// An empty patch changes nothing.
	same, err := e.g.PatchTwin(ctx, "r1", []byte(`[]`), etag, trace)
	if err != nil || same != etag {
		t.Fatalf("empty patch = %q, %v; want %q", same, err, etag)
	}
	e.noEvents()
	_, err = e.g.PatchTwin(ctx, "r1", []byte(`[]`), `W/"stale"`, trace)
	wantErr(t, err, twin.KindPreconditionFailed, "")

	// The If-Match forms.
	for _, ifMatch := range []string{"", "*", "list"} {
		cur, _ := e.g.Twin(ctx, "r1")
		if ifMatch == "list" {
			ifMatch = `W/"stale", ` + cur.ETag
		}
		etag, err = e.g.PatchTwin(ctx, "r1", []byte(`[{"op":"replace","path":"/address/city","value":"Bergen"}]`), ifMatch, trace)
		if err != nil {
			t.Fatalf("If-Match %q: %v", ifMatch, err)
		}
		if etag == cur.ETag {
			t.Fatal("ETag unchanged")
		}
		e.events()
	}
}

func TestPatchTwinErrors(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	tw := e.putRoom("r1")
	tests := []struct {
		name, patch, ifMatch string
		kind                 twin.Kind
		msg                  string
	}{
		{"stale etag", `[{"op":"replace","path":"/temp","value":1}]`, `W/"stale"`, twin.KindPreconditionFailed, ""},
		{"malformed if-match", `[{"op":"replace","path":"/temp","value":1}]`, `XXX`, twin.KindInvalidArgument, "Invalid If-Match header value. Allowed value(s): If-Match: {etag} or If-Match: *"},
		{"move", `[{"op":"move","from":"/temp","path":"/hum"}]`, "", twin.KindJSONPatchInvalid, "Unsupported operation type move. Please provide a valid patch document. See section on update apis in the documentation http://aka.ms/adtv2twins."},
		{"empty op", `[{}]`, "", twin.KindJSONPatchInvalid, "Parameter op must not be empty."},
		{"replace missing", `[{"op":"replace","path":"/hum","value":1}]`, "", twin.KindJSONPatchInvalid, "The target location specified by path segment 'hum' was not found."},
		{"remove missing", `[{"op":"remove","path":"/isAccessDoorRestricted"}]`, "", twin.KindJSONPatchInvalid, "The target location specified by path segment 'isAccessDoorRestricted' was not found. Please provide a valid patch document. See section on update apis in the documentation http://aka.ms/adtv2twins."},
		{"sub of unset object", `[{"op":"add","path":"/address/city","value":"Oslo"}]`, "", twin.KindJSONPatchInvalid, "'address'"},
		{"undeclared", `[{"op":"add","path":"/color","value":"red"}]`, "", twin.KindValidationFailed, "color"},
		{"wrong type", `[{"op":"replace","path":"/temp","value":"hot"}]`, "", twin.KindValidationFailed, "temp"},
		{"wrong type in component", `[{"op":"add","path":"/therm/setPoint","value":true}]`, "", twin.KindValidationFailed, "setPoint"},
		{"unknown field", `[{"op":"add","path":"/address","value":{"street":"x"}}]`, "", twin.KindValidationFailed, "street"},
		{"remove component", `[{"op":"remove","path":"/therm"}]`, "", twin.KindValidationFailed, "therm"},
		{"migrate without new component", `[{"op":"replace","path":"/$metadata/$model","value":"dtmi:ex:Room;2"}]`, "", twin.KindValidationFailed, "light"},
		{"migrate to unknown", `[{"op":"replace","path":"/$metadata/$model","value":"dtmi:ex:Nope;1"}]`, "", twin.KindValidationFailed, "dtmi:ex:Nope;1 or one of its dependencies does not exist."},
		{"migrate to unrelated", `[{"op":"replace","path":"/$metadata/$model","value":"dtmi:ex:Device;1"}]`, "", twin.KindValidationFailed, ""},
		{"dtId", `[{"op":"replace","path":"/$dtId","value":"x"}]`, "", twin.KindJSONPatchInvalid, ""},
		{"not an array", `{"op":"add"}`, "", twin.KindJSONPatchInvalid, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.g.PatchTwin(ctx, "r1", []byte(tt.patch), tt.ifMatch, trace)
			wantErr(t, err, tt.kind, tt.msg)
			cur, _ := e.g.Twin(ctx, "r1")
			if cur.ETag != tw.ETag {
				t.Fatal("a failed patch changed the twin")
			}
		})
	}
	e.noEvents()
	_, err := e.g.PatchTwin(ctx, "nope", []byte(`[]`), "", trace)
	wantErr(t, err, twin.KindTwinNotFound, "")
}

func TestPatchTwinMigrate(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	e.putRoom("r1")
	patch := `[{"op":"replace","path":"/$metadata/$model","value":"dtmi:ex:Room;2"},{"op":"add","path":"/light","value":{"on":true}}]`
	if _, err := e.g.PatchTwin(ctx, "r1", []byte(patch), "", trace); err != nil {
		t.Fatal(err)
	}
	e.wantEvent(event.TwinUpdate, "r1", `{"modelId":"dtmi:ex:Room;2","patch":`+patch+`}`)
	tw, _ := e.g.Twin(ctx, "r1")
	if tw.ModelID != "dtmi:ex:Room;2" {
		t.Fatalf("model %q after migration", tw.ModelID)
	}
	c, _, err := e.g.Component(ctx, "r1", "light")
	if err != nil {
		t.Fatal(err)
	}
	sameJSON(t, c, `{"on":true,"$metadata":{"$lastUpdateTime":"`+nowText+`","on":{"lastUpdateTime":"`+nowText+`"}}}`)
}

func TestPatchKeepsSourceTime(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	e.putRoom("r1")
	later := clock.Add(time.Hour)
	e.g.cfg.Now = func() time.Time { return later }
	if _, err := e.g.PatchTwin(ctx, "r1", []byte(`[{"op":"replace","path":"/temp","value":30}]`), "", trace); err != nil {
		t.Fatal(err)
	}
	tw, _ := e.g.Twin(ctx, "r1")
	var doc struct {
		Meta map[string]json.RawMessage `json:"$metadata"`
	}
	if err := json.Unmarshal(tw.Doc, &doc); err != nil {
		t.Fatal(err)
	}
	sameJSON(t, doc.Meta["temp"], `{"lastUpdateTime":"2024-05-01T11:00:00.1234567Z","sourceTime":"2024-04-30T23:59:59.123456789Z"}`)
	sameJSON(t, doc.Meta["name"], `{"lastUpdateTime":"`+nowText+`"}`)
	sameJSON(t, doc.Meta["$lastUpdateTime"], `"2024-05-01T11:00:00.1234567Z"`)
}

func TestDeleteTwin(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	tw := e.putRoom("r1")
	e.putTwin("d1", `{"$metadata":{"$model":"dtmi:ex:Device;1"}}`)
	wantErr(t, e.g.DeleteTwin(ctx, "r1", "bad", trace), twin.KindInvalidArgument, "")
	wantErr(t, e.g.DeleteTwin(ctx, "r1", `W/"stale"`, trace), twin.KindPreconditionFailed, "")
	wantErr(t, e.g.DeleteTwin(ctx, "nope", "", trace), twin.KindTwinNotFound, "")

	if _, err := e.g.PutRelationship(ctx, "r1", "c1", []byte(`{"$targetId":"d1","$relationshipName":"contains"}`), "", trace); err != nil {
		t.Fatal(err)
	}
	e.events()
	for _, id := range []string{"r1", "d1"} {
		wantErr(t, e.g.DeleteTwin(ctx, id, "", trace), twin.KindRelationshipsNotDeleted,
			"Twin "+id+" has active relationships. Cannot delete a twin unless all the relationships are deleted. Please ensure that the active relationships on the twin are deleted. See section on retrieving relationships https://aka.ms/adtv2twins.")
	}
	if err := e.g.DeleteRelationship(ctx, "r1", "c1", "", trace); err != nil {
		t.Fatal(err)
	}
	e.events()
	if err := e.g.DeleteTwin(ctx, "r1", tw.ETag, trace); err != nil {
		t.Fatal(err)
	}
	e.wantEvent(event.TwinDelete, "r1", roomDoc("r1", tw.ETag))
	_, err := e.g.Twin(ctx, "r1")
	wantErr(t, err, twin.KindTwinNotFound, "")
}

func TestComponent(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	tw := e.putRoom("r1")
	doc, etag, err := e.g.Component(ctx, "r1", "therm")
	if err != nil || etag != tw.ETag {
		t.Fatalf("Component = %s %q %v", doc, etag, err)
	}
	sameJSON(t, doc, `{"setPoint":20,"$metadata":{"$lastUpdateTime":"`+nowText+`","setPoint":{"lastUpdateTime":"`+nowText+`"}}}`)
	if _, err := e.g.PatchTwin(ctx, "r1", []byte(`[{"op":"add","path":"/tags","value":{"k":"v"}},{"op":"add","path":"/address","value":{}}]`), "", trace); err != nil {
		t.Fatal(err)
	}
	tw, _ = e.g.Twin(ctx, "r1")
	e.events()
	for _, name := range []string{"nope", "temp", "address", "tags", "$metadata"} {
		_, _, err = e.g.Component(ctx, "r1", name)
		wantErr(t, err, twin.KindComponentNotFound, name)
	}
	_, _, err = e.g.Component(ctx, "nope", "therm")
	wantErr(t, err, twin.KindTwinNotFound, "")

	patch := `[{"op":"replace","path":"/setPoint","value":18},{"op":"add","path":"/mode","value":"eco"},{"op":"add","path":"/$metadata/mode/sourceTime","value":"2024-01-01T00:00:00Z"}]`
	newTag, err := e.g.PatchComponent(ctx, "r1", "therm", []byte(patch), tw.ETag, trace)
	if err != nil {
		t.Fatal(err)
	}
	e.wantEvent(event.TwinUpdate, "r1", `{"modelId":"dtmi:ex:Room;1","patch":[{"op":"replace","path":"/therm/setPoint","value":18},{"op":"add","path":"/therm/mode","value":"eco"},{"op":"add","path":"/therm/$metadata/mode/sourceTime","value":"2024-01-01T00:00:00Z"}]}`)
	doc, etag, err = e.g.Component(ctx, "r1", "therm")
	if err != nil || etag != newTag {
		t.Fatalf("Component = %s %q %v", doc, etag, err)
	}
	sameJSON(t, doc, `{"setPoint":18,"mode":"eco","$metadata":{"$lastUpdateTime":"`+nowText+`","setPoint":{"lastUpdateTime":"`+nowText+`"},"mode":{"lastUpdateTime":"`+nowText+`","sourceTime":"2024-01-01T00:00:00Z"}}}`)

	_, err = e.g.PatchComponent(ctx, "r1", "nope", []byte(`[{"op":"add","path":"/x","value":1}]`), "", trace)
	wantErr(t, err, twin.KindComponentNotFound, "")
	_, err = e.g.PatchComponent(ctx, "r1", "therm", []byte(`[{"op":"add","path":"/setPoint","value":"x"}]`), "", trace)
	wantErr(t, err, twin.KindValidationFailed, "setPoint")
	_, err = e.g.PatchComponent(ctx, "r1", "therm", []byte(`[{"op":"remove","path":"/nope"}]`), "", trace)
	wantErr(t, err, twin.KindJSONPatchInvalid, "'nope'")
	_, err = e.g.PatchComponent(ctx, "r1", "therm", []byte(`[{"op":"add","path":"/mode","value":"x"}]`), `W/"stale"`, trace)
	wantErr(t, err, twin.KindPreconditionFailed, "")
	e.noEvents()
}

// TestBadIDs checks that no twin or relationship is created under an id twin.CheckID refuses,
// whichever way it comes in.
func TestBadIDs(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	if _, err := e.g.PutTwin(ctx, "r1", []byte(roomBody), "", trace); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"..", "a/./b", "a\x01b", "\xff", strings.Repeat("x", twin.MaxIDBytes+1)} {
		_, err := e.g.PutTwin(ctx, id, []byte(roomBody), "", trace)
		wantErr(t, err, twin.KindInvalidArgument, "The twin id ")
		_, err = e.g.PutRelationship(ctx, "r1", id, []byte(`{"$targetId":"r1","$relationshipName":"near"}`), "", trace)
		wantErr(t, err, twin.KindInvalidArgument, "The relationship id ")
	}
}
