package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// migrations are the schema changes in order; migrations[i] takes the schema from version i to
// version i+1. The applied version is the one row of schema_version. Append only: a released
// migration never changes.
//
// Text columns sort by bytes (COLLATE "C"), as Go compares strings and as the SQLite store
// orders its lists. Documents are bytea: the store keeps them exactly as given. Times the
// contract hands back to the nanosecond are RFC 3339 text.
var migrations = []string{
	// Version 1.
	`
-- head is the store's one hot row: the Seq of the newest log record, the log clock and the
-- number of twins. Every transaction that appends to the log updates it just before it
-- commits, and its row lock is what orders those transactions (see appendLog).
CREATE TABLE head (
	one     boolean PRIMARY KEY DEFAULT true CHECK (one),
	seq     bigint NOT NULL,
	-- ms is the log clock, in Unix milliseconds: never less than it was, so that it grows
	-- with Seq whatever the clocks; prev_ms is what it was before the last append.
	ms      bigint NOT NULL,
	prev_ms bigint NOT NULL,
	twins   bigint NOT NULL
);
INSERT INTO head (seq, ms, prev_ms, twins) VALUES (0, 0, 0, 0);

CREATE TABLE models (
	id             text COLLATE "C" PRIMARY KEY,
	definition     bytea NOT NULL,
	upload_time    text NOT NULL,
	decommissioned boolean NOT NULL
);

CREATE TABLE twins (
	id       text COLLATE "C" PRIMARY KEY,
	model_id text COLLATE "C" NOT NULL,
	etag     text NOT NULL,
	doc      bytea NOT NULL
);

CREATE TABLE relationships (
	source_id text COLLATE "C" NOT NULL,
	id        text COLLATE "C" NOT NULL,
	name      text COLLATE "C" NOT NULL,
	target_id text COLLATE "C" NOT NULL,
	etag      text NOT NULL,
	doc       bytea NOT NULL,
	PRIMARY KEY (source_id, id)
);
CREATE INDEX relationships_by_target ON relationships (target_id, source_id, id);
CREATE INDEX relationships_by_name ON relationships (source_id, name, id);

-- The change log: seq is assigned from head.seq under its row lock, so gap-free and in
-- commit order. event is the event's JSON form, depth its propagation depth.
CREATE TABLE log (
	seq   bigint PRIMARY KEY,
	event bytea NOT NULL,
	depth integer NOT NULL
);

-- The log's clock: a mark for the first record of each append whose millisecond differs
-- from the previous append's, so a record's commit time is that of the newest mark at or
-- before it.
CREATE TABLE log_clock (
	seq bigint PRIMARY KEY,
	ms  bigint NOT NULL
);
CREATE INDEX log_clock_by_ms ON log_clock (ms);

CREATE TABLE endpoints (
	name    text COLLATE "C" PRIMARY KEY,
	config  bytea NOT NULL,
	created text NOT NULL,
	cursor  bigint NOT NULL
);

CREATE TABLE routes (
	id       text COLLATE "C" PRIMARY KEY,
	endpoint text COLLATE "C" NOT NULL,
	filter   text NOT NULL
);

-- Identity columns never hand out an id twice, even after deletes.
CREATE TABLE dead_letters (
	id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	endpoint text COLLATE "C" NOT NULL,
	seq      bigint NOT NULL,
	reason   text NOT NULL,
	attempts integer NOT NULL,
	time     text NOT NULL,
	event    bytea NOT NULL
);
CREATE INDEX dead_letters_by_endpoint ON dead_letters (endpoint, id);

CREATE TABLE log_consumers (
	name   text COLLATE "C" PRIMARY KEY,
	cursor bigint NOT NULL
);

CREATE TABLE jobs (
	kind text COLLATE "C" NOT NULL,
	id   text COLLATE "C" NOT NULL,
	doc  bytea NOT NULL,
	PRIMARY KEY (kind, id)
);

CREATE TABLE sources (
	name    text COLLATE "C" PRIMARY KEY,
	config  bytea NOT NULL,
	created text NOT NULL
);

CREATE TABLE mappings (
	name       text COLLATE "C" PRIMARY KEY,
	source     text COLLATE "C" NOT NULL,
	definition bytea NOT NULL,
	created    text NOT NULL
);
CREATE INDEX mappings_by_source ON mappings (source, name);

CREATE TABLE source_dead_letters (
	id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	source   text COLLATE "C" NOT NULL,
	reason   text NOT NULL,
	attempts integer NOT NULL,
	time     text NOT NULL,
	message  bytea NOT NULL
);
CREATE INDEX source_dead_letters_by_source ON source_dead_letters (source, id);

-- The ids of applied messages, for de-duplication; expires is in Unix milliseconds.
CREATE TABLE source_messages (
	source  text COLLATE "C" NOT NULL,
	id      text COLLATE "C" NOT NULL,
	expires bigint NOT NULL,
	PRIMARY KEY (source, id)
);
CREATE INDEX source_messages_by_expiry ON source_messages (expires);

-- API keys: the hash of each key's secret, never the secret. expires is RFC 3339, or empty
-- for a key that does not expire.
CREATE TABLE api_keys (
	id      text COLLATE "C" PRIMARY KEY,
	name    text NOT NULL,
	role    text NOT NULL,
	hash    bytea NOT NULL,
	created text NOT NULL,
	expires text NOT NULL
);
`,
	// Version 2.
	`
-- The configuration generations: each column counts the committed transactions that
-- changed one kind of configuration, which nodes keep in memory and reload when another
-- node's commit moves it (see Store.Generations). One row, so that a transaction takes one
-- lock whatever it changed, and takes it last (see bumpGenerations).
CREATE TABLE generations (
	one       boolean PRIMARY KEY DEFAULT true CHECK (one),
	models    bigint NOT NULL,
	routes    bigint NOT NULL,
	endpoints bigint NOT NULL,
	sources   bigint NOT NULL,
	mappings  bigint NOT NULL
);
INSERT INTO generations (models, routes, endpoints, sources, mappings) VALUES (0, 0, 0, 0, 0);
`,
	// Version 3: anomaly detectors (see detectors.go) and the learned state of each series
	// they score.
	`
CREATE TABLE detectors (
	name    text COLLATE "C" PRIMARY KEY,
	config  bytea NOT NULL,
	created text NOT NULL
);

CREATE TABLE detector_states (
	detector text COLLATE "C" NOT NULL,
	twin     text COLLATE "C" NOT NULL,
	property text COLLATE "C" NOT NULL,
	state    bytea NOT NULL,
	PRIMARY KEY (detector, twin, property)
);
`,
}

// lockKey returns the key of the advisory lock that serialises migrations of schema, from
// every process.
func lockKey(schema string) int64 {
	h := fnv.New64a()
	h.Write([]byte("twinflow store schema " + schema))
	return int64(h.Sum64())
}

// migrate creates schema if needed and brings it to the newest version in one transaction,
// holding the schema's advisory lock, so that stores starting together on a fresh schema
// migrate it once: the others wait for the lock and then find it current. It refuses a schema
// written by a newer twinflow. conn's search_path is schema.
func migrate(ctx context.Context, conn *pgx.Conn, schema string) error {
	return pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, "SELECT pg_advisory_xact_lock($1)", lockKey(schema)); err != nil {
			return fmt.Errorf("lock schema: %w", err)
		}
		ddl := "CREATE SCHEMA IF NOT EXISTS " + pgx.Identifier{schema}.Sanitize() +
			"; CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)"
		if _, err := tx.Exec(ctx, ddl); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
		var version int
		err := tx.QueryRow(ctx, "SELECT version FROM schema_version").Scan(&version)
		switch {
		case errors.Is(err, pgx.ErrNoRows):
			if _, err := tx.Exec(ctx, "INSERT INTO schema_version (version) VALUES (0)"); err != nil {
				return fmt.Errorf("record schema version: %w", err)
			}
		case err != nil:
			return fmt.Errorf("read schema version: %w", err)
		}
		if version > len(migrations) {
			return fmt.Errorf("schema version %d is newer than this build supports (%d)", version, len(migrations))
		}
		for v := version; v < len(migrations); v++ {
			// The simple protocol runs a script of several statements in one go.
			if _, err := tx.Exec(ctx, migrations[v], pgx.QueryExecModeSimpleProtocol); err != nil {
				return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
			}
		}
		if _, err := tx.Exec(ctx, "UPDATE schema_version SET version = $1", len(migrations)); err != nil {
			return fmt.Errorf("record schema version: %w", err)
		}
		return nil
	})
}

// pgCode returns the SQLSTATE of err, or "" when err does not come from the server.
func pgCode(err error) string {
	if pe, ok := errors.AsType[*pgconn.PgError](err); ok {
		return pe.Code
	}
	return ""
}
