// Package outbox delivers the change log to endpoints: one Relay per endpoint reads the log
// from the endpoint's durable cursor, sends the events its routes match to the endpoint's
// sink.Sink and advances the cursor only after the sink accepted them. Retries with
// exponential backoff and jitter, Retry-After, expiry (TTL and maximum attempts), dead letters,
// replay and redrive live here, once, for every kind of sink; the Pruner trims the log behind
// the slowest cursor and in-process consumer once the retention has passed.
//
// The relay's parts, by file: relay.go holds the Relay, its Config and Run's loop; read.go
// the reader goroutine that reads and filters the log ahead of Run; window.go the publish
// window of sinks that are sink.Publishers; send.go sending with retries, expiry and dead
// letters; control.go status, replay and redrive; cursor.go the background cursor writer.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/store"
)

// Defaults for Config's zero values.
const (
	DefaultMaxBatch   = 256
	DefaultTTL        = 24 * time.Hour
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 30 * time.Second
	// DefaultMaxHops is the largest hop count an event leaves with (see Config.MaxHops).
	DefaultMaxHops = 8
)

// Config configures one endpoint's Relay.
type Config struct {
	// Endpoint is the endpoint's name; its cursor and dead letters are stored under it.
	Endpoint string
	// MaxBatch is the most events handed to the sink in one Send or Publish; publishWindow
	// times MaxBatch published events may await acknowledgement at once (see
	// sink.Publisher). Default DefaultMaxBatch.
	MaxBatch int
	// TTL is how long after its commit an event may still be delivered; an event still
	// failing after that is dead-lettered. Default DefaultTTL.
	TTL time.Duration
	// MaxAttempts dead-letters events after that many failed sends; 0 means only the TTL
	// bounds the retries.
	MaxAttempts int
	// MinBackoff and MaxBackoff bound the wait between attempts: it doubles from MinBackoff
	// up to MaxBackoff, each wait drawn at random from its upper half (jitter). A sink's
	// RetryAfterError asks for its own wait instead. Defaults DefaultMinBackoff and
	// DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// MaxHops bounds event.Event.Hops: each event leaves with its hop count plus one, and an
	// event whose count would pass MaxHops is dead-lettered without a send, since it has come
	// back to twinflow that many times: a route feeds its own source or the telemetry API,
	// directly or through other systems. Default DefaultMaxHops.
	MaxHops int
	// DeadLetterDir, when set, also writes each dead letter as a file in ADT's layout:
	// <DeadLetterDir>/<endpoint>/<yyyy>/<mm>/<dd>/<hh>/<event-id>.json, holding the event in
	// structured CloudEvents JSON.
	DeadLetterDir string
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// withDefaults returns cfg with zero fields set to their defaults, or every invalid field.
func (cfg Config) withDefaults() (Config, error) {
	var errs []error
	if cfg.Endpoint == "" {
		errs = append(errs, errors.New("endpoint: must be set"))
	}
	positive := func(name string, v *time.Duration, def time.Duration) {
		switch {
		case *v == 0:
			*v = def
		case *v < 0:
			errs = append(errs, fmt.Errorf("%s: %v is negative", name, *v))
		}
	}
	positive("ttl", &cfg.TTL, DefaultTTL)
	positive("minBackoff", &cfg.MinBackoff, DefaultMinBackoff)
	positive("maxBackoff", &cfg.MaxBackoff, DefaultMaxBackoff)
	switch {
	case cfg.MaxBatch == 0:
		cfg.MaxBatch = DefaultMaxBatch
	case cfg.MaxBatch < 0:
		errs = append(errs, fmt.Errorf("maxBatch: %d is negative", cfg.MaxBatch))
	}
	if cfg.MaxAttempts < 0 {
		errs = append(errs, fmt.Errorf("maxAttempts: %d is negative", cfg.MaxAttempts))
	}
	switch {
	case cfg.MaxHops == 0:
		cfg.MaxHops = DefaultMaxHops
	case cfg.MaxHops < 0:
		errs = append(errs, fmt.Errorf("maxHops: %d is negative", cfg.MaxHops))
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		errs = append(errs, fmt.Errorf("maxBackoff: %v is less than minBackoff %v", cfg.MaxBackoff, cfg.MinBackoff))
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return cfg, errors.Join(errs...)
}

// Store is what a relay needs from storage: the log and the delivery state beside it.
type Store interface {
	store.Delivery
	Log() store.Log
}

// The states a relay reports; see Relay for what moves between them.
const (
	// StateDelivering: the relay is caught up or sending, and no batch it is working on has
	// failed: its last send succeeded, or it gave up on the batch that failed (its events are
	// dead letters) and moved on.
	StateDelivering = "delivering"
	// StateRetrying: the batch (or redriven dead letter) the relay is working on failed to
	// send; the relay is waiting to send it again.
	StateRetrying = "retrying"
	// StateStopped: the relay is not running.
	StateStopped = "stopped"
)

// Status is a snapshot of a relay's progress.
type Status struct {
	State string
	// Cursor is the Seq of the newest record the relay is done with.
	Cursor uint64
	// LagEvents counts the log records after the cursor (routed to this endpoint or not).
	LagEvents uint64
	// LagSeconds is the age of the oldest record after the cursor, 0 when there is none.
	LagSeconds float64
	// Attempts counts the failed sends of the batch in flight; 0 once the relay is done with
	// it, whether the sink accepted its events or they became dead letters.
	Attempts int
	// LastError is the newest failure and LastErrorTime when it happened; empty when the
	// relay never failed. They stay after the relay moved on.
	LastError     string
	LastErrorTime time.Time
}

// Relay delivers the log to one endpoint. Run runs it; the other methods are safe to call
// concurrently with Run and with each other.
//
// Order: events reach the sink in log order, in batches of up to MaxBatch. A batch is sent
// again, whole, until the sink accepts it, so the destination sees duplicates only from
// batches in flight. When the sink rejects a batch of several events permanently, its events
// are sent one by one so that only the rejected ones are dead-lettered. Expired events (TTL,
// MaxAttempts) are dead-lettered and the relay moves on. The cursor moves past a batch, in the
// same transaction that stores its dead letters, only once every event in it was accepted or
// dead-lettered; that transaction commits in the background while the next batch goes out, so
// after a crash the destination sees again at most the batches in flight.
//
// Pipelining: a sink that is a sink.Publisher gets each batch as soon as it is read, up to
// publishWindow times MaxBatch events awaiting acknowledgement, and the relay waits for the
// acknowledgements in order. When a batch fails, the batches published after it are
// abandoned: the failed one is retried as above and the others are published again after it.
//
// States (Status.State):
//
//	    New
//	     |
//	     v
//	+---------+    ctx ends, the store fails or the endpoint is deleted
//	| stopped |<-------------------------------------------------------+
//	+---------+                                                        |
//	     |                                                             |
//	     | Run loads the cursor                                        |
//	     v                                                             |
//	+------------+ --+  a batch is accepted, has no event routed here, |
//	| delivering |   |  or has only expired events (dead-lettered      |
//	+------------+ <-+  without a send)                                |
//	   |      ^   |                                                    |
//	   |      |   +--------------------------------------------------->+
//	   |      |                                                        |
//	   |      | the sink accepts events: a Send, or the Ack of a       |
//	   |      | published batch (a redriven dead letter's Send too);   |
//	   |      | or the relay gives up: rejected permanently (a batch   |
//	   |      | of several events is first sent event by event),       |
//	   |      | Attempts reach MaxAttempts or the TTL ran out: it      |
//	   |      | dead-letters the events and moves on (Attempts 0,      |
//	   |      | LastError stays)                                       |
//	   |      |                                                        |
//	   | a Send, Publish or Ack fails (Attempts 1)                     |
//	   v      |                                                        |
//	+------------+ ----------------------------------------------------+
//	|  retrying  | --+  it fails again (Attempts+1): wait the backoff,
//	+------------+ <-+  or the Retry-After, and send the batch again
//
// Hops: every event leaves with its hop count one higher than the log holds it (see
// event.Event.Hops). An event whose count would pass Config.MaxHops is not sent: it is
// dead-lettered as it is read, with its batch's cursor, whatever becomes of the others.
//
// Replay (Rewind) and Redrive are commands taken up between batches. A replay also cuts short
// the wait between two attempts, abandoning the batch (or redrive) in flight: delivery resumes
// from the new cursor, and the relay reports delivering, as nothing is being retried. A redrive
// waits for the batch in flight and goes through the same sends, retries and dead letters, and
// so the same states, as a batch.
//
// Goroutines: Run starts a cursor writer (see cursorWriter) and a reader (see startReader),
// and returns only after both have exited. Run stops the reader before a replay or redrive
// and, when the sink is a sink.Publisher, before it sends a batch itself; it then starts
// another one after its cursor.
type Relay struct {
	cfg  Config
	st   Store
	sink sink.Sink
	// pub is sink when it is a sink.Publisher, otherwise nil.
	pub     sink.Publisher
	match   func(*event.Event) bool
	metrics *endpointMetrics
	logger  *slog.Logger

	// mu guards the fields below.
	mu     sync.Mutex
	status Status
	// rewind is the cursor a replay asked for, applied between batches.
	rewind *uint64
	// redrive holds the ids of dead letters waiting to be sent again.
	redrive []uint64
	// signal wakes the relay when a replay or redrive is asked for.
	signal chan struct{}

	// dated is the newest record known to be within its TTL and its commit time (see
	// expired). Only the goroutine sending new records uses it: when the sink is a
	// sink.Publisher, the reader while it runs, and Run's once it stopped the reader to send
	// on its own; otherwise Run's.
	dated struct {
		seq uint64
		at  time.Time
	}
}

// New returns a relay delivering the events match accepts to dst. m may be nil.
func New(cfg Config, st Store, dst sink.Sink, match func(*event.Event) bool, m *Metrics, logger *slog.Logger) (*Relay, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("relay config: %w", err)
	}
	r := &Relay{
		cfg: cfg, st: st, sink: dst, match: match,
		metrics: m.forEndpoint(cfg.Endpoint),
		logger:  logger.With(slog.String("endpoint", cfg.Endpoint)),
		status:  Status{State: StateStopped},
		signal:  make(chan struct{}, 1),
	}
	r.pub, _ = dst.(sink.Publisher)
	return r, nil
}

// Run delivers until ctx ends, then returns nil; it returns an error only when the store
// fails or the endpoint's cursor is gone (the endpoint was deleted). Before it returns it
// stores the cursor of the batches it finished. It does not close the sink. Run may be
// called again after it returned, but not concurrently with itself.
func (r *Relay) Run(ctx context.Context) error {
	cursor, err := r.storedCursor(ctx)
	if err != nil {
		return r.stopped(ctx, err)
	}
	r.m(func(s *Status) { s.State, s.Cursor = StateDelivering, cursor })
	r.metrics.attach(r)
	defer r.metrics.detach(r)

	var wg sync.WaitGroup
	cw := newCursorWriter(r.st, r.cfg.Endpoint, r.writeFiles)
	cwCtx, stopCW := context.WithCancel(ctx)
	wg.Go(func() { cw.run(cwCtx) })
	defer func() {
		stopCW()
		wg.Wait()
		// Store the progress of the last batches; the store outlives the relay. A deleted
		// endpoint has no cursor left to store.
		if err := cw.flush(context.WithoutCancel(ctx)); err != nil && !errors.Is(err, store.ErrNotFound) {
			r.logger.Warn("cursor not stored at stop; its events will be delivered again", slog.Any("err", err))
		}
	}()
	// A reader goroutine reads and filters the batches after the cursor (and publishes them)
	// while Run sends them (or waits for their acknowledgements). It is stopped, dropping
	// what it read, before a replay or redrive and, when it publishes, before Run sends a
	// batch itself: one that was not published or whose acknowledgement failed.
	var reader *logReader
	stopReader := func() {
		if reader != nil {
			reader.stop()
			reader = nil
		}
	}
	defer stopReader()
	for {
		if err := cw.failure(); err != nil {
			return r.stopped(ctx, err)
		}
		// A replay or redrive asked for while control works (a replay cuts a redrive short)
		// is taken up before any batch goes out.
		for r.controlPending() {
			stopReader()
			if err := r.control(ctx, cw, &cursor); err != nil {
				return r.stopped(ctx, err)
			}
		}
		if reader == nil {
			reader = r.startReader(ctx, &wg, cursor)
		}
		var next readBatch
		select {
		case <-ctx.Done():
			return r.stopped(ctx, nil)
		case <-r.signal:
			continue // take up the replay or redrive
		case next = <-reader.batches:
		}
		if next.err != nil {
			return r.stopped(ctx, fmt.Errorf("read log after %d: %w", cursor, next.err))
		}
		dead, err := r.deliver(ctx, next, reader, stopReader)
		if errors.Is(err, errInterrupted) {
			continue // take up the replay
		}
		if err != nil {
			return r.stopped(ctx, nil) // deliver fails otherwise only when ctx ends
		}
		cw.advance(next.through, append(next.looped, dead...))
		cursor = next.through
		// Done with the batch, whatever became of its events: nothing is being retried.
		r.m(func(s *Status) { s.Cursor, s.State, s.Attempts = next.through, StateDelivering, 0 })
	}
}

// deliver finishes the batch b that Run took from the reader l, and returns the dead letters
// of its events. It waits for b's acknowledgement when l published it; when l did not, or the
// acknowledgement failed, Run sends b itself (see send), after stopReader when the sink is a
// sink.Publisher: publishing stops at a batch that was not accepted. It fails with
// errInterrupted when a replay abandons b, and with ctx's error when ctx ends.
func (r *Relay) deliver(ctx context.Context, b readBatch, l *logReader, stopReader func()) ([]store.DeadLetter, error) {
	if len(b.recs) == 0 {
		return nil, nil
	}
	failed := b.failed
	if b.ack != nil {
		if failed = r.awaitAck(ctx, l, b); failed == nil {
			return nil, nil
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
	}
	if r.pub != nil {
		stopReader()
	}
	return r.send(ctx, b.recs, time.Time{}, failed)
}

// storedCursor reads the endpoint's cursor from the store.
func (r *Relay) storedCursor(ctx context.Context) (uint64, error) {
	var cursor uint64
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		var err error
		cursor, err = er.Cursor(r.cfg.Endpoint)
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("load cursor of endpoint %q: %w", r.cfg.Endpoint, err)
	}
	return cursor, nil
}

// stopped records that the relay stopped and returns err, or nil when ctx ended.
func (r *Relay) stopped(ctx context.Context, err error) error {
	r.m(func(s *Status) { s.State = StateStopped })
	if ctx.Err() != nil {
		return nil
	}
	return err
}

// m runs fn on the status under the lock.
func (r *Relay) m(fn func(*Status)) {
	r.mu.Lock()
	fn(&r.status)
	r.mu.Unlock()
}
