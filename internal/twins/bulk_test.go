package twins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"testing"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// tx runs fn in one Update of e's store.
func (e *env) tx(ctx context.Context, fn func(store.Writer) error) error {
	return e.st.Update(ctx, fn)
}

// storeView is a TwinView that reads e's store, counting relationships by listing them.
type storeView struct {
	t *testing.T
	e *env
}

func (v storeView) TwinModel(id string) (string, bool) {
	tw, err := v.e.g.Twin(context.Background(), id)
	return tw.ModelID, err == nil
}

func (v storeView) Outgoing(id string) int {
	rels, _, err := v.e.g.Relationships(context.Background(), id, "", "", 0)
	if err != nil {
		return 0
	}
	return len(rels)
}

func (v storeView) OutgoingNamed(id, name string) int {
	rels, _, err := v.e.g.Relationships(context.Background(), id, name, "", 0)
	if err != nil {
		return 0
	}
	return len(rels)
}

func (v storeView) Incoming(id string) int {
	rels, _, err := v.e.g.IncomingRelationships(context.Background(), id, "", 0)
	if err != nil {
		return 0
	}
	return len(rels)
}

func TestImportTwins(t *testing.T) {
	ctx := context.Background()
	e := newRoomEnv(t)
	e.putTwin("d1", `{"$metadata":{"$model":"dtmi:ex:Device;1"},"serial":"old"}`)
	e.putTwin("d2", `{"$metadata":{"$model":"dtmi:ex:Device;1"},"serial":"same"}`)

	lines := []string{
		`{"$dtId":"r1","$metadata":{"$model":"dtmi:ex:Room;1"},"temp":21.5,"therm":{"$metadata":{}}}`,
		`{"$dtId":"d1","$metadata":{"$model":"dtmi:ex:Device;1"},"serial":"new"}`,
		`{"$dtId":"d2","$metadata":{"$model":"dtmi:ex:Device;1"},"serial":"same"}`,
	}
	var ts []ImportTwin
	for _, l := range lines {
		it, err := e.g.PrepareImportTwin([]byte(l), nowText, trace)
		if err != nil {
			t.Fatalf("PrepareImportTwin(%s): %v", l, err)
		}
		ts = append(ts, it)
	}
	var n int
	err := e.tx(ctx, func(w store.Writer) error {
		var err error
		n, err = e.g.WriteImportTwins(w, ts)
		return err
	})
	if err != nil || n != 3 {
		t.Fatalf("WriteImportTwins = %d, %v", n, err)
	}
	evs := e.events()
	if len(evs) != 2 || evs[0].Type != event.TwinCreate || evs[0].Subject != "r1" ||
		evs[1].Type != event.TwinUpdate || evs[1].Subject != "d1" {
		t.Fatalf("events %+v: want r1 created and d1 updated, d2 unchanged", evs)
	}
	sameJSON(t, evs[1].Data, `{"modelId":"dtmi:ex:Device;1","patch":[{"op":"replace","path":"/serial","value":"new"}]}`)
	if tw, err := e.g.Twin(ctx, "d1"); err != nil || !json.Valid(tw.Doc) || tw.ETag != ts[1].nt.twin.ETag {
		t.Fatalf("d1 = %+v, %v", tw, err)
	}

	for _, tc := range []struct {
		line string
		kind twin.Kind
		msg  string
	}{
		{`[1]`, twin.KindInvalidArgument, "must be a JSON object"},
		{`{"$metadata":{"$model":"dtmi:ex:Device;1"}}`, twin.KindInvalidArgument, "$dtId"},
		{`{"$dtId":"x","$metadata":{"$model":"dtmi:ex:Nope;1"}}`, twin.KindValidationFailed, "dtmi:ex:Nope;1 or one of its dependencies does not exist."},
		{`{"$dtId":"x","$metadata":{"$model":"dtmi:ex:Device;1"},"serial":5}`, twin.KindValidationFailed, "serial"},
		{`{"$dtId":"x","$metadata":{}}`, twin.KindValidationFailed, "$metadata.$model"},
		{`{"$dtId":"a\u0000b","$metadata":{"$model":"dtmi:ex:Device;1"}}`, twin.KindInvalidArgument, "control character"},
		{`{"$dtId":"..","$metadata":{"$model":"dtmi:ex:Device;1"}}`, twin.KindInvalidArgument, `"." or ".." path segment`},
	} {
		_, err := e.g.PrepareImportTwin([]byte(tc.line), nowText, trace)
		wantErr(t, err, tc.kind, tc.msg)
	}
}

func TestImportTwinsLimit(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Limits{Twins: 2})
	if _, err := e.g.AddModels(ctx, []byte(models)); err != nil {
		t.Fatal(err)
	}
	var ts []ImportTwin
	for i := range 3 {
		it, err := e.g.PrepareImportTwin([]byte(fmt.Sprintf(`{"$dtId":"d%d","$metadata":{"$model":"dtmi:ex:Device;1"}}`, i)), nowText, trace)
		if err != nil {
			t.Fatal(err)
		}
		ts = append(ts, it)
	}
	var n int
	var lineErr error
	err := e.tx(ctx, func(w store.Writer) error {
		n, lineErr = e.g.WriteImportTwins(w, ts)
		return nil
	})
	if err != nil || n != 2 {
		t.Fatalf("WriteImportTwins wrote %d, %v", n, err)
	}
	wantErr(t, lineErr, twin.KindTwinLimitReached, "")
	// Replacing a twin at the limit is fine.
	err = e.tx(ctx, func(w store.Writer) error {
		n, lineErr = e.g.WriteImportTwins(w, ts[:1])
		return lineErr
	})
	if err != nil || n != 1 {
		t.Fatalf("replacing at the limit: %d, %v", n, err)
	}
}

func TestImportRelationships(t *testing.T) {
	ctx := context.Background()
	e := newGraphEnv(t)
	if _, err := e.g.PutRelationship(ctx, "r1", "old", []byte(`{"$targetId":"d1","$relationshipName":"contains","since":"1999"}`), "", trace); err != nil {
		t.Fatal(err)
	}
	e.events()
	view := storeView{t, e}
	lines := []string{
		`{"$dtId":"r1","$relationshipId":"c1","$targetId":"s1","$relationshipName":"contains","since":"2020"}`,
		`{"$dtId":"r1","$relationshipId":"old","$targetId":"d1","$relationshipName":"contains","since":"2024"}`,
		`{"$dtId":"r1","$relationshipId":"a1","$targetId":"r2","$relationshipName":"adjacent"}`,
		// maxMultiplicity 1, counting the line before.
		`{"$dtId":"r1","$relationshipId":"a2","$targetId":"r3","$relationshipName":"adjacent"}`,
		`{"$dtId":"r1","$relationshipId":"x","$targetId":"nope","$relationshipName":"near"}`,
		`{"$dtId":"nope","$relationshipId":"x","$targetId":"r1","$relationshipName":"near"}`,
		`{"$dtId":"r1","$relationshipId":"x","$targetId":"r1","$relationshipName":"near"}`,
		`{"$dtId":"r1","$relationshipId":"x","$targetId":"r2","$relationshipName":"contains"}`,
		`{"$dtId":"r1","$relationshipId":"x","$targetId":"d1","$relationshipName":"contains","since":1}`,
		`{"$dtId":"r1","$targetId":"d1","$relationshipName":"contains"}`,
		`{"$dtId":"r1","$relationshipId":"x","$relationshipName":"contains"}`,
		`{"$dtId":"r1","$relationshipId":"x","$targetId":"d1","$relationshipName":"unknown"}`,
		`{"$dtId":"r1","$relationshipId":"a/../b","$targetId":"d1","$relationshipName":"contains"}`,
	}
	raw := make([][]byte, len(lines))
	for i, l := range lines {
		raw[i] = []byte(l)
	}
	rs, errs := e.g.PrepareImportRelationships(raw, view, nowText, trace)
	wantKinds := []twin.Kind{0, 0, 0, twin.KindInvalidRelationship, twin.KindTargetTwinNotFound, twin.KindTwinNotFound,
		twin.KindOperationNotAllowed, twin.KindInvalidRelationship, twin.KindValidationFailed, twin.KindInvalidArgument,
		twin.KindInvalidArgument, twin.KindInvalidRelationship, twin.KindInvalidArgument}
	for i, k := range wantKinds {
		if k == 0 {
			if errs[i] != nil {
				t.Errorf("line %d: %v", i, errs[i])
			}
			continue
		}
		var te *twin.Error
		if !errors.As(errs[i], &te) || te.Kind != k {
			t.Errorf("line %d: error %v, want %v", i, errs[i], k)
		}
	}

	var n int
	err := e.tx(ctx, func(w store.Writer) error {
		var err error
		n, err = e.g.WriteImportRelationships(w, rs[:3])
		return err
	})
	if err != nil || n != 3 {
		t.Fatalf("WriteImportRelationships = %d, %v", n, err)
	}
	evs := e.events()
	var got []string
	for _, ev := range evs {
		got = append(got, ev.Type+" "+ev.Subject)
	}
	want := []string{event.RelationshipCreate + " r1/relationships/c1", event.RelationshipUpdate + " r1/relationships/old",
		event.RelationshipCreate + " r1/relationships/a1"}
	if !slices.Equal(got, want) {
		t.Fatalf("events %v, want %v", got, want)
	}
	sameJSON(t, evs[1].Data, `{"modelId":"dtmi:ex:Room;1","patch":[{"op":"replace","path":"/since","value":"2024"}]}`)

	// A twin deleted after validation: the write refuses the relationship and stops there.
	rs, errs = e.g.PrepareImportRelationships([][]byte{
		[]byte(`{"$dtId":"r2","$relationshipId":"n1","$targetId":"r3","$relationshipName":"near"}`),
		[]byte(`{"$dtId":"r2","$relationshipId":"n2","$targetId":"d1","$relationshipName":"near"}`),
	}, view, nowText, trace)
	if errors.Join(errs...) != nil {
		t.Fatal(errs)
	}
	if err := e.g.DeleteTwin(ctx, "r3", "", trace); err != nil {
		t.Fatal(err)
	}
	e.events()
	var lineErr error
	err = e.tx(ctx, func(w store.Writer) error {
		n, lineErr = e.g.WriteImportRelationships(w, rs)
		return nil
	})
	if err != nil || n != 0 {
		t.Fatalf("WriteImportRelationships = %d, %v", n, err)
	}
	wantErr(t, lineErr, twin.KindTargetTwinNotFound, "r3")
	e.noEvents()
}

func TestImportModels(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, Limits{})
	var items []json.RawMessage
	if err := json.Unmarshal([]byte(models), &items); err != nil {
		t.Fatal(err)
	}
	// Reversed, so that models come before those they refer to.
	slices.Reverse(items)
	var commits int
	tx := func(ctx context.Context, fn func(store.Writer) error) error {
		commits++
		return e.tx(ctx, fn)
	}
	added, refused, err := e.g.ImportModels(ctx, items, tx)
	if err != nil || refused != nil || added != len(items) {
		t.Fatalf("ImportModels = %d, %v, %v", added, refused, err)
	}
	if commits != 1 {
		t.Errorf("%d transactions for %d models", commits, len(items))
	}
	if _, ok := e.g.Models().Interface("dtmi:ex:Room;2"); !ok {
		t.Fatal("Room;2 not in the service's models")
	}

	// The same models again are skipped; a changed one is refused, with nothing written.
	changed := json.RawMessage(`{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Light;1","@type":"Interface","contents":[]}`)
	fresh := json.RawMessage(`{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Fan;1","@type":"Interface","contents":[]}`)
	added, refused, err = e.g.ImportModels(ctx, append(slices.Clone(items), fresh), tx)
	if err != nil || refused != nil || added != 1 {
		t.Fatalf("ImportModels of known models and one new = %d, %v, %v", added, refused, err)
	}
	broken := json.RawMessage(`{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Broken;1","@type":"Interface","contents":[{"@type":"Property","name":"x","schema":"nope"}]}`)
	newer := json.RawMessage(`{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Newer;1","@type":"Interface","extends":"dtmi:ex:Missing;1"}`)
	for _, tc := range []struct {
		name  string
		items []json.RawMessage
		want  []ModelError
	}{
		{"changed", []json.RawMessage{fresh, changed}, []ModelError{{1, twin.ModelAlreadyExists("dtmi:ex:Light;1")}}},
		{"twice", []json.RawMessage{broken, broken}, []ModelError{{1, &twin.Error{Kind: twin.KindInvalidArgument}}}},
		{"not JSON", []json.RawMessage{json.RawMessage(`{"@id":`)}, []ModelError{{0, &twin.Error{Kind: twin.KindInvalidArgument}}}},
		{"invalid", []json.RawMessage{fresh, broken}, []ModelError{{1, &twin.Error{Kind: twin.KindDTDLParserError}}}},
		{"unresolved", []json.RawMessage{newer}, []ModelError{{-1, &twin.Error{Kind: twin.KindDTDLParserError}},
			{0, &twin.Error{Kind: twin.KindDTDLParserError}}}},
	} {
		before := commits
		added, refused, err := e.g.ImportModels(ctx, tc.items, tx)
		if err != nil || added != 0 || commits != before {
			t.Errorf("%s: ImportModels = %d, %v after %d transactions", tc.name, added, err, commits-before)
		}
		if len(refused) != len(tc.want) {
			t.Errorf("%s: refused %+v, want %+v", tc.name, refused, tc.want)
			continue
		}
		for i, w := range tc.want {
			if refused[i].Item != w.Item || refused[i].Err.Kind != w.Err.Kind {
				t.Errorf("%s: refusal %d = %d %v, want %d %v", tc.name, i, refused[i].Item, refused[i].Err, w.Item, w.Err.Kind)
			}
		}
	}
}

func TestModelChunksOrderDependenciesFirst(t *testing.T) {
	// A chain of 600 models, each the target of the previous one's relationship, and two that
	// refer to each other.
	var docs []json.RawMessage
	id := func(i int) string { return fmt.Sprintf("dtmi:ex:M%d;1", i) }
	for i := range 600 {
		m := map[string]any{"@context": "dtmi:dtdl:context;3", "@id": id(i), "@type": "Interface"}
		if i < 599 {
			m["contents"] = []any{map[string]any{"@type": "Relationship", "name": "next", "target": id(i + 1)}}
		}
		b, _ := json.Marshal(m)
		docs = append(docs, b)
	}
	docs = append(docs,
		json.RawMessage(`{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:A;1","@type":"Interface","contents":[{"@type":"Relationship","name":"m","target":"dtmi:ex:M0;1"},{"@type":"Relationship","name":"r","target":"dtmi:ex:B;1"}]}`),
		json.RawMessage(`{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:B;1","@type":"Interface","contents":[{"@type":"Relationship","name":"r","target":"dtmi:ex:A;1"}]}`))
	e := newEnv(t, Limits{})
	added, refused, err := e.g.ImportModels(context.Background(), docs, e.tx)
	if err != nil || refused != nil || added != len(docs) {
		t.Fatalf("ImportModels = %d, %v, %v", added, refused, err)
	}
	set := e.g.Models()
	var ids []string
	for _, d := range docs {
		var h struct {
			ID string `json:"@id"`
		}
		_ = json.Unmarshal(d, &h)
		ids = append(ids, h.ID)
	}
	chunks := modelChunks(set, ids)
	if len(chunks) < 3 {
		t.Fatalf("%d chunks of %d models", len(chunks), len(ids))
	}
	done := map[string]bool{}
	for ci, c := range chunks {
		for _, m := range c {
			done[m] = true
		}
		for _, m := range c {
			for _, d := range set.Dependencies(m) {
				if !done[d] {
					t.Fatalf("chunk %d: %s comes before its dependency %s", ci, m, d)
				}
			}
		}
	}
	// A and B refer to each other, so they share a chunk.
	for _, c := range chunks {
		if slices.Contains(c, "dtmi:ex:A;1") != slices.Contains(c, "dtmi:ex:B;1") {
			t.Fatalf("A and B in different chunks: %v", c)
		}
	}
}

func TestDeleteGraph(t *testing.T) {
	ctx := context.Background()
	e := newGraphEnv(t)
	for _, r := range []struct{ src, id, target, name string }{
		{"r1", "c1", "d1", "contains"}, {"r2", "c1", "d1", "contains"}, {"r1", "n1", "r2", "near"}, {"r3", "n1", "r1", "near"},
	} {
		if _, err := e.g.PutRelationship(ctx, r.src, r.id, []byte(fmt.Sprintf(`{"$targetId":%q,"$relationshipName":%q}`, r.target, r.name)), "", trace); err != nil {
			t.Fatal(err)
		}
	}
	e.events()
	var total DeleteCounts
	for range 20 {
		var n DeleteCounts
		var more bool
		err := e.tx(ctx, func(w store.Writer) error {
			var err error
			n, more, err = e.g.DeleteGraphChunk(w, 2, trace)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if n.Twins+n.Relationships > 2 {
			t.Fatalf("a chunk of budget 2 deleted %+v", n)
		}
		total.Twins += n.Twins
		total.Relationships += n.Relationships
		if !more {
			break
		}
	}
	if total != (DeleteCounts{Twins: 5, Relationships: 4}) {
		t.Fatalf("deleted %+v", total)
	}
	counts := map[string]int{}
	for _, ev := range e.events() {
		counts[ev.Type]++
	}
	if counts[event.TwinDelete] != 5 || counts[event.RelationshipDelete] != 4 || len(counts) != 2 {
		t.Fatalf("events %v", counts)
	}

	deleted, err := e.g.DeleteAllModels(ctx, e.tx)
	if err != nil || deleted != 7 {
		t.Fatalf("DeleteAllModels = %d, %v", deleted, err)
	}
	if n := e.g.Models().Len(); n != 0 {
		t.Fatalf("%d models left in the service", n)
	}
	if models, _, err := e.g.ListModels(ctx, nil, "", 0); err != nil || len(models) != 0 {
		t.Fatalf("ListModels = %v, %v", models, err)
	}
}
