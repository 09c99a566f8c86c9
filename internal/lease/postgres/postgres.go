// Package postgres is the lease.Table of nodes sharing a PostgreSQL database: the table
// "lease" in a schema of the database, one row per name ever acquired.
//
// Every time is the database's: a grant's expiry is now() plus its TTL, and a lease is free
// once its expiry is not after now(), so the nodes' clocks do not matter. Acquire is one
// INSERT ... ON CONFLICT DO UPDATE that takes the row only where it is free or has the same
// holder; the row lock it takes serialises it with every other change of the row, and under
// READ COMMITTED the condition is checked again against the row as the last change left it.
// A released row keeps its token (with an empty holder), so tokens keep growing.
//
// A fenced write in the same database may check, in its own transaction, that the grant it
// runs under is still the row's: holder and token equal, and expires after now().
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/twinflow/twinflow/internal/lease"
)

// DefaultSchema is the schema of the table unless Config says otherwise.
const DefaultSchema = "public"

// TableName is the name of the table in its schema.
const TableName = "lease"

// maxIdentifier is the length of PostgreSQL's longest identifier, in bytes; it cuts longer
// ones short, which could make two schemas one.
const maxIdentifier = 63

// Config configures a Table.
type Config struct {
	// DSN is the PostgreSQL connection string (URL or key=value form). Required. Pool
	// settings such as pool_max_conns may be given in it.
	DSN string
	// Schema is the schema of the table, created if missing; empty means DefaultSchema.
	Schema string
}

// Table is the PostgreSQL lease.Table. It has a connection pool of its own, so that
// renewals do not wait for connections behind the store's work. It is safe for concurrent
// use.
type Table struct {
	pool *pgxpool.Pool
	// The statements, on the qualified table.
	acquire, renew, release, owners string
}

var _ lease.Table = (*Table)(nil)

// Open connects to the database, creates the schema and the table if missing, and returns
// the Table. Concurrent Opens of the same schema, from any process, are safe.
func Open(ctx context.Context, cfg Config) (*Table, error) {
	if cfg.DSN == "" {
		return nil, errors.New("postgres lease config: dsn: must be set")
	}
	if cfg.Schema == "" {
		cfg.Schema = DefaultSchema
	}
	if len(cfg.Schema) > maxIdentifier || strings.ContainsAny(cfg.Schema, "\"\x00") {
		return nil, fmt.Errorf("postgres lease config: schema %q is longer than %d bytes or holds a quote or NUL",
			cfg.Schema, maxIdentifier)
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres lease config: dsn: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to lease database: %w", err)
	}
	schema := `"` + cfg.Schema + `"`
	t := `"` + cfg.Schema + `"."` + TableName + `"`
	if err := migrate(ctx, pool, cfg.Schema, schema, t); err != nil {
		pool.Close()
		return nil, fmt.Errorf("create lease table in schema %s: %w", cfg.Schema, err)
	}
	return &Table{
		pool: pool,
		// The row is taken where it is free (its expiry not after now(), which a released
		// row's '-infinity' never is) or already the holder's; a grant's start is now().
		acquire: `INSERT INTO ` + t + ` AS l (name, holder, token, expires) VALUES ($1, $2, 1, now() + $3::interval)
ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, token = l.token + 1, expires = excluded.expires
	WHERE l.expires <= now() OR l.holder = excluded.holder
RETURNING token, expires`,
		renew: `UPDATE ` + t + ` SET expires = now() + $4::interval
WHERE name = $1 AND holder = $2 AND token = $3 AND expires > now()
RETURNING expires`,
		release: `UPDATE ` + t + ` SET holder = '', expires = '-infinity'
WHERE name = $1 AND holder = $2 AND token = $3 AND expires > now()`,
		owners: `SELECT name, holder, token, expires FROM ` + t + ` WHERE expires > now() ORDER BY name`,
	}, nil
}

// migrate creates the schema and the table if missing, under an advisory lock on the schema
// (CREATE ... IF NOT EXISTS alone fails when two sessions create the same object at once).
func migrate(ctx context.Context, pool *pgxpool.Pool, name, schema, table string) error {
	h := fnv.New64a()
	h.Write([]byte("twinflow lease schema " + name))
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(h.Sum64())); err != nil {
			return fmt.Errorf("lock schema: %w", err)
		}
		_, err := tx.Exec(ctx, `
CREATE SCHEMA IF NOT EXISTS `+schema+`;
CREATE TABLE IF NOT EXISTS `+table+` (
	name text COLLATE "C" PRIMARY KEY,
	holder text COLLATE "C" NOT NULL,
	token bigint NOT NULL,
	expires timestamptz NOT NULL
)`)
		return err
	})
}

// Close closes the connection pool. Leases held stay held until they expire.
func (t *Table) Close() { t.pool.Close() }

// Acquire implements lease.Table.
func (t *Table) Acquire(ctx context.Context, name, holder string, ttl time.Duration) (lease.Grant, error) {
	if err := lease.CheckArgs(name, holder, ttl); err != nil {
		return lease.Grant{}, err
	}
	g := lease.Grant{Name: name, Holder: holder}
	err := t.pool.QueryRow(ctx, t.acquire, name, holder, ttl).Scan(&g.Token, &g.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return lease.Grant{}, fmt.Errorf("acquire lease %q: %w", name, lease.ErrHeld)
	}
	if err != nil {
		return lease.Grant{}, fmt.Errorf("acquire lease %q: %w", name, err)
	}
	return g, nil
}

// Renew implements lease.Table.
func (t *Table) Renew(ctx context.Context, g lease.Grant, ttl time.Duration) (lease.Grant, error) {
	if err := lease.CheckArgs(g.Name, g.Holder, ttl); err != nil {
		return lease.Grant{}, err
	}
	err := t.pool.QueryRow(ctx, t.renew, g.Name, g.Holder, g.Token, ttl).Scan(&g.Expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return lease.Grant{}, fmt.Errorf("renew lease %q: %w", g.Name, lease.ErrLost)
	}
	if err != nil {
		return lease.Grant{}, fmt.Errorf("renew lease %q: %w", g.Name, err)
	}
	return g, nil
}

// Release implements lease.Table.
func (t *Table) Release(ctx context.Context, g lease.Grant) error {
	if _, err := t.pool.Exec(ctx, t.release, g.Name, g.Holder, g.Token); err != nil {
		return fmt.Errorf("release lease %q: %w", g.Name, err)
	}
	return nil
}

// Owners implements lease.Table.
func (t *Table) Owners(ctx context.Context) ([]lease.Grant, error) {
	rows, err := t.pool.Query(ctx, t.owners)
	if err != nil {
		return nil, fmt.Errorf("list lease owners: %w", err)
	}
	gs, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (lease.Grant, error) {
		var g lease.Grant
		err := r.Scan(&g.Name, &g.Holder, &g.Token, &g.Expires)
		return g, err
	})
	if err != nil {
		return nil, fmt.Errorf("list lease owners: %w", err)
	}
	return gs, nil
}
