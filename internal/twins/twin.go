package twins

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// readTwin reads twin id, with DigitalTwinNotFound for a missing one.
func readTwin(r store.Reader, id string) (store.Twin, error) {
	t, err := r.Twin(id)
	if errors.Is(err, store.ErrNotFound) {
		return t, twin.TwinNotFound(id)
	}
	if err != nil {
		return t, fmt.Errorf("read twin %q: %w", id, err)
	}
	return t, nil
}

// replaceTwin writes next in w in place of the twin as it was with etag, or fails with
// ErrStale when the twin has another ETag now. A store that replaces conditionally
// (store.TwinReplacer) checks the ETag when it writes, and fails the Update with
// store.ErrConflict, which Service.write takes as ErrStale; otherwise the twin is read
// first.
func replaceTwin(w store.Writer, next store.Twin, etag string) error {
	if rw, ok := w.(store.TwinReplacer); ok {
		return rw.ReplaceTwin(next, etag)
	}
	latest, err := readTwin(w, next.ID)
	if err != nil {
		return err
	}
	if latest.ETag != etag {
		return ErrStale
	}
	if err := w.PutTwin(next); err != nil {
		return fmt.Errorf("put twin %q: %w", next.ID, err)
	}
	return nil
}

// Twin returns twin id as stored: its document at the newest api-version shape.
func (s *Service) Twin(ctx context.Context, id string) (store.Twin, error) {
	var t store.Twin
	err := s.st.View(ctx, func(r store.Reader) error {
		var err error
		t, err = readTwin(r, id)
		return err
	})
	return t, err
}

// iface returns the resolved Interface of modelID, or ADT's ValidationFailed "<dtmi> or one of
// its dependencies does not exist.".
func (ms *modelState) iface(modelID string) (*dtdl.Interface, error) {
	if i, ok := ms.set.Interface(modelID); ok {
		return i, nil
	}
	return nil, twin.ModelUnavailable(modelID)
}

// componentOf reports the components of Interface i.
func componentOf(i *dtdl.Interface) func(string) bool {
	return func(name string) bool {
		_, ok := i.Components[name]
		return ok
	}
}

// checkDocLimits checks every property name and string value of a twin document.
func (s *Service) checkDocLimits(doc map[string]any) error {
	for k, v := range doc {
		if strings.HasPrefix(k, "$") {
			continue
		}
		if err := s.checkValue(k, v); err != nil {
			return err
		}
	}
	return nil
}

// checkValue checks a property name (or path) and its value against the size limits.
func (s *Service) checkValue(name string, v any) error {
	l := s.cfg.Limits
	if len(name) > l.PropertyNameBytes {
		return twin.InvalidTwin(fmt.Sprintf("A property name is %d bytes long; the limit is %d bytes.", len(name), l.PropertyNameBytes))
	}
	return twin.CheckLimits(name, v, l.StringBytes, l.PropertyNameBytes)
}

// newTwinDoc is a twin built from a PUT body or an import line: validated against its model
// and encoded.
type newTwinDoc struct {
	twin   store.Twin
	doc    map[string]any
	isComp func(string) bool
}

// newTwin builds twin id from a decoded body, which it consumes, at time now: id must be an
// id by twin.CheckID (InvalidArgument), the body must name its model in $metadata.$model, the
// model must exist (ValidationFailed) and not be decommissioned (ModelDecommissioned), and
// the twin must validate against it within the size limits. Every way a twin is created
// (PUT, import jobs, ingress mappings) goes through it.
func (s *Service) newTwin(id string, in map[string]any, now string) (newTwinDoc, error) {
	if err := twin.CheckID(twin.KindInvalidArgument, "twin", id); err != nil {
		return newTwinDoc{}, err
	}
	model := twin.ModelOf(in)
	if model == "" {
		return newTwinDoc{}, twin.InvalidTwin("The twin must specify its model in $metadata.$model.")
	}
	ms := s.models.Load()
	iface, err := ms.iface(model)
	if err != nil {
		return newTwinDoc{}, err
	}
	if ms.decommissioned[model] {
		return newTwinDoc{}, twin.ModelDecommissioned(model)
	}
	isComp := componentOf(iface)
	etag := twin.NewETag()
	doc, err := twin.NewDocument(id, etag, in, isComp, now)
	if err != nil {
		return newTwinDoc{}, err
	}
	if err := s.checkDocLimits(doc); err != nil {
		return newTwinDoc{}, err
	}
	if err := iface.ValidateTwin(doc); err != nil {
		return newTwinDoc{}, validationError("Invalid twin specified", err)
	}
	enc, err := twin.Encode(doc)
	if err != nil {
		return newTwinDoc{}, fmt.Errorf("encode twin %q: %w", id, err)
	}
	if len(enc) > s.cfg.Limits.TwinBytes {
		return newTwinDoc{}, tooLarge("twin document", len(enc), s.cfg.Limits.TwinBytes)
	}
	return newTwinDoc{twin: store.Twin{ID: id, ModelID: model, ETag: etag, Doc: enc}, doc: doc, isComp: isComp}, nil
}

// PutTwin creates or replaces twin id from a PUT body (both succeed alike, as in ADT).
// ifNoneMatch is the If-None-Match header: "" or "*" (the twin must not exist yet: 412
// PreconditionFailed otherwise); other values are InvalidArgument.
//
// The body must name its model in $metadata.$model. The model must exist (ValidationFailed)
// and not be decommissioned (ModelDecommissioned, also when replacing), and the twin must
// validate against it, with every declared component present. $dtId and $etag in the body are
// ignored; $metadata.<prop>.sourceTime is kept. Creating a twin beyond Limits.Twins is
// TwinLimitReached.
//
// Creating emits Twin.Create with the new document; replacing emits Twin.Update whose patch
// turns the old document into the new one (twin.Diff: properties, component properties and the
// model; metadata is not diffed).
func (s *Service) PutTwin(ctx context.Context, id string, body []byte, ifNoneMatch string, tr Trace) (store.Twin, error) {
	mustNotExist, err := twin.ParseIfNoneMatch(ifNoneMatch)
	if err != nil {
		return store.Twin{}, err
	}
	if id == "" {
		return store.Twin{}, twin.InvalidArgument("The twin id must not be empty.")
	}
	if len(body) > s.cfg.Limits.RequestBytes {
		return store.Twin{}, tooLarge("twin", len(body), s.cfg.Limits.RequestBytes)
	}
	var in map[string]any
	if err := twin.Decode(body, &in); err != nil || in == nil {
		return store.Twin{}, twin.InvalidArgument("Invalid twin specified: the body must be a JSON object.")
	}
	now := twin.FormatTime(s.cfg.Now())
	nt, err := s.newTwin(id, in, now)
	if err != nil {
		return store.Twin{}, err
	}
	created, doc, isComp, model, enc := nt.twin, nt.doc, nt.isComp, nt.twin.ModelID, nt.twin.Doc

	// prepare builds the write given the twin's current state: old when exists.
	prepare := func(old store.Twin, exists bool) (commitFunc, error) {
		if exists && mustNotExist {
			return nil, twin.PreconditionFailed(fmt.Sprintf(
				"If-None-Match: * header was specified but a twin with the id %s was found. Please specify a different twin id.", id))
		}
		ev := s.newEvent(event.TwinCreate, id, now, tr, enc)
		if exists {
			oldDoc, err := twin.DecodeDocument(old.Doc) // Diff does not read the metadata
			if err != nil {
				return nil, fmt.Errorf("decode twin %q: %w", id, err)
			}
			data, err := updateData(model, twin.Diff(oldDoc, doc, isComp))
			if err != nil {
				return nil, err
			}
			ev = s.newEvent(event.TwinUpdate, id, now, tr, data)
		}
		return func(w store.Writer) error {
			cur, err := w.Twin(id)
			if exists != (err == nil) || (exists && cur.ETag != old.ETag) {
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("read twin %q: %w", id, err)
				}
				return ErrStale
			}
			if !exists {
				n, err := w.CountTwins()
				if err != nil {
					return fmt.Errorf("count twins: %w", err)
				}
				if n >= s.cfg.Limits.Twins {
					return twin.TwinLimitReached(s.cfg.Limits.Twins)
				}
			}
			if err := w.PutTwin(created); err != nil {
				return fmt.Errorf("put twin %q: %w", id, err)
			}
			return w.Emit(ev)
		}, nil
	}

	// First assume the cache is right: a cached twin is replaced, any other one created. The
	// writer's check turns a wrong guess into a retry from the store, as does any failure of
	// the guess (which may come from stale state).
	old, cached := s.cache.get(id)
	err = ErrStale
	if commit, perr := prepare(old, cached); perr == nil {
		err = s.st.Update(ctx, func(w store.Writer) error { return commit(w) })
	}
	if errors.Is(err, ErrStale) {
		err = s.write(ctx, func(r store.Reader) (commitFunc, error) {
			old, err := r.Twin(id)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				return nil, fmt.Errorf("read twin %q: %w", id, err)
			}
			return prepare(old, err == nil)
		})
	}
	if err != nil {
		return store.Twin{}, err
	}
	s.cache.put(created)
	return created, nil
}

// PatchTwin applies a JSON Patch to twin id (see twin.ApplyTwinPatch for the paths) and
// returns the new ETag. ifMatch is the If-Match header (ETags, "*" or ""). A replace of
// /$metadata/$model migrates the twin: every op is then validated against the new model, which
// must not be decommissioned. Each add or replace is validated, then the whole result. Emits
// Twin.Update with the patch as applied. An empty patch changes nothing and returns the current
// ETag.
func (s *Service) PatchTwin(ctx context.Context, id string, patch []byte, ifMatch string, tr Trace) (string, error) {
	cond, p, err := s.parsePatch(patch, ifMatch)
	if err != nil {
		return "", err
	}
	return s.patchTwin(ctx, id, "", p, cond, tr)
}

// PatchComponent applies a JSON Patch whose paths are relative to component of twin id, and
// returns the twin's new ETag. The component must be declared by the twin's model
// (ComponentNotFound). The Twin.Update event carries the paths from the twin's root.
func (s *Service) PatchComponent(ctx context.Context, id, component string, patch []byte, ifMatch string, tr Trace) (string, error) {
	cond, p, err := s.parsePatch(patch, ifMatch)
	if err != nil {
		return "", err
	}
	return s.patchTwin(ctx, id, component, p.Within(component), cond, tr)
}

// parsePatch parses the If-Match header and a patch body, and checks the patch's sizes.
func (s *Service) parsePatch(patch []byte, ifMatch string) (twin.Condition, twin.Patch, error) {
	cond, err := twin.ParseIfMatch(ifMatch)
	if err != nil {
		return cond, nil, err
	}
	if len(patch) > s.cfg.Limits.RequestBytes {
		return cond, nil, tooLarge("patch", len(patch), s.cfg.Limits.RequestBytes)
	}
	p, err := twin.ParsePatch(patch)
	if err != nil {
		return cond, nil, err
	}
	for _, op := range p {
		for _, seg := range op.Segments {
			if len(seg) > s.cfg.Limits.PropertyNameBytes {
				return cond, nil, s.checkValue(seg, nil)
			}
		}
		if op.Op != twin.OpRemove {
			if err := twin.CheckLimits(op.Path, op.Value, s.cfg.Limits.StringBytes, s.cfg.Limits.PropertyNameBytes); err != nil {
				return cond, nil, err
			}
		}
	}
	return cond, p, nil
}

// preconditionFailed is 412 PreconditionFailed for an If-Match that names no current ETag.
func preconditionFailed(kind, id string) error {
	return twin.PreconditionFailed(fmt.Sprintf(
		"The If-Match header does not match the current ETag of the %s with the id %s. Read the %s again and retry with its current ETag.", kind, id, kind))
}

// targetModel returns the model a patch migrates to (its last add or replace of
// /$metadata/$model), or current.
func targetModel(p twin.Patch, current string) string {
	for _, op := range p {
		if op.Op != twin.OpRemove && len(op.Segments) == 2 && op.Segments[0] == twin.KeyMetadata && op.Segments[1] == twin.KeyModel {
			if m, ok := op.Value.(string); ok {
				current = m
			}
		}
	}
	return current
}

// patchTwin applies p (with paths from the twin root) to twin id; component, when set, must
// be a component of the twin. It returns the new ETag.
//
// A twin in the cache whose ETag satisfies cond is patched without a snapshot read; the write's
// ETag check in the writer catches a stale cache entry, and a failure to prepare the patch
// from the entry (which may come from stale state) is retried from the store. Errors the
// writer reports (the twin is gone, storage failed) are returned as they are. An empty patch
// writes nothing, but is checked in the writer all the same, so that it answers with the
// store's ETag, or as the store says the twin is gone or the If-Match names an old ETag.
func (s *Service) patchTwin(ctx context.Context, id, component string, p twin.Patch, cond twin.Condition, tr Trace) (string, error) {
	var (
		etag    string
		written store.Twin // the new state, once committed
		now     string     // the formatted time of the patch, the same in every attempt
	)
	prepare := func(cur store.Twin) (commitFunc, error) {
		doc, err := twin.DecodeDocument(cur.Doc)
		if err != nil {
			return nil, fmt.Errorf("decode twin %q: %w", id, err)
		}
		ms := s.models.Load()
		if component != "" {
			if _, ok := ms.componentDoc(doc, cur.ModelID, component); !ok {
				return nil, twin.ComponentNotFound(id, component)
			}
		}
		if len(p) == 0 {
			// Nothing to write, but the answer must be the store's: the twin still exists
			// with the ETag cur (perhaps a stale cache entry) has. A read in the writer,
			// which keeps the twins it wrote recently, as for a write.
			return func(w store.Writer) error {
				latest, err := readTwin(w, id)
				if err != nil {
					return err
				}
				if latest.ETag != cur.ETag {
					return ErrStale
				}
				etag = cur.ETag
				return nil
			}, nil
		}
		if now == "" {
			now = twin.FormatTime(s.cfg.Now())
		}
		next, data, err := s.applyPatch(ms, cur, doc, p, now, false)
		if err != nil {
			return nil, err
		}
		ev := s.newEvent(event.TwinUpdate, id, now, tr, data)
		return func(w store.Writer) error {
			if err := replaceTwin(w, next, cur.ETag); err != nil {
				return err
			}
			if err := w.Emit(ev); err != nil {
				return err
			}
			etag, written = next.ETag, next
			return nil
		}, nil
	}
	var err error
	cached := false
	if cur, ok := s.cache.get(id); ok && cond.Matches(cur.ETag) {
		cached = true
		if commit, perr := prepare(cur); perr == nil {
			err = stale(s.st.Update(ctx, func(w store.Writer) error { return commit(w) }))
		} else {
			err = ErrStale
		}
	}
	if !cached || errors.Is(err, ErrStale) {
		err = s.write(ctx, func(r store.Reader) (commitFunc, error) {
			cur, err := readTwin(r, id)
			if err != nil {
				return nil, err
			}
			if !cond.Matches(cur.ETag) {
				return nil, preconditionFailed("digital twin", id)
			}
			return prepare(cur)
		})
	}
	if err == nil && written.ID != "" {
		s.cache.put(written)
	}
	return etag, err
}

// applyPatch applies p (paths from the twin root) to doc, the decoded document of twin cur,
// which it changes, with the rules of a twin PATCH: a replace of /$metadata/$model migrates the
// twin to a model that must not be decommissioned, every add and replace is validated, then
// the whole result, and the encoded document must fit Limits.TwinBytes. With createParents,
// adds create the objects missing along their paths (see twin.Schema). It returns the new
// stored twin, with a new ETag, and the data of its Twin.Update event. p must not be empty.
func (s *Service) applyPatch(ms *modelState, cur store.Twin, doc map[string]any, p twin.Patch, now string, createParents bool) (store.Twin, []byte, error) {
	id := cur.ID
	model := targetModel(p, cur.ModelID)
	iface, err := ms.iface(model)
	if err != nil {
		return store.Twin{}, nil, err
	}
	if model != cur.ModelID && ms.decommissioned[model] {
		return store.Twin{}, nil, twin.ModelDecommissioned(model)
	}
	schema := twin.Schema{
		IsComponent: componentOf(iface),
		ValidatePath: func(path []string, v any) error {
			if err := iface.ValidatePath(path, v); err != nil {
				return validationError("Invalid twin specified", err)
			}
			return nil
		},
		CreateParents: createParents,
	}
	if err := twin.ApplyTwinPatch(doc, p, schema, now); err != nil {
		return store.Twin{}, nil, err
	}
	if err := iface.ValidateTwin(doc); err != nil {
		return store.Twin{}, nil, validationError("Invalid twin specified", err)
	}
	newTag := twin.NewETag()
	doc[twin.KeyETag] = newTag
	enc, err := twin.Encode(doc)
	if err != nil {
		return store.Twin{}, nil, fmt.Errorf("encode twin %q: %w", id, err)
	}
	if len(enc) > s.cfg.Limits.TwinBytes {
		return store.Twin{}, nil, tooLarge("twin document", len(enc), s.cfg.Limits.TwinBytes)
	}
	data, err := updateData(model, p)
	if err != nil {
		return store.Twin{}, nil, err
	}
	return store.Twin{ID: id, ModelID: model, ETag: newTag, Doc: enc}, data, nil
}

// DeleteTwin deletes twin id. ifMatch is the If-Match header. A twin that is the source or
// target of any relationship is not deleted (RelationshipsNotDeleted). Emits Twin.Delete with
// the deleted document.
func (s *Service) DeleteTwin(ctx context.Context, id string, ifMatch string, tr Trace) error {
	cond, err := twin.ParseIfMatch(ifMatch)
	if err != nil {
		return err
	}
	defer s.cache.remove(id)
	return s.write(ctx, func(r store.Reader) (commitFunc, error) {
		cur, err := readTwin(r, id)
		if err != nil {
			return nil, err
		}
		if !cond.Matches(cur.ETag) {
			return nil, preconditionFailed("digital twin", id)
		}
		ev := s.newEvent(event.TwinDelete, id, twin.FormatTime(s.cfg.Now()), tr, cur.Doc)
		return func(w store.Writer) error {
			latest, err := readTwin(w, id)
			if err != nil {
				return err
			}
			if latest.ETag != cur.ETag {
				return ErrStale
			}
			has, err := w.HasRelationships(id)
			if err != nil {
				return fmt.Errorf("check relationships of twin %q: %w", id, err)
			}
			if has {
				return twin.RelationshipsNotDeleted(id)
			}
			if err := w.DeleteTwin(id); err != nil {
				return fmt.Errorf("delete twin %q: %w", id, err)
			}
			return w.Emit(ev)
		}, nil
	})
}

// componentDoc returns component name of a stored twin document of model modelID: it must be
// declared by the model and present. When the model is no longer loaded, the document alone
// decides: stored components always hold a $metadata object, which Object values cannot.
func (ms *modelState) componentDoc(doc map[string]any, modelID, name string) (map[string]any, bool) {
	if iface, ok := ms.set.Interface(modelID); ok {
		if _, declared := iface.Components[name]; !declared {
			return nil, false
		}
	}
	c, ok := doc[name].(map[string]any)
	if !ok {
		return nil, false
	}
	_, ok = c[twin.KeyMetadata].(map[string]any)
	return c, ok
}

// Component returns component of twin id (its properties and $metadata) and the twin's ETag.
func (s *Service) Component(ctx context.Context, id, component string) (json.RawMessage, string, error) {
	var (
		out  json.RawMessage
		etag string
	)
	err := s.st.View(ctx, func(r store.Reader) error {
		t, err := readTwin(r, id)
		if err != nil {
			return err
		}
		doc, err := twin.DecodeDocument(t.Doc) // the component's own metadata is decoded
		if err != nil {
			return fmt.Errorf("decode twin %q: %w", id, err)
		}
		c, ok := s.models.Load().componentDoc(doc, t.ModelID, component)
		if !ok {
			return twin.ComponentNotFound(id, component)
		}
		if out, err = twin.Encode(c); err != nil {
			return fmt.Errorf("encode component %q of twin %q: %w", component, id, err)
		}
		etag = t.ETag
		return nil
	})
	return out, etag, err
}
