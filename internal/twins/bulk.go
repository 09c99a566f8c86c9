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

// Bulk writes, for import and delete jobs (package job). The service validates and encodes
// what a job writes, as it does for the API, and writes it inside a transaction the job opens,
// so that the job can commit its progress together with the changes. Jobs write in large
// transactions: the write functions below take a store.Writer, and the model functions a Tx.
//
// An import creates what does not exist and replaces what does, as PUT does: a new twin or
// relationship emits its Create event, a replaced one its Update event with the difference,
// and one that an import would replace by an equal one is left as it is, without an event.
// Twins and relationships deleted by a delete job emit their Delete events. So routes and the
// graph index see a job's changes exactly as they see the API's.

// Tx runs fn in a write transaction of the caller's, which may write more in it (a job's
// progress); it returns once the transaction committed, or fn's error after rolling it back.
type Tx func(ctx context.Context, fn func(store.Writer) error) error

// ImportTwin is a twin of an import, validated and encoded by PrepareImportTwin, ready for
// WriteImportTwins.
type ImportTwin struct {
	nt  newTwinDoc
	now string
	tr  Trace
}

// ID returns the twin's id.
func (t ImportTwin) ID() string { return t.nt.twin.ID }

// ModelID returns the twin's model.
func (t ImportTwin) ModelID() string { return t.nt.twin.ModelID }

// PrepareImportTwin validates line, a twin of an import file ({"$dtId": ..., "$metadata":
// {"$model": ...}, properties and components}), as PutTwin validates a body, and encodes it
// with the time now (twin.FormatTime). Its error is a *twin.Error. It is safe to call from
// many goroutines.
func (s *Service) PrepareImportTwin(line []byte, now string, tr Trace) (ImportTwin, error) {
	if len(line) > s.cfg.Limits.RequestBytes {
		return ImportTwin{}, tooLarge("twin", len(line), s.cfg.Limits.RequestBytes)
	}
	var in map[string]any
	if err := twin.Decode(line, &in); err != nil || in == nil {
		return ImportTwin{}, twin.InvalidArgument("Invalid twin specified: the line must be a JSON object.")
	}
	id, _ := in[twin.KeyDTID].(string)
	if id == "" {
		return ImportTwin{}, twin.InvalidArgument("Invalid twin specified: the twin must have a non-empty $dtId string.")
	}
	nt, err := s.newTwin(id, in, now)
	if err != nil {
		return ImportTwin{}, err
	}
	return ImportTwin{nt: nt, now: now, tr: tr}, nil
}

// WriteImportTwins writes ts in order in w, creating each twin or replacing it (see the
// bulk writes above), within Limits.Twins. It stops at the first twin it cannot write, and
// returns how many it wrote before it and that twin's error, a *twin.Error; it returns
// len(ts) and nil when it wrote them all. Any other error is a storage failure, after which
// the transaction must be rolled back.
func (s *Service) WriteImportTwins(w store.Writer, ts []ImportTwin) (int, error) {
	count, err := w.CountTwins()
	if err != nil {
		return 0, fmt.Errorf("count twins: %w", err)
	}
	for i := range ts {
		t := &ts[i]
		if count >= s.cfg.Limits.Twins {
			// A twin that exists can still be replaced.
			if _, err := w.Twin(t.ID()); errors.Is(err, store.ErrNotFound) {
				return i, twin.TwinLimitReached(s.cfg.Limits.Twins)
			}
		}
		err := w.CreateTwin(t.nt.twin)
		switch {
		case err == nil:
			count++
			if err := w.Emit(s.newEvent(event.TwinCreate, t.ID(), t.now, t.tr, t.nt.twin.Doc)); err != nil {
				return i, err
			}
		case errors.Is(err, store.ErrExists):
			if err := s.replaceImportTwin(w, t); err != nil {
				return i, err
			}
		default:
			return i, err
		}
	}
	return len(ts), nil
}

// replaceImportTwin replaces the stored twin t names with t, emitting Twin.Update with the
// difference, unless the difference is empty.
func (s *Service) replaceImportTwin(w store.Writer, t *ImportTwin) error {
	id := t.ID()
	old, err := w.Twin(id)
	if err != nil {
		return fmt.Errorf("read twin %q: %w", id, err)
	}
	oldDoc, err := twin.DecodeDocument(old.Doc)
	if err != nil {
		return fmt.Errorf("decode twin %q: %w", id, err)
	}
	p := twin.Diff(oldDoc, t.nt.doc, t.nt.isComp)
	if len(p) == 0 && old.ModelID == t.ModelID() {
		return nil
	}
	data, err := updateData(t.ModelID(), p)
	if err != nil {
		return err
	}
	s.cache.remove(id)
	if err := w.PutTwin(t.nt.twin); err != nil {
		return fmt.Errorf("put twin %q: %w", id, err)
	}
	return w.Emit(s.newEvent(event.TwinUpdate, id, t.now, t.tr, data))
}

// TwinView tells PrepareImportRelationships about the twins already in the graph. Its
// methods are called from one goroutine.
type TwinView interface {
	// TwinModel returns the model of twin id, false when there is no such twin.
	TwinModel(id string) (string, bool)
	// Outgoing returns the number of relationships from twin id.
	Outgoing(id string) int
	// OutgoingNamed returns the number of relationships from twin id named name.
	OutgoingNamed(id, name string) int
	// Incoming returns the number of relationships to twin id.
	Incoming(id string) int
}

// ImportRelationship is a relationship of an import, validated and encoded by
// PrepareImportRelationships, ready for WriteImportRelationships.
type ImportRelationship struct {
	rel                      store.Relationship
	sourceModel, targetModel string
	props                    map[string]any
	now                      string
	tr                       Trace
}

// PrepareImportRelationships validates lines, relationships of an import file
// ({"$dtId": source, "$relationshipId", "$targetId", "$relationshipName", properties}), as
// PutRelationship validates a body, against the twins view describes and the models: both
// twins must exist, the name must be a Relationship of the source's model whose target the
// target's model is or extends, the properties must validate, and maxMultiplicity and the
// limits of relationships from and to one twin must hold, counting those of view and those
// of lines before. It returns, for each line, the relationship ready to write or the
// *twin.Error the line fails with; lines that fail do not count. It is safe to call from many
// goroutines with views of their own.
func (s *Service) PrepareImportRelationships(lines [][]byte, view TwinView, now string, tr Trace) ([]ImportRelationship, []error) {
	out := make([]ImportRelationship, len(lines))
	errs := make([]error, len(lines))
	ms := s.models.Load()
	type named struct{ source, name string }
	var (
		outgoing = map[string]int{}
		incoming = map[string]int{}
		byName   = map[named]int{}
	)
	for i, line := range lines {
		r, def, err := s.prepareImportRelationship(ms, line, view, now, tr)
		if err == nil {
			err = s.checkImportCounts(r, def, view, outgoing[r.rel.SourceID], byName[named{r.rel.SourceID, r.rel.Name}], incoming[r.rel.TargetID])
		}
		if err != nil {
			errs[i] = err
			continue
		}
		out[i] = r
		outgoing[r.rel.SourceID]++
		incoming[r.rel.TargetID]++
		byName[named{r.rel.SourceID, r.rel.Name}]++
	}
	return out, errs
}

// prepareImportRelationship validates and encodes one relationship line.
func (s *Service) prepareImportRelationship(ms *modelState, line []byte, view TwinView, now string, tr Trace) (ImportRelationship, *dtdl.Relationship, error) {
	if len(line) > s.cfg.Limits.RequestBytes {
		return ImportRelationship{}, nil, tooLarge("relationship", len(line), s.cfg.Limits.RequestBytes)
	}
	var in map[string]any
	if err := twin.Decode(line, &in); err != nil || in == nil {
		return ImportRelationship{}, nil, twin.InvalidArgument("Invalid relationship specified: the line must be a JSON object.")
	}
	sourceID, _ := in[twin.KeyDTID].(string)
	if sourceID == "" {
		return ImportRelationship{}, nil, twin.InvalidArgument("Invalid relationship specified: the relationship must have its source twin's id as a non-empty $dtId string.")
	}
	id, _ := in[twin.KeyRelationshipID].(string)
	if id == "" {
		return ImportRelationship{}, nil, twin.InvalidArgument("Invalid relationship specified: the relationship must have a non-empty $relationshipId string.")
	}
	if err := twin.CheckID(twin.KindInvalidArgument, "relationship", id); err != nil {
		return ImportRelationship{}, nil, err
	}
	delete(in, twin.KeyDTID)
	rb, err := twin.ParseRelationshipBody(in)
	if err != nil {
		return ImportRelationship{}, nil, err
	}
	if rb.TargetID == sourceID {
		return ImportRelationship{}, nil, twin.OperationNotAllowed(fmt.Sprintf(
			"A relationship cannot have the twin %s as both its source and its target.", sourceID))
	}
	for k, v := range rb.Properties {
		if err := s.checkValue(k, v); err != nil {
			return ImportRelationship{}, nil, err
		}
	}
	sourceModel, ok := view.TwinModel(sourceID)
	if !ok {
		return ImportRelationship{}, nil, twin.TwinNotFound(sourceID)
	}
	targetModel, ok := view.TwinModel(rb.TargetID)
	if !ok {
		return ImportRelationship{}, nil, twin.TargetTwinNotFound(rb.TargetID)
	}
	def, err := relationshipDef(ms, store.Twin{ID: sourceID, ModelID: sourceModel}, rb.Name)
	if err != nil {
		return ImportRelationship{}, nil, err
	}
	if def.Target != "" && !ms.set.IsA(targetModel, def.Target) {
		return ImportRelationship{}, nil, twin.InvalidRelationship(fmt.Sprintf(
			"The target twin %s has the model %s, but relationship %s needs a target of the model %s or a model extending it.", rb.TargetID, targetModel, rb.Name, def.Target))
	}
	if err := def.ValidateProperties(rb.Properties); err != nil {
		return ImportRelationship{}, nil, relationshipPropsError(err)
	}
	etag := twin.NewETag()
	doc, err := twin.EncodeRelationship(sourceID, id, rb.Name, rb.TargetID, etag, rb.Properties)
	if err != nil {
		return ImportRelationship{}, nil, err
	}
	return ImportRelationship{
		rel:         store.Relationship{SourceID: sourceID, ID: id, Name: rb.Name, TargetID: rb.TargetID, ETag: etag, Doc: doc},
		sourceModel: sourceModel, targetModel: targetModel, props: rb.Properties, now: now, tr: tr,
	}, def, nil
}

// checkImportCounts checks the relationship counts a new relationship r must keep within,
// given those of view and the earlier lines' (out, named and in). An import counts
// relationships it replaces as new, which is stricter than PutRelationship.
func (s *Service) checkImportCounts(r ImportRelationship, def *dtdl.Relationship, view TwinView, out, named, in int) error {
	limits := s.cfg.Limits
	if def.MaxMultiplicity > 0 && view.OutgoingNamed(r.rel.SourceID, r.rel.Name)+named >= def.MaxMultiplicity {
		return twin.InvalidRelationship(fmt.Sprintf(
			"The twin %s already has %d relationships named %s, the maxMultiplicity of that relationship.", r.rel.SourceID, def.MaxMultiplicity, r.rel.Name))
	}
	if view.Outgoing(r.rel.SourceID)+out >= limits.OutgoingRelationships {
		return twin.LimitExceeded(fmt.Sprintf("The twin %s has reached the limit of %d outgoing relationships.", r.rel.SourceID, limits.OutgoingRelationships))
	}
	if view.Incoming(r.rel.TargetID)+in >= limits.IncomingRelationships {
		return twin.LimitExceeded(fmt.Sprintf("The twin %s has reached the limit of %d incoming relationships.", r.rel.TargetID, limits.IncomingRelationships))
	}
	return nil
}

// WriteImportRelationships writes rs in order in w, creating each relationship or replacing
// it (see the bulk writes above); both twins must still have the models rs was validated
// against. It stops at the first relationship it cannot write, and returns how many it wrote
// before it and that relationship's error, a *twin.Error; it returns len(rs) and nil when it
// wrote them all. Any other error is a storage failure, after which the transaction must be
// rolled back.
func (s *Service) WriteImportRelationships(w store.Writer, rs []ImportRelationship) (int, error) {
	for i := range rs {
		r := &rs[i]
		err := w.CreateRelationship(r.rel, r.sourceModel, r.targetModel)
		switch {
		case err == nil:
			subject := event.RelationshipSubject(r.rel.SourceID, r.rel.ID)
			if err := w.Emit(s.newEvent(event.RelationshipCreate, subject, r.now, r.tr, r.rel.Doc)); err != nil {
				return i, err
			}
		case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrNotFound):
			if err := s.replaceImportRelationship(w, r); err != nil {
				return i, err
			}
		default:
			return i, err
		}
	}
	return len(rs), nil
}

// replaceImportRelationship writes r after CreateRelationship refused it: it replaces the
// stored relationship, emitting Relationship.Update with the difference unless there is none,
// or reports why it cannot.
func (s *Service) replaceImportRelationship(w store.Writer, r *ImportRelationship) error {
	src := store.Twin{ID: r.rel.SourceID, ModelID: r.sourceModel}
	if err := sameImportTwin(w, src, twin.TwinNotFound); err != nil {
		return err
	}
	if err := sameImportTwin(w, store.Twin{ID: r.rel.TargetID, ModelID: r.targetModel}, twin.TargetTwinNotFound); err != nil {
		return err
	}
	old, err := w.Relationship(r.rel.SourceID, r.rel.ID)
	if err != nil {
		// Both twins are as validated, so CreateRelationship refused because it exists.
		return fmt.Errorf("read relationship %q of twin %q: %w", r.rel.ID, r.rel.SourceID, err)
	}
	p, err := relationshipDiff(old, r.rel)
	if err != nil {
		return err
	}
	if len(p) == 0 {
		return nil
	}
	data, err := updateData(r.sourceModel, p)
	if err != nil {
		return err
	}
	if err := w.PutRelationship(r.rel); err != nil {
		return fmt.Errorf("put relationship %q of twin %q: %w", r.rel.ID, r.rel.SourceID, err)
	}
	subject := event.RelationshipSubject(r.rel.SourceID, r.rel.ID)
	return w.Emit(s.newEvent(event.RelationshipUpdate, subject, r.now, r.tr, data))
}

// sameImportTwin checks that twin t exists with its model, as a relationship was validated
// against it: missing is the error for a twin deleted since, ValidationFailed for one whose
// model changed.
func sameImportTwin(r store.Reader, t store.Twin, missing func(string) *twin.Error) error {
	cur, err := r.Twin(t.ID)
	if errors.Is(err, store.ErrNotFound) {
		return missing(t.ID)
	}
	if err != nil {
		return fmt.Errorf("read twin %q: %w", t.ID, err)
	}
	if cur.ModelID != t.ModelID {
		return twin.ValidationFailed("Invalid relationship specified", fmt.Sprintf(
			"The twin %s changed its model from %s to %s while the relationship was imported.", t.ID, t.ModelID, cur.ModelID))
	}
	return nil
}
