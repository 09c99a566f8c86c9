package twins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// ModelData describes a stored model as the models API returns it.
type ModelData struct {
	ID string
	// DisplayName and Description are language maps; a plain DTDL string is {"en": "..."}.
	// They are never nil.
	DisplayName, Description map[string]string
	UploadTime               time.Time
	Decommissioned           bool
	// Definition is the model's DTDL as uploaded.
	Definition json.RawMessage
}

// modelData builds ModelData from a stored model.
func modelData(m store.Model) ModelData {
	var h struct {
		DisplayName json.RawMessage `json:"displayName"`
		Description json.RawMessage `json:"description"`
	}
	_ = json.Unmarshal(m.Definition, &h) // stored definitions parsed when they were added
	return ModelData{
		ID:             m.ID,
		DisplayName:    languageMap(h.DisplayName),
		Description:    languageMap(h.Description),
		UploadTime:     m.UploadTime,
		Decommissioned: m.Decommissioned,
		Definition:     m.Definition,
	}
}

// languageMap reads a DTDL localizable string: a plain string (English) or a map of language
// codes to strings.
func languageMap(raw json.RawMessage) map[string]string {
	out := map[string]string{}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if s != "" {
			out["en"] = s
		}
		return out
	}
	var m map[string]any
	if json.Unmarshal(raw, &m) == nil {
		for k, v := range m {
			if s, ok := v.(string); ok {
				out[k] = s
			}
		}
	}
	return out
}

// supportedContexts are the DTDL contexts the parser understands.
var supportedContexts = map[string]bool{"dtmi:dtdl:context;2": true, "dtmi:dtdl:context;3": true}

// checkContext refuses a model whose @context names a DTDL version other than 2 or 3
// (ModelVersionNotSupported). Anything else wrong with @context is left to the parser.
func checkContext(raw json.RawMessage) error {
	var ctxs []any
	var one any
	if err := json.Unmarshal(raw, &one); err != nil {
		return nil
	}
	switch v := one.(type) {
	case []any:
		ctxs = v
	default:
		ctxs = []any{v}
	}
	for _, c := range ctxs {
		s, ok := c.(string)
		if !ok || !strings.HasPrefix(s, "dtmi:dtdl:context;") {
			continue
		}
		if !supportedContexts[s] {
			return twin.ModelVersionNotSupported(fmt.Sprintf(
				"The DTDL context %s is not supported. Supported versions are DTDL v2 (dtmi:dtdl:context;2) and DTDL v3 (dtmi:dtdl:context;3).", s))
		}
	}
	return nil
}

// parserError turns a *dtdl.Error into DTDLParserError listing every problem and every
// unresolved reference.
func parserError(err error) error {
	var de *dtdl.Error
	if !errors.As(err, &de) {
		return fmt.Errorf("parse models: %w", err)
	}
	var b strings.Builder
	b.WriteString("The models are not valid DTDL.")
	for _, p := range de.Problems {
		b.WriteString(" ")
		b.WriteString(p.Element)
		if p.Property != "" {
			b.WriteString(" (" + p.Property + ")")
		}
		b.WriteString(": ")
		b.WriteString(strings.TrimSuffix(p.Message, "."))
		b.WriteString(".")
	}
	if len(de.Unresolved) > 0 {
		b.WriteString(" Unresolved references: " + strings.Join(de.Unresolved, ", ") + ". Upload the models they name first, or in the same call.")
	}
	return twin.DTDLParserError(b.String())
}

// AddModels adds the models of body, a JSON array of DTDL Interfaces (1 to
// Limits.ModelsPerCall items, each at most Limits.ModelBytes), all or none. An id that is
// already stored is ModelAlreadyExists (409); a model of an unsupported DTDL version is
// ModelVersionNotSupported; any DTDL problem is DTDLParserError. References may point into the
// batch or to stored models. It returns the added models in the order given.
func (s *Service) AddModels(ctx context.Context, body []byte) ([]ModelData, error) {
	var items []json.RawMessage
	if err := json.Unmarshal(body, &items); err != nil {
		return nil, twin.InvalidArgument("The request body must be a JSON array of DTDL interfaces.")
	}
	if len(items) == 0 {
		return nil, twin.InvalidArgument("The request body must hold at least one model.")
	}
	if len(items) > s.cfg.Limits.ModelsPerCall {
		return nil, twin.LimitExceeded(fmt.Sprintf("A call can add at most %d models; this one has %d.", s.cfg.Limits.ModelsPerCall, len(items)))
	}
	ids := make([]string, len(items))
	docs := make([][]byte, len(items))
	seen := make(map[string]bool, len(items))
	for i, item := range items {
		if len(item) > s.cfg.Limits.ModelBytes {
			return nil, twin.LimitExceeded(fmt.Sprintf("Model %d of the request is %d bytes; the limit is %d bytes.", i, len(item), s.cfg.Limits.ModelBytes))
		}
		var h struct {
			ID      string          `json:"@id"`
			Context json.RawMessage `json:"@context"`
		}
		if err := json.Unmarshal(item, &h); err != nil {
			return nil, twin.InvalidArgument(fmt.Sprintf("Model %d of the request is not a JSON object with a string @id.", i))
		}
		if err := checkContext(h.Context); err != nil {
			return nil, err
		}
		if h.ID != "" && seen[h.ID] {
			return nil, twin.InvalidArgument(fmt.Sprintf("The model %s appears more than once in the request.", h.ID))
		}
		seen[h.ID] = true
		ids[i], docs[i] = h.ID, item
	}

	s.modelMu.Lock()
	defer s.modelMu.Unlock()
	ms := s.models.Load()
	for _, id := range ids {
		if _, ok := ms.set.Interface(id); ok {
			return nil, twin.ModelAlreadyExists(id)
		}
	}
	set, err := dtdl.Parse(docs, ms.set, dtdl.Options{})
	if err != nil {
		return nil, parserError(err)
	}
	now := s.cfg.Now().UTC()
	out := make([]ModelData, len(items))
	err = s.st.Update(ctx, func(w store.Writer) error {
		for i, id := range ids {
			_, err := w.Model(id)
			if err == nil {
				return twin.ModelAlreadyExists(id)
			}
			if !errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("read model %q: %w", id, err)
			}
			m := store.Model{ID: id, Definition: docs[i], UploadTime: now}
			if err := w.PutModel(m); err != nil {
				return fmt.Errorf("put model %q: %w", id, err)
			}
			out[i] = modelData(m)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.models.Store(ms.adding(set, ids, now))
	return out, nil
}

// readModel reads model id, with ModelNotFound for a missing one.
func readModel(r store.Reader, id string) (store.Model, error) {
	m, err := r.Model(id)
	if errors.Is(err, store.ErrNotFound) {
		return m, twin.ModelNotFound(id)
	}
	if err != nil {
		return m, fmt.Errorf("read model %q: %w", id, err)
	}
	return m, nil
}

// checkModelID refuses a model id that is not a DTMI with InvalidArgument, as ADT does on
// every operation that names a model, before looking the model up.
func checkModelID(id string) error {
	if _, err := dtdl.ParseDTMI(id); err != nil {
		return twin.InvalidModelID(id)
	}
	return nil
}

// Model returns stored model id. An id that is not a DTMI is InvalidArgument; a DTMI no
// model has is ModelNotFound.
func (s *Service) Model(ctx context.Context, id string) (ModelData, error) {
	if err := checkModelID(id); err != nil {
		return ModelData{}, err
	}
	var m store.Model
	err := s.st.View(ctx, func(r store.Reader) error {
		var err error
		m, err = readModel(r, id)
		return err
	})
	if err != nil {
		return ModelData{}, err
	}
	return modelData(m), nil
}

// ListModels lists stored models by id, starting after the id after. With dependenciesFor it
// lists only those models and everything they depend on (extends, component schemas,
// relationship targets, transitively); an id there that is not a DTMI is InvalidArgument, an
// unknown one ModelNotFound. It returns at most
// limit models (all when limit <= 0) and the id to pass as after for the next page, "" at the
// end.
func (s *Service) ListModels(ctx context.Context, dependenciesFor []string, after string, limit int) ([]ModelData, string, error) {
	var stored []store.Model
	err := s.st.View(ctx, func(r store.Reader) error {
		if len(dependenciesFor) == 0 {
			var err error
			stored, err = r.Models(after, probe(limit))
			if err != nil {
				return fmt.Errorf("list models: %w", err)
			}
			return nil
		}
		ids, err := s.withDependencies(dependenciesFor)
		if err != nil {
			return err
		}
		for _, id := range ids {
			if id <= after {
				continue
			}
			if limit > 0 && len(stored) > limit {
				break
			}
			m, err := r.Model(id)
			if errors.Is(err, store.ErrNotFound) {
				continue // an Interface defined inline in another model
			}
			if err != nil {
				return fmt.Errorf("read model %q: %w", id, err)
			}
			stored = append(stored, m)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	stored, last := cut(stored, limit)
	page := make([]ModelData, len(stored))
	for i, m := range stored {
		page[i] = modelData(m)
	}
	if last == nil {
		return page, "", nil
	}
	return page, last.ID, nil
}

// withDependencies returns ids and their dependencies, sorted.
func (s *Service) withDependencies(ids []string) ([]string, error) {
	set := s.Models()
	all := map[string]bool{}
	for _, id := range ids {
		if err := checkModelID(id); err != nil {
			return nil, err
		}
		if _, ok := set.Interface(id); !ok {
			return nil, twin.ModelNotFound(id)
		}
		all[id] = true
		for _, d := range set.Dependencies(id) {
			all[d] = true
		}
	}
	out := make([]string, 0, len(all))
	for id := range all {
		out = append(out, id)
	}
	sort.Strings(out)
	return out, nil
}

// PatchModel applies a model patch. The only patch allowed is
// [{"op":"replace","path":"/decommissioned","value":true}] (anything else, including an
// attempt to recommission, is JsonPatchInvalid). Decommissioning twice is harmless. An id that
// is not a DTMI is InvalidArgument.
//
// A model is not decommissioned while models that are not decommissioned extend it or use it
// as a component schema: ModelReferencesNotDecommissioned (409). New twins of those models
// would be, or hold, instances of the decommissioned model, so a hierarchy is decommissioned
// from the leaves up, as it is deleted. A relationship target creates no instances of the
// target and does not count.
func (s *Service) PatchModel(ctx context.Context, id string, patch []byte) error {
	if err := checkModelID(id); err != nil {
		return err
	}
	p, err := twin.ParsePatch(patch)
	if err != nil {
		return err
	}
	if len(p) != 1 || p[0].Op != twin.OpReplace || p[0].Path != "/decommissioned" || p[0].Value != true {
		return twin.JSONPatchInvalid(`The only supported model patch is [{"op":"replace","path":"/decommissioned","value":true}]; a decommissioned model cannot be recommissioned.`)
	}
	s.modelMu.Lock()
	defer s.modelMu.Unlock()
	err = s.st.Update(ctx, func(w store.Writer) error {
		m, err := readModel(w, id)
		if err != nil || m.Decommissioned {
			return err
		}
		refs, err := liveDependents(w, s.models.Load().set, id)
		if err != nil {
			return err
		}
		if len(refs) > 0 {
			return twin.ModelReferencesNotDecommissioned(refs)
		}
		m.Decommissioned = true
		if err := w.PutModel(m); err != nil {
			return fmt.Errorf("put model %q: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	ms := s.models.Load()
	dec := maps.Clone(ms.decommissioned)
	dec[id] = true
	s.models.Store(&modelState{set: ms.set, decommissioned: dec, uploaded: ms.uploaded})
	return nil
}

// liveDependents returns the stored models, other than id, that extend model id or use it as
// a component schema and are not decommissioned, sorted. An Interface defined inline in
// another model is not stored; it stands for the models that depend on it in turn.
func liveDependents(r store.Reader, set *dtdl.ModelSet, id string) ([]string, error) {
	var out []string
	seen := map[string]bool{id: true}
	for stack := []string{id}; len(stack) > 0; {
		x := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		for _, ref := range dependents(set, x) {
			if seen[ref] {
				continue
			}
			seen[ref] = true
			m, err := r.Model(ref)
			switch {
			case errors.Is(err, store.ErrNotFound):
				stack = append(stack, ref)
			case err != nil:
				return nil, fmt.Errorf("read model %q: %w", ref, err)
			case !m.Decommissioned:
				out = append(out, ref)
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// dependents returns the Interfaces of set that extend id directly or have a component of
// schema id.
func dependents(set *dtdl.ModelSet, id string) []string {
	var out []string
	for _, x := range set.IDs() {
		i, _ := set.Interface(x)
		if slices.Contains(i.Extends, id) || hasComponentOf(i, id) {
			out = append(out, x)
		}
	}
	return out
}

// hasComponentOf reports whether i has a component of schema id.
func hasComponentOf(i *dtdl.Interface, id string) bool {
	for _, c := range i.Components {
		if c.Schema != nil && c.Schema.ID == id {
			return true
		}
	}
	return false
}

// DeleteModel deletes model id. A model other models refer to (extends, component schema,
// relationship target) is not deleted: ModelReferencesNotDeleted (409). As in ADT, twins of
// the model do not stop the delete; they can still be read, listed and deleted, but writes
// that need their model (patches, relationships from them) fail with ValidationFailed until a
// model of that id is added again. An id that is not a DTMI is InvalidArgument.
func (s *Service) DeleteModel(ctx context.Context, id string) error {
	if err := checkModelID(id); err != nil {
		return err
	}
	s.modelMu.Lock()
	defer s.modelMu.Unlock()
	ms := s.models.Load()
	if _, ok := ms.set.Interface(id); !ok {
		return twin.ModelNotFound(id)
	}
	var refs []string
	for _, r := range ms.set.ReferencedBy(id) {
		if r != id {
			refs = append(refs, r)
		}
	}
	if len(refs) > 0 {
		return twin.ModelReferencesNotDeleted(refs)
	}
	set, err := ms.set.Without(id)
	if err != nil {
		return fmt.Errorf("remove model %q from the model set: %w", id, err)
	}
	err = s.st.Update(ctx, func(w store.Writer) error {
		err := w.DeleteModel(id)
		if errors.Is(err, store.ErrNotFound) {
			return twin.ModelNotFound(id)
		}
		if err != nil {
			return fmt.Errorf("delete model %q: %w", id, err)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.models.Store(ms.removing(set, []string{id}))
	return nil
}

// ReloadModels brings the service's models up to date with the stored ones, which another
// node sharing the store may have changed: models stored since (or stored again with
// another upload time) are resolved on top of the current set, models no longer stored
// leave it, and decommissioning follows the store. When nothing but decommissioning changed
// nothing is parsed again, so reloading after the service's own changes costs one read of
// the models; when the changes do not resolve on top of the current set, every stored model
// is resolved afresh. On error the models stay as they were.
//
// It holds the lock every model change of the service holds, and reads the store under it,
// so it never undoes a change this service made: what it reads includes every such change
// that returned.
func (s *Service) ReloadModels(ctx context.Context) error {
	s.modelMu.Lock()
	defer s.modelMu.Unlock()
	var stored []store.Model
	err := s.st.View(ctx, func(r store.Reader) error {
		var err error
		stored, err = r.Models("", 0)
		return err
	})
	if err != nil {
		return fmt.Errorf("reload models: %w", err)
	}
	ms := s.models.Load()
	var (
		gone  []string
		added [][]byte
		dec   = make(map[string]bool)
		ids   = make(map[string]time.Time, len(stored))
	)
	for _, m := range stored {
		ids[m.ID] = m.UploadTime
		if m.Decommissioned {
			dec[m.ID] = true
		}
		at, ok := ms.uploaded[m.ID]
		if ok && at.Equal(m.UploadTime) {
			continue
		}
		if ok {
			gone = append(gone, m.ID) // replaced: out with the old definition first
		}
		added = append(added, m.Definition)
	}
	for id := range ms.uploaded {
		if _, ok := ids[id]; !ok {
			gone = append(gone, id)
		}
	}
	if len(gone) == 0 && len(added) == 0 {
		if !maps.Equal(dec, ms.decommissioned) {
			s.models.Store(&modelState{set: ms.set, decommissioned: dec, uploaded: ms.uploaded})
		}
		return nil
	}
	set, err := ms.set.Without(gone...)
	if err == nil {
		set, err = dtdl.Parse(added, set, dtdl.Options{})
	}
	if err != nil {
		// A model others refer to was replaced, say: resolve everything again.
		fresh, err := parseModels(stored)
		if err != nil {
			return fmt.Errorf("reload models: %w", err)
		}
		s.models.Store(fresh)
		s.logger.Info("models reloaded", "count", len(stored))
		return nil
	}
	s.models.Store(&modelState{set: set, decommissioned: dec, uploaded: ids})
	s.logger.Info("models reloaded", "count", len(stored), "added", len(added), "removed", len(gone))
	return nil
}
