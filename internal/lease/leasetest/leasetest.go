// Package leasetest is the contract suite of lease.Table and of the lease.Keeper over it:
// every Table implementation runs Run and RunKeeper from its tests, so that they all behave
// alike.
package leasetest

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/lease"
)

// Opener opens a handle on test t's table named key, empty the first time it is opened:
// handles opened by one test with the same key share their leases, as nodes sharing a
// database do; handles of different tests or keys share nothing. The opener closes what it
// opens, and removes what it creates, when t ends.
type Opener func(t testing.TB, key string) lease.Table

// Long is a TTL no test outlives, for leases that must not expire during a test.
const Long = 10 * time.Minute

// Deadline bounds every wait for something that takes time (an expiry, a takeover); a
// healthy implementation takes a small part of it.
const Deadline = 10 * time.Second

// Run runs the contract suite of lease.Table against the tables open makes.
func Run(t *testing.T, open Opener) {
	tests := []struct {
		name string
		fn   func(*testing.T, Opener)
	}{
		{"Acquire", testAcquire},
		{"Arguments", testArguments},
		{"Held", testHeld},
		{"Reacquire", testReacquire},
		{"Renew", testRenew},
		{"Release", testRelease},
		{"Expiry", testExpiry},
		{"RenewAfterExpiry", testRenewAfterExpiry},
		{"Owners", testOwners},
		{"Race", testRace},
		{"Churn", testChurn},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.fn(t, open)
		})
	}
}

func acquire(t *testing.T, tb lease.Table, name, holder string, ttl time.Duration) lease.Grant {
	t.Helper()
	g, err := tb.Acquire(t.Context(), name, holder, ttl)
	if err != nil {
		t.Fatalf("Acquire(%q, %q): %v", name, holder, err)
	}
	if g.Name != name || g.Holder != holder || g.Token <= 0 {
		t.Fatalf("Acquire(%q, %q) = %+v, want the name and holder and a positive token", name, holder, g)
	}
	return g
}

func owners(t *testing.T, tb lease.Table) []lease.Grant {
	t.Helper()
	gs, err := tb.Owners(t.Context())
	if err != nil {
		t.Fatalf("Owners: %v", err)
	}
	return gs
}

// holders returns what Owners lists as name → holder@token.
func holders(t *testing.T, tb lease.Table) map[string]string {
	t.Helper()
	m := map[string]string{}
	for _, g := range owners(t, tb) {
		m[g.Name] = fmt.Sprintf("%s@%d", g.Holder, g.Token)
	}
	return m
}

// eventually calls cond until it returns true, failing t after Deadline.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(Deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("not within %v: %s", Deadline, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func testAcquire(t *testing.T, open Opener) {
	a, b := open(t, "t"), open(t, "t")
	g := acquire(t, a, "relay/x", "node-a", Long)
	if got := holders(t, b); got["relay/x"] != fmt.Sprintf("node-a@%d", g.Token) || len(got) != 1 {
		t.Fatalf("Owners on another handle = %v, want relay/x held by node-a", got)
	}
	// A name of its own is independent.
	g2 := acquire(t, b, "relay/y", "node-b", Long)
	if g2.Holder != "node-b" {
		t.Fatalf("Acquire relay/y = %+v", g2)
	}
	// Another table shares nothing.
	if got := owners(t, open(t, "other")); len(got) != 0 {
		t.Fatalf("Owners of another table = %+v, want none", got)
	}
}

func testArguments(t *testing.T, open Opener) {
	tb := open(t, "t")
	for _, c := range []struct {
		name, holder string
		ttl          time.Duration
	}{{"", "h", time.Second}, {"n", "", time.Second}, {"n", "h", 0}, {"n", "h", -time.Second}} {
		if _, err := tb.Acquire(t.Context(), c.name, c.holder, c.ttl); err == nil || errors.Is(err, lease.ErrHeld) {
			t.Errorf("Acquire(%q, %q, %v) = %v, want an argument error", c.name, c.holder, c.ttl, err)
		}
	}
	g := acquire(t, tb, "n", "h", Long)
	if _, err := tb.Renew(t.Context(), g, 0); err == nil || errors.Is(err, lease.ErrLost) {
		t.Errorf("Renew with ttl 0 = %v, want an argument error", err)
	}
	if got := owners(t, tb); len(got) != 1 || got[0].Token != g.Token {
		t.Errorf("Owners after bad calls = %+v, want only %+v", got, g)
	}
}

func testHeld(t *testing.T, open Opener) {
	a, b := open(t, "t"), open(t, "t")
	g := acquire(t, a, "n", "node-a", Long)
	for _, tb := range []lease.Table{a, b} {
		if _, err := tb.Acquire(t.Context(), "n", "node-b", Long); !errors.Is(err, lease.ErrHeld) {
			t.Fatalf("Acquire of a held lease by another holder = %v, want ErrHeld", err)
		}
	}
	// The holder still holds it, as it was.
	if _, err := a.Renew(t.Context(), g, Long); err != nil {
		t.Fatalf("Renew after another's failed Acquire: %v", err)
	}
}

func testReacquire(t *testing.T, open Opener) {
	tb := open(t, "t")
	g1 := acquire(t, tb, "n", "node-a", Long)
	g2 := acquire(t, tb, "n", "node-a", Long)
	if g2.Token <= g1.Token {
		t.Fatalf("tokens %d then %d, want growing on every Acquire", g1.Token, g2.Token)
	}
	if _, err := tb.Renew(t.Context(), g1, Long); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("Renew of the superseded grant = %v, want ErrLost", err)
	}
	if err := tb.Release(t.Context(), g1); err != nil {
		t.Fatalf("Release of the superseded grant: %v", err)
	}
	if got := holders(t, tb)["n"]; got != fmt.Sprintf("node-a@%d", g2.Token) {
		t.Fatalf("after releasing the old grant, n is held by %q, want the new grant", got)
	}
}

func testRenew(t *testing.T, open Opener) {
	a, b := open(t, "t"), open(t, "t")
	g := acquire(t, a, "n", "node-a", time.Minute)
	r, err := b.Renew(t.Context(), g, Long)
	if err != nil {
		t.Fatalf("Renew: %v", err)
	}
	if r.Name != g.Name || r.Holder != g.Holder || r.Token != g.Token || !r.Expires.After(g.Expires) {
		t.Fatalf("Renew(%+v) = %+v, want the same grant expiring later", g, r)
	}
	// Renewing the grant as returned by Acquire, or by Renew, is the same.
	if _, err := a.Renew(t.Context(), g, Long); err != nil {
		t.Fatalf("Renew of the grant as acquired: %v", err)
	}
	for _, bad := range []lease.Grant{
		{Name: "n", Holder: "node-b", Token: g.Token},
		{Name: "n", Holder: "node-a", Token: g.Token + 1},
		{Name: "m", Holder: "node-a", Token: g.Token},
	} {
		if _, err := a.Renew(t.Context(), bad, Long); !errors.Is(err, lease.ErrLost) {
			t.Errorf("Renew(%+v) = %v, want ErrLost", bad, err)
		}
		if err := a.Release(t.Context(), bad); err != nil {
			t.Errorf("Release(%+v) = %v, want nil", bad, err)
		}
	}
	if got := holders(t, a)["n"]; got != fmt.Sprintf("node-a@%d", g.Token) {
		t.Fatalf("n is held by %q, want node-a's grant untouched", got)
	}
}

func testRelease(t *testing.T, open Opener) {
	a, b := open(t, "t"), open(t, "t")
	g := acquire(t, a, "n", "node-a", Long)
	if err := a.Release(t.Context(), g); err != nil {
		t.Fatalf("Release: %v", err)
	}
	if got := owners(t, b); len(got) != 0 {
		t.Fatalf("Owners after Release = %+v, want none", got)
	}
	if _, err := a.Renew(t.Context(), g, Long); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("Renew after Release = %v, want ErrLost", err)
	}
	// Another holder takes it at once, with a greater token.
	g2 := acquire(t, b, "n", "node-b", Long)
	if g2.Token <= g.Token {
		t.Fatalf("token after release %d, want more than %d", g2.Token, g.Token)
	}
	// Releasing again, or the old grant, does not touch the new one.
	if err := a.Release(t.Context(), g); err != nil {
		t.Fatalf("second Release: %v", err)
	}
	if got := holders(t, a)["n"]; got != fmt.Sprintf("node-b@%d", g2.Token) {
		t.Fatalf("n is held by %q, want node-b's grant", got)
	}
}

func testExpiry(t *testing.T, open Opener) {
	a, b := open(t, "t"), open(t, "t")
	g := acquire(t, a, "n", "node-a", 200*time.Millisecond)
	var g2 lease.Grant
	eventually(t, "node-b acquires n after node-a's grant expired", func() bool {
		var err error
		g2, err = b.Acquire(t.Context(), "n", "node-b", Long)
		if err != nil && !errors.Is(err, lease.ErrHeld) {
			t.Fatalf("Acquire: %v", err)
		}
		return err == nil
	})
	if g2.Token <= g.Token {
		t.Fatalf("token on takeover %d, want more than %d", g2.Token, g.Token)
	}
	if _, err := a.Renew(t.Context(), g, Long); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("Renew by the holder that lost the lease = %v, want ErrLost", err)
	}
	if err := a.Release(t.Context(), g); err != nil {
		t.Fatalf("Release by the holder that lost the lease: %v", err)
	}
	if got := holders(t, a)["n"]; got != fmt.Sprintf("node-b@%d", g2.Token) {
		t.Fatalf("n is held by %q, want node-b's grant", got)
	}
}

func testRenewAfterExpiry(t *testing.T, open Opener) {
	tb := open(t, "t")
	g := acquire(t, tb, "n", "node-a", 100*time.Millisecond)
	eventually(t, "the grant expires", func() bool { return len(owners(t, tb)) == 0 })
	if _, err := tb.Renew(t.Context(), g, Long); !errors.Is(err, lease.ErrLost) {
		t.Fatalf("Renew of an expired grant no one took = %v, want ErrLost", err)
	}
	if g2 := acquire(t, tb, "n", "node-a", Long); g2.Token <= g.Token {
		t.Fatalf("token after expiry %d, want more than %d", g2.Token, g.Token)
	}
}

func testOwners(t *testing.T, open Opener) {
	a, b := open(t, "t"), open(t, "t")
	if got := owners(t, a); len(got) != 0 {
		t.Fatalf("Owners of an empty table = %+v", got)
	}
	// Inserted out of order; listed by name, bytewise ("Z" < "a").
	want := []lease.Grant{
		acquire(t, a, "relay/b", "node-a", Long),
		acquire(t, b, "history", "node-b", Long),
		acquire(t, a, "relay/a", "node-a", Long),
		acquire(t, b, "Zeta", "node-b", Long),
	}
	short := acquire(t, a, "short", "node-a", 100*time.Millisecond)
	released := acquire(t, b, "released", "node-b", Long)
	if err := b.Release(t.Context(), released); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(want, func(x, y lease.Grant) int { return strings.Compare(x.Name, y.Name) })
	eventually(t, "the short grant expires", func() bool {
		return !slices.ContainsFunc(owners(t, a), func(g lease.Grant) bool { return g.Name == short.Name })
	})
	got := owners(t, b)
	if len(got) != len(want) {
		t.Fatalf("Owners = %+v, want %+v", got, want)
	}
	for i := range got {
		w := want[i]
		if got[i].Name != w.Name || got[i].Holder != w.Holder || got[i].Token != w.Token || !got[i].Expires.Equal(w.Expires) {
			t.Fatalf("Owners[%d] = %+v, want %+v", i, got[i], w)
		}
	}
}

// testRace has many holders race for the same names at once, again and again: exactly one
// wins each round, with a token greater than the last round's.
func testRace(t *testing.T, open Opener) {
	const holders, rounds = 16, 20
	names := []string{"a", "b", "c"}
	tables := make([]lease.Table, 4)
	for i := range tables {
		tables[i] = open(t, "t")
	}
	last := map[string]int64{}
	for round := range rounds {
		type result struct {
			name string
			g    lease.Grant
		}
		wins := make(chan result, holders*len(names))
		var wg sync.WaitGroup
		start := make(chan struct{})
		for h := range holders {
			tb := tables[h%len(tables)]
			for _, name := range names {
				wg.Go(func() {
					<-start
					g, err := tb.Acquire(context.Background(), name, fmt.Sprintf("h%d", h), Long)
					switch {
					case err == nil:
						wins <- result{name, g}
					case !errors.Is(err, lease.ErrHeld):
						t.Errorf("Acquire: %v", err)
					}
				})
			}
		}
		close(start)
		wg.Wait()
		close(wins)
		won := map[string][]lease.Grant{}
		for r := range wins {
			won[r.name] = append(won[r.name], r.g)
		}
		for _, name := range names {
			gs := won[name]
			if len(gs) != 1 {
				t.Fatalf("round %d: %d holders acquired %q: %+v", round, len(gs), name, gs)
			}
			if gs[0].Token <= last[name] {
				t.Fatalf("round %d: token %d, want more than %d", round, gs[0].Token, last[name])
			}
			last[name] = gs[0].Token
			if err := tables[0].Release(t.Context(), gs[0]); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// testChurn has holders acquire, renew, release and abandon one name with short TTLs, all at
// once, and checks from the grants they got that no two holders ever held it at the same
// time by the table's clock: each grant began (at Expires less its TTL) no earlier than the
// end of the one before it, unless that one was released or had the same holder.
func testChurn(t *testing.T, open Opener) {
	const holders, attempts = 8, 60
	const ttl = 20 * time.Millisecond
	type record struct {
		g        lease.Grant
		begun    time.Time // by the table's clock
		ended    time.Time // the last Expires it got
		released bool
	}
	var mu sync.Mutex
	var records []*record
	var wg sync.WaitGroup
	for h := range holders {
		tb := open(t, "t")
		holder := fmt.Sprintf("h%d", h)
		wg.Go(func() {
			ctx := context.Background()
			for i := range attempts {
				g, err := tb.Acquire(ctx, "n", holder, ttl)
				if errors.Is(err, lease.ErrHeld) {
					time.Sleep(time.Duration(h+1) * time.Millisecond)
					continue
				}
				if err != nil {
					t.Errorf("Acquire: %v", err)
					return
				}
				r := &record{g: g, begun: g.Expires.Add(-ttl), ended: g.Expires}
				mu.Lock()
				records = append(records, r)
				mu.Unlock()
				if i%2 == 0 {
					if g, err = tb.Renew(ctx, g, ttl); err == nil {
						mu.Lock()
						r.ended = g.Expires
						mu.Unlock()
					} else if !errors.Is(err, lease.ErrLost) {
						t.Errorf("Renew: %v", err)
						return
					}
				}
				switch i % 3 {
				case 0:
					if err := tb.Release(ctx, g); err != nil {
						t.Errorf("Release: %v", err)
						return
					}
					mu.Lock()
					r.released = true
					mu.Unlock()
				case 1:
					time.Sleep(ttl / 2)
				}
			}
		})
	}
	wg.Wait()
	slices.SortFunc(records, func(a, b *record) int { return int(a.g.Token - b.g.Token) })
	if len(records) < 2 {
		t.Fatalf("only %d grants in all", len(records))
	}
	checked := 0
	for i := 1; i < len(records); i++ {
		prev, cur := records[i-1], records[i]
		if cur.g.Token == prev.g.Token {
			t.Fatalf("two grants with token %d: %+v and %+v", cur.g.Token, prev.g, cur.g)
		}
		if prev.released || prev.g.Holder == cur.g.Holder {
			continue
		}
		if cur.begun.Before(prev.ended) {
			t.Fatalf("%s acquired token %d at %v, before %s's token %d ended at %v",
				cur.g.Holder, cur.g.Token, cur.begun, prev.g.Holder, prev.g.Token, prev.ended)
		}
		checked++
	}
	t.Logf("%d grants, %d taken over after expiry", len(records), checked)
}
