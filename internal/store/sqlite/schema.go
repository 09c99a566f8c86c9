package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// migrations are the schema changes in order; migrations[i] takes the schema from version i to
// version i+1. The applied version is kept in meta under schemaVersionKey. Append only: a
// released migration never changes.
var migrations = []string{
	// Version 1.
	`
CREATE TABLE meta (
	key   TEXT PRIMARY KEY,
	value INTEGER NOT NULL
) WITHOUT ROWID;

INSERT INTO meta (key, value) VALUES ('twin_count', 0);

CREATE TABLE models (
	id             TEXT PRIMARY KEY,
	definition     BLOB NOT NULL,
	upload_time    TEXT NOT NULL,
	decommissioned INTEGER NOT NULL
);

CREATE TABLE twins (
	id       TEXT PRIMARY KEY,
	model_id TEXT NOT NULL,
	etag     TEXT NOT NULL,
	doc      BLOB NOT NULL
);

-- The twin count is kept by triggers so CountTwins is one row read, not a scan. Twins are
-- written with an upsert, so replacing a twin fires neither trigger.
CREATE TRIGGER twins_count_insert AFTER INSERT ON twins BEGIN
	UPDATE meta SET value = value + 1 WHERE key = 'twin_count';
END;
CREATE TRIGGER twins_count_delete AFTER DELETE ON twins BEGIN
	UPDATE meta SET value = value - 1 WHERE key = 'twin_count';
END;

CREATE TABLE relationships (
	source_id TEXT NOT NULL,
	id        TEXT NOT NULL,
	name      TEXT NOT NULL,
	target_id TEXT NOT NULL,
	etag      TEXT NOT NULL,
	doc       BLOB NOT NULL,
	PRIMARY KEY (source_id, id)
);
CREATE INDEX relationships_by_target ON relationships (target_id, source_id, id);
CREATE INDEX relationships_by_name ON relationships (source_id, name, id);

-- The change log. seq is the rowid: records are appended with max(seq)+1 by the single
-- writer, so seqs are gap-free and in commit order. event is the event's JSON form: one
-- value to bind instead of ten keeps appending cheap.
CREATE TABLE log (
	seq   INTEGER PRIMARY KEY,
	event BLOB NOT NULL
);
`,
	// Version 2: event delivery state (see delivery.go).
	`
CREATE TABLE endpoints (
	name    TEXT PRIMARY KEY,
	config  BLOB NOT NULL,
	created TEXT NOT NULL,
	cursor  INTEGER NOT NULL
);

CREATE TABLE routes (
	id       TEXT PRIMARY KEY,
	endpoint TEXT NOT NULL,
	filter   TEXT NOT NULL
);

-- AUTOINCREMENT: a dead letter's id is never reused, even after deletes.
CREATE TABLE dead_letters (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	endpoint TEXT NOT NULL,
	seq      INTEGER NOT NULL,
	reason   TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	time     TEXT NOT NULL,
	event    BLOB NOT NULL
);
CREATE INDEX dead_letters_by_endpoint ON dead_letters (endpoint, id);

-- The log's clock: one mark for the first record committed in each millisecond, so a record's
-- commit time is that of the newest mark at or before it. Lag in seconds, time-based replay
-- and retention read it; the log itself stays as the writer made it.
CREATE TABLE log_clock (
	seq INTEGER PRIMARY KEY,
	ms  INTEGER NOT NULL
);
CREATE INDEX log_clock_by_ms ON log_clock (ms);
CREATE TRIGGER log_clock_mark AFTER INSERT ON log
WHEN (SELECT ms FROM log_clock ORDER BY seq DESC LIMIT 1) IS NOT CAST(unixepoch('subsec') * 1000 AS INTEGER)
BEGIN
	INSERT INTO log_clock (seq, ms) VALUES (NEW.seq, CAST(unixepoch('subsec') * 1000 AS INTEGER));
END;
`,
	// Version 3: the writer marks the log's clock once per committed batch (see markClock),
	// which costs one statement per transaction instead of a trigger run per record.
	`
DROP TRIGGER log_clock_mark;
`,
	// Version 4: bulk jobs (see jobs.go). A job's document is package job's business.
	`
CREATE TABLE jobs (
	kind TEXT NOT NULL,
	id   TEXT NOT NULL,
	doc  BLOB NOT NULL,
	PRIMARY KEY (kind, id)
) WITHOUT ROWID;
`,
	// Version 5: ingress state (see ingress.go), the cursors of the change log's consumers
	// other than endpoints, and each record's propagation depth (event.Event.Depth). Adding a
	// column with a constant default rewrites no row.
	`
ALTER TABLE log ADD COLUMN depth INTEGER NOT NULL DEFAULT 0;

CREATE TABLE log_consumers (
	name   TEXT PRIMARY KEY,
	cursor INTEGER NOT NULL
);

CREATE TABLE sources (
	name    TEXT PRIMARY KEY,
	config  BLOB NOT NULL,
	created TEXT NOT NULL
);

CREATE TABLE mappings (
	name       TEXT PRIMARY KEY,
	source     TEXT NOT NULL,
	definition BLOB NOT NULL,
	created    TEXT NOT NULL
);
CREATE INDEX mappings_by_source ON mappings (source, name);

-- AUTOINCREMENT: a dead letter's id is never reused, even after deletes.
CREATE TABLE source_dead_letters (
	id       INTEGER PRIMARY KEY AUTOINCREMENT,
	source   TEXT NOT NULL,
	reason   TEXT NOT NULL,
	attempts INTEGER NOT NULL,
	time     TEXT NOT NULL,
	message  BLOB NOT NULL
);
CREATE INDEX source_dead_letters_by_source ON source_dead_letters (source, id);

-- The ids of applied messages, for de-duplication; expires is in Unix milliseconds.
CREATE TABLE source_messages (
	source  TEXT NOT NULL,
	id      TEXT NOT NULL,
	expires INTEGER NOT NULL,
	PRIMARY KEY (source, id)
) WITHOUT ROWID;
CREATE INDEX source_messages_by_expiry ON source_messages (expires);
`,
	// Version 6: API keys (see keys.go): the hash of each key's secret, never the secret.
	// expires is RFC 3339, or empty for a key that does not expire.
	`
CREATE TABLE api_keys (
	id      TEXT PRIMARY KEY,
	name    TEXT NOT NULL,
	role    TEXT NOT NULL,
	hash    BLOB NOT NULL,
	created TEXT NOT NULL,
	expires TEXT NOT NULL
) WITHOUT ROWID;
`,
	// Version 7: anomaly detectors (see detectors.go) and the learned state of each series
	// they score.
	`
CREATE TABLE detectors (
	name    TEXT PRIMARY KEY,
	config  BLOB NOT NULL,
	created TEXT NOT NULL
);

CREATE TABLE detector_states (
	detector TEXT NOT NULL,
	twin     TEXT NOT NULL,
	property TEXT NOT NULL,
	state    BLOB NOT NULL,
	PRIMARY KEY (detector, twin, property)
) WITHOUT ROWID;
`,
	// Version 8: detector states in a rowid table. A state is about 1.1 KiB, more than a
	// WITHOUT ROWID (index) b-tree keeps in its leaf page (about 1,000 bytes with 4 KiB
	// pages), so each one took an overflow page and each write of it two pages; a rowid
	// table keeps it in the leaf, and its key in a small index.
	`
CREATE TABLE detector_states_rowid (
	detector TEXT NOT NULL,
	twin     TEXT NOT NULL,
	property TEXT NOT NULL,
	state    BLOB NOT NULL,
	PRIMARY KEY (detector, twin, property)
);
INSERT INTO detector_states_rowid SELECT detector, twin, property, state FROM detector_states;
DROP TABLE detector_states;
ALTER TABLE detector_states_rowid RENAME TO detector_states;
`,
}

// schemaVersionKey is the meta key holding the number of applied migrations.
const schemaVersionKey = "schema_version"

// migrate brings the database on conn to the newest schema version in one transaction. It
// refuses a database written by a newer twinflow.
func migrate(ctx context.Context, conn *sql.Conn) (err error) {
	if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
		return fmt.Errorf("begin migration: %w", err)
	}
	defer func() {
		if err != nil {
			// The error that made us roll back is the one worth reporting.
			_, _ = conn.ExecContext(ctx, "ROLLBACK")
		}
	}()

	version, err := schemaVersion(ctx, conn)
	if err != nil {
		return err
	}
	if version > len(migrations) {
		return fmt.Errorf("database schema version %d is newer than this build supports (%d)", version, len(migrations))
	}
	for v := version; v < len(migrations); v++ {
		if _, err := conn.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate schema to version %d: %w", v+1, err)
		}
	}
	if version < len(migrations) {
		_, err := conn.ExecContext(ctx,
			"INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
			schemaVersionKey, len(migrations))
		if err != nil {
			return fmt.Errorf("record schema version: %w", err)
		}
	}
	if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
		return fmt.Errorf("commit migration: %w", err)
	}
	return nil
}

// schemaVersion returns the number of migrations applied to the database, 0 for a new one.
func schemaVersion(ctx context.Context, conn *sql.Conn) (int, error) {
	var exists bool
	err := conn.QueryRowContext(ctx,
		"SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'meta')").Scan(&exists)
	if err != nil {
		return 0, fmt.Errorf("look for schema: %w", err)
	}
	if !exists {
		return 0, nil
	}
	var version int
	err = conn.QueryRowContext(ctx, "SELECT value FROM meta WHERE key = ?", schemaVersionKey).Scan(&version)
	if err != nil {
		return 0, fmt.Errorf("read schema version: %w", err)
	}
	return version, nil
}
