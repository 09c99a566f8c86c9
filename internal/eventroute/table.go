package eventroute

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// DefaultMaxRoutes is ADT's default route limit per instance (adjustable there, a setting
// here).
const DefaultMaxRoutes = 6

// MaxIDLength is the longest route id accepted.
const MaxIDLength = 64

// The errors Put returns, possibly wrapped with details; the API maps them to ADT's codes.
var (
	// ErrEndpointInvalid: the route's endpoint does not exist.
	ErrEndpointInvalid = errors.New("the endpoint provided does not exist")
	// ErrIDInvalid: the route id is empty, too long or holds a character other than a
	// letter, a digit, '-', '_' or '.'.
	ErrIDInvalid = errors.New("invalid route id")
	// ErrLimitExceeded: adding the route would pass Config.MaxRoutes.
	ErrLimitExceeded = errors.New("route limit exceeded")
)

// Config configures Table.
type Config struct {
	// MaxRoutes limits the number of routes; 0 means DefaultMaxRoutes.
	MaxRoutes int
	// Guard, when set, checks each route Put writes (see Guard).
	Guard Guard
}

// Guard checks a route before it is written (*loopguard.Guard implements it).
type Guard interface {
	// PutRoute runs write, which writes r, or returns why r may not be written.
	PutRoute(ctx context.Context, r store.Route, write func() error) error
}

// Table is the set of event routes: stored durably, and compiled in memory for the relays.
// Its methods are safe for concurrent use; a change is visible to Matcher as soon as the
// method making it returns.
type Table struct {
	cfg Config
	st  store.Delivery
	// mu serialises changes, so the compiled set follows the store in the same order.
	mu sync.Mutex
	// compiled maps an endpoint name to its routes' filters by route id. It is replaced, never
	// changed, so readers load it without a lock.
	compiled atomic.Pointer[map[string]map[string]*Filter]
}

// New loads the stored routes. A stored filter that no longer compiles fails New.
func New(ctx context.Context, cfg Config, st store.Delivery) (*Table, error) {
	if cfg.MaxRoutes == 0 {
		cfg.MaxRoutes = DefaultMaxRoutes
	}
	if cfg.MaxRoutes < 0 {
		return nil, fmt.Errorf("route config: maxRoutes: %d is negative", cfg.MaxRoutes)
	}
	t := &Table{cfg: cfg, st: st}
	compiled, err := t.load(ctx)
	if err != nil {
		return nil, err
	}
	t.compiled.Store(&compiled)
	return t, nil
}

// load reads and compiles the stored routes. A stored filter that no longer compiles fails
// it, with the routes that compiled.
func (t *Table) load(ctx context.Context) (map[string]map[string]*Filter, error) {
	var stored []store.Route
	err := t.st.ViewDelivery(ctx, func(r store.DeliveryReader) error {
		var err error
		stored, err = r.Routes("", 0)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("load routes: %w", err)
	}
	compiled := make(map[string]map[string]*Filter)
	var errs []error
	for _, r := range stored {
		f, err := Compile(r.Filter)
		if err != nil {
			errs = append(errs, fmt.Errorf("load route %q: %w", r.ID, err))
			continue
		}
		if compiled[r.EndpointName] == nil {
			compiled[r.EndpointName] = make(map[string]*Filter)
		}
		compiled[r.EndpointName][r.ID] = f
	}
	return compiled, errors.Join(errs...)
}

// Reload replaces the routes in effect with the stored ones, which another node sharing the
// store may have changed. It reads the store under the lock Put and Delete hold, so it never
// undoes their changes, and Matcher sees the new routes once it returns. A stored filter that
// no longer compiles fails Reload, whose other routes take effect all the same; a store that
// cannot be read leaves the routes as they were.
func (t *Table) Reload(ctx context.Context) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	compiled, err := t.load(ctx)
	if compiled != nil {
		t.compiled.Store(&compiled)
	}
	return err
}

// ValidID reports whether id is a valid route id (see ErrIDInvalid).
func ValidID(id string) bool {
	if id == "" || len(id) > MaxIDLength {
		return false
	}
	for _, c := range id {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_', c == '.':
		default:
			return false
		}
	}
	return true
}

// Put creates or replaces a route, checking in this order: the id (ErrIDInvalid), the filter
// (ErrFilterInvalid), Config.Guard, the endpoint's existence (ErrEndpointInvalid) and the
// route limit (ErrLimitExceeded). The endpoint check and the write happen in one store
// transaction.
func (t *Table) Put(ctx context.Context, r store.Route) error {
	if !ValidID(r.ID) {
		return fmt.Errorf("%w: %q must be 1 to %d letters, digits, '-', '_' or '.'", ErrIDInvalid, r.ID, MaxIDLength)
	}
	f, err := Compile(r.Filter)
	if err != nil {
		return err
	}
	if t.cfg.Guard == nil {
		return t.put(ctx, r, f)
	}
	if err := t.cfg.Guard.PutRoute(ctx, r, func() error { return t.put(ctx, r, f) }); err != nil {
		return fmt.Errorf("put route %q: %w", r.ID, err)
	}
	return nil
}

// put writes r, whose filter compiles to f, once its endpoint and the limit allow it.
func (t *Table) put(ctx context.Context, r store.Route, f *Filter) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	err := t.st.UpdateDelivery(ctx, func(w store.DeliveryWriter) error {
		if _, err := w.Endpoint(r.EndpointName); err != nil {
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("%w: %q", ErrEndpointInvalid, r.EndpointName)
			}
			return err
		}
		if _, err := w.Route(r.ID); errors.Is(err, store.ErrNotFound) {
			n, err := w.CountRoutes()
			if err != nil {
				return err
			}
			if n >= t.cfg.MaxRoutes {
				return fmt.Errorf("%w: at most %d routes", ErrLimitExceeded, t.cfg.MaxRoutes)
			}
		} else if err != nil {
			return err
		}
		return w.PutRoute(r)
	})
	if err != nil {
		return fmt.Errorf("put route %q: %w", r.ID, err)
	}
	t.change(func(m map[string]map[string]*Filter) {
		removeRoute(m, r.ID)
		if m[r.EndpointName] == nil {
			m[r.EndpointName] = make(map[string]*Filter)
		}
		m[r.EndpointName][r.ID] = f
	})
	return nil
}

// Delete deletes a route; a missing one is store.ErrNotFound.
func (t *Table) Delete(ctx context.Context, id string) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if err := t.st.UpdateDelivery(ctx, func(w store.DeliveryWriter) error { return w.DeleteRoute(id) }); err != nil {
		return fmt.Errorf("delete route %q: %w", id, err)
	}
	t.change(func(m map[string]map[string]*Filter) { removeRoute(m, id) })
	return nil
}

// Get returns a route; a missing one is store.ErrNotFound.
func (t *Table) Get(ctx context.Context, id string) (store.Route, error) {
	var r store.Route
	err := t.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		var err error
		r, err = er.Route(id)
		return err
	})
	return r, err
}

// List returns up to limit routes ordered by id, after the given id.
func (t *Table) List(ctx context.Context, after string, limit int) ([]store.Route, error) {
	var list []store.Route
	err := t.st.ViewDelivery(ctx, func(er store.DeliveryReader) error {
		var err error
		list, err = er.Routes(after, limit)
		return err
	})
	return list, err
}

// Matcher returns the function a relay asks whether an event goes to endpoint: true when any
// route to endpoint matches it (an event is delivered once however many routes match). It
// always sees the routes in effect at the time of the call.
func (t *Table) Matcher(endpoint string) func(*event.Event) bool {
	return func(e *event.Event) bool {
		for _, f := range (*t.compiled.Load())[endpoint] {
			if f.Match(e) {
				return true
			}
		}
		return false
	}
}

// change applies fn to a copy of the compiled set and publishes it. Callers hold t.mu.
func (t *Table) change(fn func(map[string]map[string]*Filter)) {
	old := *t.compiled.Load()
	m := make(map[string]map[string]*Filter, len(old))
	for ep, fs := range old {
		c := make(map[string]*Filter, len(fs))
		for id, f := range fs {
			c[id] = f
		}
		m[ep] = c
	}
	fn(m)
	t.compiled.Store(&m)
}

// removeRoute removes route id from whichever endpoint holds it.
func removeRoute(m map[string]map[string]*Filter, id string) {
	for ep, fs := range m {
		if _, ok := fs[id]; ok {
			delete(fs, id)
			if len(fs) == 0 {
				delete(m, ep)
			}
		}
	}
}
