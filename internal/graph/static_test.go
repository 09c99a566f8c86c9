package graph

import (
	"context"
	"encoding/json"
	"iter"
	"testing"

	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/store"
)

// sliceScanner yields fixed twins and relationships.
type sliceScanner struct {
	twins []store.Twin
	rels  []store.Relationship
}

func (s sliceScanner) ScanTwins() iter.Seq2[store.Twin, error] {
	return func(yield func(store.Twin, error) bool) {
		for _, t := range s.twins {
			if !yield(t, nil) {
				return
			}
		}
	}
}

func (s sliceScanner) ScanRelationships() iter.Seq2[store.Relationship, error] {
	return func(yield func(store.Relationship, error) bool) {
		for _, r := range s.rels {
			if !yield(r, nil) {
				return
			}
		}
	}
}

func TestNewStatic(t *testing.T) {
	doc := func(id string, v int) json.RawMessage {
		b, _ := json.Marshal(map[string]any{"$dtId": id, "$metadata": map[string]any{"$model": "dtmi:x:A;1"}, "v": v})
		return b
	}
	sc := sliceScanner{
		twins: []store.Twin{{ID: "a", ModelID: "dtmi:x:A;1", Doc: doc("a", 1)}, {ID: "b", ModelID: "dtmi:x:A;1", Doc: doc("b", 2)}},
		rels: []store.Relationship{{SourceID: "a", ID: "r", Name: "feeds", TargetID: "b",
			Doc: json.RawMessage(`{"$relationshipId":"r","$sourceId":"a","$targetId":"b","$relationshipName":"feeds"}`)}},
	}
	x, err := NewStatic(context.Background(), Config{}, sc, 2, func() *dtdl.ModelSet { return nil }, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.Sync(context.Background()); err != nil {
		t.Errorf("Sync of a static index: %v", err)
	}
	if err := x.Run(context.Background()); err == nil {
		t.Error("Run of a static index returned nil; want an error")
	}
	err = x.Read(context.Background(), func(r *Reader) error {
		if got, rels := r.TwinCount(), r.RelCount(); got != 2 || rels != 1 {
			t.Errorf("twins, relationships = %d, %d; want 2, 1", got, rels)
		}
		if a, ok := r.Twin("a"); !ok || len(a.out) != 1 || a.out[0].dst.id != "b" {
			t.Errorf("twin a = %+v, %v; want it with its relationship to b", a, ok)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
