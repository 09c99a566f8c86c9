package graph

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// TestCompactRel checks that a relationship keeps a compact document when it has
// twinflow's shape, and its whole document otherwise, and that either way Doc gives back the
// document byte for byte and LookupRel finds what it holds.
func TestCompactRel(t *testing.T) {
	encoded := func(src, id, name, dst string, props map[string]any) []byte {
		b, err := twin.EncodeRelationship(src, id, name, dst, `W/"e1"`, props)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	tests := []struct {
		name             string
		src, id, rel, to string
		doc              []byte
		compact          bool
	}{
		{"no properties", "a", "r1", "next", "b", encoded("a", "r1", "next", "b", nil), true},
		{"properties", "a", "r2", "next", "b", encoded("a", "r2", "next", "b", map[string]any{"n": 1, "s": "x", "o": map[string]any{"k": []int{1}}}), true},
		{"escaped id", "a", `r"3`, "next", "b", encoded("a", `r"3`, "next", "b", nil), false},
		{"non-ASCII target", "a", "r4", "next", "bé", encoded("a", "r4", "next", "bé", nil), false},
		{"other order", "a", "r5", "next", "b", []byte(`{"$etag":"W/\"e1\"","$relationshipId":"r5","$sourceId":"a","$relationshipName":"next","$targetId":"b"}`), false},
		{"other source", "a", "r6", "next", "b", encoded("z", "r6", "next", "b", nil), false},
		{"spaces", "a", "r7", "next", "b", []byte(`{"$relationshipId": "r7","$etag":"W/\"e1\"","$sourceId":"a","$relationshipName":"next","$targetId":"b"}`), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			doc, etagLen := compactRel(store.Relationship{SourceID: tt.src, ID: tt.id, Name: tt.rel, TargetID: tt.to, Doc: tt.doc})
			if (etagLen > 0) != tt.compact {
				t.Fatalf("compact = %v (%s), want %v", etagLen > 0, doc, tt.compact)
			}
			r := &Rel{id: tt.id, name: tt.rel, src: &Twin{id: tt.src}, dst: &Twin{id: tt.to}, doc: doc, etagLen: etagLen}
			if got := r.Doc(); !bytes.Equal(got, tt.doc) {
				t.Errorf("Doc() = %s, want %s", got, tt.doc)
			}
			var full map[string]any
			if err := json.Unmarshal(tt.doc, &full); err != nil {
				t.Fatal(err)
			}
			var rd Reader
			for key, want := range full {
				got, ok := rd.LookupRel(r, []string{key})
				if raw, isRaw := got.(json.RawMessage); isRaw {
					if err := json.Unmarshal(raw, &got); err != nil {
						t.Fatal(err)
					}
				}
				if n, isNum := want.(float64); isNum {
					want = n
				}
				if !ok || !reflect.DeepEqual(got, want) {
					t.Errorf("LookupRel(%s) = %v, %v; want %v", key, got, ok, want)
				}
				if _, ok := rd.LookupRel(r, []string{key, "deeper"}); ok {
					t.Errorf("LookupRel(%s.deeper) found something", key)
				}
			}
			if _, ok := rd.LookupRel(r, []string{"missing"}); ok {
				t.Error("LookupRel(missing) found something")
			}
		})
	}
}
