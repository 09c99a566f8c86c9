package lease

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"
)

// Local is a Table kept in memory, for a single node: with the embedded store there is no
// other node, so the node's Keeper acquires every lease at once and keeps it. Its clock is
// the local monotonic clock. The zero Local is empty and ready to use; it is safe for
// concurrent use.
type Local struct {
	mu sync.Mutex
	// leases holds the last grant of every name ever acquired, released ones too (with an
	// empty Holder), so that tokens keep growing.
	leases map[string]Grant
}

var _ Table = (*Local)(nil)

// Acquire implements Table.
func (l *Local) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (Grant, error) {
	if err := CheckArgs(name, holder, ttl); err != nil {
		return Grant{}, err
	}
	if err := ctx.Err(); err != nil {
		return Grant{}, fmt.Errorf("acquire lease %q: %w", name, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	old := l.leases[name]
	if old.Holder != "" && old.Holder != holder && now.Before(old.Expires) {
		return Grant{}, fmt.Errorf("acquire lease %q: %w (%s)", name, ErrHeld, old.Holder)
	}
	g := Grant{Name: name, Holder: holder, Token: old.Token + 1, Expires: now.Add(ttl)}
	if l.leases == nil {
		l.leases = map[string]Grant{}
	}
	l.leases[name] = g
	return g, nil
}

// Renew implements Table.
func (l *Local) Renew(ctx context.Context, g Grant, ttl time.Duration) (Grant, error) {
	if err := CheckArgs(g.Name, g.Holder, ttl); err != nil {
		return Grant{}, err
	}
	if err := ctx.Err(); err != nil {
		return Grant{}, fmt.Errorf("renew lease %q: %w", g.Name, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if !l.heldLocked(g, now) {
		return Grant{}, fmt.Errorf("renew lease %q: %w", g.Name, ErrLost)
	}
	g.Expires = now.Add(ttl)
	l.leases[g.Name] = g
	return g, nil
}

// Release implements Table.
func (l *Local) Release(ctx context.Context, g Grant) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("release lease %q: %w", g.Name, err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.heldLocked(g, time.Now()) {
		l.leases[g.Name] = Grant{Name: g.Name, Token: g.Token}
	}
	return nil
}

// heldLocked reports whether g is held at now. Callers hold l.mu.
func (l *Local) heldLocked(g Grant, now time.Time) bool {
	cur, ok := l.leases[g.Name]
	return ok && g.Holder != "" && cur.Holder == g.Holder && cur.Token == g.Token && now.Before(cur.Expires)
}

// Owners implements Table.
func (l *Local) Owners(ctx context.Context) ([]Grant, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("list lease owners: %w", err)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	var gs []Grant
	for _, g := range l.leases {
		if g.Holder != "" && now.Before(g.Expires) {
			gs = append(gs, g)
		}
	}
	slices.SortFunc(gs, func(a, b Grant) int { return strings.Compare(a.Name, b.Name) })
	return gs, nil
}
