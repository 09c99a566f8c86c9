package graph

import (
	"bytes"
	"context"
	"encoding/json"

	"github.com/klauspost/compress/s2"

	"github.com/twinflow/twinflow/internal/dtdl"
)

// Read calls Sync, then fn with a Reader of the index while holding the index's shared lock:
// writes wait until fn returns, so fn should not block. The Reader is for fn's goroutine only
// and only until fn returns; documents and values it returns belong to the caller.
func (x *Index) Read(ctx context.Context, fn func(*Reader) error) error {
	if err := x.Sync(ctx); err != nil {
		return err
	}
	x.mu.RLock()
	defer x.mu.RUnlock()
	return fn(&Reader{x: x, models: x.models()})
}

// Reader reads a consistent view of the index inside Read.
type Reader struct {
	x      *Index
	models *dtdl.ModelSet
	// doc is the decompressed document of twin docOf, kept for the next lookup.
	doc   []byte
	docOf *Twin
}

// twinDoc returns t's decompressed document in the Reader's buffer, valid until the next
// call for another twin.
func (r *Reader) twinDoc(t *Twin) []byte {
	if r.docOf == t {
		return r.doc
	}
	n, err := s2.DecodedLen(t.zdoc)
	if err != nil {
		return nil // the index compressed it itself; cannot happen
	}
	if cap(r.doc) < n {
		r.doc = make([]byte, n)
	}
	r.doc, err = decompressDoc(r.x.dict, r.doc, t.zdoc)
	if err != nil {
		r.doc, r.docOf = r.doc[:0], nil
		return nil
	}
	r.docOf = t
	return r.doc
}

// Doc returns a copy of twin t's JSON document.
func (r *Reader) Doc(t *Twin) []byte {
	return bytes.Clone(r.twinDoc(t))
}

// Models returns the model set the reader's IS_OF_MODEL checks use.
func (r *Reader) Models() *dtdl.ModelSet { return r.models }

// Twin returns the twin with the given id.
func (r *Reader) Twin(id string) (*Twin, bool) {
	t, ok := r.x.twins[id]
	return t, ok
}

// TwinCount returns the number of twins.
func (r *Reader) TwinCount() int { return len(r.x.twins) }

// TwinSlots returns the number of twin slots; TwinAt(0..TwinSlots()-1) visits every twin.
func (r *Reader) TwinSlots() int { return len(r.x.twinSlots) }

// TwinAt returns the twin in slot i, or nil when the slot is free.
func (r *Reader) TwinAt(i int) *Twin { return r.x.twinSlots[i] }

// ModelIDs returns the DTMIs the index has seen, indexed by model number. The caller must
// not modify it.
func (r *Reader) ModelIDs() []string { return r.x.modelIDs }

// TwinsOfModel returns the sorted slots of the twins whose model is exactly model number n.
// The caller must not modify it.
func (r *Reader) TwinsOfModel(n int) []int32 { return r.x.byModel[n] }

// RelSlots returns the number of relationship slots; RelAt(0..RelSlots()-1) visits every
// relationship.
func (r *Reader) RelSlots() int { return len(r.x.relSlots) }

// RelAt returns the relationship in slot i, or nil when the slot is free.
func (r *Reader) RelAt(i int) *Rel { return r.x.relSlots[i] }

// RelCount returns the number of relationships.
func (r *Reader) RelCount() int { return r.x.rels }

// NumberColumn returns the number column of the top-level property name: the value of that
// member for the twin in slot i at index i, NaN when the member is missing or not a number
// (or i is past the end). ok is false when the property has no column; the caller must then
// read the documents. The caller must not modify the column.
func (r *Reader) NumberColumn(name string) (col []float64, ok bool) {
	n, ok := r.x.names[name]
	if !ok {
		return nil, false
	}
	col, ok = r.x.numbers[n]
	return col, ok
}

// LookupTwin resolves path in t's document: the value and whether it is defined. Values are
// nil, bool, float64, string, or a json.RawMessage for objects and arrays.
func (r *Reader) LookupTwin(t *Twin, path []string) (any, bool) {
	if len(path) == 0 {
		return nil, false
	}
	n, ok := r.x.names[path[0]]
	if !ok {
		return nil, false
	}
	for p := range t.props.all() {
		if p.name == n {
			doc := r.twinDoc(t)
			if int(p.end) > len(doc) {
				return nil, false
			}
			v, ok := descend(doc[p.start:p.end], path[1:])
			if !ok {
				return nil, false
			}
			val, ok := value(v)
			if raw, isRaw := val.(json.RawMessage); isRaw {
				val = json.RawMessage(bytes.Clone(raw)) // v is in the Reader's buffer
			}
			return val, ok
		}
	}
	return nil, false
}

// LookupRel resolves path in rel's document, like LookupTwin.
func (r *Reader) LookupRel(rel *Rel, path []string) (any, bool) {
	if len(path) == 0 {
		return value(rel.Doc())
	}
	v, s, ok := lookupRel(rel, path)
	switch {
	case !ok:
		return nil, false
	case v == nil:
		return s, true
	}
	return value(v)
}

// ID returns the twin's $dtId.
func (t *Twin) ID() string { return t.id }

// Slot returns the twin's slot number.
func (t *Twin) Slot() int { return int(t.slot) }

// Model returns the twin's model number (see Reader.ModelIDs).
func (t *Twin) Model() int { return int(t.model) }

// Out returns the relationships from t. The caller must not modify it.
func (t *Twin) Out() []*Rel { return t.out }

// In returns the relationships to t. The caller must not modify it.
func (t *Twin) In() []*Rel { return t.in }

// ID returns the relationship's $relationshipId.
func (r *Rel) ID() string { return r.id }

// Name returns the relationship's $relationshipName.
func (r *Rel) Name() string { return r.name }

// Slot returns the relationship's slot number.
func (r *Rel) Slot() int { return int(r.slot) }

// Source returns the twin the relationship starts from.
func (r *Rel) Source() *Twin { return r.src }

// Target returns the twin the relationship points to.
func (r *Rel) Target() *Twin { return r.dst }

// Incoming returns the ids of the twins with a relationship named name to twin id, in no
// particular order and once per relationship; none when there is no twin id. It reads the
// index as Read does, so it sees every write acknowledged before the call. It lets mapping
// rules walk the graph (mapping.Graph).
func (x *Index) Incoming(ctx context.Context, id, name string) ([]string, error) {
	return x.related(ctx, id, name, (*Twin).In, (*Rel).Source)
}

// Outgoing returns the ids of the twins that twin id has a relationship named name to, as
// Incoming does for the other direction.
func (x *Index) Outgoing(ctx context.Context, id, name string) ([]string, error) {
	return x.related(ctx, id, name, (*Twin).Out, (*Rel).Target)
}

// related returns the ids of the twins at the other end of twin id's relationships named
// name in one direction: rels lists them, end picks the other twin.
func (x *Index) related(ctx context.Context, id, name string, rels func(*Twin) []*Rel, end func(*Rel) *Twin) ([]string, error) {
	var ids []string
	err := x.Read(ctx, func(r *Reader) error {
		t, ok := r.Twin(id)
		if !ok {
			return nil
		}
		for _, rel := range rels(t) {
			if rel.Name() == name {
				ids = append(ids, end(rel).ID())
			}
		}
		return nil
	})
	return ids, err
}
