// Package runner applies the messages of ingress sources to twins: a Runner is the
// ingress.Handler of one source. It evaluates the source's mappings on each message, applies
// the changes they compute (twins.Service.PrepareChanges) in one store transaction with the
// message's de-duplication record, keeps the messages it cannot apply as dead letters, and
// settles each message at its source once that transaction committed. The Pruner deletes the
// de-duplication records whose window has passed.
//
// # Order and concurrency
//
// Messages with the same Order are applied one transaction after another, in the order the
// source handed them over, so a mapping's read of a twin (ingress.TwinReader) sees every
// earlier message of its Order. The messages of one Order that wait while its previous
// transaction commits go together into the next one (up to Config.MaxBatch), each still
// applied, de-duplicated or dead-lettered on its own. Different Orders are applied
// concurrently, up to Config.MaxConcurrency transactions in flight, which the store's group
// commit turns into few fsyncs. At most Config.MaxUnsettled messages are accepted and not yet
// settled; Handle blocks beyond that, which is the source's backpressure.
//
// # What becomes of a message
//
//   - Its mappings compute no change: it is settled, nothing is written.
//   - Its changes commit together with its id (when it has one) in the store's de-duplication
//     records: applied. A message whose id is recorded already, within Config.DedupWindow, is a
//     duplicate and changes nothing. The id is recorded with the message's hop count (see
//     ingress.DedupID), which the events its changes emit carry on (event.Event.Hops): the
//     count in its headers under any of the names twinflow's encodings give it, or in its
//     body when that is a structured CloudEvent.
//   - It is the message's fault (larger than Config.MaxMessageBytes, a mapping fails on it, a
//     twin or model is missing, the patch breaks the model, a propagation chain is too deep):
//     it is kept as a dead letter with the reason, and with its id recorded, in one
//     transaction; nothing else of it is written, and the messages behind it go on.
//   - The store fails, or a mapping cannot read what it needs (ingress.ErrUnavailable): the
//     transaction is tried again, with backoff, while the runner runs;
//     the messages behind it in its Order wait. When the runner stops, the messages it did not
//     commit are settled with an error, so the source delivers them again.
package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinflow/twinflow/internal/event/cloudevents"
	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
	"github.com/twinflow/twinflow/internal/twins"
)

// Defaults for Config's zero values.
const (
	// DefaultMaxMessageBytes is the largest message body applied; a larger one is a dead
	// letter.
	DefaultMaxMessageBytes = 256 << 10
	// DefaultMaxUnsettled bounds the messages accepted and not settled yet.
	DefaultMaxUnsettled = 4096
	// DefaultMaxConcurrency bounds the transactions in flight, as many as the store's
	// default batch holds.
	DefaultMaxConcurrency = 256
	// DefaultMaxBatch bounds the messages of one Order applied in one transaction.
	DefaultMaxBatch = 64
	// DefaultMaxDepth bounds propagation chains (see Config.Propagation).
	DefaultMaxDepth = 8
	// DefaultMinBackoff and DefaultMaxBackoff bound the wait before a transaction the store
	// failed is tried again.
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 10 * time.Second
)

// DepthHeader is the header of a change log message ($events) that tells the propagation
// depth of its event (event.Event.Depth).
const DepthHeader = "propagationdepth"

// Config configures a Runner.
type Config struct {
	// Source is the source's name; its dead letters and message ids are stored under it.
	Source string
	// MaxMessageBytes is the largest message body applied. Default DefaultMaxMessageBytes.
	MaxMessageBytes int
	// MaxUnsettled bounds the messages accepted and not settled. Default
	// DefaultMaxUnsettled.
	MaxUnsettled int
	// MaxConcurrency bounds the transactions in flight. Default DefaultMaxConcurrency.
	MaxConcurrency int
	// MaxBatch bounds the messages of one Order in one transaction. Default DefaultMaxBatch.
	MaxBatch int
	// DedupWindow is how long a message id is remembered. Default DefaultDedupWindow.
	DedupWindow time.Duration
	// Propagation marks the runner of the change log ($events): a message's DepthHeader
	// gives its event's depth n, the events its changes emit get depth n+1, and a message
	// whose changes would reach a depth over MaxDepth is a dead letter (a cycle, or a chain
	// too long). For other sources the header means nothing and their changes have depth 0.
	Propagation bool
	// MaxDepth is the deepest propagation allowed. Default DefaultMaxDepth.
	MaxDepth int
	// MinBackoff and MaxBackoff bound the wait before a failed transaction is tried again.
	MinBackoff, MaxBackoff time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// withDefaults returns cfg with zero fields set to their defaults, or every invalid field.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	if cfg.Source == "" {
		errs = append(errs, errors.New("source: must be set"))
	}
	ints := []struct {
		name string
		v    *int
		def  int
	}{
		{"maxMessageBytes", &cfg.MaxMessageBytes, DefaultMaxMessageBytes},
		{"maxUnsettled", &cfg.MaxUnsettled, DefaultMaxUnsettled},
		{"maxConcurrency", &cfg.MaxConcurrency, DefaultMaxConcurrency},
		{"maxBatch", &cfg.MaxBatch, DefaultMaxBatch},
		{"maxDepth", &cfg.MaxDepth, DefaultMaxDepth},
	}
	for _, f := range ints {
		switch {
		case *f.v == 0:
			*f.v = f.def
		case *f.v < 0:
			errs = append(errs, fmt.Errorf("%s: %d is negative", f.name, *f.v))
		}
	}
	durations := []struct {
		name string
		v    *time.Duration
		def  time.Duration
	}{
		{"dedupWindow", &cfg.DedupWindow, DefaultDedupWindow},
		{"minBackoff", &cfg.MinBackoff, DefaultMinBackoff},
		{"maxBackoff", &cfg.MaxBackoff, DefaultMaxBackoff},
	}
	for _, f := range durations {
		switch {
		case *f.v == 0:
			*f.v = f.def
		case *f.v < 0:
			errs = append(errs, fmt.Errorf("%s: %v is negative", f.name, *f.v))
		}
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		errs = append(errs, fmt.Errorf("maxBackoff: %v is less than minBackoff %v", cfg.MaxBackoff, cfg.MinBackoff))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, errors.Join(errs...)
}

// Mapping is a compiled mapping of the runner's source.
type Mapping struct {
	Name   string
	Mapper ingress.Mapper
}

// Applier prepares and applies a message's changes to twins (*twins.Service implements it).
type Applier interface {
	PrepareChanges(read twins.TwinSource, changes []ingress.Change, c twins.Cause) (*twins.Prepared, error)
	CachedTwin(id string) (store.Twin, bool)
	Committed(a twins.Applied)
}

// Store is what a runner needs of the store: ingress state, whose transactions also write
// twins, and snapshots of twins.
type Store interface {
	store.Ingress
	View(ctx context.Context, fn func(store.Reader) error) error
}

// Result is what became of a message.
type Result string

// The results of a message.
const (
	// Applied: its changes committed (or its mappings computed none).
	Applied Result = "applied"
	// Duplicate: its id was recorded already; it changed nothing.
	Duplicate Result = "duplicate"
	// DeadLettered: it was kept as a dead letter, with the reason.
	DeadLettered Result = "deadLettered"
	// Failed: it could not be handled now (the runner stopped, the store failed); the
	// source delivers it again.
	Failed Result = "failed"
)

// Outcome is what became of a message, told once it is settled.
type Outcome struct {
	Result Result
	// Changes counts the twin changes applied (Applied).
	Changes int
	// Reason tells why a message was dead-lettered, DeadLetter is its dead letter's id.
	Reason     string
	DeadLetter uint64
	// Err is the error the message was settled with (Failed).
	Err error
}

// ErrNotRunning is returned by Submit and Redrive while the runner's Run does not run.
var ErrNotRunning = errors.New("source is not running")

// Status is a snapshot of a runner's progress.
type Status struct {
	// State is the source's connection state (ingress.Stopped while Run does not run).
	State ingress.State
	// Received counts the messages handed over, Applied those whose changes committed,
	// Duplicates those recognised as applied before, DeadLettered those kept as dead letters
	// and Failed the attempts to apply a message that failed on the store (each tried again,
	// or settled with an error when the runner stopped).
	Received, Applied, Duplicates, DeadLettered, Failed uint64
	// Unsettled counts the messages accepted and not yet settled.
	Unsettled int
	// Lag counts the messages waiting at the broker, where the source knows it (LagKnown).
	Lag      int64
	LagKnown bool
	// LastError is the newest failure (of the source or of the store) and LastErrorTime when
	// it happened; empty when there was none.
	LastError     string
	LastErrorTime time.Time
}

// Runner applies one source's messages. It is the source's ingress.Handler while Run runs;
// its methods are safe for concurrent use.
type Runner struct {
	cfg     Config
	st      Store
	svc     Applier
	metrics *sourceMetrics
	logger  *slog.Logger

	mappings atomic.Pointer[[]mappingRun]
	// window holds a token per unsettled message. ready holds the Orders with messages
	// waiting and no worker on them; an Order there holds an unsettled message, so it never
	// holds more than MaxUnsettled and sends to it never block.
	window chan struct{}
	ready  chan *order

	received, applied, duplicates, dead, failed atomic.Uint64

	// mu guards the fields below.
	mu sync.Mutex
	// ctx is Run's context while Run runs, nil otherwise; workers run under it.
	ctx    context.Context
	src    ingress.Source
	orders map[string]*order
	wg     sync.WaitGroup
	state  ingress.State
	last   struct {
		err string
		at  time.Time
	}
}

// mappingRun is a mapping with its metrics.
type mappingRun struct {
	Mapping
	metrics *mappingMetrics
}

// order is the queue of one Order's messages. While it has messages it is active: in ready,
// or taken by a worker, which puts it back in ready if messages remain after its batch.
type order struct {
	key    string
	items  []*item
	active bool
}

// item is one message on its way through the runner.
type item struct {
	m    ingress.Message
	done func(Outcome)
	// redrive is the id of the dead letter the message comes from, 0 for a new message;
	// attempts counts the times it was tried before.
	redrive  uint64
	attempts int
	start    time.Time
	// duplicate is set once a write found the message's id recorded, so it is not prepared
	// again.
	duplicate bool
}

var _ ingress.Handler = (*Runner)(nil)

// New returns a runner of the source cfg.Source, writing to st through svc. m may be nil.
func New(cfg Config, st Store, svc Applier, m *Metrics, logger *slog.Logger) (*Runner, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("runner config: %w", err)
	}
	r := &Runner{
		cfg: cfg, st: st, svc: svc,
		metrics: m.forSource(cfg.Source),
		logger:  logger.With(slog.String("source", cfg.Source)),
		window:  make(chan struct{}, cfg.MaxUnsettled),
		ready:   make(chan *order, cfg.MaxUnsettled),
		orders:  make(map[string]*order),
		state:   ingress.Stopped,
	}
	r.mappings.Store(&[]mappingRun{})
	return r, nil
}

// SetMappings replaces the mappings evaluated on each message, in the order given; a message
// already being applied keeps the ones it started with.
func (r *Runner) SetMappings(ms []Mapping) {
	runs := make([]mappingRun, len(ms))
	for i, mp := range ms {
		runs[i] = mappingRun{Mapping: mp, metrics: r.metrics.forMapping(mp.Name)}
	}
	r.mappings.Store(&runs)
}

// Run runs src with the runner as its handler until ctx ends or src fails, and returns src's
// error once every message the runner accepted is settled: those not committed by then are
// settled with an error. It runs Config.MaxConcurrency workers, each applying one Order's
// batch at a time, and returns after they have exited. Run must not be called again while it
// runs.
func (r *Runner) Run(ctx context.Context, src ingress.Source) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	r.mu.Lock()
	r.ctx, r.src, r.state = ctx, src, ingress.Starting
	r.mu.Unlock()
	r.metrics.attach(r)
	defer r.metrics.detach(r)
	for range r.cfg.MaxConcurrency {
		r.wg.Go(func() { r.work(ctx) })
	}

	err := src.Run(ctx, r)
	// Workers see the cancelled context: what they did not commit is settled with an error.
	cancel()
	r.mu.Lock()
	r.ctx = nil
	if r.state != ingress.Failed {
		r.state = ingress.Stopped
	}
	if err != nil {
		r.noteLocked(err)
	}
	r.mu.Unlock()
	r.wg.Wait()
	// No worker runs and no message comes in any more: what waits is settled.
	r.mu.Lock()
	var left []*item
	for key, o := range r.orders {
		left = append(left, o.items...)
		delete(r.orders, key)
	}
	r.mu.Unlock()
	for len(r.ready) > 0 {
		<-r.ready
	}
	r.settle(left, nil, fmt.Errorf("apply message: %w", ErrNotRunning))
	return err
}

// Handle implements ingress.Handler.
func (r *Runner) Handle(ctx context.Context, m ingress.Message, settle ingress.Settle) error {
	return r.Submit(ctx, m, func(o Outcome) { settle(o.Err) })
}

// State implements ingress.Handler.
func (r *Runner) State(s ingress.State, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.state = s
	if err != nil {
		r.noteLocked(err)
		r.logger.Warn("source "+string(s), slog.Any("err", err))
	}
}

// noteLocked records err as the newest failure. Callers hold r.mu.
func (r *Runner) noteLocked(err error) {
	r.last.err, r.last.at = err.Error(), r.cfg.Now()
}

// Submit is Handle with the message's Outcome: it accepts m, blocking while the runner has
// Config.MaxUnsettled messages unsettled, and calls done once m is settled (from another
// goroutine). It returns ctx's error when ctx ends first and ErrNotRunning when Run does not
// run; done is then never called.
func (r *Runner) Submit(ctx context.Context, m ingress.Message, done func(Outcome)) error {
	return r.submit(ctx, &item{m: m, done: done})
}

// Redrive applies the message of dead letter d again, in its Order, and returns its outcome:
// the dead letter is deleted, and, should the message fail again, kept again with its
// attempts counted. A message whose id was recorded when it was dead-lettered is applied all
// the same.
func (r *Runner) Redrive(ctx context.Context, d store.SourceDeadLetter) (Outcome, error) {
	ch := make(chan Outcome, 1)
	err := r.submit(ctx, &item{m: d.Message, redrive: d.ID, attempts: d.Attempts, done: func(o Outcome) { ch <- o }})
	if err != nil {
		return Outcome{}, err
	}
	select {
	case o := <-ch:
		return o, nil
	case <-ctx.Done():
		return Outcome{}, ctx.Err()
	}
}

func (r *Runner) submit(ctx context.Context, it *item) error {
	r.mu.Lock()
	running := r.ctx
	r.mu.Unlock()
	if running == nil {
		return ErrNotRunning
	}
	select {
	case r.window <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	case <-running.Done():
		return ErrNotRunning
	}
	it.start = time.Now()
	r.received.Add(1)
	r.metrics.received()

	r.mu.Lock()
	if r.ctx == nil {
		r.mu.Unlock()
		<-r.window
		return ErrNotRunning
	}
	key := it.m.Order
	o, ok := r.orders[key]
	if !ok {
		o = &order{key: key}
		r.orders[key] = o
	}
	o.items = append(o.items, it)
	if !o.active {
		o.active = true
		r.ready <- o
	}
	r.mu.Unlock()
	return nil
}

// work is a worker: it takes an active Order from ready, applies a batch of its messages and
// puts it back while messages remain, until ctx ends.
func (r *Runner) work(ctx context.Context) {
	for {
		var o *order
		select {
		case o = <-r.ready:
		case <-ctx.Done():
			return
		}
		r.mu.Lock()
		n := min(len(o.items), r.cfg.MaxBatch)
		batch := o.items[:n:n]
		o.items = append([]*item(nil), o.items[n:]...)
		r.mu.Unlock()
		r.apply(ctx, batch)
		r.mu.Lock()
		if len(o.items) > 0 {
			r.ready <- o
		} else {
			delete(r.orders, o.key)
		}
		r.mu.Unlock()
	}
}

// apply commits batch, trying again with backoff while the store fails and ctx lasts, and
// settles its messages.
func (r *Runner) apply(ctx context.Context, batch []*item) {
	backoff := r.cfg.MinBackoff
	for {
		plans, err := r.write(ctx, batch)
		if err == nil {
			outcomes := make([]Outcome, len(plans))
			for i := range plans {
				p := &plans[i]
				if p.applied != nil {
					r.svc.Committed(*p.applied)
				}
				for _, st := range p.stats {
					st.metrics.counted(st.changes, st.failed)
				}
				outcomes[i] = p.outcome
			}
			r.settle(batch, outcomes, nil)
			return
		}
		r.failed.Add(uint64(len(batch)))
		r.metrics.failed(len(batch))
		if ctx.Err() != nil || errors.Is(err, store.ErrClosed) {
			r.settle(batch, nil, fmt.Errorf("apply message: %w", err))
			return
		}
		r.mu.Lock()
		r.noteLocked(err)
		r.mu.Unlock()
		r.logger.Error("apply messages; trying again", slog.Int("messages", len(batch)), slog.Duration("backoff", backoff), slog.Any("err", err))
		select {
		case <-ctx.Done():
		case <-time.After(backoff/2 + rand.N(backoff/2+1)):
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
}

// settle tells each message of batch its outcome, or failure when outcomes is nil, and
// releases their places in the window.
func (r *Runner) settle(batch []*item, outcomes []Outcome, failure error) {
	for i, it := range batch {
		o := Outcome{Result: Failed, Err: failure}
		if outcomes != nil {
			o = outcomes[i]
		}
		switch o.Result {
		case Applied:
			r.applied.Add(1)
		case Duplicate:
			r.duplicates.Add(1)
		case DeadLettered:
			r.dead.Add(1)
		}
		r.metrics.settled(o.Result, time.Since(it.start))
		it.done(o)
		<-r.window
	}
}

// optimisticAttempts is how many times a batch is prepared outside the store's writer before
// it is prepared inside it.
const optimisticAttempts = 2

// errRetry reports that a batch's preparation went stale before it committed (a twin it read
// changed, or a message turned out to be a duplicate that later ones built on): it is
// prepared again.
var errRetry = errors.New("the state a batch was prepared against changed")

// write applies batch in one transaction and returns each message's plan, with its outcome
// and what the twin service should learn once it committed. An error is the store's: nothing
// committed.
//
// The work that needs no writer (mapping, decoding, patching, validating, encoding) is done
// first, on the worker's goroutine, against the twins as the service last wrote them (or a
// snapshot), with the batch's own earlier changes on top; the transaction then checks that
// every twin the batch read is still as it was, and writes. When one is not, the batch is
// prepared again from a snapshot, and after optimisticAttempts inside the transaction, where
// nothing can change under it. So the writer, which every write of the store goes through,
// does little more per message than for an API PATCH.
func (r *Runner) write(ctx context.Context, batch []*item) ([]plan, error) {
	mappings := *r.mappings.Load()
	for attempt := range optimisticAttempts {
		plans, err := r.prepare(ctx, batch, mappings, attempt == 0)
		if err != nil {
			return nil, err
		}
		if err := r.commit(ctx, plans); !errors.Is(err, errRetry) {
			return plans, err
		}
	}
	return r.writeInside(ctx, batch, mappings)
}

// prepare plans every message of batch outside the store's writer: reading twins from the
// batch's earlier plans, then the service's memory (when fromCache) and else a snapshot.
func (r *Runner) prepare(ctx context.Context, batch []*item, mappings []mappingRun, fromCache bool) ([]plan, error) {
	overlay := make(map[string]store.Twin)
	read := func(id string) (store.Twin, bool, error) {
		if t, ok := overlay[id]; ok {
			return t, true, nil
		}
		if fromCache {
			if t, ok := r.svc.CachedTwin(id); ok {
				return t, true, nil
			}
		}
		var t store.Twin
		err := r.st.View(ctx, func(sr store.Reader) error {
			var err error
			t, err = sr.Twin(id)
			return err
		})
		if errors.Is(err, store.ErrNotFound) {
			return store.Twin{}, false, nil
		}
		return t, err == nil, err
	}
	plans := make([]plan, len(batch))
	for i, it := range batch {
		p, err := r.plan(ctx, it, mappings, read)
		if err != nil {
			return nil, err
		}
		if p.prepared != nil {
			for _, t := range p.prepared.Twins() {
				overlay[t.ID] = t
			}
		}
		plans[i] = p
	}
	return plans, nil
}

// commit writes plans in one transaction, after checking that what they read is still so,
// and sets their outcomes. errRetry means they must be prepared again; any other error is the
// store's.
func (r *Runner) commit(ctx context.Context, plans []plan) error {
	return r.st.UpdateIngress(ctx, func(w store.IngressWriter) error {
		for i := range plans {
			if err := r.commitPlan(w, &plans[i], i < len(plans)-1); err != nil {
				return err
			}
		}
		return nil
	})
}

// writeInside applies batch in one transaction, planning each message inside it, where the
// twins it reads cannot change before it writes.
func (r *Runner) writeInside(ctx context.Context, batch []*item, mappings []mappingRun) ([]plan, error) {
	var plans []plan
	err := r.st.UpdateIngress(ctx, func(w store.IngressWriter) error {
		plans = make([]plan, len(batch))
		read := func(id string) (store.Twin, bool, error) {
			t, err := w.Twin(id)
			if errors.Is(err, store.ErrNotFound) {
				return store.Twin{}, false, nil
			}
			return t, err == nil, err
		}
		for i, it := range batch {
			p, err := r.plan(ctx, it, mappings, read)
			if err != nil {
				return err
			}
			plans[i] = p
			if err := r.commitPlan(w, &plans[i], false); err != nil {
				return err
			}
		}
		return nil
	})
	return plans, err
}

// planKind is what a plan does with its message.
type planKind int

const (
	// planNothing: the mappings compute no change.
	planNothing planKind = iota
	// planApply: the prepared changes are applied.
	planApply
	// planDeadLetter: the message is kept as a dead letter with the reason.
	planDeadLetter
	// planDuplicate: the message's id was found recorded by an earlier attempt.
	planDuplicate
)

// plan is what becomes of one message, prepared from the twins it read.
type plan struct {
	it     *item
	kind   planKind
	reason string
	// hops is the message's hop count (see messageHops).
	hops     int
	changes  int
	prepared *twins.Prepared
	// reads are the twins the message's mappings read: their ETags, "" for a missing twin.
	reads map[string]string
	// stats are what each mapping made of the message, counted once the plan commits.
	stats []mappingStat
	// outcome and applied are set once the plan is written: what became of the message and
	// what the twin service should learn of it.
	outcome Outcome
	applied *twins.Applied
}

// mappingStat is what one mapping made of a message.
type mappingStat struct {
	metrics *mappingMetrics
	changes int
	failed  bool
}

// plan decides what becomes of message it, reading twins with read. An error is the store's.
func (r *Runner) plan(ctx context.Context, it *item, mappings []mappingRun, read twins.TwinSource) (plan, error) {
	m := it.m
	p := plan{it: it, hops: messageHops(m)}
	dead := func(reason string) (plan, error) {
		p.kind, p.reason, p.prepared = planDeadLetter, reason, nil
		return p, nil
	}
	if it.duplicate {
		p.kind = planDuplicate
		return p, nil
	}
	if len(m.Body) > r.cfg.MaxMessageBytes {
		return dead(fmt.Sprintf("The message is %d bytes; the limit is %d bytes.", len(m.Body), r.cfg.MaxMessageBytes))
	}
	depth := 0
	if r.cfg.Propagation {
		d, err := strconv.Atoi(m.Headers[DepthHeader])
		if err != nil || d < 0 {
			d = 0
		}
		if depth = d + 1; depth > r.cfg.MaxDepth {
			return dead(fmt.Sprintf("Propagation stopped: the event is %d propagation steps from the change that started the chain, and at most %d are allowed. The mappings of $events may form a cycle.", d, r.cfg.MaxDepth))
		}
	}
	reader := &twinReader{read: read, reads: make(map[string]string)}
	p.reads = reader.reads
	var changes []ingress.Change
	for _, mp := range mappings {
		start := time.Now()
		cs, err := mp.Mapper.Map(ctx, m, reader)
		mp.metrics.evaluated(time.Since(start))
		if reader.failure != nil {
			return plan{}, reader.failure
		}
		if errors.Is(err, ingress.ErrUnavailable) {
			// Not the message's fault: it is applied again later, like a write the store
			// failed.
			return plan{}, fmt.Errorf("mapping %s: %w", mp.Name, err)
		}
		p.stats = append(p.stats, mappingStat{metrics: mp.metrics, changes: len(cs), failed: err != nil})
		if err != nil {
			return dead(fmt.Sprintf("Mapping %s: %v", mp.Name, err))
		}
		changes = append(changes, cs...)
	}
	if len(changes) == 0 {
		return p, nil
	}
	tr := twins.Trace{Parent: m.Headers["traceparent"], State: m.Headers["tracestate"]}
	prepared, err := r.svc.PrepareChanges(read, changes, twins.Cause{Trace: tr, Depth: depth, Hops: p.hops})
	var te *twin.Error
	if errors.As(err, &te) {
		return dead(reason(te))
	}
	if err != nil {
		return plan{}, err
	}
	p.kind, p.prepared, p.changes = planApply, prepared, len(changes)
	return p, nil
}

// commitPlan writes p inside w and sets its outcome: it checks that the twins p read are
// still so, records the message's id, and writes the changes or the dead letter. dependents tells whether plans
// after p in the same transaction were prepared on top of it. errRetry means p, or a plan
// after it, must be prepared again; any other error is the store's.
func (r *Runner) commitPlan(w store.IngressWriter, p *plan, dependents bool) error {
	it, m := p.it, p.it.m
	for id, etag := range p.reads {
		cur, err := w.Twin(id)
		switch {
		case errors.Is(err, store.ErrNotFound):
			if etag != "" {
				return errRetry
			}
		case err != nil:
			return err
		case cur.ETag != etag:
			return errRetry
		}
	}
	now := r.cfg.Now()
	if it.redrive != 0 {
		// A dead letter deleted meanwhile is applied all the same: it was asked for.
		if err := w.DeleteSourceDeadLetter(r.cfg.Source, it.redrive); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
	}
	switch p.kind {
	case planNothing:
		p.outcome = Outcome{Result: Applied}
		return nil
	case planDuplicate:
		p.outcome = Outcome{Result: Duplicate}
		return nil
	}
	// A redriven message was recorded when it was dead-lettered: it is applied all the same.
	if m.ID != "" {
		err := w.RecordMessage(store.MessageRecord{Source: r.cfg.Source, ID: ingress.DedupID(m.ID, p.hops), Time: now, Expires: now.Add(r.cfg.DedupWindow)})
		switch {
		case errors.Is(err, store.ErrDuplicate) && it.redrive == 0:
			if p.kind == planApply && dependents {
				// The plans after this one may have read what it would have changed.
				it.duplicate = true
				return errRetry
			}
			p.outcome = Outcome{Result: Duplicate}
			return nil
		case err != nil && !errors.Is(err, store.ErrDuplicate):
			return err
		}
	}
	if p.kind == planApply {
		err := p.prepared.Commit(w)
		var te *twin.Error
		switch {
		case errors.Is(err, twins.ErrStale):
			return errRetry
		case errors.As(err, &te) && dependents:
			return errRetry
		case errors.As(err, &te):
			p.kind, p.reason = planDeadLetter, reason(te)
		case err != nil:
			return err
		default:
			a := p.prepared.Applied()
			p.outcome, p.applied = Outcome{Result: Applied, Changes: p.changes}, &a
			return nil
		}
	}
	id, err := w.AddSourceDeadLetter(store.SourceDeadLetter{
		Source: r.cfg.Source, Message: m, Reason: p.reason, Attempts: it.attempts + 1, Time: now,
	})
	if err != nil {
		return err
	}
	p.outcome = Outcome{Result: DeadLettered, Reason: p.reason, DeadLetter: id}
	return nil
}

// messageHops returns m's hop count (event.Event.Hops): from its headers, else from its body
// when that is a structured CloudEvent.
func messageHops(m ingress.Message) int {
	if n := cloudevents.Hops(m.Headers); n > 0 {
		return n
	}
	return cloudevents.StructuredHops(m.Body)
}

// reason renders a twin error as a dead letter's reason: its message, then its details.
func reason(e *twin.Error) string {
	s := e.Message
	for i, d := range e.Details {
		sep := "; "
		if i == 0 {
			sep = ": "
		}
		s += sep + d.Message
	}
	return s
}

// Status returns a snapshot of the runner's progress.
func (r *Runner) Status() Status {
	r.mu.Lock()
	st := Status{State: r.state, LastError: r.last.err, LastErrorTime: r.last.at}
	src := r.src
	r.mu.Unlock()
	st.Received, st.Applied, st.Duplicates = r.received.Load(), r.applied.Load(), r.duplicates.Load()
	st.DeadLettered, st.Failed = r.dead.Load(), r.failed.Load()
	st.Unsettled = len(r.window)
	if l, ok := src.(ingress.Lagger); ok {
		st.Lag, st.LagKnown = l.Lag()
	}
	return st
}

// NewTwinReader returns the ingress.TwinReader of a mapping over r, for a dry run against a
// snapshot.
func NewTwinReader(r store.Reader) ingress.TwinReader {
	return &twinReader{read: func(id string) (store.Twin, bool, error) {
		t, err := r.Twin(id)
		if errors.Is(err, store.ErrNotFound) {
			return store.Twin{}, false, nil
		}
		return t, err == nil, err
	}}
}

// twinReader is the ingress.TwinReader of a mapping: it reads through read, and records what
// it read in reads (when not nil), for the write to check. A read that fails is remembered,
// so the write fails as the store's fault whatever the mapping makes of the error.
type twinReader struct {
	read    twins.TwinSource
	reads   map[string]string
	failure error
}

// Twin implements ingress.TwinReader. The document is a copy the mapping may keep.
func (t *twinReader) Twin(id string) ([]byte, bool, error) {
	tw, ok, err := t.read(id)
	if err != nil {
		if t.failure == nil {
			t.failure = err
		}
		return nil, false, err
	}
	if t.reads != nil {
		t.reads[id] = tw.ETag
	}
	if !ok {
		return nil, false, nil
	}
	return append([]byte(nil), tw.Doc...), true, nil
}
