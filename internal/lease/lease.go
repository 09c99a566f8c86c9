// Package lease gives work that must run on exactly one node at a time (an endpoint's relay,
// the history writer, an ingress source partition) exactly one owner among the nodes that
// share a database, and moves it to another node when its owner dies.
//
// A lease is a named, time-limited grant recorded in a Table. A holder (one process; see
// Config.Holder) acquires a name for a TTL and renews it before the TTL runs out; a lease
// that is not renewed in time may be taken by another holder. Every grant carries a fencing
// token that grows with every acquisition, so that work done under a lease can be stamped
// with it and a write from an owner that lost the lease can be told from one of the current
// owner's.
//
// The Keeper is what components use: Keeper.Hold runs a function only while this node holds
// the named lease, and cancels its context as soon as the lease is lost, before another node
// can take it over.
//
// Implementations of Table: Local, for a single node (the embedded store), where every lease
// is simply held by that node; lease/postgres, a table shared by the nodes of one PostgreSQL
// database. Both pass the contract suite in lease/leasetest.
package lease

import (
	"context"
	"errors"
	"fmt"
	"time"
)

// The errors of a Table and a Keeper, possibly wrapped with details.
var (
	// ErrHeld: Table.Acquire found the name held by another holder, and not expired.
	ErrHeld = errors.New("lease held by another holder")
	// ErrLost: the grant is no longer held: it expired, was released, or was taken over
	// (by another holder, or by the same holder acquiring the name again). It is also the
	// cause (context.Cause) of a Hold function's context when the Keeper lost the lease.
	ErrLost = errors.New("lease lost")
	// ErrStopped: the Keeper's Run has returned. It is also the cause of a Hold function's
	// context when Run returned while the lease was held.
	ErrStopped = errors.New("lease keeper stopped")
)

// MinTTL is the shortest TTL a Table grants; durations are kept to the microsecond.
const MinTTL = time.Microsecond

// Grant is one holder's lease on a name, from its acquisition until it expires or is
// released. Renewing a grant extends Expires and keeps Token.
type Grant struct {
	// Name is the lease's name.
	Name string
	// Holder is the holder the lease is granted to.
	Holder string
	// Token is the fencing token: positive, and greater than the token of every earlier
	// grant of the same name, whoever held it. It is the same for all renewals of a grant.
	Token int64
	// Expires is when the grant ends unless renewed, by the Table's clock (the database's
	// clock for a shared table), which need not agree with the local clock.
	Expires time.Time
}

// Table records leases. Its methods are safe for concurrent use, by any number of processes
// sharing the table's storage; each returns promptly once its context ends.
//
// The contract, with every time judged by the Table's clock alone:
//
//   - At most one holder holds a name at any time: a name is held from a successful Acquire
//     until the grant's Expires, extended by each successful Renew, or until it is released.
//   - Acquire succeeds when the name was never granted, its last grant expired or was
//     released, or it is held by the same holder (which takes a new grant and ends the old
//     one); otherwise it fails with ErrHeld.
//   - Every successful Acquire returns a Token greater than any earlier grant of that name.
//   - Renew and Release act on a grant only while it is held: Renew of a grant that is no
//     longer held (expired, released, or superseded by a later Acquire) fails with ErrLost,
//     even if no one else took the name; Release of such a grant does nothing.
//
// A holder should treat its grant as lost some margin before Expires: Expires was set from
// the Table's clock at some point during the call, so the grant is safe until the local time
// the call started plus the TTL, less what the clocks may drift apart in that time.
type Table interface {
	// Acquire grants name to holder for ttl (at least MinTTL), as the contract says, or
	// fails with ErrHeld.
	Acquire(ctx context.Context, name, holder string, ttl time.Duration) (Grant, error)
	// Renew extends the held grant g to ttl from now and returns it with its new Expires,
	// or fails with ErrLost.
	Renew(ctx context.Context, g Grant, ttl time.Duration) (Grant, error)
	// Release ends the grant g at once if it is still held, so that another holder may
	// acquire the name without waiting for it to expire; it does nothing otherwise.
	Release(ctx context.Context, g Grant) error
	// Owners returns the grants held now, ordered by name (compared bytewise).
	Owners(ctx context.Context) ([]Grant, error)
}

// CheckArgs checks the arguments of an Acquire, or those of a Renew (g.Name, g.Holder,
// ttl), for Table implementations: name and holder must not be empty and ttl must be at
// least MinTTL.
func CheckArgs(name, holder string, ttl time.Duration) error {
	switch {
	case name == "":
		return errors.New("lease name is empty")
	case holder == "":
		return fmt.Errorf("lease %q: holder is empty", name)
	case ttl < MinTTL:
		return fmt.Errorf("lease %q: ttl %v is shorter than %v", name, ttl, MinTTL)
	}
	return nil
}
