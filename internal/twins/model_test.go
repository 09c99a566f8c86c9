package twins

import (
	"context"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twin"
)

func iface(id, extra string) string {
	return `{"@context":"dtmi:dtdl:context;3","@id":"` + id + `","@type":"Interface"` + extra + `}`
}

func TestAddModels(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Limits{ModelsPerCall: 3})
	got, err := e.g.AddModels(ctx, []byte(`[`+iface("dtmi:ex:A;1", `,"displayName":"Alpha","contents":[]`)+`,`+
		iface("dtmi:ex:B;1", `,"displayName":{"en":"Beta","de":"Beta-de"},"extends":"dtmi:ex:A;1"`)+`]`))
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].ID != "dtmi:ex:A;1" || got[1].ID != "dtmi:ex:B;1" {
		t.Fatalf("AddModels = %+v", got)
	}
	if !reflect.DeepEqual(got[0].DisplayName, map[string]string{"en": "Alpha"}) || len(got[0].Description) != 0 || got[0].Description == nil {
		t.Errorf("A display name %v description %v", got[0].DisplayName, got[0].Description)
	}
	if !reflect.DeepEqual(got[1].DisplayName, map[string]string{"en": "Beta", "de": "Beta-de"}) {
		t.Errorf("B display name %v", got[1].DisplayName)
	}
	if !got[0].UploadTime.Equal(clock) || got[0].Decommissioned {
		t.Errorf("A upload time %v decommissioned %v", got[0].UploadTime, got[0].Decommissioned)
	}
	if _, ok := e.g.Models().Interface("dtmi:ex:B;1"); !ok {
		t.Error("B is not in the model set")
	}
	m, err := e.g.Model(ctx, "dtmi:ex:B;1")
	if err != nil || m.ID != "dtmi:ex:B;1" || !strings.Contains(string(m.Definition), `"extends":"dtmi:ex:A;1"`) || !m.UploadTime.Equal(clock) {
		t.Fatalf("Model = %+v, %v", m, err)
	}
	e.noEvents()

	tests := []struct {
		name, body string
		kind       twin.Kind
		contains   string
	}{
		{"exists", `[` + iface("dtmi:ex:C;1", "") + `,` + iface("dtmi:ex:A;1", "") + `]`, twin.KindModelAlreadyExists,
			"Could not add model dtmi:ex:A;1 as it already exists. Use Model_List API to view models that already exist. See the Swagger example.(http://aka.ms/ModelListSwSmpl)"},
		{"empty", `[]`, twin.KindInvalidArgument, ""},
		{"not an array", `{"@id":"dtmi:ex:C;1"}`, twin.KindInvalidArgument, ""},
		{"too many", `[` + iface("dtmi:ex:C;1", "") + `,` + iface("dtmi:ex:D;1", "") + `,` + iface("dtmi:ex:E;1", "") + `,` + iface("dtmi:ex:F;1", "") + `]`, twin.KindLimitExceeded, "at most 3 models"},
		{"item not an object", `[1]`, twin.KindInvalidArgument, ""},
		{"duplicate in batch", `[` + iface("dtmi:ex:C;1", "") + `,` + iface("dtmi:ex:C;1", "") + `]`, twin.KindInvalidArgument, "more than once"},
		{"unsupported version", `[{"@context":"dtmi:dtdl:context;4","@id":"dtmi:ex:C;1","@type":"Interface"}]`, twin.KindModelVersionNotSupported, "dtmi:dtdl:context;4"},
		{"unresolved", `[` + iface("dtmi:ex:C;1", `,"extends":"dtmi:ex:Missing;1"`) + `]`, twin.KindDTDLParserError, "dtmi:ex:Missing;1"},
		{"invalid dtdl and a good one", `[` + iface("dtmi:ex:C;1", "") + `,{"@id":"dtmi:ex:D;1","@type":"Interface"}]`, twin.KindDTDLParserError, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := e.g.AddModels(ctx, []byte(tt.body))
			wantErr(t, err, tt.kind, tt.contains)
			if _, err := e.g.Model(ctx, "dtmi:ex:C;1"); err == nil {
				t.Fatal("a model of a failed batch was stored")
			}
			if _, ok := e.g.Models().Interface("dtmi:ex:C;1"); ok {
				t.Fatal("a model of a failed batch is in the model set")
			}
		})
	}
	e2 := newEnv(t, Limits{ModelBytes: 100})
	_, err = e2.g.AddModels(ctx, []byte(`[`+iface("dtmi:ex:C;1", `,"description":"`+strings.Repeat("x", 100)+`"`)+`]`))
	wantErr(t, err, twin.KindLimitExceeded, "the limit is 100 bytes")

	_, err = e.g.Model(ctx, "dtmi:ex:Nope;1")
	wantErr(t, err, twin.KindModelNotFound, "There is no Model(s) available that matches the provided id(s) dtmi:ex:Nope;1. Check that the Model ID provided is valid by doing a Model_List API call.")
}

func ids(page []ModelData) []string {
	out := []string{}
	for _, m := range page {
		out = append(out, m.ID)
	}
	return out
}

func TestListModels(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	var all []string
	after := ""
	for {
		page, next, err := e.g.ListModels(ctx, nil, after, 3)
		if err != nil {
			t.Fatal(err)
		}
		if len(page) > 3 {
			t.Fatalf("page of %d", len(page))
		}
		all = append(all, ids(page)...)
		if next == "" {
			break
		}
		after = next
	}
	want := []string{"dtmi:ex:Device;1", "dtmi:ex:Light;1", "dtmi:ex:Room;1", "dtmi:ex:Room;2", "dtmi:ex:Sensor;1", "dtmi:ex:Space;1", "dtmi:ex:Thermostat;1"}
	if !reflect.DeepEqual(all, want) {
		t.Fatalf("paged list = %v; want %v", all, want)
	}
	page, next, err := e.g.ListModels(ctx, nil, "", 0)
	if err != nil || next != "" || !reflect.DeepEqual(ids(page), want) {
		t.Fatalf("unpaged list = %v %q %v", ids(page), next, err)
	}

	page, next, err = e.g.ListModels(ctx, []string{"dtmi:ex:Room;1"}, "", 0)
	wantDeps := []string{"dtmi:ex:Device;1", "dtmi:ex:Room;1", "dtmi:ex:Space;1", "dtmi:ex:Thermostat;1"}
	if err != nil || next != "" || !reflect.DeepEqual(ids(page), wantDeps) {
		t.Fatalf("dependenciesFor Room;1 = %v %q %v; want %v", ids(page), next, err, wantDeps)
	}
	page, next, err = e.g.ListModels(ctx, []string{"dtmi:ex:Room;1"}, "", 2)
	if err != nil || next != "dtmi:ex:Room;1" || !reflect.DeepEqual(ids(page), wantDeps[:2]) {
		t.Fatalf("dependenciesFor page 1 = %v %q %v", ids(page), next, err)
	}
	page, next, err = e.g.ListModels(ctx, []string{"dtmi:ex:Room;1"}, next, 2)
	if err != nil || next != "" || !reflect.DeepEqual(ids(page), wantDeps[2:]) {
		t.Fatalf("dependenciesFor page 2 = %v %q %v", ids(page), next, err)
	}
	page, _, err = e.g.ListModels(ctx, []string{"dtmi:ex:Light;1", "dtmi:ex:Sensor;1"}, "", 0)
	if want := []string{"dtmi:ex:Device;1", "dtmi:ex:Light;1", "dtmi:ex:Sensor;1"}; err != nil || !reflect.DeepEqual(ids(page), want) {
		t.Fatalf("dependenciesFor Light, Sensor = %v %v; want %v", ids(page), err, want)
	}
	_, _, err = e.g.ListModels(ctx, []string{"dtmi:ex:Nope;1"}, "", 0)
	wantErr(t, err, twin.KindModelNotFound, "dtmi:ex:Nope;1")
}

func TestPatchModel(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	const decommission = `[{"op":"replace","path":"/decommissioned","value":true}]`
	for _, bad := range []string{
		`[{"op":"replace","path":"/decommissioned","value":false}]`,
		`[{"op":"add","path":"/decommissioned","value":true}]`,
		`[{"op":"replace","path":"/displayName","value":"x"}]`,
		`[{"op":"replace","path":"/decommissioned","value":"true"}]`,
		decommission[:len(decommission)-1] + `,` + decommission[1:],
		`[{"op":"move","from":"/a","path":"/decommissioned"}]`,
	} {
		wantErr(t, e.g.PatchModel(ctx, "dtmi:ex:Room;1", []byte(bad)), twin.KindJSONPatchInvalid, "")
	}
	wantErr(t, e.g.PatchModel(ctx, "dtmi:ex:Nope;1", []byte(decommission)), twin.KindModelNotFound, "")
	wantErr(t, e.g.PatchModel(ctx, "Room", []byte(decommission)), twin.KindInvalidArgument, "The format of the Model ID Room provided is not supported.")

	// A model is decommissioned only after the models that extend it or hold it as a
	// component: Room;2 extends Room;1, which extends Space;1 and holds a Thermostat;1 (which
	// Room;2 inherits); Sensor;1 extends Device;1.
	for id, refs := range map[string]string{
		"dtmi:ex:Room;1":       "dtmi:ex:Room;2",
		"dtmi:ex:Space;1":      "dtmi:ex:Room;1",
		"dtmi:ex:Device;1":     "dtmi:ex:Sensor;1",
		"dtmi:ex:Thermostat;1": "dtmi:ex:Room;1, dtmi:ex:Room;2",
	} {
		wantErr(t, e.g.PatchModel(ctx, id, []byte(decommission)), twin.KindModelReferencesNotDecommissioned,
			"This model is currently being referenced by models that are not decommissioned: "+refs+". ")
		if m, err := e.g.Model(ctx, id); err != nil || m.Decommissioned {
			t.Fatalf("refused decommission of %s: %+v, %v", id, m, err)
		}
	}

	e.putRoom("r1")
	e.putTwin("r3", `{"$metadata":{"$model":"dtmi:ex:Room;2"},"therm":{},"light":{}}`)
	// Room;1 targets Device;1 with a relationship, which creates no Device twins.
	for _, id := range []string{"dtmi:ex:Sensor;1", "dtmi:ex:Device;1", "dtmi:ex:Room;2", "dtmi:ex:Room;1"} {
		if err := e.g.PatchModel(ctx, id, []byte(decommission)); err != nil {
			t.Fatalf("decommission %s: %v", id, err)
		}
	}
	if err := e.g.PatchModel(ctx, "dtmi:ex:Room;1", []byte(decommission)); err != nil {
		t.Fatalf("decommissioning twice: %v", err)
	}
	m, err := e.g.Model(ctx, "dtmi:ex:Room;1")
	if err != nil || !m.Decommissioned {
		t.Fatalf("Model = %+v, %v; want decommissioned", m, err)
	}
	_, err = e.g.PutTwin(ctx, "r2", []byte(roomBody), "", trace)
	wantErr(t, err, twin.KindModelDecommissioned, "dtmi:ex:Room;1")
	// Existing twins keep working.
	if _, err := e.g.PatchTwin(ctx, "r1", []byte(`[{"op":"replace","path":"/temp","value":1}]`), "", trace); err != nil {
		t.Fatalf("patch a twin of a decommissioned model: %v", err)
	}
	// But cannot migrate to one.
	if err := e.g.PatchModel(ctx, "dtmi:ex:Space;1", []byte(decommission)); err != nil {
		t.Fatal(err)
	}
	_, err = e.g.PatchTwin(ctx, "r3", []byte(`[{"op":"replace","path":"/$metadata/$model","value":"dtmi:ex:Space;1"},{"op":"remove","path":"/therm"},{"op":"remove","path":"/light"}]`), "", trace)
	wantErr(t, err, twin.KindModelDecommissioned, "dtmi:ex:Space;1")
}

func TestDeleteModel(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	wantErr(t, e.g.DeleteModel(ctx, "dtmi:ex:Room;1"), twin.KindModelReferencesNotDeleted, "dtmi:ex:Room;2")
	wantErr(t, e.g.DeleteModel(ctx, "dtmi:ex:Device;1"), twin.KindModelReferencesNotDeleted, "dtmi:ex:Room;1")
	wantErr(t, e.g.DeleteModel(ctx, "dtmi:ex:Nope;1"), twin.KindModelNotFound, "")
	wantErr(t, e.g.DeleteModel(ctx, "ex:Room;1"), twin.KindInvalidArgument, "")

	e.putTwin("r2", `{"$metadata":{"$model":"dtmi:ex:Room;2"},"therm":{},"light":{}}`)
	if err := e.g.DeleteModel(ctx, "dtmi:ex:Room;2"); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.g.Models().Interface("dtmi:ex:Room;2"); ok {
		t.Fatal("deleted model still in the model set")
	}
	_, err := e.g.Model(ctx, "dtmi:ex:Room;2")
	wantErr(t, err, twin.KindModelNotFound, "")
	// The twin of the deleted model can be read and deleted, not patched.
	if _, err := e.g.Twin(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	if _, _, err := e.g.Component(ctx, "r2", "light"); err != nil {
		t.Fatal(err)
	}
	_, err = e.g.PatchTwin(ctx, "r2", []byte(`[{"op":"add","path":"/temp","value":1}]`), "", trace)
	wantErr(t, err, twin.KindValidationFailed, "dtmi:ex:Room;2 or one of its dependencies does not exist.")
	if err := e.g.DeleteTwin(ctx, "r2", "", trace); err != nil {
		t.Fatal(err)
	}
	// Light;1 is now unreferenced.
	if err := e.g.DeleteModel(ctx, "dtmi:ex:Light;1"); err != nil {
		t.Fatal(err)
	}
}

func TestNewLoadsStoredModels(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	open := func() (*sqlite.Store, *Service) {
		st, err := sqlite.Open(sqlite.Config{Dir: dir, NoSync: true}, slog.New(slog.DiscardHandler))
		if err != nil {
			t.Fatal(err)
		}
		g, err := New(Config{ServiceID: serviceID, Now: func() time.Time { return clock }}, st, nil)
		if err != nil {
			t.Fatal(err)
		}
		return st, g
	}
	st, g := open()
	if _, err := g.AddModels(ctx, []byte(models)); err != nil {
		t.Fatal(err)
	}
	if err := g.PatchModel(ctx, "dtmi:ex:Room;2", []byte(`[{"op":"replace","path":"/decommissioned","value":true}]`)); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	st, g = open()
	defer st.Close()
	if _, ok := g.Models().Interface("dtmi:ex:Room;1"); !ok {
		t.Fatal("Room;1 not loaded")
	}
	_, err := g.PutTwin(ctx, "r", []byte(`{"$metadata":{"$model":"dtmi:ex:Room;2"},"therm":{},"light":{}}`), "", trace)
	wantErr(t, err, twin.KindModelDecommissioned, "")
	if _, err := g.PutTwin(ctx, "r", []byte(roomBody), "", trace); err != nil {
		t.Fatal(err)
	}
}

func TestModelLimitsDefaults(t *testing.T) {
	var l Limits
	l.setDefaults()
	want := Limits{RequestBytes: 32768, TwinBytes: 65536, StringBytes: 4096, PropertyNameBytes: 1024, ModelsPerCall: 250,
		ModelBytes: 1 << 20, ModelsPerImport: 10_000, Twins: 2_000_000, OutgoingRelationships: 50000, IncomingRelationships: 50000}
	if l != want {
		t.Fatalf("defaults = %+v", l)
	}
	l = Limits{StringBytes: 7}
	l.setDefaults()
	if l.StringBytes != 7 {
		t.Fatal(fmt.Sprint("a set limit was overwritten: ", l))
	}
}

// TestDecommissionThroughInlineInterface checks that an Interface defined inline in a model
// stands for that model when it refers to the model being decommissioned.
func TestDecommissionThroughInlineInterface(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Limits{})
	_, err := e.g.AddModels(ctx, []byte(`[
 {"@context":"dtmi:dtdl:context;2","@id":"dtmi:ex:B;1","@type":"Interface"},
 {"@context":"dtmi:dtdl:context;2","@id":"dtmi:ex:A;1","@type":"Interface","contents":[
  {"@type":"Component","name":"c","schema":{"@id":"dtmi:ex:A:c;1","@type":"Interface","extends":"dtmi:ex:B;1"}}]}]`))
	if err != nil {
		t.Fatal(err)
	}
	const decommission = `[{"op":"replace","path":"/decommissioned","value":true}]`
	wantErr(t, e.g.PatchModel(ctx, "dtmi:ex:B;1", []byte(decommission)), twin.KindModelReferencesNotDecommissioned, ": dtmi:ex:A;1. ")
	for _, id := range []string{"dtmi:ex:A;1", "dtmi:ex:B;1"} {
		if err := e.g.PatchModel(ctx, id, []byte(decommission)); err != nil {
			t.Fatalf("decommission %s: %v", id, err)
		}
	}
}
