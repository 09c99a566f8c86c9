package lease

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"
)

// DefaultTTL is a Keeper's TTL unless Config says otherwise. With the default Retry
// (DefaultTTL/3) a lease whose owner died is taken over by another node within
// DefaultTTL + DefaultTTL/3 = 8 s of the owner's last renewal.
const DefaultTTL = 6 * time.Second

// Config configures a Keeper.
type Config struct {
	// Holder names this node in the Table: unique among all processes sharing the table,
	// and different after a restart (for instance the service id with the host name and
	// the process id, or with a random suffix), so that a restarted node does not mistake
	// the grants of its previous life for its own. Required.
	Holder string
	// TTL is the time a grant lasts unless renewed; 0 means DefaultTTL. The Keeper renews
	// every TTL/3 and treats a grant it could not renew within 2/3 of the TTL as lost.
	TTL time.Duration
	// Retry is the time between two attempts to acquire a name that another holder holds;
	// 0 means TTL/3.
	Retry time.Duration
}

// Keeper acquires and keeps the leases this node wants, on behalf of the functions passed to
// Hold, one name at a time per Hold call; names are wanted for as long as their Hold call
// runs, so the set of names may change at any time.
//
// Timing, for a grant whose last successful Acquire or Renew call started at local time s:
// the Keeper renews it at s + TTL/3, retries a renewal that failed every TTL/10, and if no
// renewal succeeded by s + 2·TTL/3 (a call still under way then is abandoned) it treats the
// grant as lost and cancels the Hold function's context. The grant stays valid in the Table
// until at least s + TTL, so the function has TTL/3 to stop before any other node can
// acquire the name. A name not held is tried again every Retry.
//
// A Keeper is safe for concurrent use. Hold calls made before Run wait for it to start;
// once Run has returned, Hold returns ErrStopped.
type Keeper struct {
	cfg    Config
	table  Table
	logger *slog.Logger
	// lossAfter is how long after a call started the grant it returned is trusted.
	lossAfter time.Duration

	// stopped is closed when Run returns.
	stopped chan struct{}

	mu sync.Mutex
	// ctx is Run's context while it runs, nil before.
	ctx context.Context
	// done is set when Run is about to return; no keep goroutine starts after it.
	done bool
	// wants holds the names Hold calls want, by name.
	wants map[string]*want
	wg    sync.WaitGroup
}

// want is one Hold call's name.
type want struct {
	name string
	// ctx is the Hold call's context, the parent of every context its function runs with.
	ctx context.Context
	// quit is cancelled when the Hold call no longer wants the name.
	quit       context.Context
	cancelQuit context.CancelFunc
	// grants passes each new grant from keep to Hold; resume passes back that the function
	// run under a lost grant returned, so that keep may acquire the name again.
	grants chan held
	resume chan struct{}
	// exited is closed when the name's keep goroutine returns; nil while none started.
	// Guarded by Keeper.mu.
	exited chan struct{}
	// grant is the grant held now, zero when none. Guarded by Keeper.mu.
	grant Grant
}

// held is a grant and the context of the function run under it.
type held struct {
	ctx   context.Context
	grant Grant
}

// New returns a Keeper that keeps leases in table for cfg.Holder.
func New(cfg Config, table Table, logger *slog.Logger) (*Keeper, error) {
	if cfg.Holder == "" {
		return nil, errors.New("lease keeper config: holder: must be set")
	}
	if cfg.TTL == 0 {
		cfg.TTL = DefaultTTL
	}
	if cfg.TTL < time.Millisecond {
		return nil, fmt.Errorf("lease keeper config: ttl: %v is shorter than 1ms", cfg.TTL)
	}
	if cfg.Retry == 0 {
		cfg.Retry = cfg.TTL / 3
	}
	if cfg.Retry < 0 {
		return nil, fmt.Errorf("lease keeper config: retry: %v is negative", cfg.Retry)
	}
	return &Keeper{
		cfg: cfg, table: table, logger: logger.With(slog.String("holder", cfg.Holder)),
		lossAfter: cfg.TTL - cfg.TTL/3,
		stopped:   make(chan struct{}), wants: map[string]*want{},
	}, nil
}

// Run keeps the wanted leases until ctx ends, then cancels the functions running under
// them (with cause ErrStopped), returns once its goroutines have exited, and makes every
// Hold call return ErrStopped; the Hold calls release their leases as their functions
// return. It returns nil, or an error if called more than once.
func (k *Keeper) Run(ctx context.Context) error {
	k.mu.Lock()
	if k.ctx != nil {
		k.mu.Unlock()
		return errors.New("lease keeper: Run called twice")
	}
	k.ctx = ctx
	for _, w := range k.wants {
		k.startLocked(w)
	}
	k.mu.Unlock()
	<-ctx.Done()
	k.mu.Lock()
	k.done = true
	k.mu.Unlock()
	k.wg.Wait()
	close(k.stopped)
	return nil
}

// Hold calls fn each time this node gains the lease name, with the grant and a context that
// is cancelled when the lease is lost (context.Cause is then ErrLost, wrapped), when ctx
// ends, or when Run's context ends (cause ErrStopped). fn must return promptly once its
// context is cancelled: work it does after that may overlap with another node's, and should
// be fenced with the grant's Token.
//
// Hold blocks until ctx ends or fn returns while the lease is still held. When fn returns
// after a loss, Hold waits to gain the lease again and calls fn again. Before it returns,
// Hold releases the lease if it holds it, after fn has returned, so that another node may
// take it over at once. It returns nil when ctx ends, fn's error when fn returned while
// holding the lease, and ErrStopped once Run has returned.
//
// At most one Hold call per name may run at a time; another returns an error at once.
func (k *Keeper) Hold(ctx context.Context, name string, fn func(context.Context, Grant) error) error {
	w, err := k.add(ctx, name)
	if err != nil {
		return err
	}
	// last is the grant fn last ran under, to release.
	var last Grant
	defer func() { k.remove(w, last) }()
	for {
		var h held
		select {
		case <-ctx.Done():
			return nil
		case <-k.stopped:
			return ErrStopped
		case h = <-w.grants:
		}
		last = h.grant
		err := fn(h.ctx, h.grant)
		cause := context.Cause(h.ctx)
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(cause, ErrStopped):
			return ErrStopped
		case errors.Is(cause, ErrLost):
			if err != nil && !errors.Is(err, context.Canceled) {
				k.logger.Warn("lease function failed after losing its lease", slog.String("lease", name),
					slog.Any("err", err))
			}
			last = Grant{}
			w.resume <- struct{}{}
		default:
			return err
		}
	}
}

// add registers a Hold call's want of name and starts keeping it if Run runs.
func (k *Keeper) add(ctx context.Context, name string) (*want, error) {
	if name == "" {
		return nil, errors.New("hold lease: name is empty")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.done {
		return nil, ErrStopped
	}
	if _, dup := k.wants[name]; dup {
		return nil, fmt.Errorf("hold lease %q: another Hold call holds it", name)
	}
	quit, cancel := context.WithCancel(context.Background())
	w := &want{name: name, ctx: ctx, quit: quit, cancelQuit: cancel,
		grants: make(chan held, 1), resume: make(chan struct{}, 1)}
	k.wants[name] = w
	if k.ctx != nil {
		k.startLocked(w)
	}
	return w, nil
}

// remove ends a Hold call's want: it stops keeping the name, then releases last (the grant
// the Hold function last ran under, if any) and any grant the Hold call did not take.
func (k *Keeper) remove(w *want, last Grant) {
	w.cancelQuit()
	k.mu.Lock()
	delete(k.wants, w.name)
	exited := w.exited
	k.mu.Unlock()
	if exited != nil {
		<-exited
	}
	grants := []Grant{last}
	select {
	case h := <-w.grants:
		grants = append(grants, h.grant)
	default:
	}
	for _, g := range grants {
		if g.Token == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.WithoutCancel(w.ctx), k.lossAfter)
		err := k.table.Release(ctx, g)
		cancel()
		if err != nil {
			k.logger.Warn("release lease; it expires by itself", slog.String("lease", g.Name), slog.Any("err", err))
			continue
		}
		k.logger.Info("lease released", slog.String("lease", g.Name), slog.Int64("token", g.Token))
	}
}

// startLocked starts keeping w. Callers hold k.mu, with k.ctx set and k.done not.
func (k *Keeper) startLocked(w *want) {
	w.exited = make(chan struct{})
	ctx := k.ctx
	k.wg.Go(func() { k.keep(ctx, w) })
}

// keep acquires w's name, hands each grant to the Hold call and renews it, until ctx ends
// or the Hold call no longer wants the name.
func (k *Keeper) keep(runCtx context.Context, w *want) {
	defer close(w.exited)
	ctx, cancel := context.WithCancel(runCtx)
	defer cancel()
	defer context.AfterFunc(w.quit, cancel)()
	for {
		g, start, err := k.acquire(ctx, w.name)
		if err != nil {
			return
		}
		k.logger.Info("lease gained", slog.String("lease", w.name), slog.Int64("token", g.Token))
		lctx, lose := context.WithCancelCause(w.ctx)
		k.setGrant(w, g)
		w.grants <- held{ctx: lctx, grant: g}
		err = k.renew(ctx, w, g, start)
		k.setGrant(w, Grant{})
		if runCtx.Err() != nil {
			err = ErrStopped
		}
		lose(err)
		if ctx.Err() != nil {
			return
		}
		k.logger.Warn("lease lost", slog.String("lease", w.name), slog.Int64("token", g.Token), slog.Any("err", err))
		select {
		case <-w.resume:
		case <-ctx.Done():
			return
		}
	}
}

// acquire tries to acquire name every Retry until it succeeds or ctx ends, and returns the
// grant with the local time its call started.
func (k *Keeper) acquire(ctx context.Context, name string) (Grant, time.Time, error) {
	for {
		start := time.Now()
		actx, cancel := context.WithTimeout(ctx, k.lossAfter)
		g, err := k.table.Acquire(actx, name, k.cfg.Holder, k.cfg.TTL)
		cancel()
		if err == nil {
			return g, start, nil
		}
		if ctx.Err() != nil {
			return Grant{}, time.Time{}, ctx.Err()
		}
		if !errors.Is(err, ErrHeld) {
			k.logger.Warn("acquire lease", slog.String("lease", name), slog.Any("err", err))
		}
		select {
		case <-ctx.Done():
			return Grant{}, time.Time{}, ctx.Err()
		case <-time.After(k.cfg.Retry):
		}
	}
}

// renew keeps g, acquired or last renewed by a call that started at start, until it is lost
// or ctx ends, and returns why it stopped: an error wrapping ErrLost, or ctx's error.
func (k *Keeper) renew(ctx context.Context, w *want, g Grant, start time.Time) error {
	valid := start.Add(k.lossAfter)
	timer := time.NewTimer(time.Until(start.Add(k.cfg.TTL / 3)))
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-timer.C:
		}
		now := time.Now()
		if !now.Before(valid) {
			return fmt.Errorf("lease %q not renewed within %v: %w", g.Name, k.lossAfter, ErrLost)
		}
		rctx, cancel := context.WithDeadline(ctx, valid)
		ng, err := k.table.Renew(rctx, g, k.cfg.TTL)
		cancel()
		switch {
		case err == nil:
			g, valid = ng, now.Add(k.lossAfter)
			k.setGrant(w, g)
			timer.Reset(time.Until(now.Add(k.cfg.TTL / 3)))
		case errors.Is(err, ErrLost):
			return err
		case ctx.Err() != nil:
			return ctx.Err()
		default:
			k.logger.Warn("renew lease", slog.String("lease", g.Name), slog.Any("err", err))
			timer.Reset(min(k.cfg.TTL/10, time.Until(valid)))
		}
	}
}

// setGrant records the grant w holds now.
func (k *Keeper) setGrant(w *want, g Grant) {
	k.mu.Lock()
	w.grant = g
	k.mu.Unlock()
}

// Grants returns the grants this Keeper holds now, ordered by name, as of their last
// renewal. A grant is listed from before its Hold function is called until before its
// context is cancelled.
func (k *Keeper) Grants() []Grant {
	k.mu.Lock()
	defer k.mu.Unlock()
	var gs []Grant
	for _, w := range k.wants {
		if w.grant.Token != 0 {
			gs = append(gs, w.grant)
		}
	}
	slices.SortFunc(gs, func(a, b Grant) int { return strings.Compare(a.Name, b.Name) })
	return gs
}
