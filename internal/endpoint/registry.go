package endpoint

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/outbox"
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
	// ErrValidationFailed: the destination refused the validation handshake.
	ErrValidationFailed = errors.New("endpoint validation failed")
)

// Config configures a Registry.
type Config struct {
	// MaxEndpoints limits the number of endpoints; 0 means DefaultMaxEndpoints.
	MaxEndpoints int
	// DeadLetterDir, when set, also writes dead letters as files in ADT's layout under it.
	DeadLetterDir string
	// SkipHandshake skips the validation handshake of new endpoints (of kinds that have one).
	SkipHandshake bool
	// HandshakeTimeout bounds the handshake; 0 means 30 s.
	HandshakeTimeout time.Duration
	// MaxHops is every relay's hop limit (outbox.Config.MaxHops); 0 means
	// outbox.DefaultMaxHops.
	MaxHops int
	// Guard, when set, checks each endpoint Put writes (see Guard).
	Guard Guard
}

// Guard checks an endpoint before it is written (*loopguard.Guard implements it).
type Guard interface {
	// PutEndpoint runs write, which writes the endpoint name with def, or returns why it may
	// not be written.
	PutEndpoint(ctx context.Context, name string, def Definition, write func() error) error
}

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
}

// running is one endpoint's relay.
type running struct {
	relay  *outbox.Relay
	sink   *lazySink
	cancel context.CancelFunc
	done   chan struct{}
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
	return &Registry{
		cfg: cfg, kinds: kinds, st: st, routes: routes, metrics: m, logger: logger,
		running: make(map[string]*running),
	}, nil
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
		def, err := Parse(ep.Config, r.kinds)
		if err != nil {
			// A definition stored by an older build, or of a kind this build lacks.
			r.logger.Error("endpoint not started", slog.String("endpoint", ep.Name), slog.Any("err", err))
			continue
		}
		if err := r.startLocked(ep.Name, def); err != nil {
			r.logger.Error("endpoint not started", slog.String("endpoint", ep.Name), slog.Any("err", err))
		}
	}
	r.mu.Unlock()

	<-ctx.Done()
	r.mu.Lock()
	for name := range r.running {
		r.stopLocked(name)
	}
	r.ctx = nil
	r.mu.Unlock()
	r.wg.Wait()
	return nil
}

// startLocked starts name's relay if Run runs. Callers hold r.mu.
func (r *Registry) startLocked(name string, def Definition) error {
	if r.ctx == nil {
		return nil
	}
	maxBatch := cmp.Or(def.Delivery.MaxBatch, def.settings.maxBatch())
	lazy := &lazySink{settings: def.settings, window: outbox.Window(maxBatch), logger: r.logger.With(slog.String("endpoint", name))}
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
	r.wg.Go(func() {
		defer close(run.done)
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
// was created. A new endpoint of a kind with a handshake is checked with it first (unless
// Config.SkipHandshake), then Config.Guard checks it. A new endpoint receives events
// committed after it; a replaced one keeps its cursor and dead letters, and its relay
// restarts with the new settings.
func (r *Registry) Put(ctx context.Context, name string, raw json.RawMessage) (created bool, err error) {
	if !ValidName(name) {
		return false, fmt.Errorf("%w: %q must be 1 to %d letters, digits, '-' or '_'", ErrNameInvalid, name, MaxNameLength)
	}
	def, err := Parse(raw, r.kinds)
	if err != nil {
		return false, err
	}
	exists, err := r.exists(ctx, name)
	if err != nil {
		return false, err
	}
	if !exists && !r.cfg.SkipHandshake {
		hctx, cancel := context.WithTimeout(ctx, r.cfg.HandshakeTimeout)
		err := def.settings.handshake(hctx)
		cancel()
		if err != nil {
			return false, fmt.Errorf("%w: %w", ErrValidationFailed, err)
		}
	}
	write := func() error { created, err = r.put(ctx, name, raw, def); return err }
	if r.cfg.Guard != nil {
		err = r.cfg.Guard.PutEndpoint(ctx, name, def, write)
	} else {
		err = write()
	}
	return created, err
}

// put writes the endpoint name, whose definition raw parsed into def, and starts its relay.
func (r *Registry) put(ctx context.Context, name string, raw json.RawMessage, def Definition) (created bool, err error) {
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
		return false, fmt.Errorf("put endpoint %q: %w", name, err)
	}
	r.stopLocked(name)
	if err := r.startLocked(name, def); err != nil {
		return created, fmt.Errorf("start endpoint %q: %w", name, err)
	}
	return created, nil
}

func (r *Registry) exists(ctx context.Context, name string) (bool, error) {
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		_, err := er.Endpoint(name)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
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
	r.stopLocked(name)
	r.metrics.Forget(name)
	return nil
}

// Status returns the delivery status of the endpoint name; a missing one is
// store.ErrNotFound. An endpoint whose relay is not running reports outbox.StateStopped.
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
	r.mu.Unlock()
	if run == nil {
		st.State = outbox.StateStopped
		return st, nil
	}
	rs, err := run.relay.Status(ctx)
	st.Status = rs
	return st, err
}

// Replay re-delivers the log to the endpoint name from the record seq on (seq 0 or 1: from
// the oldest retained record). It fails with store.ErrNotFound for a missing endpoint.
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
// relay is not running.
func (r *Registry) rewind(ctx context.Context, name string, seq uint64) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if run := r.running[name]; run != nil {
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
// endpoint whose relay is not running cannot redrive (outbox.StateStopped in its status).
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
	run.relay.Redrive(id)
	return nil
}

// lazySink builds its connector's sink on first use, and again after a failed build, so an
// endpoint whose destination is down at start-up retries like any other failed send.
type lazySink struct {
	settings settings
	// window is what the relay keeps awaiting acknowledgement (see WindowSizer).
	window int
	logger *slog.Logger
	sink   sink.Sink
}

// Send implements sink.Sink.
func (l *lazySink) Send(ctx context.Context, events []event.Event) error {
	if err := l.connect(); err != nil {
		return err
	}
	return l.sink.Send(ctx, events)
}

// connect creates the sink unless it exists.
func (l *lazySink) connect() error {
	if l.sink != nil {
		return nil
	}
	s, err := l.settings.newSink(l.logger, l.window)
	if err != nil {
		return fmt.Errorf("connect: %w", err)
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
	return l.sink.(sink.Publisher).Publish(ctx, events)
}

// Close implements sink.Sink. Send and Close are never concurrent: the relay that sends has
// returned before the registry closes its sink.
func (l *lazySink) Close() error {
	if l.sink == nil {
		return nil
	}
	return l.sink.Close()
}
