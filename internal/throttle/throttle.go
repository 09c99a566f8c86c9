// Package throttle limits the rate of API requests the way ADT's service limits do: token
// buckets (golang.org/x/time/rate) for the writes of the whole instance, the writes of each
// twin, reads and queries, and a bound on the requests in flight on each twin. A request over
// a limit is refused, not queued: the caller answers 429 with the Retry-After the refusal
// gives, and the client tries again.
//
// Every limit is off while its setting is zero, and a Throttle whose settings are all zero
// refuses nothing. The twins' limits are kept in a map bounded by Config.MaxTwins, from which
// the twins used least recently are evicted (see Throttle).
package throttle

import (
	"container/list"
	"errors"
	"fmt"
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// DefaultMaxTwins is Config.MaxTwins's default.
const DefaultMaxTwins = 10_000

// Config sets the limits; a zero field turns its limit off. Rates are per second; each bucket
// holds one second's worth of requests (at least one), so a burst of that many passes at once.
type Config struct {
	// WritesPerSecond bounds the writes of the whole instance: PUT, PATCH and DELETE of
	// twins, components and relationships (ADT: 1,000 patches and 500 creates or deletes a
	// second).
	WritesPerSecond float64
	// TwinWritesPerSecond bounds the writes of one twin, its components and the
	// relationships from it (ADT: 10 a second).
	TwinWritesPerSecond float64
	// ReadsPerSecond bounds the reads of twins, components and relationships (ADT: 1,000 a
	// second).
	ReadsPerSecond float64
	// QueriesPerSecond bounds POST /query (ADT: 500 a second).
	QueriesPerSecond float64
	// MaxOutstandingPerTwin bounds the requests on one twin (reads, writes and telemetry of
	// it, its components and the relationships from it) in flight at once (ADT: 500).
	MaxOutstandingPerTwin int
	// MaxTwins bounds the twins whose limits are kept when no request of theirs is in flight;
	// 0 means DefaultMaxTwins.
	MaxTwins int
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// On reports whether any limit is set.
func (c Config) On() bool {
	return c.WritesPerSecond > 0 || c.TwinWritesPerSecond > 0 || c.ReadsPerSecond > 0 ||
		c.QueriesPerSecond > 0 || c.MaxOutstandingPerTwin > 0
}

// Validate reports every negative setting, by name.
func (c Config) Validate() error {
	var errs []error
	for _, f := range []struct {
		name string
		v    float64
	}{
		{"writesPerSecond", c.WritesPerSecond}, {"twinWritesPerSecond", c.TwinWritesPerSecond},
		{"readsPerSecond", c.ReadsPerSecond}, {"queriesPerSecond", c.QueriesPerSecond},
		{"maxOutstandingPerTwin", float64(c.MaxOutstandingPerTwin)}, {"maxTwins", float64(c.MaxTwins)},
	} {
		if f.v < 0 || math.IsNaN(f.v) || math.IsInf(f.v, 0) {
			errs = append(errs, fmt.Errorf("%s: %v is not a non-negative number", f.name, f.v))
		}
	}
	return errors.Join(errs...)
}

// Class is the kind of a request, which decides the limits it counts against.
type Class int

// The classes of requests.
const (
	// Unlimited requests count against no limit.
	Unlimited Class = iota
	// Read is a read of a twin, a component or relationships: ReadsPerSecond and
	// MaxOutstandingPerTwin.
	Read
	// Write is a write of a twin, a component or a relationship: WritesPerSecond,
	// TwinWritesPerSecond and MaxOutstandingPerTwin.
	Write
	// Telemetry is telemetry a twin sends: MaxOutstandingPerTwin only (ADT documents no
	// telemetry rate).
	Telemetry
	// Query is a query: QueriesPerSecond.
	Query
)

// Refusal says why a request is refused and when to try again.
type Refusal struct {
	// Limit names the setting that refused it, as Config's documentation names it
	// (writesPerSecond, twinWritesPerSecond, readsPerSecond, queriesPerSecond,
	// maxOutstandingPerTwin).
	Limit string
	// RetryAfter is when the request would pass, at the earliest: for a rate, when its
	// bucket has a token again; for requests in flight, a second.
	RetryAfter time.Duration
}

// Throttle applies one Config. It is safe for concurrent use.
//
// The limits of each twin (its write bucket and its count of requests in flight) live in a
// map with the twins in order of use. Once it holds more than MaxTwins twins, the twin used
// least recently with no request in flight is evicted; it starts afresh with a full bucket
// when it comes back, which only lets through what its bucket would have refilled to anyway
// once it has not been used for a second. Twins with requests in flight are never evicted, so
// the map holds at most MaxTwins twins plus those.
type Throttle struct {
	cfg                     Config
	writes, reads, querying *rate.Limiter

	// mu guards twins and lru.
	mu    sync.Mutex
	twins map[string]*twinState
	// lru orders the twins from the most recently used (front) to the least.
	lru *list.List
}

// twinState is one twin's limits.
type twinState struct {
	id          string
	writes      *rate.Limiter // nil without TwinWritesPerSecond
	outstanding int
	elem        *list.Element
}

// New returns a Throttle applying cfg, or the settings' problems.
func New(cfg Config) (*Throttle, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("limits: %w", err)
	}
	if cfg.MaxTwins == 0 {
		cfg.MaxTwins = DefaultMaxTwins
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	return &Throttle{
		cfg: cfg, writes: bucket(cfg.WritesPerSecond), reads: bucket(cfg.ReadsPerSecond), querying: bucket(cfg.QueriesPerSecond),
		twins: make(map[string]*twinState), lru: list.New(),
	}, nil
}

// bucket returns a token bucket of perSecond holding a second's worth, or nil for 0.
func bucket(perSecond float64) *rate.Limiter {
	if perSecond <= 0 {
		return nil
	}
	return rate.NewLimiter(rate.Limit(perSecond), max(1, int(math.Ceil(perSecond))))
}

// Admit decides whether a request of class c on twin (empty for requests on no twin) may run
// now. When it may, it takes the request's tokens and counts it in flight on the twin, and
// done must be called once the request has finished; otherwise it returns the refusal, takes
// nothing, and done is nil. A request refused by one limit does not use up the others.
func (t *Throttle) Admit(c Class, twin string) (done func(), refused *Refusal) {
	now := t.cfg.Now()
	var taken []*rate.Reservation
	take := func(l *rate.Limiter, limit string) bool {
		if l == nil {
			return true
		}
		r := l.ReserveN(now, 1)
		if d := r.DelayFrom(now); d > 0 {
			r.CancelAt(now)
			refused = &Refusal{Limit: limit, RetryAfter: d}
			return false
		}
		taken = append(taken, r)
		return true
	}
	giveBack := func() {
		for _, r := range taken {
			r.CancelAt(now)
		}
	}
	switch c {
	case Query:
		if !take(t.querying, "queriesPerSecond") {
			return nil, refused
		}
		return func() {}, nil
	case Read:
		if !take(t.reads, "readsPerSecond") {
			return nil, refused
		}
	case Write:
		if !take(t.writes, "writesPerSecond") {
			return nil, refused
		}
	case Telemetry:
	default:
		return func() {}, nil
	}
	if twin == "" || (t.cfg.TwinWritesPerSecond == 0 && t.cfg.MaxOutstandingPerTwin == 0) {
		return func() {}, nil
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.twinLocked(twin)
	if limit := t.cfg.MaxOutstandingPerTwin; limit > 0 && s.outstanding >= limit {
		giveBack()
		return nil, &Refusal{Limit: "maxOutstandingPerTwin", RetryAfter: time.Second}
	}
	if c == Write && !take(s.writes, "twinWritesPerSecond") {
		giveBack()
		return nil, refused
	}
	s.outstanding++
	var once sync.Once
	return func() {
		once.Do(func() {
			t.mu.Lock()
			s.outstanding--
			t.mu.Unlock()
		})
	}, nil
}

// twinLocked returns twin's state, created if missing, and marks it used; it evicts the twins
// past MaxTwins. Callers hold t.mu.
func (t *Throttle) twinLocked(id string) *twinState {
	if s, ok := t.twins[id]; ok {
		t.lru.MoveToFront(s.elem)
		return s
	}
	s := &twinState{id: id, writes: bucket(t.cfg.TwinWritesPerSecond)}
	s.elem = t.lru.PushFront(s)
	t.twins[id] = s
	// Evict from the least recently used end, passing over twins with requests in flight.
	for e := t.lru.Back(); e != nil && len(t.twins) > t.cfg.MaxTwins; {
		prev := e.Prev()
		if old := e.Value.(*twinState); old.outstanding == 0 && old != s {
			t.lru.Remove(e)
			delete(t.twins, old.id)
		}
		e = prev
	}
	return s
}

// size returns how many twins' limits the throttle keeps.
func (t *Throttle) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.twins)
}
