package source

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/ingress/runner"
	"github.com/twinflow/twinflow/internal/lease"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/store"
)

// MaxNameLength is the longest source or mapping name accepted.
const MaxNameLength = 64

// EventsSource is the source name mappings give to read twinflow's own change events. It is
// no stored source: its runner runs while mappings read it.
const EventsSource = runner.EventsSource

// The errors of the registry, possibly wrapped with details; the API maps them to HTTP.
var (
	// ErrNameInvalid: the name is empty, too long, holds a character other than a letter, a
	// digit, '-' or '_', or is the reserved $events.
	ErrNameInvalid = errors.New("invalid name")
	// ErrInUse: mappings still read the source.
	ErrInUse = errors.New("source in use")
	// ErrMappingInvalid: the mapping definition does not compile.
	ErrMappingInvalid = errors.New("invalid mapping")
	// ErrNoSuchSource: the mapping names a source that does not exist.
	ErrNoSuchSource = errors.New("the mapping's source does not exist")
	// ErrNotHTTP: messages are pushed to a source that is not of type http.
	ErrNotHTTP = errors.New("not an http source")
	// ErrNotRunning: the source's runner is not running (the source failed, or twinflow is
	// stopping).
	ErrNotRunning = runner.ErrNotRunning
)

// Compiled is a compiled mapping: an ingress.Mapper that can also show what it would do.
type Compiled interface {
	ingress.Mapper
	// DryRun maps m as Map does, reading twins, and returns what the mapping would change,
	// as a value that encodes as JSON; it changes nothing. Its errors are Map's.
	DryRun(ctx context.Context, m ingress.Message, twins ingress.TwinReader) (any, error)
}

// Compiler compiles a mapping definition, the JSON object PUT /mappings/{name} takes. An
// error is the definition's fault; it lists every problem, one per line, each naming the
// field (and the position in the expression) it is about.
type Compiler func(def json.RawMessage) (Compiled, error)

// Config configures a Registry.
type Config struct {
	// Runner is the configuration of every source's runner (its Source is set per source;
	// a source's definition may set MaxMessageBytes and DedupWindow). Zero fields take the
	// runner's defaults.
	Runner runner.Config
	// StartWait bounds how long Put waits for a new source to leave ingress.Starting, so its
	// answer tells whether the source connected; default 2s.
	StartWait time.Duration
	// Now is the clock of creation times and of pushed messages; nil means time.Now.
	Now func() time.Time
	// Policy decides what the sources' connections may reach: every definition is checked
	// against it when it is put, and every connection when it is made. Nil allows anything.
	Policy *netpolicy.Policy
	// Guard, when set, checks each source Put writes (see Guard).
	Guard Guard
	// Holder, when set, runs each source but the http ones (whose messages are pushed to
	// every node) only while this node holds the source's lease (LeaseName), so that one
	// node among those sharing the store consumes it; nil runs every source here.
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

// LeaseName is the name of the lease under which the source name (EventsSource included)
// runs.
func LeaseName(name string) string { return "source/" + name }

// Guard checks a source before it is written (*loopguard.Guard implements it).
type Guard interface {
	// PutSource runs write, which writes the source name with def, or returns why it may
	// not be written.
	PutSource(ctx context.Context, name string, def Definition, write func() error) error
}

// Store is what the registry needs of the store: ingress state, the twins mappings read in a
// dry run, and the change log with its consumer cursors for $events.
type Store interface {
	store.Store
	store.Ingress
	store.Delivery
}

// Source is a source as the registry shows it.
type Source struct {
	Name       string
	Definition Definition
	Created    time.Time
}

// Status is a source's status.
type Status struct {
	runner.Status
	// DeadLetters counts the source's dead letters.
	DeadLetters int
	// Owner is the service id of the node that consumes the source, "" when none holds its
	// lease, for an http source (every node takes its pushes), or without Config.Holder.
	Owner string
}

// Standby is the state of a source that another node consumes, the owner of its lease (see
// Config.Holder); this node takes it over if that node dies.
const Standby ingress.State = "standby"

// Mapping is a mapping as the registry shows it: its definition as it was given.
type Mapping struct {
	Name, Source string
	Definition   json.RawMessage
	Created      time.Time
}

// Registry keeps the sources and mappings and runs a runner per source. Run starts the
// runners of the stored sources, and of $events when mappings read it, and keeps them
// running, restarting a source's when it is replaced, until its context ends. Its methods
// are safe for concurrent use; the changes they make before Run take effect when it starts.
type Registry struct {
	cfg     Config
	kinds   map[string]Kind
	st      Store
	svc     runner.Applier
	compile Compiler
	metrics *runner.Metrics
	logger  *slog.Logger

	// mu serialises changes and guards the fields below.
	mu sync.Mutex
	// ctx is Run's context while Run runs, nil otherwise; runners run under it.
	ctx     context.Context
	wg      sync.WaitGroup
	running map[string]*running
	// mappings are the compiled mappings, by name; a stored mapping that no longer compiles
	// is missing.
	mappings map[string]compiled
	// configs holds, by source, the stored definition its runner was started from, or
	// failed to start from, for Reload to tell which definitions changed in the store.
	configs map[string]json.RawMessage
	// started is closed once Run has started the stored sources (see Started).
	started chan struct{}
}

// running is one source's runner.
type running struct {
	runner *runner.Runner
	src    ingress.Source
	cancel context.CancelFunc
	done   chan struct{}
	// leased is set when the runner runs under the source's lease (see Config.Holder); held
	// is true while it does.
	leased bool
	held   atomic.Bool
}

// compiled is a compiled mapping with the source it reads and the stored definition it was
// compiled from.
type compiled struct {
	source string
	m      Compiled
	def    json.RawMessage
}

// New returns a registry over st that builds sources with kinds, applies messages through svc
// and compiles mappings with compile. m may be nil.
func New(cfg Config, kinds map[string]Kind, st Store, svc runner.Applier, compile Compiler, m *runner.Metrics, logger *slog.Logger) (*Registry, error) {
	if compile == nil {
		return nil, errors.New("source registry: a mapping compiler is required")
	}
	if cfg.StartWait < 0 {
		return nil, fmt.Errorf("source registry: startWait %v is negative", cfg.StartWait)
	}
	if cfg.StartWait == 0 {
		cfg.StartWait = 2 * time.Second
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	check := cfg.Runner
	check.Source = "check"
	if _, err := runner.New(check, st, svc, nil, logger); err != nil {
		return nil, fmt.Errorf("source registry: %w", err)
	}
	return &Registry{
		cfg: cfg, kinds: kinds, st: st, svc: svc, compile: compile, metrics: m, logger: logger,
		running: make(map[string]*running), mappings: make(map[string]compiled),
		configs: make(map[string]json.RawMessage), started: make(chan struct{}),
	}, nil
}

// Started is closed once Run has started the stored sources and each has connected, failed or
// taken Config.StartWait trying; from then on an http source takes pushes.
func (r *Registry) Started() <-chan struct{} { return r.started }

// ValidName reports whether name is a valid source or mapping name (see ErrNameInvalid).
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

func nameError(name string) error {
	return fmt.Errorf("%w: %q must be 1 to %d letters, digits, '-' or '_'", ErrNameInvalid, name, MaxNameLength)
}

// Run compiles the stored mappings and runs a runner for every stored source, and for
// $events when mappings read it, each on goroutines of its own, until ctx ends; then it stops
// them, waits for them and returns nil. It fails only when the stored state cannot be loaded
// at the start. A source whose definition or mappings no longer load (a kind this build
// lacks, a mapping whose model is gone) is logged and left out. Run must be called once.
func (r *Registry) Run(ctx context.Context) error {
	// Loading under the lock orders the load against changes: what is stored before is
	// started here, what is stored after by the change.
	r.mu.Lock()
	var (
		sources  []store.Source
		mappings []store.Mapping
	)
	err := r.st.ViewIngress(ctx, func(ir store.IngressReader) error {
		var err error
		if sources, err = ir.Sources(); err != nil {
			return err
		}
		mappings, err = ir.Mappings()
		return err
	})
	if err != nil {
		r.mu.Unlock()
		if ctx.Err() != nil {
			return nil // ctx ended during the load: nothing started, nothing to stop
		}
		return fmt.Errorf("load sources and mappings: %w", err)
	}
	r.ctx = ctx
	for _, mp := range mappings {
		c, err := r.compile(mp.Definition)
		if err != nil {
			r.logger.Error("mapping not loaded", slog.String("mapping", mp.Name), slog.Any("err", err))
			continue
		}
		r.mappings[mp.Name] = compiled{source: mp.Source, m: c, def: mp.Definition}
	}
	for _, src := range sources {
		r.configs[src.Name] = src.Config
		def, err := r.parseDef(src.Config)
		if err == nil {
			err = r.startLocked(src.Name, def)
		}
		if err != nil {
			r.logger.Error("source not started", slog.String("source", src.Name), slog.Any("err", err))
		}
	}
	r.syncEventsLocked()
	starting := maps.Clone(r.running)
	r.mu.Unlock()
	var wg sync.WaitGroup
	for name, rn := range starting {
		wg.Go(func() { r.waitStarted(name, rn) })
	}
	wg.Wait()
	close(r.started)

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

// Reload brings the runners and mappings in line with the stored sources and mappings,
// which another node sharing the store may have changed, as Put, Delete, PutMapping and
// DeleteMapping bring them in line with their own changes: a mapping stored since, or whose
// stored definition changed, is compiled and handed to its source's runner, and one no
// longer stored leaves it; a source stored since, or whose stored definition changed
// (compared byte for byte), starts with its mappings, and one no longer stored stops; the
// $events runner runs while mappings read $events. What is unchanged is left alone, so
// reloading after this registry's own changes changes nothing. A stored mapping that does not
// compile is left out, and compiled again at the next Reload (the models it names may have
// arrived by then). Reload reads the store under the lock the changes hold, so it never
// undoes them. While Run does not run there is nothing to reload: Run loads everything when
// it starts.
func (r *Registry) Reload(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ctx == nil {
		return nil
	}
	var (
		sources  []store.Source
		mappings []store.Mapping
	)
	err := r.st.ViewIngress(ctx, func(ir store.IngressReader) error {
		var err error
		if sources, err = ir.Sources(); err != nil {
			return err
		}
		mappings, err = ir.Mappings()
		return err
	})
	if err != nil {
		return fmt.Errorf("reload sources and mappings: %w", err)
	}

	// Mappings first, so that the sources started below start with them; refresh lists the
	// sources whose runners' mappings changed.
	refresh := map[string]bool{}
	storedMappings := make(map[string]bool, len(mappings))
	var errs []error
	for _, mp := range mappings {
		storedMappings[mp.Name] = true
		old, ok := r.mappings[mp.Name]
		if ok && old.source == mp.Source && bytes.Equal(old.def, mp.Definition) {
			continue
		}
		if ok {
			delete(r.mappings, mp.Name)
			refresh[old.source] = true
		}
		c, err := r.compile(mp.Definition)
		if err != nil {
			errs = append(errs, fmt.Errorf("compile mapping %q: %w", mp.Name, err))
			continue
		}
		r.mappings[mp.Name] = compiled{source: mp.Source, m: c, def: mp.Definition}
		refresh[mp.Source] = true
	}
	for name, c := range r.mappings {
		if !storedMappings[name] {
			delete(r.mappings, name)
			refresh[c.source] = true
			r.metrics.ForgetMapping(name)
		}
	}

	storedSources := make(map[string]bool, len(sources))
	for _, src := range sources {
		storedSources[src.Name] = true
		if old, ok := r.configs[src.Name]; ok && bytes.Equal(old, src.Config) {
			continue
		}
		r.stopLocked(src.Name)
		r.configs[src.Name] = src.Config
		def, err := r.parseDef(src.Config)
		if err == nil {
			err = r.startLocked(src.Name, def)
		}
		if err != nil {
			r.logger.Error("source not started", slog.String("source", src.Name), slog.Any("err", err))
		}
		delete(refresh, src.Name) // started with its mappings as they are
	}
	for name := range r.configs {
		if !storedSources[name] {
			r.stopLocked(name)
			delete(r.configs, name)
			delete(refresh, name)
			r.metrics.ForgetSource(name)
		}
	}
	for name := range refresh {
		r.refreshLocked(name)
	}
	r.syncEventsLocked()
	return errors.Join(errs...)
}

// runnerConfig returns the runner configuration of source name.
func (r *Registry) runnerConfig(name string, def Definition) runner.Config {
	cfg := r.cfg.Runner
	cfg.Source = name
	cfg.MaxMessageBytes = cmp.Or(def.MaxMessageBytes, cfg.MaxMessageBytes)
	cfg.DedupWindow = cmp.Or(def.DedupWindow, cfg.DedupWindow)
	cfg.Propagation = name == EventsSource
	return cfg
}

// startLocked starts source name with the runner of def, if Run runs. Callers hold r.mu.
//
// The source's errors reach its status and the logs as redact.Scrubber.Error shows them:
// without the source's secrets, and, unless they are the broker's own answer, as
// redact.Unreachable. What the source and the runner log goes through the scrubber too.
func (r *Registry) startLocked(name string, def Definition) error {
	if r.ctx == nil {
		return nil
	}
	var scrub *redact.Scrubber
	if def.settings != nil {
		scrub = redact.NewScrubber(def.settings.secrets()...)
	}
	base := scrub.Logger(r.logger)
	logger := base.With(slog.String("source", name))
	src, err := r.newSource(r.ctx, name, def, base, logger)
	if err != nil {
		return fmt.Errorf("build source %q: %w", name, scrub.Error(redact.Shown(err)))
	}
	run, err := runner.New(r.runnerConfig(name, def), r.st, r.svc, r.metrics, base) // tags its lines too
	if err != nil {
		return err
	}
	run.SetMappings(r.mappingsForLocked(name))
	runSrc := src
	if _, pushed := src.(*HTTPSource); !pushed {
		// An http source has no connection to fail, and hands its pushes to the runner
		// itself.
		runSrc = sanitized(src, scrub)
	}
	ctx, cancel := context.WithCancel(r.ctx)
	_, pushed := src.(*HTTPSource)
	rn := &running{runner: run, src: src, cancel: cancel, done: make(chan struct{}), leased: r.cfg.Holder != nil && !pushed}
	r.running[name] = rn
	if !rn.leased {
		r.wg.Go(func() {
			defer close(rn.done)
			// A source that fails stays failed, with its error in its status, until it is
			// replaced: retrying cannot fix what made it fail.
			if err := run.Run(ctx, runSrc); err != nil && ctx.Err() == nil {
				logger.Error("source failed", slog.Any("err", err))
			}
		})
		return nil
	}
	r.wg.Go(func() {
		defer close(rn.done)
		// A source runs once: each time this node gains the lease anew, it runs a new one.
		fresh := false
		err := r.cfg.Holder.Hold(ctx, LeaseName(name), func(ctx context.Context, _ lease.Grant) error {
			if fresh {
				src, err := r.newSource(ctx, name, def, base, logger)
				if err != nil {
					return fmt.Errorf("build source %q: %w", name, scrub.Error(redact.Shown(err)))
				}
				runSrc = sanitized(src, scrub)
			}
			fresh = true
			rn.held.Store(true)
			defer rn.held.Store(false)
			return run.Run(ctx, runSrc)
		})
		// As above, a source that fails stays failed; its lease is released, so another
		// node tries it too.
		if err != nil && ctx.Err() == nil && !errors.Is(err, lease.ErrStopped) {
			logger.Error("source failed", slog.Any("err", err))
		}
	})
	return nil
}

// newSource builds the source name of def: the change log's for EventsSource, its
// connector's otherwise, logging to base (connectors tag their lines with the name
// themselves) or, for EventsSource, to logger.
func (r *Registry) newSource(ctx context.Context, name string, def Definition, base, logger *slog.Logger) (ingress.Source, error) {
	if name != EventsSource {
		return def.settings.newSource(name, base)
	}
	es, err := runner.NewEventSource(runner.EventSourceConfig{}, r.st, logger)
	if err != nil {
		return nil, err
	}
	// The mapping that started the source sees every change committed after it.
	if err := es.Open(ctx); err != nil {
		return nil, err
	}
	return es, nil
}

// stopLocked stops source name's runner and waits for it. Callers hold r.mu.
func (r *Registry) stopLocked(name string) {
	rn, ok := r.running[name]
	if !ok {
		return
	}
	rn.cancel()
	<-rn.done
	delete(r.running, name)
}

// mappingsForLocked returns the compiled mappings of source, ordered by name. Callers hold
// r.mu.
func (r *Registry) mappingsForLocked(source string) []runner.Mapping {
	var out []runner.Mapping
	for name, c := range r.mappings {
		if c.source == source {
			out = append(out, runner.Mapping{Name: name, Mapper: c.m})
		}
	}
	slices.SortFunc(out, func(a, b runner.Mapping) int { return cmp.Compare(a.Name, b.Name) })
	return out
}

// refreshLocked hands source's runner its current mappings. Callers hold r.mu.
func (r *Registry) refreshLocked(source string) {
	if rn, ok := r.running[source]; ok {
		rn.runner.SetMappings(r.mappingsForLocked(source))
	}
}

// syncEventsLocked runs the $events runner while mappings read $events and stops it, with
// its cursor (which would hold back the log's pruning), when none do. Callers hold r.mu.
func (r *Registry) syncEventsLocked() {
	if r.ctx == nil {
		return
	}
	_, runs := r.running[EventsSource]
	wanted := len(r.mappingsForLocked(EventsSource)) > 0
	switch {
	case wanted && !runs:
		if err := r.startLocked(EventsSource, Definition{Type: EventsSource}); err != nil {
			r.logger.Error("propagation not started", slog.Any("err", err))
		}
	case !wanted && runs:
		r.stopLocked(EventsSource)
		err := r.st.UpdateDelivery(r.ctx, func(w store.DeliveryWriter) error { return w.DeleteConsumerCursor(EventsSource) })
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			r.logger.Error("delete the cursor of "+EventsSource, slog.Any("err", err))
		}
	}
}

// Put creates or replaces the source name from its JSON definition and reports whether it
// was created. Creating and replacing are checked alike: the definition must parse, and
// what it reaches must pass the egress policy (Config.Policy). A secret sent back as GET
// showed it (blanked) keeps the stored value, as long as the source's broker stays the same
// (see redact.Restore); one sent back blanked for another broker is refused. A replaced
// source keeps its dead letters and message ids, and its runner restarts with the new
// settings. Config.Guard, when set, checks the source last.
func (r *Registry) Put(ctx context.Context, name string, raw json.RawMessage) (created bool, err error) {
	if !ValidName(name) {
		return false, nameError(name)
	}
	def, err := r.parseDef(raw)
	if err != nil {
		return false, err
	}
	if raw, def, err = r.restoreSecrets(ctx, name, raw, def); err != nil {
		return false, err
	}
	if err := r.cfg.Policy.CheckReach(ctx, def.settings.reach()); err != nil {
		return false, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	write := func() error { created, err = r.put(ctx, name, raw, def); return err }
	if r.cfg.Guard != nil {
		err = r.cfg.Guard.PutSource(ctx, name, def, write)
	} else {
		err = write()
	}
	return created, err
}

// put writes the source name, whose definition raw parsed into def, and starts it.
func (r *Registry) put(ctx context.Context, name string, raw json.RawMessage, def Definition) (created bool, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	err = r.st.UpdateIngress(ctx, func(w store.IngressWriter) error {
		_, err := w.Source(name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			created = true
		case err != nil:
			return err
		}
		return w.PutSource(store.Source{Name: name, Config: raw, Created: r.cfg.Now()})
	})
	if err != nil {
		return false, fmt.Errorf("put source %q: %w", name, err)
	}
	r.configs[name] = raw
	r.stopLocked(name)
	if err := r.startLocked(name, def); err != nil {
		return created, fmt.Errorf("start source %q: %w", name, err)
	}
	if rn := r.running[name]; rn != nil {
		r.waitStarted(name, rn)
	}
	return created, nil
}

// Get returns the source name; a missing one is store.ErrNotFound. $events is shown as a
// source of type $events.
func (r *Registry) Get(ctx context.Context, name string) (Source, error) {
	if name == EventsSource {
		return Source{Name: EventsSource, Definition: Definition{Type: EventsSource}}, nil
	}
	var src store.Source
	err := r.st.ViewIngress(ctx, func(ir store.IngressReader) error {
		var err error
		src, err = ir.Source(name)
		return err
	})
	if err != nil {
		return Source{}, err
	}
	return r.parse(src)
}

// List returns every stored source ordered by name ($events is not one).
func (r *Registry) List(ctx context.Context) ([]Source, error) {
	var stored []store.Source
	err := r.st.ViewIngress(ctx, func(ir store.IngressReader) error {
		var err error
		stored, err = ir.Sources()
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Source, 0, len(stored))
	for _, src := range stored {
		s, err := r.parse(src)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
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

// restoreSecrets returns raw, the definition of def, with the secrets it carries blanked as
// GET shows them replaced by those of the stored source name (see redact.Restore), and its
// definition. A blanked secret keeps the stored one only for the same broker: sent for
// another, it is refused, so that whoever may change a source but not read its secrets
// cannot send them elsewhere.
func (r *Registry) restoreSecrets(ctx context.Context, name string, raw json.RawMessage, def Definition) (json.RawMessage, Definition, error) {
	var stored store.Source
	err := r.st.ViewIngress(ctx, func(ir store.IngressReader) error {
		var err error
		stored, err = ir.Source(name)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return raw, def, nil
	}
	if err != nil {
		return nil, Definition{}, err
	}
	old, err := r.parseDef(stored.Config)
	if err != nil || old.Type != def.Type {
		// A kind this build lacks, or another kind: nothing to keep.
		return raw, def, nil
	}
	var next, storedTree, shown map[string]any
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if dec.Decode(&next) != nil || json.Unmarshal(stored.Config, &storedTree) != nil {
		return raw, def, nil
	}
	if b, err := json.Marshal(old.Redacted()); err != nil || json.Unmarshal(b, &shown) != nil {
		return raw, def, nil
	}
	paths := redact.Restore(next, storedTree, shown)
	if len(paths) == 0 {
		return raw, def, nil
	}
	slices.Sort(paths)
	if !old.settings.reach().SameAddrs(def.settings.reach()) {
		return nil, Definition{}, fmt.Errorf("%w: %s: a blanked secret keeps the stored one only while the broker stays the same; send the secret itself",
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

func (r *Registry) parse(src store.Source) (Source, error) {
	def, err := Parse(src.Config, r.kinds)
	if err != nil {
		return Source{}, fmt.Errorf("stored source %q: %w", src.Name, err)
	}
	return Source{Name: src.Name, Definition: def, Created: src.Created}, nil
}

// Delete deletes the source name with its dead letters and message ids, and stops its
// runner. It fails with ErrInUse while mappings read it, and with store.ErrNotFound when it
// is missing.
func (r *Registry) Delete(ctx context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	err := r.st.UpdateIngress(ctx, func(w store.IngressWriter) error {
		mappings, err := w.Mappings()
		if err != nil {
			return err
		}
		for _, mp := range mappings {
			if mp.Source == name {
				return fmt.Errorf("%w: mapping %q reads it", ErrInUse, mp.Name)
			}
		}
		return w.DeleteSource(name)
	})
	if err != nil {
		return fmt.Errorf("delete source %q: %w", name, err)
	}
	r.stopLocked(name)
	delete(r.configs, name)
	r.metrics.ForgetSource(name)
	return nil
}

// Status returns the status of source name; a missing one is store.ErrNotFound. A source
// whose runner does not run reports ingress.Stopped.
func (r *Registry) Status(ctx context.Context, name string) (Status, error) {
	var st Status
	err := r.st.ViewIngress(ctx, func(ir store.IngressReader) error {
		if name != EventsSource {
			if _, err := ir.Source(name); err != nil {
				return err
			}
		}
		var err error
		st.DeadLetters, err = ir.CountSourceDeadLetters(name)
		return err
	})
	if err != nil {
		return Status{}, err
	}
	r.mu.Lock()
	rn := r.running[name]
	r.mu.Unlock()
	if rn == nil {
		st.State = ingress.Stopped
		return st, nil
	}
	st.Status = rn.runner.Status()
	if _, pushed := rn.src.(*HTTPSource); pushed || r.cfg.Holder == nil {
		return st, nil
	}
	owner, here, err := r.cfg.Holder.Owner(ctx, LeaseName(name))
	if err != nil {
		return Status{}, fmt.Errorf("status of source %q: %w", name, err)
	}
	st.Owner = owner
	if !rn.held.Load() && !here && owner != "" {
		st.State = Standby
	}
	return st, nil
}

// DeadLetters lists up to limit dead letters of source name after the id after. A missing
// source is store.ErrNotFound.
func (r *Registry) DeadLetters(ctx context.Context, name string, after uint64, limit int) ([]store.SourceDeadLetter, error) {
	var dls []store.SourceDeadLetter
	err := r.st.ViewIngress(ctx, func(ir store.IngressReader) error {
		if name != EventsSource {
			if _, err := ir.Source(name); err != nil {
				return err
			}
		}
		var err error
		dls, err = ir.SourceDeadLetters(name, after, limit)
		return err
	})
	return dls, err
}

// DeadLetter returns one dead letter; a missing one is store.ErrNotFound.
func (r *Registry) DeadLetter(ctx context.Context, name string, id uint64) (store.SourceDeadLetter, error) {
	var dl store.SourceDeadLetter
	err := r.st.ViewIngress(ctx, func(ir store.IngressReader) error {
		var err error
		dl, err = ir.SourceDeadLetter(name, id)
		return err
	})
	return dl, err
}

// DeleteDeadLetter deletes one dead letter; a missing one is store.ErrNotFound.
func (r *Registry) DeleteDeadLetter(ctx context.Context, name string, id uint64) error {
	return r.st.UpdateIngress(ctx, func(w store.IngressWriter) error { return w.DeleteSourceDeadLetter(name, id) })
}

// Redrive applies the message of dead letter id of source name again through the source's
// runner, with its mappings as they are now, and returns what became of it (see
// runner.Runner.Redrive). A missing dead letter is store.ErrNotFound; a source whose runner
// does not run is ErrNotRunning.
func (r *Registry) Redrive(ctx context.Context, name string, id uint64) (runner.Outcome, error) {
	dl, err := r.DeadLetter(ctx, name, id)
	if err != nil {
		return runner.Outcome{}, err
	}
	r.mu.Lock()
	rn := r.running[name]
	r.mu.Unlock()
	if rn == nil {
		return runner.Outcome{}, ErrNotRunning
	}
	return rn.runner.Redrive(ctx, dl)
}

// Push applies the messages of a request to the http source name (see ReadMessages) and
// returns what became of each. A missing source is store.ErrNotFound, one of another type
// ErrNotHTTP, a body without messages ErrBadPush.
func (r *Registry) Push(ctx context.Context, name string, body []byte, header http.Header) ([]runner.Outcome, error) {
	src, err := r.Get(ctx, name)
	if err != nil {
		return nil, err
	}
	if src.Definition.Type != HTTPType {
		return nil, fmt.Errorf("%w: %s is of type %s", ErrNotHTTP, name, src.Definition.Type)
	}
	msgs, err := ReadMessages(body, header, name, r.cfg.Now())
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	rn := r.running[name]
	r.mu.Unlock()
	hs, ok := rn.source().(*HTTPSource)
	if !ok {
		return nil, ErrNotRunning
	}
	return hs.Push(ctx, msgs)
}

// waitStarted waits up to Config.StartWait until rn, the runner of source name, connected,
// failed or stopped, or, when it runs under a lease, until another node is found to hold
// it: this node then stands by. Until its Run starts, the runner reports ingress.Stopped.
func (r *Registry) waitStarted(name string, rn *running) {
	ctx, cancel := context.WithTimeout(context.Background(), r.cfg.StartWait)
	defer cancel()
	var asked time.Time
	for ctx.Err() == nil {
		switch rn.runner.Status().State {
		case ingress.Starting, ingress.Stopped:
		default:
			return
		}
		if rn.leased && !rn.held.Load() && time.Since(asked) >= 50*time.Millisecond {
			owner, here, err := r.cfg.Holder.Owner(ctx, LeaseName(name))
			if err == nil && owner != "" && !here {
				return
			}
			asked = time.Now()
		}
		select {
		case <-rn.done:
			return
		case <-ctx.Done():
		case <-time.After(time.Millisecond):
		}
	}
}

// source returns the running source, nil when rn is nil.
func (rn *running) source() ingress.Source {
	if rn == nil {
		return nil
	}
	return rn.src
}

// mappingSource reads the source a mapping definition names.
func mappingSource(raw json.RawMessage) (string, error) {
	var def struct {
		Source *string `json:"source"`
	}
	if err := json.Unmarshal(raw, &def); err != nil {
		return "", fmt.Errorf("%w: the body must be a JSON object", ErrMappingInvalid)
	}
	if def.Source == nil || *def.Source == "" {
		return "", fmt.Errorf("%w: source: required", ErrMappingInvalid)
	}
	return *def.Source, nil
}

// PutMapping creates or replaces the mapping name from its JSON definition and reports
// whether it was created. The definition must compile (ErrMappingInvalid) and name a source
// that exists, or $events (ErrNoSuchSource). The runners of its source (and of its former
// source) apply it from their next message on.
func (r *Registry) PutMapping(ctx context.Context, name string, raw json.RawMessage) (created bool, err error) {
	if !ValidName(name) {
		return false, nameError(name)
	}
	source, err := mappingSource(raw)
	if err != nil {
		return false, err
	}
	c, err := r.compile(raw)
	if err != nil {
		return false, fmt.Errorf("%w: %w", ErrMappingInvalid, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	var old store.Mapping
	err = r.st.UpdateIngress(ctx, func(w store.IngressWriter) error {
		if source != EventsSource {
			_, err := w.Source(source)
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%w: %q", ErrNoSuchSource, source)
			}
			if err != nil {
				return err
			}
		}
		var err error
		old, err = w.Mapping(name)
		switch {
		case errors.Is(err, store.ErrNotFound):
			created = true
		case err != nil:
			return err
		}
		return w.PutMapping(store.Mapping{Name: name, Source: source, Definition: raw, Created: r.cfg.Now()})
	})
	if err != nil {
		return false, fmt.Errorf("put mapping %q: %w", name, err)
	}
	r.mappings[name] = compiled{source: source, m: c, def: raw}
	if !created && old.Source != source {
		r.refreshLocked(old.Source)
	}
	r.refreshLocked(source)
	r.syncEventsLocked()
	return created, nil
}

// GetMapping returns the mapping name; a missing one is store.ErrNotFound.
func (r *Registry) GetMapping(ctx context.Context, name string) (Mapping, error) {
	var mp store.Mapping
	err := r.st.ViewIngress(ctx, func(ir store.IngressReader) error {
		var err error
		mp, err = ir.Mapping(name)
		return err
	})
	if err != nil {
		return Mapping{}, err
	}
	return Mapping{Name: mp.Name, Source: mp.Source, Definition: mp.Definition, Created: mp.Created}, nil
}

// Mappings returns every mapping ordered by name.
func (r *Registry) Mappings(ctx context.Context) ([]Mapping, error) {
	var stored []store.Mapping
	err := r.st.ViewIngress(ctx, func(ir store.IngressReader) error {
		var err error
		stored, err = ir.Mappings()
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Mapping, len(stored))
	for i, mp := range stored {
		out[i] = Mapping{Name: mp.Name, Source: mp.Source, Definition: mp.Definition, Created: mp.Created}
	}
	return out, nil
}

// DeleteMapping deletes the mapping name; a missing one is store.ErrNotFound.
func (r *Registry) DeleteMapping(ctx context.Context, name string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	var old store.Mapping
	err := r.st.UpdateIngress(ctx, func(w store.IngressWriter) error {
		var err error
		if old, err = w.Mapping(name); err != nil {
			return err
		}
		return w.DeleteMapping(name)
	})
	if err != nil {
		return fmt.Errorf("delete mapping %q: %w", name, err)
	}
	delete(r.mappings, name)
	r.refreshLocked(old.Source)
	r.syncEventsLocked()
	r.metrics.ForgetMapping(name)
	return nil
}

// TestMessage is the message of a dry run: the parts of an ingress.Message a test gives.
// Body is the message's body as JSON; the others default to what the source would give
// (Topic the source's name for http sources, Time now).
type TestMessage struct {
	ID      string            `json:"id"`
	Topic   string            `json:"topic"`
	Key     string            `json:"key"`
	Headers map[string]string `json:"headers"`
	Body    json.RawMessage   `json:"body"`
	Time    time.Time         `json:"time"`
}

// DryRun maps tm with the mapping name against the twins as they are now and returns what it
// would change (see Compiled.DryRun); it changes nothing. A missing mapping is
// store.ErrNotFound; a stored mapping that no longer compiles is ErrMappingInvalid; an error
// of the mapping is returned as it is.
func (r *Registry) DryRun(ctx context.Context, name string, tm TestMessage) (any, error) {
	mp, err := r.GetMapping(ctx, name)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	c, ok := r.mappings[name]
	r.mu.Unlock()
	if !ok {
		if _, err := r.compile(mp.Definition); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrMappingInvalid, err)
		}
		return nil, fmt.Errorf("mapping %q is not loaded yet", name)
	}
	m := ingress.Message{
		ID: tm.ID, Topic: cmp.Or(tm.Topic, mp.Source), Key: tm.Key, Headers: tm.Headers,
		Body: bytes.TrimSpace(tm.Body), Time: tm.Time, Order: "test",
	}
	if m.Time.IsZero() {
		m.Time = r.cfg.Now()
	}
	var out any
	err = r.st.View(ctx, func(sr store.Reader) error {
		var err error
		out, err = c.m.DryRun(ctx, m, runner.NewTwinReader(sr))
		return err
	})
	return out, err
}
