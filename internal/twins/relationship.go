package twins

import (
	"context"
	"errors"
	"fmt"

	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// readRelationship reads relationship id of twin sourceID: DigitalTwinNotFound when the twin
// is missing, RelationshipNotFound when the relationship is.
func readRelationship(r store.Reader, sourceID, id string) (store.Twin, store.Relationship, error) {
	src, err := readTwin(r, sourceID)
	if err != nil {
		return src, store.Relationship{}, err
	}
	rel, err := r.Relationship(sourceID, id)
	if errors.Is(err, store.ErrNotFound) {
		return src, rel, twin.RelationshipNotFound(sourceID, id)
	}
	if err != nil {
		return src, rel, fmt.Errorf("read relationship %q of twin %q: %w", id, sourceID, err)
	}
	return src, rel, nil
}

// Relationship returns relationship id of twin sourceID.
func (s *Service) Relationship(ctx context.Context, sourceID, id string) (store.Relationship, error) {
	var rel store.Relationship
	err := s.st.View(ctx, func(r store.Reader) error {
		var err error
		_, rel, err = readRelationship(r, sourceID, id)
		return err
	})
	return rel, err
}

// relationshipDef finds the Relationship named name on the model of twin src (inherited ones
// included): InvalidRelationship when there is none.
func relationshipDef(ms *modelState, src store.Twin, name string) (*dtdl.Relationship, error) {
	iface, err := ms.iface(src.ModelID)
	if err != nil {
		return nil, err
	}
	def, ok := iface.Relationships[name]
	if !ok {
		return nil, twin.InvalidRelationship(fmt.Sprintf(
			"Relationship %s is not defined on the model %s of the twin %s, nor on any model it extends.", name, src.ModelID, src.ID))
	}
	return def, nil
}

// relationshipPropsError is ValidationFailed for invalid relationship properties.
func relationshipPropsError(err error) error {
	return validationError("Invalid relationship specified", err)
}

// PutRelationship creates or replaces relationship id from twin sourceID. The body needs
// $targetId (InvalidArgument) and $relationshipName (InvalidRelationship); the target must
// exist (TargetTwinNotFound) and differ from the source (OperationNotAllowed); the name must be
// a Relationship of the source's model, the target's model must be or extend its target, its
// maxMultiplicity holds, and the properties validate. ifNoneMatch "*" refuses an existing
// relationship (412). The source and target twins may hold at most Limits.OutgoingRelationships
// and Limits.IncomingRelationships (LimitExceeded). Creating emits Relationship.Create with the
// document; replacing emits Relationship.Update with the source twin's model id and the patch
// from the old document to the new (properties, and $targetId/$relationshipName when they
// change).
func (s *Service) PutRelationship(ctx context.Context, sourceID, id string, body []byte, ifNoneMatch string, tr Trace) (store.Relationship, error) {
	mustNotExist, err := twin.ParseIfNoneMatch(ifNoneMatch)
	if err != nil {
		return store.Relationship{}, err
	}
	if err := twin.CheckID(twin.KindInvalidArgument, "relationship", id); err != nil {
		return store.Relationship{}, err
	}
	if len(body) > s.cfg.Limits.RequestBytes {
		return store.Relationship{}, tooLarge("relationship", len(body), s.cfg.Limits.RequestBytes)
	}
	var in map[string]any
	if err := twin.Decode(body, &in); err != nil || in == nil {
		return store.Relationship{}, twin.InvalidArgument("Invalid relationship specified: the body must be a JSON object.")
	}
	rb, err := twin.ParseRelationshipBody(in)
	if err != nil {
		return store.Relationship{}, err
	}
	if rb.TargetID == sourceID {
		return store.Relationship{}, twin.OperationNotAllowed(fmt.Sprintf(
			"A relationship cannot have the twin %s as both its source and its target.", sourceID))
	}
	for k, v := range rb.Properties {
		if err := s.checkValue(k, v); err != nil {
			return store.Relationship{}, err
		}
	}
	etag := twin.NewETag()
	doc, err := twin.EncodeRelationship(sourceID, id, rb.Name, rb.TargetID, etag, rb.Properties)
	if err != nil {
		return store.Relationship{}, err
	}
	created := store.Relationship{SourceID: sourceID, ID: id, Name: rb.Name, TargetID: rb.TargetID, ETag: etag, Doc: doc}
	now := twin.FormatTime(s.cfg.Now())

	err = s.write(ctx, func(r store.Reader) (commitFunc, error) {
		src, err := readTwin(r, sourceID)
		if err != nil {
			return nil, err
		}
		tgt, err := r.Twin(rb.TargetID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, twin.TargetTwinNotFound(rb.TargetID)
		}
		if err != nil {
			return nil, fmt.Errorf("read twin %q: %w", rb.TargetID, err)
		}
		ms := s.models.Load()
		def, err := relationshipDef(ms, src, rb.Name)
		if err != nil {
			return nil, err
		}
		if def.Target != "" && !ms.set.IsA(tgt.ModelID, def.Target) {
			return nil, twin.InvalidRelationship(fmt.Sprintf(
				"The target twin %s has the model %s, but relationship %s needs a target of the model %s or a model extending it.", tgt.ID, tgt.ModelID, rb.Name, def.Target))
		}
		if err := def.ValidateProperties(rb.Properties); err != nil {
			return nil, relationshipPropsError(err)
		}
		old, err := r.Relationship(sourceID, id)
		exists := err == nil
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			return nil, fmt.Errorf("read relationship %q of twin %q: %w", id, sourceID, err)
		}
		if exists && mustNotExist {
			return nil, twin.PreconditionFailed(fmt.Sprintf(
				"If-None-Match: * header was specified but a relationship with the id %s was found. Please specify a different relationship id.", id))
		}
		var recheck []countCheck
		for _, c := range s.relationshipCounts(created, def, exists, old) {
			near, err := c.check(r)
			if err != nil {
				return nil, err
			}
			if near {
				recheck = append(recheck, c)
			}
		}
		ev := s.newEvent(event.RelationshipCreate, event.RelationshipSubject(sourceID, id), now, tr, doc)
		if exists {
			p, err := relationshipDiff(old, created)
			if err != nil {
				return nil, err
			}
			data, err := updateData(src.ModelID, p)
			if err != nil {
				return nil, err
			}
			ev = s.newEvent(event.RelationshipUpdate, event.RelationshipSubject(sourceID, id), now, tr, data)
		}
		return func(w store.Writer) error {
			if err := sameTwin(w, src, twin.TwinNotFound); err != nil {
				return err
			}
			if err := sameTwin(w, tgt, twin.TargetTwinNotFound); err != nil {
				return err
			}
			cur, err := w.Relationship(sourceID, id)
			if exists != (err == nil) || (exists && cur.ETag != old.ETag) {
				if err != nil && !errors.Is(err, store.ErrNotFound) {
					return fmt.Errorf("read relationship %q of twin %q: %w", id, sourceID, err)
				}
				return ErrStale
			}
			for _, c := range recheck {
				if _, err := c.check(w); err != nil {
					return err
				}
			}
			if err := w.PutRelationship(created); err != nil {
				return fmt.Errorf("put relationship %q of twin %q: %w", id, sourceID, err)
			}
			return w.Emit(ev)
		}, nil
	})
	if err != nil {
		return store.Relationship{}, err
	}
	return created, nil
}

// sameTwin checks that twin t still exists with the model it had when it was read (all a
// relationship's validity depends on); missing is the error for a twin deleted since.
func sameTwin(r store.Reader, t store.Twin, missing func(string) *twin.Error) error {
	cur, err := r.Twin(t.ID)
	if errors.Is(err, store.ErrNotFound) {
		return missing(t.ID)
	}
	if err != nil {
		return fmt.Errorf("read twin %q: %w", t.ID, err)
	}
	if cur.ModelID != t.ModelID {
		return ErrStale
	}
	return nil
}

// countSlack is how far below its limit a relationship count taken on a snapshot must be for
// the write to skip counting again inside the store's writer.
const countSlack = 1000

// countCheck is one relationship count that must stay below a limit.
type countCheck struct {
	limit int
	// count lists up to limit relationships and returns how many it found.
	count func(r store.Reader) (int, error)
	// exceeded is the error for a count at the limit.
	exceeded func() error
}

// check counts against r. It reports whether the count is within countSlack of the limit.
func (c countCheck) check(r store.Reader) (near bool, err error) {
	n, err := c.count(r)
	if err != nil {
		return false, err
	}
	if n >= c.limit {
		return true, c.exceeded()
	}
	return n >= c.limit-countSlack, nil
}

// relationshipCounts returns the counts that creating rel (or replacing old with it, when
// exists) must respect: maxMultiplicity of its name, the source's outgoing and the target's
// incoming relationships. Counting lists, so its cost grows with the relationships the twins
// have; PutRelationship counts on its snapshot, and again inside the writer only for counts
// within countSlack of their limit. A limit can so be overshot only when more than countSlack
// relationships of one twin are created between one request's snapshot and its commit.
func (s *Service) relationshipCounts(rel store.Relationship, def *dtdl.Relationship, exists bool, old store.Relationship) []countCheck {
	var checks []countCheck
	limits := s.cfg.Limits
	if def.MaxMultiplicity > 0 && (!exists || old.Name != rel.Name) {
		checks = append(checks, countCheck{
			limit: def.MaxMultiplicity,
			count: func(r store.Reader) (int, error) {
				same, err := r.Relationships(rel.SourceID, rel.Name, "", def.MaxMultiplicity)
				if err != nil {
					return 0, fmt.Errorf("count relationships %s of twin %q: %w", rel.Name, rel.SourceID, err)
				}
				return len(same), nil
			},
			exceeded: func() error {
				return twin.InvalidRelationship(fmt.Sprintf(
					"The twin %s already has %d relationships named %s, the maxMultiplicity of that relationship.", rel.SourceID, def.MaxMultiplicity, rel.Name))
			},
		})
	}
	if !exists {
		checks = append(checks, countCheck{
			limit: limits.OutgoingRelationships,
			count: func(r store.Reader) (int, error) {
				out, err := r.Relationships(rel.SourceID, "", "", limits.OutgoingRelationships)
				if err != nil {
					return 0, fmt.Errorf("count relationships of twin %q: %w", rel.SourceID, err)
				}
				return len(out), nil
			},
			exceeded: func() error {
				return twin.LimitExceeded(fmt.Sprintf("The twin %s has reached the limit of %d outgoing relationships.", rel.SourceID, limits.OutgoingRelationships))
			},
		})
	}
	if !exists || old.TargetID != rel.TargetID {
		checks = append(checks, countCheck{
			limit: limits.IncomingRelationships,
			count: func(r store.Reader) (int, error) {
				in, err := r.IncomingRelationships(rel.TargetID, "", limits.IncomingRelationships)
				if err != nil {
					return 0, fmt.Errorf("count relationships to twin %q: %w", rel.TargetID, err)
				}
				return len(in), nil
			},
			exceeded: func() error {
				return twin.LimitExceeded(fmt.Sprintf("The twin %s has reached the limit of %d incoming relationships.", rel.TargetID, limits.IncomingRelationships))
			},
		})
	}
	return checks
}

// relationshipDiff is the patch from relationship old to new.
func relationshipDiff(old, new store.Relationship) (twin.Patch, error) {
	oldProps, err := relationshipProps(old)
	if err != nil {
		return nil, err
	}
	newProps, err := relationshipProps(new)
	if err != nil {
		return nil, err
	}
	var p twin.Patch
	if old.Name != new.Name {
		p = append(p, twin.Op{Op: twin.OpReplace, Path: "/" + twin.KeyRelationshipName, Segments: []string{twin.KeyRelationshipName}, Value: new.Name})
	}
	if old.TargetID != new.TargetID {
		p = append(p, twin.Op{Op: twin.OpReplace, Path: "/" + twin.KeyTargetID, Segments: []string{twin.KeyTargetID}, Value: new.TargetID})
	}
	return append(p, twin.DiffProperties(oldProps, newProps)...), nil
}

// relationshipProps decodes the properties of a stored relationship.
func relationshipProps(rel store.Relationship) (map[string]any, error) {
	var doc map[string]any
	if err := twin.Decode(rel.Doc, &doc); err != nil {
		return nil, fmt.Errorf("decode relationship %q of twin %q: %w", rel.ID, rel.SourceID, err)
	}
	return twin.RelationshipProperties(doc), nil
}

// PatchRelationship applies a JSON Patch to the properties of relationship id of twin sourceID
// and returns its new ETag. $targetId, $relationshipName and the other "$" fields cannot be
// patched (JsonPatchInvalid). The result must validate against the Relationship's properties.
// Emits Relationship.Update with the source twin's model id and the patch. An empty patch
// changes nothing and returns the current ETag.
func (s *Service) PatchRelationship(ctx context.Context, sourceID, id string, patch []byte, ifMatch string, tr Trace) (string, error) {
	cond, p, err := s.parsePatch(patch, ifMatch)
	if err != nil {
		return "", err
	}
	var etag string
	err = s.write(ctx, func(r store.Reader) (commitFunc, error) {
		src, rel, err := readRelationship(r, sourceID, id)
		if err != nil {
			return nil, err
		}
		if !cond.Matches(rel.ETag) {
			return nil, preconditionFailed("relationship", id)
		}
		if len(p) == 0 {
			etag = rel.ETag
			return func(store.Writer) error { return nil }, nil
		}
		props, err := relationshipProps(rel)
		if err != nil {
			return nil, err
		}
		if err := twin.ApplyRelationshipPatch(props, p); err != nil {
			return nil, err
		}
		def, err := relationshipDef(s.models.Load(), src, rel.Name)
		if err != nil {
			return nil, err
		}
		if err := def.ValidateProperties(props); err != nil {
			return nil, relationshipPropsError(err)
		}
		newTag := twin.NewETag()
		doc, err := twin.EncodeRelationship(sourceID, id, rel.Name, rel.TargetID, newTag, props)
		if err != nil {
			return nil, err
		}
		data, err := updateData(src.ModelID, p)
		if err != nil {
			return nil, err
		}
		ev := s.newEvent(event.RelationshipUpdate, event.RelationshipSubject(sourceID, id), twin.FormatTime(s.cfg.Now()), tr, data)
		next := rel
		next.ETag, next.Doc = newTag, doc
		return func(w store.Writer) error {
			_, cur, err := readRelationship(w, sourceID, id)
			if err != nil {
				return err
			}
			if cur.ETag != rel.ETag {
				return ErrStale
			}
			if err := w.PutRelationship(next); err != nil {
				return fmt.Errorf("put relationship %q of twin %q: %w", id, sourceID, err)
			}
			if err := w.Emit(ev); err != nil {
				return err
			}
			etag = newTag
			return nil
		}, nil
	})
	return etag, err
}

// DeleteRelationship deletes relationship id of twin sourceID. ifMatch is the If-Match header.
// Emits Relationship.Delete with the deleted document.
func (s *Service) DeleteRelationship(ctx context.Context, sourceID, id string, ifMatch string, tr Trace) error {
	cond, err := twin.ParseIfMatch(ifMatch)
	if err != nil {
		return err
	}
	return s.write(ctx, func(r store.Reader) (commitFunc, error) {
		_, rel, err := readRelationship(r, sourceID, id)
		if err != nil {
			return nil, err
		}
		if !cond.Matches(rel.ETag) {
			return nil, preconditionFailed("relationship", id)
		}
		ev := s.newEvent(event.RelationshipDelete, event.RelationshipSubject(sourceID, id), twin.FormatTime(s.cfg.Now()), tr, rel.Doc)
		return func(w store.Writer) error {
			_, cur, err := readRelationship(w, sourceID, id)
			if err != nil {
				return err
			}
			if cur.ETag != rel.ETag {
				return ErrStale
			}
			if err := w.DeleteRelationship(sourceID, id); err != nil {
				return fmt.Errorf("delete relationship %q of twin %q: %w", id, sourceID, err)
			}
			return w.Emit(ev)
		}, nil
	})
}

// Relationships lists the relationships from twin sourceID (only those named name, when name
// is not empty), by id, starting after the id after. It returns at most limit of them (all
// when limit <= 0) and the id to pass as after for the next page, "" at the end.
func (s *Service) Relationships(ctx context.Context, sourceID, name, after string, limit int) ([]store.Relationship, string, error) {
	var page []store.Relationship
	err := s.st.View(ctx, func(r store.Reader) error {
		if _, err := readTwin(r, sourceID); err != nil {
			return err
		}
		var err error
		page, err = r.Relationships(sourceID, name, after, probe(limit))
		if err != nil {
			return fmt.Errorf("list relationships of twin %q: %w", sourceID, err)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	page, last := cut(page, limit)
	if last == nil {
		return page, "", nil
	}
	return page, last.ID, nil
}

// IncomingRelationships lists the relationships whose target is twin targetID, by source id
// and id, starting after the key after ("<sourceID>\x00<id>" as returned by the previous page).
// It returns at most limit (all when limit <= 0) and the key of the next page, "" at the end.
func (s *Service) IncomingRelationships(ctx context.Context, targetID, after string, limit int) ([]store.Relationship, string, error) {
	var page []store.Relationship
	err := s.st.View(ctx, func(r store.Reader) error {
		if _, err := readTwin(r, targetID); err != nil {
			return err
		}
		var err error
		page, err = r.IncomingRelationships(targetID, after, probe(limit))
		if err != nil {
			return fmt.Errorf("list relationships to twin %q: %w", targetID, err)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	page, last := cut(page, limit)
	if last == nil {
		return page, "", nil
	}
	return page, last.SourceID + "\x00" + last.ID, nil
}

// probe is the number of items to read for a page of limit: one more, to learn whether there
// is a next page.
func probe(limit int) int {
	if limit <= 0 {
		return 0
	}
	return limit + 1
}

// cut trims a probed list to limit and returns the last item kept when more follow.
func cut[T any](items []T, limit int) ([]T, *T) {
	if limit <= 0 || len(items) <= limit {
		return items, nil
	}
	items = items[:limit]
	return items, &items[limit-1]
}
