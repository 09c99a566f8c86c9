// Package twins is the twin service: models, twins, relationships and telemetry, validated
// against DTDL and written to the store together with the events they cause. The REST API
// changes the twin graph only through it.
//
// Every write is one store.Update carrying the new state and its events. The work that does
// not need the writer (decoding, patching, validating, encoding) is done first against a
// snapshot; the Update then only re-reads the entity, checks that its ETag is still the one the
// work was based on, and writes. When another write got there first the work is redone; after
// a few lost races it is done inside the Update, so every call makes progress. Twin puts and
// patches are first prepared from an in-memory copy of recently written twins, without the
// snapshot read (a patch of a twin the copy lacks, or whose If-Match its copy fails, reads
// the snapshot; a put of a twin the copy lacks guesses that it creates the twin); the same
// check in the Update makes a stale copy or a wrong guess cost only a retry. See twinCache
// for the copy's invariant, and package store for the other copies of twin state.
package twins

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/jsontext"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/tracecontext"
	"github.com/twinflow/twinflow/internal/twin"
)

// Limits are the size and count limits the service enforces. Zero fields take the defaults of
// ADT's service limits (adt-api.md §8).
type Limits struct {
	// RequestBytes caps the body of a twin PUT, a twin, component or relationship PATCH and a
	// relationship PUT (ADT: "Max request payload" 32 KB). Over it: 400 LimitExceeded.
	RequestBytes int
	// TwinBytes caps a stored twin document, $metadata included (default 64 KiB: ADT's 32 KB
	// of content plus room for the metadata ADT does not count). Over it: 400 LimitExceeded.
	TwinBytes int
	// StringBytes caps a string value anywhere in a twin or relationship (ADT: 4 KB).
	StringBytes int
	// PropertyNameBytes caps a property name (ADT: 1 KB). Strings and names over their limit
	// are 400 ValidationFailed.
	PropertyNameBytes int
	// ModelsPerCall caps the models of one AddModels call (ADT: 250): 400 LimitExceeded.
	ModelsPerCall int
	// ModelBytes caps one model's JSON (ADT: 1 MB): 400 LimitExceeded.
	ModelBytes int
	// ModelsPerImport caps the models of one import job (ADT: 10,000).
	ModelsPerImport int
	// Twins caps the twins of the instance (ADT: 2,000,000): creating one more is 400
	// TwinLimitReached.
	Twins int
	// OutgoingRelationships and IncomingRelationships cap the relationships from and to one
	// twin (ADT: 50,000 each): 400 LimitExceeded.
	OutgoingRelationships int
	IncomingRelationships int
}

func (l *Limits) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&l.RequestBytes, 32*1024)
	def(&l.TwinBytes, 64*1024)
	def(&l.StringBytes, 4*1024)
	def(&l.PropertyNameBytes, 1024)
	def(&l.ModelsPerCall, 250)
	def(&l.ModelBytes, 1024*1024)
	def(&l.ModelsPerImport, 10_000)
	def(&l.Twins, 2_000_000)
	def(&l.OutgoingRelationships, 50_000)
	def(&l.IncomingRelationships, 50_000)
}

// Config configures a Service.
type Config struct {
	// ServiceID is the host name events carry as their source.
	ServiceID string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// Limits are the enforced limits; zero fields take ADT's defaults.
	Limits Limits
	// CachedTwins is how many recently written twins the service keeps in memory to prepare
	// patches without a store read (see PatchTwin); 0 means 10,000, negative disables it.
	CachedTwins int
	// TelemetryDedupWindow, when positive, is how long SendTelemetry remembers the message
	// ids each twin sent, to recognise a message sent again; the store must then keep
	// ingress state (store.Ingress), whose pruner forgets them. 0 means no de-duplication.
	TelemetryDedupWindow time.Duration
}

// Trace is the W3C trace context of the operation that causes a write. The events the write
// emits carry it as their traceparent and tracestate.
type Trace struct {
	// Parent is the traceparent of the operation's own span: for an API request, the child
	// of the request's traceparent the API answers in traceresponse, so that the consumers of
	// the events continue the caller's trace from the span the caller was told about. When it
	// is empty or malformed the service starts a new trace for the write.
	Parent string
	// State is the tracestate that goes with Parent, already checked by the caller. It is
	// dropped when Parent is empty or malformed.
	State string
}

// resolve returns tr when its Parent is well formed, else a new trace without state.
func (tr Trace) resolve() Trace {
	if _, ok := tracecontext.ParseParent(tr.Parent); ok {
		return tr
	}
	return Trace{Parent: tracecontext.New().String()}
}

// Service is the twin service. It is safe for concurrent use.
type Service struct {
	cfg    Config
	st     store.Store
	logger *slog.Logger

	// models is the current model state, replaced as a whole on every model change.
	models atomic.Pointer[modelState]
	// modelMu serialises model changes, so that each one builds on the state before it.
	modelMu sync.Mutex
	// cache holds recently written twins for PatchTwin.
	cache *twinCache
	// dedup is the store as store.Ingress when Config.TelemetryDedupWindow is set, else nil.
	dedup store.Ingress
}

// modelState is an immutable snapshot of the stored models.
type modelState struct {
	set            *dtdl.ModelSet
	decommissioned map[string]bool
	// uploaded maps the id of each stored model set holds to its upload time, for
	// ReloadModels to tell which stored models changed.
	uploaded map[string]time.Time
}

// adding returns the state of set, which is ms's set with the models ids added, uploaded at
// at.
func (ms *modelState) adding(set *dtdl.ModelSet, ids []string, at time.Time) *modelState {
	up := maps.Clone(ms.uploaded)
	for _, id := range ids {
		up[id] = at
	}
	return &modelState{set: set, decommissioned: ms.decommissioned, uploaded: up}
}

// removing returns the state of set, which is ms's set without the models ids.
func (ms *modelState) removing(set *dtdl.ModelSet, ids []string) *modelState {
	up, dec := maps.Clone(ms.uploaded), maps.Clone(ms.decommissioned)
	for _, id := range ids {
		delete(up, id)
		delete(dec, id)
	}
	return &modelState{set: set, decommissioned: dec, uploaded: up}
}

// parseModels resolves stored, every stored model, into a model state.
func parseModels(stored []store.Model) (*modelState, error) {
	docs := make([][]byte, len(stored))
	dec := make(map[string]bool)
	up := make(map[string]time.Time, len(stored))
	for i, m := range stored {
		docs[i] = m.Definition
		up[m.ID] = m.UploadTime
		if m.Decommissioned {
			dec[m.ID] = true
		}
	}
	set, err := dtdl.Parse(docs, nil, dtdl.Options{})
	if err != nil {
		return nil, fmt.Errorf("resolve %d stored models: %w", len(stored), err)
	}
	return &modelState{set: set, decommissioned: dec, uploaded: up}, nil
}

// New returns a Service over st. It loads every stored model and resolves them into one ModelSet;
// it fails if the stored models no longer parse.
func New(cfg Config, st store.Store, logger *slog.Logger) (*Service, error) {
	if st == nil {
		return nil, errors.New("twins: a store is required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	cfg.Limits.setDefaults()
	if cfg.CachedTwins == 0 {
		cfg.CachedTwins = 10_000
	}
	s := &Service{cfg: cfg, st: st, logger: logger, cache: newTwinCache(cfg.CachedTwins)}
	switch {
	case cfg.TelemetryDedupWindow < 0:
		return nil, fmt.Errorf("twins: telemetry dedup window %v is negative", cfg.TelemetryDedupWindow)
	case cfg.TelemetryDedupWindow > 0:
		ing, ok := st.(store.Ingress)
		if !ok {
			return nil, errors.New("twins: de-duplicating telemetry needs a store that keeps ingress state")
		}
		s.dedup = ing
	}

	var stored []store.Model
	err := st.View(context.Background(), func(r store.Reader) error {
		var err error
		stored, err = r.Models("", 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("twins: load models: %w", err)
	}
	ms, err := parseModels(stored)
	if err != nil {
		return nil, fmt.Errorf("twins: %w", err)
	}
	s.models.Store(ms)
	logger.Info("models loaded", "count", len(stored))
	return s, nil
}

// Models returns the current resolved models. The set is immutable; a model change replaces it.
func (s *Service) Models() *dtdl.ModelSet {
	return s.models.Load().set
}

// ErrStale reports that the state a write was prepared against changed before it committed
// (see Prepared.Commit).
var ErrStale = errors.New("twins: state changed during the write")

// optimisticAttempts is how many times a write is prepared outside the store's writer before
// it is prepared inside it.
const optimisticAttempts = 3

// stale returns ErrStale for an Update a store failed with store.ErrConflict (a conditional
// write found the state changed), and err otherwise.
func stale(err error) error {
	if errors.Is(err, store.ErrConflict) {
		return ErrStale
	}
	return err
}

// commitFunc writes a prepared change. It returns ErrStale when the state it was prepared
// against has changed.
type commitFunc func(w store.Writer) error

// write prepares a change against a snapshot and commits it in one Update, redoing the
// preparation when the snapshot went stale (see the package documentation).
func (s *Service) write(ctx context.Context, prepare func(r store.Reader) (commitFunc, error)) error {
	for range optimisticAttempts {
		var commit commitFunc
		if err := s.st.View(ctx, func(r store.Reader) error {
			var err error
			commit, err = prepare(r)
			return err
		}); err != nil {
			return err
		}
		err := stale(s.st.Update(ctx, func(w store.Writer) error { return commit(w) }))
		if !errors.Is(err, ErrStale) {
			return err
		}
	}
	return s.st.Update(ctx, func(w store.Writer) error {
		commit, err := prepare(w)
		if err != nil {
			return err
		}
		return commit(w)
	})
}

// newEvent builds an event of the service with a fresh id. at is the time of the
// operation, formatted by twin.FormatTime (writes format it once for the document and the
// event).
func (s *Service) newEvent(typ, subject, at string, tr Trace, data []byte) event.Event {
	tr = tr.resolve()
	return event.Event{
		ID:              uuid.NewString(),
		Source:          s.cfg.ServiceID,
		SpecVersion:     event.SpecVersion,
		Type:            typ,
		Subject:         subject,
		Time:            at,
		DataContentType: "application/json",
		TraceParent:     tr.Parent,
		TraceState:      tr.State,
		Data:            data,
	}
}

// updateData is the data of a Twin.Update or Relationship.Update event:
// {"modelId":"<dtmi>","patch":[...]}.
func updateData(modelID string, p twin.Patch) ([]byte, error) {
	b := make([]byte, 0, 256)
	b = append(b, `{"modelId":`...)
	b = jsontext.AppendString(b, modelID)
	b = append(b, `,"patch":`...)
	b, err := p.AppendJSON(b)
	if err != nil {
		return nil, fmt.Errorf("encode update event data: %w", err)
	}
	return append(b, '}'), nil
}

// tooLarge is LimitExceeded for a request body over the limit.
func tooLarge(what string, n, limit int) error {
	return twin.LimitExceeded(fmt.Sprintf("The %s is %d bytes; the limit is %d bytes.", what, n, limit))
}

// validationError turns a *dtdl.ValidationError into ADT's ValidationFailed with one detail
// per problem; msg is the top-level message. Other errors are wrapped.
func validationError(msg string, err error) error {
	var ve *dtdl.ValidationError
	if !errors.As(err, &ve) {
		return fmt.Errorf("validate: %w", err)
	}
	details := make([]string, 0, len(ve.Problems))
	for _, p := range ve.Problems {
		details = append(details, p.String())
	}
	return twin.ValidationFailed(msg, details...)
}
