package detector

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/anomaly"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twins"
)

// TestSiblingGroups builds a graph of two floors and a zone over a real store and index, and
// checks each twin's sibling group, that groups are forgotten on a relationship's deletion,
// and which peer values a point gets.
func TestSiblingGroups(t *testing.T) {
	ctx := context.Background()
	st, tw, logger := openTwins(t)
	if _, err := tw.AddModels(ctx, []byte(`[{"@id":"dtmi:t:Thing;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
		"contents":[{"@type":"Property","name":"temp","schema":"double"},
			{"@type":"Relationship","name":"contains"},{"@type":"Relationship","name":"feeds"}]}]`)); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"floor-1", "floor-2", "zone", "a", "b", "c", "d", "e"} {
		if _, err := tw.PutTwin(ctx, id, []byte(`{"$metadata":{"$model":"dtmi:t:Thing;1"}}`), "", twins.Trace{}); err != nil {
			t.Fatal(err)
		}
	}
	rel := func(src, id, name, dst string) {
		t.Helper()
		if _, err := tw.PutRelationship(ctx, src, id, []byte(`{"$targetId":"`+dst+`","$relationshipName":"`+name+`"}`), "", twins.Trace{}); err != nil {
			t.Fatal(err)
		}
	}
	// floor-1 contains a, b, c; floor-2 contains d; zone contains c and e; floor-1 feeds d.
	rel("floor-1", "r1", "contains", "a")
	rel("floor-1", "r2", "contains", "b")
	rel("floor-1", "r3", "contains", "c")
	rel("floor-2", "r4", "contains", "d")
	rel("zone", "r5", "contains", "c")
	rel("zone", "r6", "contains", "e")
	rel("floor-1", "r7", "feeds", "d")
	idx, err := graph.New(ctx, graph.Config{}, st, tw.Models, logger)
	if err != nil {
		t.Fatal(err)
	}

	pr := newPeers(true, nil)
	all := map[string]bool{"a": true, "b": true, "c": true, "d": true, "e": true}
	var recs []store.Change
	for id := range all {
		recs = append(recs, store.Change{Record: event.Record{Event: event.Event{Type: event.TwinUpdate, Subject: id}}})
	}
	if err := pr.refresh(ctx, idx, recs, all); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string][]string{
		"a": {"a", "b", "c"},
		"c": {"a", "b", "c", "e"}, // of both floor-1 and the zone
		"d": {"d"},                // alone on floor-2; floor-1 feeds nothing else
		"e": {"c", "e"},
	} {
		if got := pr.siblings[id]; !slices.Equal(got, want) {
			t.Errorf("the group of %s = %q, want %q", id, got, want)
		}
	}

	for id, v := range map[string]float64{"a": 1, "b": 2, "c": 3, "e": 5} {
		pr.scored(series{id, "temp"}, v)
	}
	if got := pr.values(series{"c", "temp"}, all); !slices.Equal(got, []float64{1, 2, 5}) {
		t.Errorf("c's peer values %v, want 1, 2, 5: its siblings', not its own", got)
	}
	if got := pr.values(series{"c", "temp"}, map[string]bool{"a": true, "c": true}); !slices.Equal(got, []float64{1}) {
		t.Errorf("c's peer values among the twins watched %v, want 1", got)
	}
	if got := pr.values(series{"a", "other"}, all); len(got) != 0 {
		t.Errorf("peer values of a property without points %v", got)
	}
	pr.forget("b")
	if got := pr.values(series{"a", "temp"}, all); !slices.Equal(got, []float64{3}) {
		t.Errorf("a's peer values after b's deletion %v, want 3", got)
	}

	// A relationship deleted: the groups are asked again.
	if err := tw.DeleteRelationship(ctx, "floor-1", "r3", "", twins.Trace{}); err != nil {
		t.Fatal(err)
	}
	recs = append(recs, store.Change{Record: event.Record{Event: event.Event{Type: event.RelationshipDelete, Subject: "floor-1/relationships/r3"}}})
	if err := pr.refresh(ctx, idx, recs, all); err != nil {
		t.Fatal(err)
	}
	if got, want := pr.siblings["a"], []string{"a", "b"}; !slices.Equal(got, want) {
		t.Errorf("the group of a after c left it = %q, want %q", got, want)
	}

	off := newPeers(false, nil)
	off.scored(series{"a", "temp"}, 1)
	if err := off.refresh(ctx, idx, recs, all); err != nil || off.values(series{"b", "temp"}, all) != nil || len(off.latest) != 0 {
		t.Errorf("peers off keep or give values")
	}
}

// BenchmarkScorePeers measures scoring a point with the peer values of six siblings, the
// scorer's step with peers on, against BenchmarkModelScore's without.
func BenchmarkScorePeers(b *testing.B) {
	det, err := anomaly.New(anomaly.Config{})
	if err != nil {
		b.Fatal(err)
	}
	pr := newPeers(true, nil)
	group := []string{"t-0", "t-1", "t-2", "t-3", "t-4", "t-5", "t-6"}
	members := map[string]bool{}
	for i, id := range group {
		pr.siblings[id] = group
		members[id] = true
		pr.scored(series{id, "temp"}, 20+float64(i)*0.1)
	}
	k := series{"t-0", "temp"}
	i := 0
	for b.Loop() {
		p := point{Time: time.Unix(int64(i)*60, 0).UTC(), Value: 20 + float64(i%7)*0.1}
		score(det, p, pr.values(k, members)...)
		pr.scored(k, p.Value)
		i++
	}
}
