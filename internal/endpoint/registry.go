package endpoint

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/lease"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/outbox"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/store"
)

// DefaultMaxEndpoints is ADT's endpoint limit per instance.
const DefaultMaxEndpoints = 6

// MaxNameLength is the longest endpoint name accepted.
const MaxNameLength = 64

// The errors of the registry, possibly wrapped with details; the API maps them to HTTP.
var (
	// ErrNameInvalid: the name is empty, too long or holds a character other than a letter,
	// a digit, '-' or '_'.
	ErrNameInvalid = errors.New("invalid endpoint name")
	// ErrLimitExceeded: creating the endpoint would pass Config.MaxEndpoints.
	ErrLimitExceeded = errors.New("endpoint limit exceeded")
	// ErrInUse: routes still send to the endpoint.
	ErrInUse = errors.New("endpoint in use")
	// ErrStandby: the endpoint's relay runs on another node (see Config.Holder), which alone
	// can replay or redrive; the message names its service id.
	ErrStandby = errors.New("the endpoint is delivered by another node")
	// ErrValidationFailed: the destination refused the validation handshake, or did not
	// answer it. The message that follows says which as status shows it: the refusal, or
	// redact.Unreachable, never what else answered.
	ErrValidationFailed = errors.New("endpoint validation failed")
)

// The states of an endpoint whose relay does not run yet or any more, beside the relay's
// own (outbox.StateDelivering, ...).
const (
	// StateStandby: the endpoint's relay runs on another node, the owner of its lease (see
	// Config.Holder), and this node takes it over if that node dies.
	StateStandby = "standby"
	// StateProvisioning: the endpoint's validation handshake is under way; its relay
	// starts once the destination accepts it.
	StateProvisioning = "provisioning"
	// StateFailed: the destination refused the validation handshake, or did not answer it
	// in time; the endpoint delivers nothing until it is replaced.
	StateFailed = "failed"
)

// Config configures a Registry.
type Config struct {
	// MaxEndpoints limits the number of endpoints; 0 means DefaultMaxEndpoints.
	MaxEndpoints int
	// DeadLetterDir, when set, also writes dead letters as files in ADT's layout under it.
	DeadLetterDir string
	// SkipHandshake skips the validation handshake of endpoints (of kinds that have one).
	SkipHandshake bool
	// HandshakeTimeout bounds the handshake; 0 means 30 s.
	HandshakeTimeout time.Duration
	// HandshakeWait is how long Put waits for the handshake before it answers with the
	// endpoint provisioning; 0 means DefaultHandshakeWait.
	HandshakeWait time.Duration
	// Policy decides what the endpoints' connections may reach: every definition is checked
	// against it when it is put, and every connection when it is made. Nil allows anything.
	Policy *netpolicy.Policy
	// MaxHops is every relay's hop limit (outbox.Config.MaxHops); 0 means
	// outbox.DefaultMaxHops.
	MaxHops int
	// Guard, when set, checks each endpoint Put writes (see Guard).
	Guard Guard
	// Holder, when set, runs each relay only while this node holds the endpoint's lease
	// (LeaseName), so that one node among those sharing the store delivers to it; nil runs
	// every relay here.
	Holder Holder
}

// Holder gives work that must run on one node at a time an owner among the nodes sharing
// the store (the server's leases, over a lease.Keeper, implement it).
type Holder interface {
	// Hold runs fn whenever this node holds the lease name, with a context cancelled as
	// soon as it loses it, until ctx ends (see lease.Keeper.Hold).
	Hold(ctx context.Context, name string, fn func(context.Context, lease.Grant) error) error
	// Owner returns the service id of the node holding the lease name, "" when none does,
	// and whether that node is this one.
	Owner(ctx context.Context, name string) (owner string, here bool, err error)
}

// LeaseName is the name of the lease under which the relay of the endpoint name runs.
func LeaseName(name string) string { return "endpoint/" + name }

// Guard checks an endpoint before it is written (*loopguard.Guard implements it).
type Guard interface {
	// PutEndpoint runs write, which writes the endpoint name with def, or returns why it may
	// not be written.
	PutEndpoint(ctx context.Context, name string, def Definition, write func() error) error
}

// DefaultHandshakeWait is how long Put waits for a validation handshake by default.
const DefaultHandshakeWait = 3 * time.Second

// Routes tells a relay which events go to its endpoint (*eventroute.Table implements it).
type Routes interface {
	Matcher(endpoint string) func(*event.Event) bool
}

// Endpoint is an endpoint as the registry shows it.
type Endpoint struct {
	Name       string
	Definition Definition
	Created    time.Time
}

// Status is an endpoint's delivery status.
type Status struct {
	outbox.Status
	// DeadLetters counts the endpoint's dead letters.
	DeadLetters int
	// Owner is the service id of the node whose relay delivers to the endpoint, "" when
	// none holds its lease or the registry has no Config.Holder.
	Owner string
}

// Registry keeps the endpoints and runs their relays. Run starts the relays of the stored
// endpoints and keeps one running per endpoint, restarting it when the endpoint is replaced,
// until its context ends. Its methods are safe for concurrent use and may be called before
// Run (relays then start with Run).
type Registry struct {
	cfg     Config
	kinds   map[string]Kind
	st      outbox.Store
	routes  Routes
	metrics *outbox.Metrics
	logger  *slog.Logger

	// mu serialises changes and guards the fields below.
	mu sync.Mutex
	// ctx is Run's context while Run runs, nil otherwise; relays run under it.
	ctx     context.Context
	wg      sync.WaitGroup
	running map[string]*running
	// validating holds the endpoints whose handshake runs or failed (see validation).
	validating map[string]*validation
	// configs holds, by endpoint, the stored definition its relay or handshake was started
	// from, or failed to parse, for Reload to tell which definitions changed in the store.
	configs map[string]json.RawMessage
}

// validation is an endpoint's validation handshake that runs, or failed, after Put answered
// or while Run starts it.
type validation struct {
	cancel context.CancelFunc
	// state is StateProvisioning or StateFailed; err and at the last failure. Guarded by
	// the registry's mu.
	state string
	err   string
	at    time.Time
}

// running is one endpoint's relay.
type running struct {
	relay  *outbox.Relay
	sink   *lazySink
	cancel context.CancelFunc
	done   chan struct{}
	// held is true while the relay runs on this node, its lease held (see Config.Holder).
	held atomic.Bool
}

// New returns a registry over st. kinds maps each endpointType to its Kind; m may be nil.
func New(cfg Config, kinds map[string]Kind, st outbox.Store, routes Routes, m *outbox.Metrics, logger *slog.Logger) (*Registry, error) {
	if cfg.MaxEndpoints < 0 {
		return nil, fmt.Errorf("endpoint config: maxEndpoints: %d is negative", cfg.MaxEndpoints)
	}
	if cfg.MaxHops < 0 {
		return nil, fmt.Errorf("endpoint config: maxHops: %d is negative", cfg.MaxHops)
	}
	if cfg.MaxEndpoints == 0 {
		cfg.MaxEndpoints = DefaultMaxEndpoints
	}
	if cfg.HandshakeTimeout == 0 {
		cfg.HandshakeTimeout = 30 * time.Second
	}
	if cfg.HandshakeWait == 0 {
		cfg.HandshakeWait = DefaultHandshakeWait
	}
	return &Registry{
		cfg: cfg, kinds: kinds, st: st, routes: routes, metrics: m, logger: logger,
		running: make(map[string]*running), validating: make(map[string]*validation),
		configs: make(map[string]json.RawMessage),
	}, nil
}

// parseDef parses a definition with its settings' connections checked against the
// registry's policy.
func (r *Registry) parseDef(raw json.RawMessage) (Definition, error) {
	def, err := Parse(raw, r.kinds)
	if err != nil {
		return Definition{}, err
	}
	def.settings = def.settings.withPolicy(r.cfg.Policy)
	return def, nil
}

// validates reports whether def is validated by a handshake before its relay starts.
func (r *Registry) validates(def Definition) bool {
	return !r.cfg.SkipHandshake && def.settings.hasHandshake()
}

// ValidName reports whether name is a valid endpoint name (see ErrNameInvalid).
func ValidName(name string) bool {
	if name == "" || len(name) > MaxNameLength {
		return false
	}
	for _, c := range name {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// Run runs a relay for every endpoint, each on a goroutine of its own, until ctx ends, then
// stops them, waits for them, closes their sinks and returns nil; it fails only when the
// stored endpoints cannot be loaded at the start. A relay whose store fails is logged and
// restarted after a pause. Run must not be called again while it runs.
func (r *Registry) Run(ctx context.Context) error {
	// Loading under the lock orders the load against Put and Delete: an endpoint stored
	// before is started here, one stored after is started by Put.
	r.mu.Lock()
	var stored []store.Endpoint
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		var err error
		stored, err = er.Endpoints()
		return err
	})
	if err != nil {
		r.mu.Unlock()
		return fmt.Errorf("load endpoints: %w", err)
	}
	r.ctx = ctx
	for _, ep := range stored {
		if v := r.validating[ep.Name]; v != nil {
			// Put before Run: its handshake goes on and starts the relay.
			r.configs[ep.Name] = ep.Config
			continue
		}
		r.launchLocked(ep)
	}
	r.mu.Unlock()

	<-ctx.Done()
	r.mu.Lock()
	for name := range r.running {
		r.stopLocked(name)
	}
	for name, v := range r.validating {
		v.cancel()
		delete(r.validating, name)
	}
	r.ctx = nil
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// validateLocked runs def's handshake in the background, with the endpoint provisioning
// meanwhile, and starts its relay once the destination accepts it. A handshake Put started
// is handed over with done, which receives its outcome, and cancel, which ends it; with
// both nil the handshake starts here. With retry, a failure retrying can fix (the
// destination does not answer, answers 5xx) is retried with backoff until the endpoint is
// replaced, deleted or Run ends, and only a refusal fails the endpoint; without it, the
// first failure does. Callers hold r.mu.
func (r *Registry) validateLocked(name string, def Definition, done <-chan error, cancel context.CancelFunc, retry bool) {
	if old := r.validating[name]; old != nil {
		old.cancel()
	}
	ctx, stop := context.WithCancel(context.Background())
	v := &validation{state: StateProvisioning, cancel: func() {
		stop()
		if cancel != nil {
			cancel()
		}
	}}
	r.validating[name] = v
	scrub := redact.NewScrubber(def.settings.secrets()...)
	r.wg.Go(func() {
		backoff := time.Second
		for {
			var err error
			if done != nil {
				select {
				case err = <-done:
				case <-ctx.Done():
					return
				}
				done = nil
			} else {
				hctx, hcancel := context.WithTimeout(ctx, r.cfg.HandshakeTimeout)
				err = def.settings.handshake(hctx)
				hcancel()
			}
			if ctx.Err() != nil {
				return
			}
			r.mu.Lock()
			if r.validating[name] != v {
				r.mu.Unlock()
				return
			}
			if err == nil {
				delete(r.validating, name)
				if err := r.startLocked(name, def); err != nil {
					r.logger.Error("endpoint not started", slog.String("endpoint", name), slog.Any("err", err))
				}
				r.mu.Unlock()
				return
			}
			v.err, v.at = fmt.Sprintf("%s: %s", ErrValidationFailed, validationError(scrub, err)), time.Now()
			r.logger.Warn("endpoint validation failed", slog.String("endpoint", name),
				slog.String("err", scrub.String(err.Error())), slog.Bool("retrying", retry && !sink.IsPermanent(err)))
			if !retry || sink.IsPermanent(err) {
				v.state = StateFailed
				r.mu.Unlock()
				return
			}
			r.mu.Unlock()
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, time.Minute)
		}
	})
}

// launchLocked starts the stored endpoint ep as Run does: its relay, or first its handshake,
// which an endpoint of a kind that has one goes through again at every start, so that a
// destination that refused it before does not get events after. It records ep's definition
// in configs. Callers hold r.mu.
func (r *Registry) launchLocked(ep store.Endpoint) {
	r.configs[ep.Name] = ep.Config
	def, err := r.parseDef(ep.Config)
	if err != nil {
		// A definition stored by an older build, or of a kind this build lacks.
		r.logger.Error("endpoint not started", slog.String("endpoint", ep.Name), slog.Any("err", err))
		return
	}
	if r.validates(def) {
		r.validateLocked(ep.Name, def, nil, nil, true)
		return
	}
	if err := r.startLocked(ep.Name, def); err != nil {
		r.logger.Error("endpoint not started", slog.String("endpoint", ep.Name), slog.Any("err", err))
	}
}

// haltLocked stops name's relay, or ends its handshake, and forgets its definition. Callers
// hold r.mu.
func (r *Registry) haltLocked(name string) {
	r.stopLocked(name)
	if v := r.validating[name]; v != nil {
		v.cancel()
		delete(r.validating, name)
	}
	delete(r.configs, name)
}

// Reload brings the relays in line with the stored endpoints, which another node sharing the
// store may have changed: an endpoint stored since starts as Run starts it (through its
// handshake, if its kind has one), one whose stored definition changed (compared byte for
// byte) starts again with it, and one no longer stored stops. Endpoints whose definition is
// unchanged are left alone, so reloading after this registry's own changes changes nothing.
// It reads the store under the lock Put and Delete hold, so it never undoes their changes.
// While Run does not run there is nothing to reload: Run loads the endpoints when it starts.
func (r *Registry) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil {
		return nil
	}
	var stored []store.Endpoint
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		var err error
		stored, err = er.Endpoints()
		return err
	})
	if err != nil {
		return fmt.Errorf("reload endpoints: %w", err)
	}
	names := make(map[string]bool, len(stored))
	for _, ep := range stored {
		names[ep.Name] = true
		if old, ok := r.configs[ep.Name]; ok && bytes.Equal(old, ep.Config) {
			continue
		}
		r.haltLocked(ep.Name)
		r.launchLocked(ep)
	}
	for name := range r.configs {
		if !names[name] {
			r.haltLocked(name)
			r.metrics.Forget(name)
		}
	}
	return nil
}

// startLocked starts name's relay if Run runs. Callers hold r.mu.
func (r *Registry) startLocked(name string, def Definition) error {
	if r.ctx == nil {
		return nil
	}
	maxBatch := cmp.Or(def.Delivery.MaxBatch, def.settings.maxBatch())
	scrub := redact.NewScrubber(def.settings.secrets()...)
	lazy := &lazySink{settings: def.settings, window: outbox.Window(maxBatch), scrub: scrub,
		logger: scrub.Logger(r.logger.With(slog.String("endpoint", name)))}
	var relaySink sink.Sink = lazy
	if def.settings.publishes() {
		relaySink = lazyPublisher{lazy}
	}
	relay, err := outbox.New(outbox.Config{
		Endpoint:      name,
		MaxBatch:      maxBatch,
		TTL:           time.Duration(def.Delivery.TTL),
		MaxAttempts:   def.Delivery.MaxAttempts,
		MinBackoff:    time.Duration(def.Delivery.MinBackoff),
		MaxBackoff:    time.Duration(def.Delivery.MaxBackoff),
		MaxHops:       r.cfg.MaxHops,
		DeadLetterDir: r.cfg.DeadLetterDir,
	}, r.st, relaySink, r.routes.Matcher(name), r.metrics, r.logger)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(r.ctx)
	run := &running{relay: relay, sink: lazy, cancel: cancel, done: make(chan struct{})}
	r.running[name] = run
	// runRelay runs the relay until ctx ends, restarting it after a failure, then closes
	// its sink.
	runRelay := func(ctx context.Context) {
		run.held.Store(true)
		defer run.held.Store(false)
		defer func() {
			if err := lazy.Close(); err != nil {
				r.logger.Warn("close endpoint sink", slog.String("endpoint", name), slog.Any("err", err))
			}
		}()
		for {
			err := relay.Run(ctx)
			if err == nil || ctx.Err() != nil {
				return
			}
			if errors.Is(err, store.ErrNotFound) {
				// The endpoint is being deleted; Delete stops this goroutine.
				<-ctx.Done()
				return
			}
			r.logger.Error("relay stopped; restarting", slog.String("endpoint", name), slog.Any("err", err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
	r.wg.Go(func() {
		defer close(run.done)
		if r.cfg.Holder == nil {
			runRelay(ctx)
			return
		}
		err := r.cfg.Holder.Hold(ctx, LeaseName(name), func(ctx context.Context, _ lease.Grant) error {
			runRelay(ctx)
			return nil
		})
		if err != nil && !errors.Is(err, lease.ErrStopped) {
			r.logger.Error("relay not run", slog.String("endpoint", name), slog.Any("err", err))
		}
	})
	return nil
}

// stopLocked stops name's relay and waits for it. Callers hold r.mu.
func (r *Registry) stopLocked(name string) {
	run, ok := r.running[name]
	if !ok {
		return
	}
	run.cancel()
	<-run.done
	delete(r.running, name)
}

// Put creates or replaces the endpoint name from its JSON definition and reports whether it
// was created. Creating and replacing are checked alike: the definition must parse, what
// it reaches must pass the egress policy (Config.Policy), and an endpoint of a kind with a
// handshake is validated with it (unless Config.SkipHandshake).
//
// Put waits for the handshake up to Config.HandshakeWait: a refusal, or no answer, fails
// Put with ErrValidationFailed and changes nothing. A handshake still running then goes on
// in the background: the endpoint is stored, shows StateProvisioning, and its relay starts
// once the destination accepts it, or the endpoint shows StateFailed.
//
// A secret sent back as GET showed it (blanked) keeps the stored value, as long as the
// endpoint's destination stays the same (see redact.Restore); one sent back blanked for
// another destination is refused. Config.Guard, when set, checks the endpoint last. A new
// endpoint receives events committed after it; a replaced one keeps its cursor and dead
// letters, and its relay restarts with the new settings.
func (r *Registry) Put(ctx context.Context, name string, raw json.RawMessage) (created bool, err error) {
	if !ValidName(name) {
		return false, fmt.Errorf("%w: %q must be 1 to %d letters, digits, '-' or '_'", ErrNameInvalid, name, MaxNameLength)
	}
	def, err := r.parseDef(raw)
	if err != nil {
		return false, err
	}
	old, exists, err := r.stored(ctx, name)
	if err != nil {
		return false, err
	}
	if exists {
		if raw, def, err = r.restoreSecrets(old.Config, raw, def); err != nil {
			return false, err
		}
	}
	if err := r.cfg.Policy.CheckReach(ctx, def.settings.reach()); err != nil {
		return false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	var (
		pending       <-chan error
		pendingCancel context.CancelFunc
	)
	if r.validates(def) {
		pending, pendingCancel, err = r.handshake(ctx, def)
		if err != nil {
			return false, err
		}
	}
	wrote := false
	write := func() error {
		wrote = true
		created, err = r.put(ctx, name, raw, def, pending, pendingCancel)
		return err
	}
	if r.cfg.Guard != nil {
		err = r.cfg.Guard.PutEndpoint(ctx, name, def, write)
	} else {
		err = write()
	}
	if !wrote && pendingCancel != nil {
		pendingCancel()
	}
	return created, err
}

// put writes the endpoint name, whose definition raw parsed into def, and starts its relay,
// or, while its handshake is pending (see handshake), leaves the relay to the handshake's
// outcome.
func (r *Registry) put(ctx context.Context, name string, raw json.RawMessage, def Definition,
	pending <-chan error, pendingCancel context.CancelFunc) (created bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	err = r.st.UpdateDelivery(ctx, func(w store.DeliveryWriter) error {
		old, err := w.Endpoint(name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			created = true
			eps, err := w.Endpoints()
			if err != nil {
				return err
			}
			if len(eps) >= r.cfg.MaxEndpoints {
				return fmt.Errorf("%w: at most %d endpoints", ErrLimitExceeded, r.cfg.MaxEndpoints)
			}
			return w.PutEndpoint(store.Endpoint{Name: name, Config: raw, Created: time.Now()})
		case err != nil:
			return err
		}
		created = false
		old.Config = raw
		return w.PutEndpoint(old)
	})
	if err != nil {
		if pendingCancel != nil {
			pendingCancel()
		}
		return false, fmt.Errorf("put endpoint %q: %w", name, err)
	}
	r.stopLocked(name)
	if old := r.validating[name]; old != nil {
		old.cancel()
		delete(r.validating, name)
	}
	r.configs[name] = raw
	if pending != nil {
		r.validateLocked(name, def, pending, pendingCancel, false)
		return created, nil
	}
	if err := r.startLocked(name, def); err != nil {
		return created, fmt.Errorf("start endpoint %q: %w", name, err)
	}
	return created, nil
}

// handshake runs def's handshake for up to Config.HandshakeWait. It returns nil channels
// when the destination accepted it, ErrValidationFailed when it refused or failed, and, when
// the handshake still runs, the channel its outcome will arrive on and the function that
// ends it.
func (r *Registry) handshake(ctx context.Context, def Definition) (<-chan error, context.CancelFunc, error) {
	hctx, cancel := context.WithTimeout(context.Background(), r.cfg.HandshakeTimeout)
	done := make(chan error, 1)
	go func() { done <- def.settings.handshake(hctx) }()
	wait := time.NewTimer(r.cfg.HandshakeWait)
	defer wait.Stop()
	select {
	case err := <-done:
		cancel()
		if err != nil {
			scrub := redact.NewScrubber(def.settings.secrets()...)
			r.logger.Info("endpoint validation failed", slog.String("err", scrub.String(err.Error())))
			return nil, nil, fmt.Errorf("%w: %w", ErrValidationFailed, validationError(scrub, err))
		}
		return nil, nil, nil
	case <-wait.C:
		return done, cancel, nil
	case <-ctx.Done():
		cancel()
		return nil, nil, ctx.Err()
	}
}

// validationError returns the failure err of a handshake as status shows it (see
// redact.Scrubber.Error), without the mark of a permanent failure.
func validationError(scrub *redact.Scrubber, err error) error {
	if p, ok := err.(*sink.PermanentError); ok {
		err = p.Err
	}
	return scrub.Error(err)
}

// stored returns the stored endpoint name, and whether there is one.
func (r *Registry) stored(ctx context.Context, name string) (store.Endpoint, bool, error) {
	var ep store.Endpoint
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		var err error
		ep, err = er.Endpoint(name)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return store.Endpoint{}, false, nil
	}
	return ep, err == nil, err
}

// restoreSecrets returns raw, the definition of def, with the secrets it carries blanked as
// GET shows them replaced by those of stored (see redact.Restore), and its definition. A
// blanked secret keeps the stored one only for the same destination: sent for another, it
// is refused, so that whoever may change an endpoint but not read its secrets cannot send
// them elsewhere.
func (r *Registry) restoreSecrets(stored, raw json.RawMessage, def Definition) (json.RawMessage, Definition, error) {
	old, err := r.parseDef(stored)
	if err != nil || old.Type != def.Type {
		// A kind this build lacks, or another kind: nothing to keep.
		return raw, def, nil
	}
	next, inner, err := settingsObject(raw)
	if err != nil {
		return raw, def, nil
	}
	_, storedInner, err := settingsObject(stored)
	if err != nil {
		return raw, def, nil
	}
	shown, err := jsonTree(old.Redacted())
	if err != nil {
		return raw, def, nil
	}
	paths := redact.Restore(inner, storedInner, shown)
	if len(paths) == 0 {
		return raw, def, nil
	}
	slices.Sort(paths)
	if !old.settings.reach().SameAddrs(def.settings.reach()) {
		return nil, Definition{}, fmt.Errorf("%w: %s: a blanked secret keeps the stored one only while the destination stays the same; send the secret itself",
			ErrInvalid, strings.Join(paths, ", "))
	}
	restored, err := json.Marshal(next)
	if err != nil {
		return nil, Definition{}, fmt.Errorf("encode the definition: %w", err)
	}
	def, err = r.parseDef(restored)
	if err != nil {
		return nil, Definition{}, err
	}
	return restored, def, nil
}

// settingsObject decodes a definition: the whole object, and the object that holds its
// settings (the properties of an ARM resource, the whole object otherwise).
func settingsObject(raw json.RawMessage) (whole, settings map[string]any, err error) {
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&whole); err != nil || whole == nil {
		return nil, nil, errors.New("not a JSON object")
	}
	if props, ok := whole["properties"].(map[string]any); ok {
		if _, flat := whole["endpointType"]; !flat {
			return whole, props, nil
		}
	}
	return whole, whole, nil
}

// jsonTree returns the JSON tree of v, an object.
func jsonTree(v any) (map[string]any, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(b, &m)
}

// Get returns the endpoint name; a missing one is store.ErrNotFound.
func (r *Registry) Get(ctx context.Context, name string) (Endpoint, error) {
	var ep store.Endpoint
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		var err error
		ep, err = er.Endpoint(name)
		return err
	})
	if err != nil {
		return Endpoint{}, err
	}
	return r.parse(ep)
}

// List returns every endpoint ordered by name.
func (r *Registry) List(ctx context.Context) ([]Endpoint, error) {
	var stored []store.Endpoint
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		var err error
		stored, err = er.Endpoints()
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Endpoint, 0, len(stored))
	for _, ep := range stored {
		e, err := r.parse(ep)
		if err != nil {
			return nil, err
		}
		out = append(out, e)
	}
	return out, nil
}

func (r *Registry) parse(ep store.Endpoint) (Endpoint, error) {
	def, err := Parse(ep.Config, r.kinds)
	if err != nil {
		return Endpoint{}, fmt.Errorf("stored endpoint %q: %w", ep.Name, err)
	}
	return Endpoint{Name: ep.Name, Definition: def, Created: ep.Created}, nil
}

// Delete deletes the endpoint name with its cursor and dead letters, and stops its relay. It
// fails with ErrInUse while routes send to it, and with store.ErrNotFound when it is missing.
func (r *Registry) Delete(ctx context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.st.UpdateDelivery(ctx, func(w store.DeliveryWriter) error {
		routes, err := w.Routes("", 0)
		if err != nil {
			return err
		}
		for _, rt := range routes {
			if rt.EndpointName == name {
				return fmt.Errorf("%w: route %q sends to it", ErrInUse, rt.ID)
			}
		}
		return w.DeleteEndpoint(name)
	})
	if err != nil {
		return fmt.Errorf("delete endpoint %q: %w", name, err)
	}
	r.haltLocked(name)
	r.metrics.Forget(name)
	return nil
}

// Status returns the delivery status of the endpoint name; a missing one is
// store.ErrNotFound. An endpoint being validated reports StateProvisioning, one that failed
// validation StateFailed with the failure as LastError, one whose relay runs on another node
// StateStandby (with the cursor and dead letters the store holds), and any other whose relay
// is not running outbox.StateStopped. With Config.Holder, Owner names the node that runs
// the relay.
func (r *Registry) Status(ctx context.Context, name string) (Status, error) {
	var st Status
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		var err error
		if st.Cursor, err = er.Cursor(name); err != nil {
			return err
		}
		st.DeadLetters, err = er.CountDeadLetters(name)
		return err
	})
	if err != nil {
		return Status{}, err
	}
	r.mu.Lock()
	run := r.running[name]
	if v := r.validating[name]; v != nil {
		st.State, st.LastError, st.LastErrorTime = v.state, v.err, v.at
		r.mu.Unlock()
		return st, nil
	}
	r.mu.Unlock()
	here := true
	if r.cfg.Holder != nil {
		if st.Owner, here, err = r.cfg.Holder.Owner(ctx, LeaseName(name)); err != nil {
			return Status{}, fmt.Errorf("status of endpoint %q: %w", name, err)
		}
	}
	switch {
	case run == nil:
		st.State = outbox.StateStopped
		return st, nil
	case !run.held.Load() && !here && st.Owner != "":
		st.State = StateStandby
		return st, nil
	}
	rs, err := run.relay.Status(ctx)
	st.Status = rs
	return st, err
}

// standby returns ErrStandby, naming the owner, when run, the relay of the endpoint name,
// runs on another node, and nil when it runs here or on no node (a replay or redrive then
// waits for it to run here; see outbox.Relay.Rewind).
func (r *Registry) standby(ctx context.Context, name string, run *running) error {
	if r.cfg.Holder == nil || run.held.Load() {
		return nil
	}
	owner, here, err := r.cfg.Holder.Owner(ctx, LeaseName(name))
	if err != nil {
		return fmt.Errorf("find the node delivering to endpoint %q: %w", name, err)
	}
	if here || owner == "" {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrStandby, owner)
}

// Replay re-delivers the log to the endpoint name from the record seq on (seq 0 or 1: from
// the oldest retained record). It fails with store.ErrNotFound for a missing endpoint, and
// with ErrStandby when the endpoint's relay runs on another node.
func (r *Registry) Replay(ctx context.Context, name string, seq uint64) error {
	return r.rewind(ctx, name, max(seq, 1)-1)
}

// ReplayFrom re-delivers the log to the endpoint name from the first record committed at or
// after t.
func (r *Registry) ReplayFrom(ctx context.Context, name string, t time.Time) (uint64, error) {
	var seq uint64
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		var err error
		seq, err = er.LogSeqAt(t)
		return err
	})
	if err != nil {
		return 0, err
	}
	return seq, r.rewind(ctx, name, seq-1)
}

// rewind moves name's cursor to seq: through its running relay, or in the store when the
// relay is not running; it fails with ErrStandby when the relay runs on another node.
func (r *Registry) rewind(ctx context.Context, name string, seq uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if run := r.running[name]; run != nil {
		if err := r.standby(ctx, name, run); err != nil {
			return err
		}
		run.relay.Rewind(seq)
		return nil
	}
	return r.st.UpdateDelivery(ctx, func(w store.DeliveryWriter) error { return w.SetCursor(name, seq) })
}

// DeadLetters lists up to limit dead letters of the endpoint name after the id after. A
// missing endpoint is store.ErrNotFound.
func (r *Registry) DeadLetters(ctx context.Context, name string, after uint64, limit int) ([]store.DeadLetter, error) {
	var dls []store.DeadLetter
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		if _, err := er.Endpoint(name); err != nil {
			return err
		}
		var err error
		dls, err = er.DeadLetters(name, after, limit)
		return err
	})
	return dls, err
}

// DeadLetter returns one dead letter; a missing one is store.ErrNotFound.
func (r *Registry) DeadLetter(ctx context.Context, name string, id uint64) (store.DeadLetter, error) {
	var dl store.DeadLetter
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		var err error
		dl, err = er.DeadLetter(name, id)
		return err
	})
	return dl, err
}

// DeleteDeadLetter deletes one dead letter; a missing one is store.ErrNotFound.
func (r *Registry) DeleteDeadLetter(ctx context.Context, name string, id uint64) error {
	return r.st.UpdateDelivery(ctx, func(w store.DeliveryWriter) error { return w.DeleteDeadLetter(name, id) })
}

// Redrive asks the endpoint's relay to send the dead letter id again; it is deleted once
// delivered (see outbox.Relay.Redrive). A missing dead letter is store.ErrNotFound; an
// endpoint whose relay is not running cannot redrive (outbox.StateStopped in its status),
// and one whose relay runs on another node fails with ErrStandby.
func (r *Registry) Redrive(ctx context.Context, name string, id uint64) error {
	if _, err := r.DeadLetter(ctx, name, id); err != nil {
		return err
	}
	r.mu.Lock()
	run := r.running[name]
	r.mu.Unlock()
	if run == nil {
		return fmt.Errorf("redrive dead letter %d of endpoint %q: the endpoint is not running", id, name)
	}
	if err := r.standby(ctx, name, run); err != nil {
		return fmt.Errorf("redrive dead letter %d of endpoint %q: %w", id, name, err)
	}
	run.relay.Redrive(id)
	return nil
}

// lazySink builds its connector's sink on first use, and again after a failed build, so an
// endpoint whose destination is down at start-up retries like any other failed send.
//
// Its errors are the sink's as scrub shows them (see redact.Scrubber.Error): without the
// endpoint's secrets, and, unless they are the destination's own answer, as
// redact.Unreachable, since the relay shows them in the endpoint's status and dead letters.
// The sink's own error, secrets scrubbed, is logged at debug level.
type lazySink struct {
	settings settings
	// window is what the relay keeps awaiting acknowledgement (see WindowSizer).
	window int
	scrub  *redact.Scrubber
	logger *slog.Logger
	sink   sink.Sink
}

// Send implements sink.Sink.
func (l *lazySink) Send(ctx context.Context, events []event.Event) error {
	if err := l.connect(); err != nil {
		return err
	}
	return l.sanitize(l.sink.Send(ctx, events))
}

// sanitize returns err as the relay may show it, and logs what it hides.
func (l *lazySink) sanitize(err error) error {
	if err == nil {
		return nil
	}
	shown := l.scrub.Error(err)
	if shown.Error() != err.Error() {
		l.logger.Debug("send failed", slog.String("err", l.scrub.String(err.Error())))
	}
	return shown
}

// connect creates the sink unless it exists. Building a sink makes no connection, so its
// failures are problems of the settings, shown as they are (secrets scrubbed).
func (l *lazySink) connect() error {
	if l.sink != nil {
		return nil
	}
	s, err := l.settings.newSink(l.logger, l.window)
	if err != nil {
		return l.sanitize(redact.Shown(fmt.Errorf("connect: %w", err)))
	}
	l.sink = s
	return nil
}

// lazyPublisher is the lazySink of a kind whose sinks are sink.Publishers.
type lazyPublisher struct{ *lazySink }

// Publish implements sink.Publisher. Like Send, it is never concurrent with Send or Close.
func (l lazyPublisher) Publish(ctx context.Context, events []event.Event) (sink.Ack, error) {
	if err := l.connect(); err != nil {
		return nil, err
	}
	ack, err := l.sink.(sink.Publisher).Publish(ctx, events)
	if err != nil {
		return nil, l.sanitize(err)
	}
	return func(ctx context.Context) error { return l.sanitize(ack(ctx)) }, nil
}

// Close implements sink.Sink. Send and Close are never concurrent: the relay that sends has
// returned before the registry closes its sink. A closed lazySink builds its sink again on
// the next Send, as a relay that regained its lease sends again (see Config.Holder).
func (l *lazySink) Close() error {
	if l.sink == nil {
		return nil
	}
	err := l.sink.Close()
	l.sink = nil
	return err
}
