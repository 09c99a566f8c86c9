package server

import (
	"cmp"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/lease"
	leasepg "github.com/twinflow/twinflow/internal/lease/postgres"
	"github.com/twinflow/twinflow/internal/store/postgres"
)

// The leases of the work that runs on one node at a time among the nodes sharing a store.
// Endpoint relays and sources have their own (endpoint.LeaseName, source.LeaseName).
const historyLease = "history"

// leases gives work that must run on one node at a time (endpoint relays, the history
// writer, sources) an owner among the nodes sharing the store: a lease.Keeper over the
// lease table in the store's PostgreSQL database and schema, or over a lease.Local for the
// embedded store, where this node is the only one. It implements endpoint.Holder and
// source.Holder.
type leases struct {
	// node is this process's holder id: the service id, '#', and a random suffix.
	node   string
	table  lease.Table
	keeper *lease.Keeper
	// close closes the table's connections, if it has any.
	close func()
}

// localLeaseTTL is the TTL of the leases of a node on the embedded store. No other node can
// take its work over, so a renewal that runs late (the process starved of CPU for seconds
// under load) must not make the keeper give the work up and start it again: only the
// duplicate deliveries of that restart would come of it. A TTL this long makes a loss need
// a renewal 40 minutes late.
const localLeaseTTL = time.Hour

// newLeases opens the lease table cfg.Store chooses and builds the keeper of node.
func newLeases(ctx context.Context, cfg config.Config, node string, logger *slog.Logger) (*leases, error) {
	l := &leases{node: node, close: func() {}}
	ttl := cfg.Store.LeaseTTL
	if cfg.Store.DSN != "" {
		t, err := leasepg.Open(ctx, leasepg.Config{DSN: cfg.Store.DSN, Schema: cmp.Or(cfg.Store.Schema, postgres.DefaultSchema)})
		if err != nil {
			return nil, fmt.Errorf("open the lease table: %w", err)
		}
		l.table, l.close = t, t.Close
	} else {
		l.table, ttl = &lease.Local{}, localLeaseTTL
	}
	k, err := lease.New(lease.Config{Holder: node, TTL: ttl}, l.table, logger)
	if err != nil {
		l.close()
		return nil, err
	}
	l.keeper = k
	return l, nil
}

// nodeID returns a holder id for a process whose service id is serviceID: unique even
// among processes with the same service id (nodes behind one load balancer), and in every
// life of the process.
func nodeID(serviceID string) (string, error) {
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("draw the node id: %w", err)
	}
	return serviceID + "#" + hex.EncodeToString(b[:]), nil
}

// serviceOf returns the service id of the holder id node (see nodeID).
func serviceOf(node string) string {
	if i := strings.LastIndexByte(node, '#'); i >= 0 {
		return node[:i]
	}
	return node
}

// run keeps the leases wanted until ctx ends (see lease.Keeper.Run).
func (l *leases) run(ctx context.Context) error { return l.keeper.Run(ctx) }

// Hold implements endpoint.Holder and source.Holder.
func (l *leases) Hold(ctx context.Context, name string, fn func(context.Context, lease.Grant) error) error {
	return l.keeper.Hold(ctx, name, fn)
}

// Owner implements endpoint.Holder and source.Holder. It asks the table, so that it names
// the owner whichever node holds the lease.
func (l *leases) Owner(ctx context.Context, name string) (owner string, here bool, err error) {
	gs, err := l.table.Owners(ctx)
	if err != nil {
		return "", false, fmt.Errorf("find the owner of lease %q: %w", name, err)
	}
	for _, g := range gs {
		if g.Name == name {
			return serviceOf(g.Holder), g.Holder == l.node, nil
		}
	}
	return "", false, nil
}

// held returns the names of the leases this node holds, ordered.
func (l *leases) held() []string {
	gs := l.keeper.Grants()
	names := make([]string, len(gs))
	for i, g := range gs {
		names[i] = g.Name
	}
	return names
}
