// Package outbox delivers the change log to endpoints: one Relay per endpoint reads the log
// from the endpoint's durable cursor, sends the events its routes match to the endpoint's
// sink.Sink and advances the cursor only after the sink accepted them. Retries with
// exponential backoff and jitter, Retry-After, expiry (TTL and maximum attempts), dead letters,
// replay and redrive live here, once, for every kind of sink; the Pruner trims the log behind
// the slowest cursor once the retention has passed.
package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
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

// The states a relay reports.
const (
	// StateDelivering: the relay is caught up or sending, and its last send succeeded.
	StateDelivering = "delivering"
	// StateRetrying: the last send failed and the relay is waiting to try again.
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
	// Attempts counts the failed sends of the batch in flight.
	Attempts int
	// LastError is the newest failure and LastErrorTime when it happened; empty when the
	// relay never failed.
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

	// dated is the newest record known to be within its TTL and its commit time. Only the
	// goroutine sending new records uses it: a reader that publishes (see startReader), or
	// else Run's.
	dated struct {
		seq uint64
		at  time.Time
	}
}

// errInterrupted abandons a batch because a replay asks to start elsewhere.
var errInterrupted = errors.New("interrupted by a replay")

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
// fails or the endpoint's cursor is gone (the endpoint was deleted). It does not close the
// sink.
func (r *Relay) Run(ctx context.Context) error {
	var cursor uint64
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		var err error
		cursor, err = er.Cursor(r.cfg.Endpoint)
		return err
	})
	if err != nil {
		return r.stopped(ctx, fmt.Errorf("load cursor of endpoint %q: %w", r.cfg.Endpoint, err))
	}
	r.m(func(s *Status) { s.State, s.Cursor = StateDelivering, cursor })
	r.metrics.attach(r)
	defer r.metrics.detach(r)

	cw := newCursorWriter(r.st, r.cfg.Endpoint, r.writeFiles)
	cwCtx, stopCW := context.WithCancel(ctx)
	var wg sync.WaitGroup
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
	// what it read, while Run sends on its own: replays, redrives and retries.
	var reader *logReader
	defer func() {
		if reader != nil {
			reader.stop()
		}
	}()
	stopReader := func() {
		if reader != nil {
			reader.stop()
			reader = nil
		}
	}
	for {
		if err := cw.failure(); err != nil {
			return r.stopped(ctx, err)
		}
		if r.controlPending() {
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
		var dead []store.DeadLetter
		failed := next.failed
		if next.ack != nil {
			failed = next.ack(ctx)
			if failed == nil {
				reader.settled(len(next.recs))
				r.accepted(len(next.recs))
			} else if ctx.Err() != nil {
				return r.stopped(ctx, nil)
			}
		}
		if len(next.recs) > 0 && (next.ack == nil || failed != nil) {
			if r.pub != nil {
				// Publishing stops at a batch that was not accepted; Run sends it.
				stopReader()
			}
			var err error
			dead, err = r.send(ctx, next.recs, time.Time{}, failed)
			if errors.Is(err, errInterrupted) {
				continue
			}
			if err != nil {
				return r.stopped(ctx, nil)
			}
		}
		cw.advance(next.through, dead)
		cursor = next.through
		r.m(func(s *Status) { s.Cursor = next.through })
	}
}

// readBatch is what the reader hands the relay: the records after the previous batch up to
// through that the endpoint's routes match, or the error that stopped the reader. A reader
// that publishes hands over a published batch with its ack, and a batch whose publishing
// failed with failed; it publishes nothing after a batch without an ack.
type readBatch struct {
	recs    []event.Record
	through uint64
	err     error
	ack     sink.Ack
	failed  error
}

// maxPublished bounds the published batches awaiting acknowledgement, and publishWindow the
// events awaiting it, in batches of MaxBatch: with full batches, up to publishWindow of them
// are in flight, so the round trip of one overlaps the sending of the next.
const (
	maxPublished  = 64
	publishWindow = 4
)

// logReader is a running reader goroutine.
type logReader struct {
	batches chan readBatch
	cancel  context.CancelFunc
	done    chan struct{}
	// inFlight counts the published events awaiting acknowledgement; room is signalled
	// when it drops.
	inFlight atomic.Int64
	room     chan struct{}
}

// stop stops the reader and waits for it; batches it read are dropped, and the
// acknowledgements of those it published are not waited for.
func (l *logReader) stop() {
	l.cancel()
	<-l.done
}

// settled records that n published events were acknowledged.
func (l *logReader) settled(n int) {
	l.inFlight.Add(-int64(n))
	select {
	case l.room <- struct{}{}:
	default:
	}
}

// startReader starts a goroutine reading the log after from, ahead of the relay. It waits for
// new records without polling (Log.Read blocks) and stops when ctx ends, stop is called, or a
// read fails (after handing over the error). When the sink is a sink.Publisher, the reader
// publishes each batch before handing it over, while the events awaiting acknowledgement
// leave room for it, until a batch is not published (see publish); otherwise it reads one
// batch ahead.
func (r *Relay) startReader(ctx context.Context, wg *sync.WaitGroup, from uint64) *logReader {
	ctx, cancel := context.WithCancel(ctx)
	ahead := 1
	if r.pub != nil {
		ahead = maxPublished
	}
	l := &logReader{
		batches: make(chan readBatch, ahead), cancel: cancel, done: make(chan struct{}),
		room: make(chan struct{}, 1),
	}
	wg.Go(func() {
		defer close(l.done)
		for {
			recs, err := r.st.Log().Read(ctx, from, r.cfg.MaxBatch)
			if ctx.Err() != nil {
				return
			}
			b := readBatch{err: err}
			if err == nil {
				b.through = recs[len(recs)-1].Seq
				// Filter in place: recs is this reader's own.
				b.recs = recs[:0]
				for _, rec := range recs {
					if r.match(&rec.Event) {
						b.recs = append(b.recs, rec)
					}
				}
				if r.pub != nil && len(b.recs) > 0 {
					b.ack, b.failed = r.publish(ctx, l, b.recs)
					if ctx.Err() != nil {
						return
					}
				}
			}
			select {
			case l.batches <- b:
			case <-ctx.Done():
				return
			}
			if err != nil || (len(b.recs) > 0 && r.pub != nil && b.ack == nil) {
				return
			}
			from = b.through
		}
	})
	return l
}

// publish publishes recs once the events awaiting acknowledgement leave room for them, and
// returns their Ack. It returns no Ack, leaving recs to Run, when some of them expired (Run
// dead-letters them), when publishing fails (with the failure) or when ctx ends.
func (r *Relay) publish(ctx context.Context, l *logReader, recs []event.Record) (sink.Ack, error) {
	if n, err := r.expired(ctx, recs, time.Time{}); n > 0 || err != nil {
		return nil, nil
	}
	for n, window := int64(len(recs)), int64(publishWindow*r.cfg.MaxBatch); l.inFlight.Load() > 0 && l.inFlight.Load()+n > window; {
		select {
		case <-l.room:
		case <-ctx.Done():
			return nil, nil
		}
	}
	events := make([]event.Event, len(recs))
	for i := range recs {
		events[i] = recs[i].Event
	}
	ack, err := r.pub.Publish(ctx, events)
	if err != nil {
		return nil, err
	}
	l.inFlight.Add(int64(len(recs)))
	return ack, nil
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

// Rewind asks the relay to deliver again every record after seq (replay), or to skip ahead
// to seq. It takes effect between batches, abandoning a batch still being retried; the new
// cursor is stored before delivery resumes.
func (r *Relay) Rewind(seq uint64) {
	r.mu.Lock()
	r.rewind = &seq
	r.mu.Unlock()
	r.notify()
}

// Redrive asks the relay to send the dead letter id again, between batches. Once the sink
// accepts it the dead letter is deleted; if it fails again it is dead-lettered anew (a new
// id) with the attempts of both tries.
func (r *Relay) Redrive(id uint64) {
	r.mu.Lock()
	r.redrive = append(r.redrive, id)
	r.mu.Unlock()
	r.notify()
}

// notify wakes the relay to take up a replay or redrive.
func (r *Relay) notify() {
	select {
	case r.signal <- struct{}{}:
	default:
	}
}

// controlPending reports whether a replay or redrive waits for control.
func (r *Relay) controlPending() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.rewind != nil || len(r.redrive) > 0
}

// control applies a pending rewind to *cursor and works off pending redrives. The reader must
// be stopped.
func (r *Relay) control(ctx context.Context, cw *cursorWriter, cursor *uint64) error {
	r.mu.Lock()
	rewind, redrive := r.rewind, r.redrive
	r.rewind, r.redrive = nil, nil
	r.mu.Unlock()
	if rewind != nil {
		if err := cw.set(ctx, *rewind); err != nil {
			return err
		}
		r.logger.Info("replaying the log", slog.Uint64("from", *rewind+1), slog.Uint64("was_at", *cursor))
		*cursor = *rewind
		r.m(func(s *Status) { s.Cursor = *rewind })
	}
	for i, id := range redrive {
		if err := r.redriveOne(ctx, id); err != nil {
			if errors.Is(err, errInterrupted) {
				// A replay came in; keep the remaining redrives for after it.
				r.mu.Lock()
				r.redrive = append(redrive[i:], r.redrive...)
				r.mu.Unlock()
				return nil
			}
			return err
		}
	}
	return nil
}

// redriveOne sends dead letter id again, with its expiry counted from now.
func (r *Relay) redriveOne(ctx context.Context, id uint64) error {
	var dl store.DeadLetter
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		var err error
		dl, err = er.DeadLetter(r.cfg.Endpoint, id)
		return err
	})
	if errors.Is(err, store.ErrNotFound) {
		return nil // deleted or redriven meanwhile
	}
	if err != nil {
		return fmt.Errorf("load dead letter %d: %w", id, err)
	}
	dead, err := r.send(ctx, []event.Record{{Seq: dl.Seq, Event: dl.Event}}, r.cfg.Now(), nil)
	if err != nil {
		return err
	}
	for i := range dead {
		dead[i].Attempts += dl.Attempts
	}
	err = r.st.UpdateDelivery(ctx, func(w store.DeliveryWriter) error {
		if err := w.DeleteDeadLetter(r.cfg.Endpoint, id); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return r.addDeadLetters(w, dead)
	})
	if err != nil {
		return fmt.Errorf("settle redrive of dead letter %d: %w", id, err)
	}
	r.writeFiles(dead)
	if len(dead) == 0 {
		r.logger.Info("redriven dead letter delivered", slog.Uint64("dead_letter", id), slog.String("event_id", dl.Event.ID))
	}
	return nil
}

func (r *Relay) addDeadLetters(w store.DeliveryWriter, dead []store.DeadLetter) error {
	for i := range dead {
		id, err := w.AddDeadLetter(dead[i])
		if err != nil {
			return err
		}
		dead[i].ID = id
	}
	return nil
}

// send delivers recs, retrying as configured, and returns the dead letters of the events it
// gave up on. since, when not zero, replaces the events' commit times as the start of their
// TTL. failed, when not nil, is how a first attempt already failed: the acknowledgement or
// the publishing of recs as a published batch. It fails only when ctx ends (with ctx's error)
// or a replay interrupts it (errInterrupted).
func (r *Relay) send(ctx context.Context, recs []event.Record, since time.Time, failed error) ([]store.DeadLetter, error) {
	var dead []store.DeadLetter
	events := make([]event.Event, 0, len(recs))
	for attempts := 0; ; {
		err := failed
		failed = nil
		if err == nil {
			expired, dateErr := r.expired(ctx, recs, since)
			if dateErr != nil {
				return nil, dateErr
			}
			for _, rec := range recs[:expired] {
				dead = append(dead, r.deadLetter(rec, attempts, fmt.Sprintf("expired: not delivered within the TTL of %v", r.cfg.TTL)))
			}
			if recs = recs[expired:]; len(recs) == 0 {
				return dead, nil
			}
			events = events[:0]
			for _, rec := range recs {
				events = append(events, rec.Event)
			}
			if err = r.sink.Send(ctx, events); err == nil {
				r.accepted(len(recs))
				return dead, nil
			}
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		attempts++
		r.metrics.failed()
		now := r.cfg.Now()
		r.m(func(s *Status) {
			s.State, s.Attempts, s.LastError, s.LastErrorTime = StateRetrying, attempts, err.Error(), now
		})
		switch {
		case sink.IsPermanent(err) && len(recs) > 1:
			// Find the rejected events: send each on its own.
			r.logger.Warn("batch rejected; sending its events one by one", slog.Int("events", len(recs)), slog.Any("err", err))
			for _, rec := range recs {
				d, err := r.send(ctx, []event.Record{rec}, since, nil)
				if err != nil {
					return nil, err
				}
				dead = append(dead, d...)
			}
			return dead, nil
		case sink.IsPermanent(err):
			r.logger.Warn("event rejected", slog.String("event_id", recs[0].Event.ID), slog.Any("err", err))
			return append(dead, r.deadLetter(recs[0], attempts, "rejected: "+err.Error())), nil
		case r.cfg.MaxAttempts > 0 && attempts >= r.cfg.MaxAttempts:
			r.logger.Warn("giving up on events", slog.Int("events", len(recs)), slog.Int("attempts", attempts), slog.Any("err", err))
			for _, rec := range recs {
				dead = append(dead, r.deadLetter(rec, attempts, fmt.Sprintf("gave up after %d attempts: %v", attempts, err)))
			}
			return dead, nil
		}
		delay := r.backoff(attempts, err)
		r.logger.Debug("send failed; retrying", slog.Int("attempt", attempts), slog.Duration("after", delay), slog.Any("err", err))
		if err := r.sleep(ctx, delay); err != nil {
			return nil, err
		}
		r.metrics.retried()
	}
}

// accepted records that the sink accepted n events.
func (r *Relay) accepted(n int) {
	r.metrics.delivered(n)
	r.m(func(s *Status) { s.State, s.Attempts = StateDelivering, 0 })
}

// expired returns how many of recs, from the first, are past their TTL. Records are in commit
// order, so the expired ones are a prefix.
func (r *Relay) expired(ctx context.Context, recs []event.Record, since time.Time) (int, error) {
	now := r.cfg.Now()
	if !since.IsZero() {
		if now.Sub(since) >= r.cfg.TTL {
			return len(recs), nil
		}
		return 0, nil
	}
	// Every record after a dated one was committed at or after its time, so none of them
	// expires before it does: dating once per TTL suffices while the relay moves forward.
	if d := r.dated; !d.at.IsZero() && recs[0].Seq >= d.seq && now.Sub(d.at) < r.cfg.TTL {
		return 0, nil
	}
	n := 0
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		for _, rec := range recs {
			at, err := er.LogTime(rec.Seq)
			if err != nil {
				return fmt.Errorf("date record %d: %w", rec.Seq, err)
			}
			if now.Sub(at) < r.cfg.TTL {
				r.dated.seq, r.dated.at = rec.Seq, at
				return nil
			}
			n++
		}
		return nil
	})
	if err != nil && ctx.Err() != nil {
		return 0, ctx.Err()
	}
	if err != nil {
		// Without a date nothing is known to be expired; delivery goes on.
		r.logger.Warn("cannot date events for their TTL", slog.Any("err", err))
		return n, nil
	}
	return n, nil
}

func (r *Relay) deadLetter(rec event.Record, attempts int, reason string) store.DeadLetter {
	r.metrics.deadLettered()
	return store.DeadLetter{
		Endpoint: r.cfg.Endpoint, Seq: rec.Seq, Event: rec.Event,
		Reason: reason, Attempts: attempts, Time: r.cfg.Now(),
	}
}

// backoff returns the wait after the attempts-th failure: what a RetryAfterError asks for,
// otherwise an exponential backoff with jitter.
func (r *Relay) backoff(attempts int, err error) time.Duration {
	if ra, ok := errors.AsType[*sink.RetryAfterError](err); ok && ra.After > 0 {
		return ra.After
	}
	d := r.cfg.MinBackoff
	for i := 1; i < attempts && d < r.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, r.cfg.MaxBackoff)
	return d/2 + rand.N(d/2+1)
}

// sleep waits for d, returning early with ctx's error, or with errInterrupted when a replay
// is asked for. A redrive does not cut the wait short: it waits for the batch in flight.
func (r *Relay) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		case <-r.signal:
			r.mu.Lock()
			replay := r.rewind != nil
			r.mu.Unlock()
			if replay {
				return errInterrupted
			}
			// A redrive stays pending; the relay takes it up after the batch in flight.
		}
	}
}

// writeFiles writes dead letters as files when Config.DeadLetterDir is set. A file that
// cannot be written is logged: the dead letter is stored already.
func (r *Relay) writeFiles(dead []store.DeadLetter) {
	if r.cfg.DeadLetterDir == "" {
		return
	}
	for _, d := range dead {
		t := d.Time.UTC()
		dir := filepath.Join(r.cfg.DeadLetterDir, r.cfg.Endpoint,
			fmt.Sprintf("%04d", t.Year()), fmt.Sprintf("%02d", t.Month()), fmt.Sprintf("%02d", t.Day()), fmt.Sprintf("%02d", t.Hour()))
		body, err := json.Marshal(d.Event)
		if err == nil {
			err = os.MkdirAll(dir, 0o750)
		}
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, filepath.Base(d.Event.ID)+".json"), body, 0o640)
		}
		if err != nil {
			r.logger.Error("cannot write dead letter file", slog.String("event_id", d.Event.ID), slog.Any("err", err))
		}
	}
}

// Status returns the relay's progress, with the lag read from the log.
func (r *Relay) Status(ctx context.Context) (Status, error) {
	r.mu.Lock()
	s := r.status
	r.mu.Unlock()
	if s.State == StateStopped {
		// A relay that is not running (or has not loaded its cursor yet) holds no progress
		// of its own: the stored cursor is where it stands.
		err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
			var err error
			s.Cursor, err = er.Cursor(r.cfg.Endpoint)
			return err
		})
		if err != nil {
			return s, fmt.Errorf("load cursor of endpoint %q: %w", r.cfg.Endpoint, err)
		}
	}
	last := r.st.Log().Last()
	if last <= s.Cursor {
		return s, nil
	}
	s.LagEvents = last - s.Cursor
	err := r.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		at, err := er.LogTime(s.Cursor + 1)
		if err != nil {
			return err
		}
		s.LagSeconds = max(0, r.cfg.Now().Sub(at).Seconds())
		return nil
	})
	if err != nil {
		return s, fmt.Errorf("date the lag of endpoint %q: %w", r.cfg.Endpoint, err)
	}
	return s, nil
}
