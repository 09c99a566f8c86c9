package twins

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// modelChunk is the most models a bulk job writes or deletes in one transaction.
const modelChunk = 250

// ModelError is one reason an import's models were refused: the index of the model in the
// section that caused it, or -1 when it concerns the section as a whole.
type ModelError struct {
	Item int
	Err  *twin.Error
}

// ImportModels adds the models of an import's Models section, items in file order, all or
// none, as AddModels does, with two differences: a model stored already with an equal
// definition is skipped, so that an import can be run again, and at most
// Limits.ModelsPerImport models are taken. When any model is refused, nothing is written and
// the reasons come back, each naming the model it concerns; an error is a failure of tx.
//
// The models are written through tx in transactions of at most 250, in an order in which
// every model comes after the models it refers to (models that refer to each other go
// together), so that what committed always resolves on its own: should the process stop in
// between, the service still starts, and an import run again skips what was written. The
// service's models change only once all are written, or, when a transaction fails, to those
// that were.
func (s *Service) ImportModels(ctx context.Context, items []json.RawMessage, tx Tx) (added int, refused []ModelError, err error) {
	if n := len(items); n > s.cfg.Limits.ModelsPerImport {
		return 0, []ModelError{{Item: -1, Err: twin.LimitExceeded(fmt.Sprintf(
			"An import can add at most %d models; this one has %d.", s.cfg.Limits.ModelsPerImport, n))}}, nil
	}
	s.modelMu.Lock()
	defer s.modelMu.Unlock()
	ms := s.models.Load()

	var stored map[string]store.Model
	err = s.st.View(ctx, func(r store.Reader) error {
		all, err := r.Models("", 0)
		stored = make(map[string]store.Model, len(all))
		for _, m := range all {
			stored[m.ID] = m
		}
		return err
	})
	if err != nil {
		return 0, nil, fmt.Errorf("read stored models: %w", err)
	}

	var (
		ids  []string
		docs [][]byte
		line = map[string]int{} // model id to item index
	)
	for i, item := range items {
		id, err := s.checkImportModel(item)
		if err == nil {
			if _, dup := line[id]; dup {
				err = twin.InvalidArgument(fmt.Sprintf("The model %s appears more than once in the import.", id))
			}
		}
		if err != nil {
			refused = append(refused, ModelError{Item: i, Err: err})
			continue
		}
		line[id] = i
		if old, ok := stored[id]; ok {
			if !equalDefinitions(old.Definition, item) {
				refused = append(refused, ModelError{Item: i, Err: twin.ModelAlreadyExists(id)})
			}
			continue
		}
		ids, docs = append(ids, id), append(docs, item)
	}
	if len(refused) > 0 {
		return 0, refused, nil
	}
	if len(ids) == 0 {
		return 0, nil, nil
	}
	set, err := dtdl.Parse(docs, ms.set, dtdl.Options{})
	if err != nil {
		return 0, modelParseErrors(err, line), nil
	}

	now := s.cfg.Now().UTC()
	var written []string
	for _, chunk := range modelChunks(set, ids) {
		err := tx(ctx, func(w store.Writer) error {
			for _, id := range chunk {
				if err := w.PutModel(store.Model{ID: id, Definition: items[line[id]], UploadTime: now}); err != nil {
					return fmt.Errorf("put model %q: %w", id, err)
				}
			}
			return nil
		})
		if err != nil {
			s.keepModels(ms, set, ids, written, now)
			return len(written), nil, err
		}
		written = append(written, chunk...)
	}
	s.models.Store(ms.adding(set, ids, now))
	return len(written), nil, nil
}

// keepModels makes the service's models those of ms and, of set's new models ids, those
// written (uploaded at at), after an import stopped halfway. The caller holds modelMu.
func (s *Service) keepModels(ms *modelState, set *dtdl.ModelSet, ids, written []string, at time.Time) {
	if len(written) == 0 {
		return
	}
	var unwritten []string
	for _, id := range ids {
		if !slices.Contains(written, id) {
			unwritten = append(unwritten, id)
		}
	}
	partial, err := set.Without(unwritten...)
	if err != nil {
		// Cannot happen: what was written is closed under references (see modelChunks).
		s.logger.Error("models written by an interrupted import do not resolve; restart to reload them", "err", err)
		return
	}
	s.models.Store(ms.adding(partial, written, at))
}

// checkImportModel checks one model of an import's Models section on its own and returns
// its id.
func (s *Service) checkImportModel(item json.RawMessage) (string, *twin.Error) {
	if len(item) > s.cfg.Limits.ModelBytes {
		return "", twin.LimitExceeded(fmt.Sprintf("The model is %d bytes; the limit is %d bytes.", len(item), s.cfg.Limits.ModelBytes))
	}
	var h struct {
		ID      string          `json:"@id"`
		Context json.RawMessage `json:"@context"`
	}
	if err := json.Unmarshal(item, &h); err != nil || h.ID == "" {
		return "", twin.InvalidArgument("The model is not a JSON object with a string @id.")
	}
	if err := checkContext(h.Context); err != nil {
		var te *twin.Error
		if errors.As(err, &te) {
			return "", te
		}
	}
	return h.ID, nil
}

// equalDefinitions reports whether a and b encode the same JSON value.
func equalDefinitions(a, b []byte) bool {
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	ea, errA := json.Marshal(va)
	eb, errB := json.Marshal(vb)
	return errA == nil && errB == nil && bytes.Equal(ea, eb)
}

// modelParseErrors turns the error of parsing an import's models into one DTDLParserError
// per model with problems, naming them, and one for the section with the problems no model
// owns and the unresolved references. line gives each model's item index.
func modelParseErrors(err error, line map[string]int) []ModelError {
	var de *dtdl.Error
	if !errors.As(err, &de) {
		return []ModelError{{Item: -1, Err: twin.DTDLParserError("The models are not valid DTDL: " + err.Error())}}
	}
	byItem := map[int][]string{}
	for _, p := range de.Problems {
		item := -1
		owner := p.Element
		if i := strings.Index(owner, "/"); i >= 0 {
			owner = owner[:i]
		}
		if i, ok := line[owner]; ok {
			item = i
		}
		msg := p.Element
		if p.Property != "" {
			msg += " (" + p.Property + ")"
		}
		byItem[item] = append(byItem[item], msg+": "+strings.TrimSuffix(p.Message, ".")+".")
	}
	if len(de.Unresolved) > 0 {
		byItem[-1] = append(byItem[-1], "Unresolved references: "+strings.Join(de.Unresolved, ", ")+
			". Add the models they name to the import, or upload them first.")
	}
	var out []ModelError
	for _, item := range slices.Sorted(maps.Keys(byItem)) {
		out = append(out, ModelError{Item: item, Err: twin.DTDLParserError("The model is not valid DTDL. " + strings.Join(byItem[item], " "))})
	}
	return out
}

// modelChunks orders ids, models of set, so that each comes after the models it refers to
// among ids, and cuts them into chunks of about modelChunk. Models that refer to each other,
// directly or not, have the same references counting themselves: they stay in one chunk.
// Every prefix of the chunks is therefore closed under references.
func modelChunks(set *dtdl.ModelSet, ids []string) [][]string {
	in := make(map[string]bool, len(ids))
	for _, id := range ids {
		in[id] = true
	}
	type node struct {
		id  string
		key string // the references within ids, with the model itself, sorted and joined
		n   int
	}
	nodes := make([]node, len(ids))
	for i, id := range ids {
		refs := []string{id}
		for _, d := range set.Dependencies(id) {
			if in[d] {
				refs = append(refs, d)
			}
		}
		slices.Sort(refs)
		nodes[i] = node{id: id, key: strings.Join(refs, "\x00"), n: len(refs)}
	}
	// A model's references, with itself, strictly contain those of every model it refers to
	// outside its cycle, so ordering by their number puts dependencies first; ordering by key
	// next keeps each cycle together.
	slices.SortFunc(nodes, func(a, b node) int {
		if a.n != b.n {
			return a.n - b.n
		}
		if c := strings.Compare(a.key, b.key); c != 0 {
			return c
		}
		return strings.Compare(a.id, b.id)
	})
	var chunks [][]string
	var cur []string
	for i, nd := range nodes {
		cur = append(cur, nd.id)
		endOfGroup := i+1 == len(nodes) || nodes[i+1].key != nd.key
		if endOfGroup && len(cur) >= modelChunk {
			chunks, cur = append(chunks, cur), nil
		}
	}
	if len(cur) > 0 {
		chunks = append(chunks, cur)
	}
	return chunks
}

// DeleteAllModels deletes every stored model through tx, in transactions of at most 250,
// models that refer to others before those (so what remains always resolves), and returns
// how many it deleted. The service's models follow each transaction. Twins of the models
// are left alone, as DeleteModel leaves them.
func (s *Service) DeleteAllModels(ctx context.Context, tx Tx) (int, error) {
	s.modelMu.Lock()
	defer s.modelMu.Unlock()
	var ids []string
	err := s.st.View(ctx, func(r store.Reader) error {
		all, err := r.Models("", 0)
		for _, m := range all {
			ids = append(ids, m.ID)
		}
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("read stored models: %w", err)
	}
	ms := s.models.Load()
	chunks := modelChunks(ms.set, ids)
	slices.Reverse(chunks)
	deleted := 0
	for _, chunk := range chunks {
		err := tx(ctx, func(w store.Writer) error {
			for _, id := range chunk {
				if err := w.DeleteModel(id); err != nil && !errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("delete model %q: %w", id, err)
				}
			}
			return nil
		})
		if err != nil {
			return deleted, err
		}
		deleted += len(chunk)
		cur := s.models.Load()
		set, err := cur.set.Without(chunk...)
		if err != nil {
			// Cannot happen (see modelChunks); the set is rebuilt from the store at the next
			// start.
			s.logger.Error("models left by a delete job do not resolve", "err", err)
			continue
		}
		s.models.Store(cur.removing(set, chunk))
	}
	return deleted, nil
}

// DeleteCounts counts what a delete job deleted.
type DeleteCounts struct {
	Twins, Relationships int
}

// DeleteGraphChunk deletes, in w, up to budget twins and relationships: twins in id order,
// each after every relationship from and to it, emitting a Relationship.Delete and a
// Twin.Delete event with each deleted document, as DeleteRelationship and DeleteTwin do. It
// returns what it deleted and whether twins remain. A twin with more relationships than the
// budget loses them over several calls.
func (s *Service) DeleteGraphChunk(w store.Writer, budget int, tr Trace) (DeleteCounts, bool, error) {
	var n DeleteCounts
	if budget < 1 {
		budget = 1
	}
	twins, err := w.Twins("", budget)
	if err != nil {
		return n, false, fmt.Errorf("list twins: %w", err)
	}
	now := twin.FormatTime(s.cfg.Now())
	left := func() int { return budget - n.Twins - n.Relationships }
	for _, t := range twins {
		out, err := w.Relationships(t.ID, "", "", left())
		if err != nil {
			return n, false, fmt.Errorf("list relationships of twin %q: %w", t.ID, err)
		}
		var in []store.Relationship
		if rest := left() - len(out); rest > 0 {
			if in, err = w.IncomingRelationships(t.ID, "", rest); err != nil {
				return n, false, fmt.Errorf("list relationships to twin %q: %w", t.ID, err)
			}
		}
		for _, r := range append(out, in...) {
			if err := w.DeleteRelationship(r.SourceID, r.ID); err != nil {
				return n, false, fmt.Errorf("delete relationship %q of twin %q: %w", r.ID, r.SourceID, err)
			}
			subject := event.RelationshipSubject(r.SourceID, r.ID)
			if err := w.Emit(s.newEvent(event.RelationshipDelete, subject, now, tr, r.Doc)); err != nil {
				return n, false, err
			}
			n.Relationships++
		}
		if left() < 1 {
			return n, true, nil
		}
		if has, err := w.HasRelationships(t.ID); err != nil || has {
			// More relationships than the budget allowed listing: the next call goes on.
			return n, true, err
		}
		s.cache.remove(t.ID)
		if err := w.DeleteTwin(t.ID); err != nil {
			return n, false, fmt.Errorf("delete twin %q: %w", t.ID, err)
		}
		if err := w.Emit(s.newEvent(event.TwinDelete, t.ID, now, tr, t.Doc)); err != nil {
			return n, false, err
		}
		n.Twins++
		if left() < 1 {
			return n, true, nil
		}
	}
	return n, len(twins) == budget, nil
}
