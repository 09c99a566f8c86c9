package leasetest

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/lease"
)

// RunKeeper runs the contract suite of lease.Keeper over the tables open makes: keepers of
// several nodes, each with its own handle on one table, contending for the same names.
func RunKeeper(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"Handover", testKeeperHandover},
		{"Crash", testKeeperCrash},
		{"Partition", testKeeperPartition},
		{"Renews", testKeeperRenews},
		{"Return", testKeeperReturn},
		{"Stop", testKeeperStop},
		{"BeforeRun", testKeeperBeforeRun},
		{"Duplicate", testKeeperDuplicate},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open)
		})
	}
}

// errCut is the error of a node cut off from its table.
var errCut = errors.New("cut off from the lease table")

// node is one node's handle on a table, which a test can cut off from it, as a network
// partition or a crash does: while cut, every call blocks until its context ends and then
// fails, and nothing is released.
type node struct {
	lease.Table
	cut atomic.Bool
}

var _ lease.Table = (*node)(nil)

func (n *node) block(ctx context.Context) error {
	if !n.cut.Load() {
		return nil
	}
	<-ctx.Done()
	return fmt.Errorf("%w: %w", errCut, ctx.Err())
}

func (n *node) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (lease.Grant, error) {
	if err := n.block(ctx); err != nil {
		return lease.Grant{}, err
	}
	return n.Table.Acquire(ctx, name, holder, ttl)
}

func (n *node) Renew(ctx context.Context, g lease.Grant, ttl time.Duration) (lease.Grant, error) {
	if err := n.block(ctx); err != nil {
		return lease.Grant{}, err
	}
	return n.Table.Renew(ctx, g, ttl)
}

func (n *node) Release(ctx context.Context, g lease.Grant) error {
	if err := n.block(ctx); err != nil {
		return err
	}
	return n.Table.Release(ctx, g)
}

// keeper is one node's running Keeper.
type keeper struct {
	*lease.Keeper
	holder string
	node   *node
	stop   context.CancelFunc
	// ran receives Run's result.
	ran chan error
}

// startKeeper starts a Keeper configured by cfg on its own handle on the table under key,
// and stops it when t ends.
func startKeeper(t *testing.T, open Opener, key string, cfg lease.Config) *keeper {
	t.Helper()
	holder := cfg.Holder
	n := &node{Table: open(t, key)}
	k, err := lease.New(cfg, n, slog.New(slog.NewTextHandler(t.Output(), nil)))
	if err != nil {
		t.Fatal(err)
	}
	ctx, stop := context.WithCancel(context.Background())
	kp := &keeper{Keeper: k, holder: holder, node: n, stop: stop, ran: make(chan error, 1)}
	go func() { kp.ran <- k.Run(ctx) }()
	t.Cleanup(func() {
		stop()
		if err := <-kp.ran; err != nil {
			t.Errorf("Run of %s: %v", holder, err)
		}
	})
	return kp
}

// run is one call of a Hold function.
type run struct {
	name, holder string
	token        int64
	start, end   time.Time
	cause        error // its context's, once it ended
}

// probe provides Hold functions that record their runs and fail the test when two nodes run
// the function of the same name at the same time.
type probe struct {
	t      *testing.T
	mu     sync.Mutex
	active map[string]int // name → index in runs of the run under way
	runs   []run
}

func newProbe(t *testing.T) *probe { return &probe{t: t, active: map[string]int{}} }

// fn returns the Hold function of holder: it runs until its context is cancelled.
func (p *probe) fn(holder string) func(context.Context, lease.Grant) error {
	return func(ctx context.Context, g lease.Grant) error {
		if g.Holder != holder {
			p.t.Errorf("%s's Hold function got %+v", holder, g)
		}
		p.mu.Lock()
		if i, ok := p.active[g.Name]; ok {
			p.t.Errorf("%s runs %q (token %d) while %s does (token %d)", holder, g.Name, g.Token, p.runs[i].holder, p.runs[i].token)
		}
		i := len(p.runs)
		p.active[g.Name] = i
		p.runs = append(p.runs, run{name: g.Name, holder: holder, token: g.Token, start: time.Now()})
		p.mu.Unlock()
		<-ctx.Done()
		p.mu.Lock()
		if p.active[g.Name] == i {
			delete(p.active, g.Name)
		}
		p.runs[i].end, p.runs[i].cause = time.Now(), context.Cause(ctx)
		p.mu.Unlock()
		return ctx.Err()
	}
}

// current returns the run of name under way, if any.
func (p *probe) current(name string) (run, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	i, ok := p.active[name]
	if !ok {
		return run{}, false
	}
	return p.runs[i], true
}

// waitHeld waits until holder runs name's function and returns that run.
func (p *probe) waitHeld(name, holder string) run {
	p.t.Helper()
	var r run
	eventually(p.t, fmt.Sprintf("%s holds %q", holder, name), func() bool {
		var ok bool
		r, ok = p.current(name)
		return ok && r.holder == holder
	})
	return r
}

// ended returns the runs of name by holder that have ended.
func (p *probe) ended(name, holder string) []run {
	p.mu.Lock()
	defer p.mu.Unlock()
	var rs []run
	for _, r := range p.runs {
		if r.name == name && r.holder == holder && !r.end.IsZero() {
			rs = append(rs, r)
		}
	}
	return rs
}

// hold is one Hold call under way.
type hold struct {
	cancel context.CancelFunc
	done   chan error
}

// startHold calls k.Hold(name, fn) in a goroutine until the returned hold is stopped or t
// ends.
func startHold(t *testing.T, k *keeper, name string, fn func(context.Context, lease.Grant) error) *hold {
	ctx, cancel := context.WithCancel(context.Background())
	h := &hold{cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- k.Hold(ctx, name, fn) }()
	t.Cleanup(func() { h.stop() })
	return h
}

// stop ends the Hold call and returns its result; it may be called more than once.
func (h *hold) stop() error {
	h.cancel()
	return h.wait()
}

// wait waits for the Hold call to return by itself and returns its result.
func (h *hold) wait() error {
	err := <-h.done
	h.done <- err
	return err
}

// testKeeperHandover has two nodes want the same names and hands each name from the node
// that holds it to the other again and again, by ending the holder's Hold call: the other
// takes the released lease over, and no two nodes ever run a name's function at once.
func testKeeperHandover(t *testing.T, open Opener) {
	// Both nodes renew well within the TTL, and take a released lease over quickly.
	const ttl, retry = 2 * time.Second, 100 * time.Millisecond
	names := []string{"relay/a", "relay/b", "history", "source/s/0"}
	p := newProbe(t)
	keepers := []*keeper{
		startKeeper(t, open, "t", lease.Config{Holder: "node-a", TTL: ttl, Retry: retry}),
		startKeeper(t, open, "t", lease.Config{Holder: "node-b", TTL: ttl, Retry: retry}),
	}
	holds := map[string]*hold{} // by holder and name
	for _, k := range keepers {
		for _, name := range names {
			holds[k.holder+" "+name] = startHold(t, k, name, p.fn(k.holder))
		}
	}
	byHolder := map[string]*keeper{"node-a": keepers[0], "node-b": keepers[1]}
	other := map[string]string{"node-a": "node-b", "node-b": "node-a"}
	for i := range 8 {
		name := names[i%len(names)]
		var r run
		eventually(t, fmt.Sprintf("someone holds %q", name), func() bool {
			var ok bool
			r, ok = p.current(name)
			return ok
		})
		if gs := byHolder[r.holder].Grants(); !containsGrant(gs, name, r.token) {
			t.Fatalf("%s runs %q with token %d, but its Grants are %+v", r.holder, name, r.token, gs)
		}
		if err := holds[r.holder+" "+name].stop(); err != nil {
			t.Fatalf("Hold of %s: %v", r.holder, err)
		}
		if gs := byHolder[r.holder].Grants(); containsGrant(gs, name, r.token) {
			t.Fatalf("%s's Hold call returned, but its Grants still list %q: %+v", r.holder, name, gs)
		}
		next := p.waitHeld(name, other[r.holder])
		if next.token <= r.token {
			t.Fatalf("token on handover %d, want more than %d", next.token, r.token)
		}
		holds[r.holder+" "+name] = startHold(t, byHolder[r.holder], name, p.fn(r.holder))
	}
}

func containsGrant(gs []lease.Grant, name string, token int64) bool {
	for _, g := range gs {
		if g.Name == name && g.Token == token {
			return true
		}
	}
	return false
}

// testKeeperCrash stops a node abruptly, without releasing anything: the other node takes
// its leases over once they expire.
func testKeeperCrash(t *testing.T, open Opener) {
	const ttl = time.Second
	p := newProbe(t)
	a := startKeeper(t, open, "t", lease.Config{Holder: "node-a", TTL: ttl})
	ha := startHold(t, a, "n", p.fn("node-a"))
	ra := p.waitHeld("n", "node-a")
	b := startKeeper(t, open, "t", lease.Config{Holder: "node-b", TTL: ttl})
	startHold(t, b, "n", p.fn("node-b"))

	a.node.cut.Store(true)
	a.stop()
	if err := ha.stop(); err != nil && !errors.Is(err, lease.ErrStopped) {
		t.Fatalf("Hold of the stopped node: %v", err)
	}
	rb := p.waitHeld("n", "node-b")
	if rb.token <= ra.token {
		t.Fatalf("token on takeover %d, want more than %d", rb.token, ra.token)
	}
}

// testKeeperPartition cuts a node off from the table: it stops its functions, as lost,
// before the other node takes its leases over; once it can reach the table again it waits
// for the leases and gets them when the other node lets them go.
func testKeeperPartition(t *testing.T, open Opener) {
	// The node cut off has a third of the TTL to stop its functions before the other may
	// take over: a generous TTL keeps a busy machine from failing the test.
	const ttl = 2 * time.Second
	names := []string{"n", "m"}
	p := newProbe(t)
	a := startKeeper(t, open, "t", lease.Config{Holder: "node-a", TTL: ttl})
	for _, name := range names {
		startHold(t, a, name, p.fn("node-a"))
		p.waitHeld(name, "node-a")
	}
	b := startKeeper(t, open, "t", lease.Config{Holder: "node-b", TTL: ttl})
	hb := map[string]*hold{}
	for _, name := range names {
		hb[name] = startHold(t, b, name, p.fn("node-b"))
	}

	a.node.cut.Store(true)
	for _, name := range names {
		rb := p.waitHeld(name, "node-b")
		ra := p.ended(name, "node-a")
		if len(ra) != 1 {
			t.Fatalf("node-a's runs of %q: %+v, want one that ended", name, ra)
		}
		if !errors.Is(ra[0].cause, lease.ErrLost) {
			t.Fatalf("node-a's run of %q ended with %v, want ErrLost", name, ra[0].cause)
		}
		if rb.token <= ra[0].token {
			t.Fatalf("token on takeover %d, want more than %d", rb.token, ra[0].token)
		}
	}
	if gs := a.Grants(); len(gs) != 0 {
		t.Fatalf("Grants of the node cut off: %+v, want none", gs)
	}

	a.node.cut.Store(false)
	for _, name := range names {
		if err := hb[name].stop(); err != nil {
			t.Fatalf("Hold of node-b: %v", err)
		}
		p.waitHeld(name, "node-a")
	}
}

// testKeeperRenews holds a lease for several TTLs: the Keeper renews it, so the function
// keeps running under the same grant.
func testKeeperRenews(t *testing.T, open Opener) {
	// Renewals are a TTL/3 apart and may fail for TTL/3 before the lease counts as lost:
	// a generous TTL keeps a busy machine from failing the test.
	const ttl = 3 * time.Second
	p := newProbe(t)
	k := startKeeper(t, open, "t", lease.Config{Holder: "node-a", TTL: ttl})
	startHold(t, k, "n", p.fn("node-a"))
	r := p.waitHeld("n", "node-a")
	first := k.Grants()
	time.Sleep(4 * time.Second)
	if now, ok := p.current("n"); !ok || now.token != r.token {
		t.Fatalf("after 4 s the run of n is %+v (%v), want the first, under token %d; runs: %+v", now, ok, r.token, p.ended("n", "node-a"))
	}
	later := k.Grants()
	if len(first) != 1 || len(later) != 1 || !later[0].Expires.After(first[0].Expires) || later[0].Token != first[0].Token {
		t.Fatalf("Grants %+v, then %+v, want one grant renewed", first, later)
	}
	if got := holders(t, k.node.Table)["n"]; got != fmt.Sprintf("node-a@%d", r.token) {
		t.Fatalf("Owners list n held by %q", got)
	}
}

// testKeeperReturn has the Hold function return while it holds the lease: Hold returns its
// error, having released the lease.
func testKeeperReturn(t *testing.T, open Opener) {
	k := startKeeper(t, open, "t", lease.Config{Holder: "node-a", TTL: time.Second})
	errFailed := errors.New("failed")
	var token int64
	err := k.Hold(t.Context(), "n", func(_ context.Context, g lease.Grant) error {
		token = g.Token
		if got := holders(t, k.node.Table)["n"]; got != fmt.Sprintf("node-a@%d", g.Token) {
			t.Errorf("while Hold's function runs, Owners list n held by %q", got)
		}
		return errFailed
	})
	if !errors.Is(err, errFailed) {
		t.Fatalf("Hold = %v, want its function's error", err)
	}
	if got := holders(t, k.node.Table); len(got) != 0 {
		t.Fatalf("after Hold returned, Owners = %v, want none", got)
	}
	if gs := k.Grants(); len(gs) != 0 {
		t.Fatalf("after Hold returned, Grants = %+v, want none", gs)
	}
	// The name may be held again, under a new grant.
	err = k.Hold(t.Context(), "n", func(_ context.Context, g lease.Grant) error {
		if g.Token <= token {
			t.Errorf("token %d, want more than %d", g.Token, token)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("second Hold: %v", err)
	}
}

// testKeeperStop stops Run while a lease is held: the function's context ends with
// ErrStopped, Hold returns ErrStopped having released the lease, and later Hold calls
// return ErrStopped at once.
func testKeeperStop(t *testing.T, open Opener) {
	p := newProbe(t)
	k := startKeeper(t, open, "t", lease.Config{Holder: "node-a", TTL: time.Second})
	h := startHold(t, k, "n", p.fn("node-a"))
	p.waitHeld("n", "node-a")
	k.stop()
	if err := h.wait(); !errors.Is(err, lease.ErrStopped) {
		t.Fatalf("Hold after Run stopped = %v, want ErrStopped", err)
	}
	if rs := p.ended("n", "node-a"); len(rs) != 1 || !errors.Is(rs[0].cause, lease.ErrStopped) {
		t.Fatalf("runs %+v, want one ended by ErrStopped", rs)
	}
	if got := holders(t, k.node.Table); len(got) != 0 {
		t.Fatalf("after Hold returned, Owners = %v, want none", got)
	}
	err := k.Hold(t.Context(), "m", func(context.Context, lease.Grant) error {
		t.Error("Hold after Run returned called its function")
		return nil
	})
	if !errors.Is(err, lease.ErrStopped) {
		t.Fatalf("Hold after Run returned = %v, want ErrStopped", err)
	}
}

// testKeeperBeforeRun calls Hold before Run: the function runs once Run does.
func testKeeperBeforeRun(t *testing.T, open Opener) {
	n := &node{Table: open(t, "t")}
	k, err := lease.New(lease.Config{Holder: "node-a", TTL: time.Second}, n, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	p := newProbe(t)
	kp := &keeper{Keeper: k, holder: "node-a", node: n}
	startHold(t, kp, "n", p.fn("node-a"))
	time.Sleep(50 * time.Millisecond)
	if _, ok := p.current("n"); ok {
		t.Fatal("Hold ran its function before Run was called")
	}
	ctx, stop := context.WithCancel(context.Background())
	ran := make(chan error, 1)
	go func() { ran <- k.Run(ctx) }()
	defer func() {
		stop()
		if err := <-ran; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	p.waitHeld("n", "node-a")
	if err := k.Run(ctx); err == nil {
		t.Error("second Run returned nil, want an error")
	}
}

// testKeeperDuplicate calls Hold twice for one name on one Keeper: the second call fails.
func testKeeperDuplicate(t *testing.T, open Opener) {
	p := newProbe(t)
	k := startKeeper(t, open, "t", lease.Config{Holder: "node-a", TTL: time.Second})
	startHold(t, k, "n", p.fn("node-a"))
	p.waitHeld("n", "node-a")
	err := k.Hold(t.Context(), "n", func(context.Context, lease.Grant) error {
		t.Error("the second Hold call ran its function")
		return nil
	})
	if err == nil {
		t.Fatal("second Hold of one name returned nil, want an error")
	}
	if err := k.Hold(t.Context(), "", nil); err == nil {
		t.Fatal("Hold of an empty name returned nil, want an error")
	}
}
