// Package postgres is the PostgreSQL history.Store: the three history tables in a schema of a
// PostgreSQL database, shaped and named like ADT's Azure Data Explorer tables so that they can
// be queried with ordinary SQL tools and Grafana.
//
// Columns carry ADT's names, quoted ("TimeStamp", "Id", "Key", "Value", ...), plus "Seq", the
// change log record a row came from. "Value" is jsonb; "Num" is "Value" when it is a finite
// JSON number, for aggregates. Times are timestamptz, which keeps microseconds: "TimeStamp"
// is stored truncated to the microsecond, and "SourceTimeStampNanos" keeps the nanoseconds
// of "SourceTimeStamp" below its microsecond, so that a source time reads back exactly. Text
// columns use the "C" collation, so that rows sort by bytes as everywhere else.
//
// Each table is range-partitioned by "TimeStamp", one partition per UTC day, named
// <table>_YYYYMMDD. Write creates the partitions its rows need (and the next day's) in its
// own transaction; Prune drops whole partitions once every row in them is prunable and
// deletes row by row only where the contract keeps rows in an old partition.
//
// The writer's cursor lives in the table history_cursor of the same schema, one row per
// property table name, so that several stores may share a schema.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/twinflow/twinflow/internal/history"
)

// DefaultSchema is the schema the tables live in unless Config says otherwise.
const DefaultSchema = "public"

// maxTableName bounds table names so that partition names (<table>_YYYYMMDD) stay within
// PostgreSQL's 63-byte identifiers.
const maxTableName = 63 - len("_20060102")

// day is the width of one partition.
const day = 24 * time.Hour

// Config configures a Store.
type Config struct {
	// DSN is the PostgreSQL connection string (URL or key=value form). Required. Pool
	// settings such as pool_max_conns may be given in it.
	DSN string
	// Schema is the schema of the tables, created if missing; empty means DefaultSchema.
	Schema string
	// Tables names the tables; empty names take ADT's defaults.
	Tables history.Tables
	// MaxConns, when positive, bounds the connection pool, overriding the DSN.
	MaxConns int32
	// RollupRows bounds the raw rows one Rollup step aggregates; 0 means DefaultRollupRows.
	RollupRows int
}

// Store is the PostgreSQL history.Store. It is safe for concurrent use.
type Store struct {
	pool   *pgxpool.Pool
	schema string
	t      history.Tables
	// lockKey is the advisory lock that serialises DDL on this schema across processes.
	lockKey int64
	// wmu serialises Write and Prune; parts, guarded by it, caches the partitions known to
	// exist, by name.
	wmu   sync.Mutex
	parts map[string]bool
	// Qualified, quoted names.
	prop, twin, rel, tele, anom, cursor string
	// hourly is the roll-up table, bounds the table of its floor and watermark.
	hourly, bounds string
	rollupRows     int
}

var _ history.Store = (*Store)(nil)

// Open connects to the database, creates the schema, the tables and the cursor if missing,
// and returns the store. Concurrent Opens of the same schema, from any process, are safe.
func Open(ctx context.Context, cfg Config) (*Store, error) {
	if cfg.DSN == "" {
		return nil, errors.New("postgres history config: dsn: must be set")
	}
	if cfg.Schema == "" {
		cfg.Schema = DefaultSchema
	}
	if err := (history.Tables{Properties: cfg.Schema, TwinLifecycle: "x", RelationshipLifecycle: "x", Telemetry: "x", Anomalies: "x"}).Validate(); err != nil {
		return nil, fmt.Errorf("postgres history config: schema %q is not an identifier", cfg.Schema)
	}
	if cfg.RollupRows == 0 {
		cfg.RollupRows = DefaultRollupRows
	}
	if cfg.RollupRows < 0 {
		return nil, fmt.Errorf("postgres history config: rollupRows: %d is negative", cfg.RollupRows)
	}
	t := cfg.Tables.WithDefaults()
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("postgres history config: tables: %w", err)
	}
	names := []string{t.Properties, t.TwinLifecycle, t.RelationshipLifecycle, t.Telemetry, t.Anomalies}
	for _, n := range names {
		if len(n) > maxTableName {
			return nil, fmt.Errorf("postgres history config: tables: %q is longer than %d bytes", n, maxTableName)
		}
	}
	// The roll-up table's name, not partitioned, may be longer.
	names = append(names, t.Hourly())
	if slices.Sort(names); len(slices.Compact(names)) != 6 {
		return nil, fmt.Errorf("postgres history config: tables: names must differ: %+v", t)
	}
	pc, err := pgxpool.ParseConfig(cfg.DSN)
	if err != nil {
		return nil, fmt.Errorf("postgres history config: dsn: %w", err)
	}
	if cfg.MaxConns > 0 {
		pc.MaxConns = cfg.MaxConns
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, fmt.Errorf("connect to history database: %w", err)
	}
	h := fnv.New64a()
	h.Write([]byte("twinflow history schema " + cfg.Schema))
	s := &Store{
		pool: pool, schema: cfg.Schema, t: t, lockKey: int64(h.Sum64()), parts: map[string]bool{},
		prop: qualify(cfg.Schema, t.Properties), twin: qualify(cfg.Schema, t.TwinLifecycle),
		rel: qualify(cfg.Schema, t.RelationshipLifecycle), tele: qualify(cfg.Schema, t.Telemetry),
		anom:   qualify(cfg.Schema, t.Anomalies),
		cursor: qualify(cfg.Schema, "history_cursor"),
		hourly: qualify(cfg.Schema, t.Hourly()), bounds: qualify(cfg.Schema, "history_rollup"), rollupRows: cfg.RollupRows,
	}
	days := partitionDays([]time.Time{time.Now()})
	if err := s.migrate(ctx, days); err != nil {
		pool.Close()
		return nil, fmt.Errorf("create history schema %s: %w", cfg.Schema, err)
	}
	s.notePartitions(days)
	return s, nil
}

// quote quotes an identifier (one that history.Tables.Validate accepts).
func quote(name string) string { return `"` + name + `"` }

func qualify(schema, name string) string { return quote(schema) + "." + quote(name) }

// migrate creates what is missing, under the schema's advisory lock, with the partitions of
// days.
func (s *Store) migrate(ctx context.Context, days []time.Time) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockKey); err != nil {
			return fmt.Errorf("lock schema: %w", err)
		}
		ddl := `
CREATE SCHEMA IF NOT EXISTS ` + quote(s.schema) + `;
CREATE TABLE IF NOT EXISTS ` + s.cursor + ` (name text COLLATE "C" PRIMARY KEY, seq bigint NOT NULL);
CREATE TABLE IF NOT EXISTS ` + s.prop + ` (
	"TimeStamp" timestamptz NOT NULL,
	"SourceTimeStamp" timestamptz,
	"SourceTimeStampNanos" smallint,
	"ServiceId" text COLLATE "C" NOT NULL,
	"Id" text COLLATE "C" NOT NULL,
	"ModelId" text COLLATE "C" NOT NULL,
	"Key" text COLLATE "C" NOT NULL,
	"Value" jsonb NOT NULL,
	"Num" double precision,
	"RelationshipId" text COLLATE "C" NOT NULL,
	"RelationshipTarget" text COLLATE "C" NOT NULL,
	"Action" text COLLATE "C" NOT NULL,
	"Seq" bigint NOT NULL
) PARTITION BY RANGE ("TimeStamp");
CREATE INDEX IF NOT EXISTS ` + quote(s.t.Properties+"_by_key") + ` ON ` + s.prop + ` ("Id", "Key", "TimeStamp", "Seq");
CREATE INDEX IF NOT EXISTS ` + quote(s.t.Properties+"_by_time") + ` ON ` + s.prop + ` ("Id", "TimeStamp", "Seq", "Key");
CREATE INDEX IF NOT EXISTS ` + quote(s.t.Properties+"_aggregate") + ` ON ` + s.prop + ` ("Key", "Id", "TimeStamp")
	INCLUDE ("Seq", "Num") WHERE "RelationshipId" = '';
CREATE TABLE IF NOT EXISTS ` + s.twin + ` (
	"TwinId" text COLLATE "C" NOT NULL,
	"Action" text COLLATE "C" NOT NULL,
	"TimeStamp" timestamptz NOT NULL,
	"ServiceId" text COLLATE "C" NOT NULL,
	"ModelId" text COLLATE "C" NOT NULL,
	"Seq" bigint NOT NULL
) PARTITION BY RANGE ("TimeStamp");
CREATE INDEX IF NOT EXISTS ` + quote(s.t.TwinLifecycle+"_by_twin") + ` ON ` + s.twin + ` ("TwinId", "Seq");
CREATE TABLE IF NOT EXISTS ` + s.rel + ` (
	"RelationshipId" text COLLATE "C" NOT NULL,
	"Name" text COLLATE "C" NOT NULL,
	"Action" text COLLATE "C" NOT NULL,
	"TimeStamp" timestamptz NOT NULL,
	"ServiceId" text COLLATE "C" NOT NULL,
	"Source" text COLLATE "C" NOT NULL,
	"Target" text COLLATE "C" NOT NULL,
	"Seq" bigint NOT NULL
) PARTITION BY RANGE ("TimeStamp");
CREATE INDEX IF NOT EXISTS ` + quote(s.t.RelationshipLifecycle+"_by_relationship") + ` ON ` + s.rel + ` ("Source", "RelationshipId", "Seq");
CREATE TABLE IF NOT EXISTS ` + s.tele + ` (
	"TimeStamp" timestamptz NOT NULL,
	"SourceTimeStamp" timestamptz,
	"ServiceId" text COLLATE "C" NOT NULL,
	"Id" text COLLATE "C" NOT NULL,
	"Component" text COLLATE "C" NOT NULL,
	"ModelId" text COLLATE "C" NOT NULL,
	"MessageId" text COLLATE "C" NOT NULL,
	"Value" jsonb NOT NULL,
	"Seq" bigint NOT NULL
) PARTITION BY RANGE ("TimeStamp");
CREATE INDEX IF NOT EXISTS ` + quote(s.t.Telemetry+"_by_twin") + ` ON ` + s.tele + ` ("Id", "TimeStamp");
CREATE TABLE IF NOT EXISTS ` + s.anom + ` (
	"TimeStamp" timestamptz NOT NULL,
	"ServiceId" text COLLATE "C" NOT NULL,
	"Id" text COLLATE "C" NOT NULL,
	"Key" text COLLATE "C" NOT NULL,
	"Value" double precision NOT NULL,
	"Score" double precision NOT NULL,
	"Kind" text COLLATE "C" NOT NULL,
	"Detector" text COLLATE "C" NOT NULL,
	"Seq" bigint NOT NULL
) PARTITION BY RANGE ("TimeStamp");
CREATE INDEX IF NOT EXISTS ` + quote(s.t.Anomalies+"_by_twin") + ` ON ` + s.anom + ` ("Id", "Seq");
`
		if _, err := tx.Exec(ctx, ddl); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `INSERT INTO `+s.cursor+` (name, seq) VALUES ($1, 0) ON CONFLICT (name) DO NOTHING`,
			s.t.Properties); err != nil {
			return fmt.Errorf("create cursor: %w", err)
		}
		if err := s.migrateRollups(ctx, tx); err != nil {
			return fmt.Errorf("create roll-ups: %w", err)
		}
		return s.ensurePartitions(ctx, tx, days)
	})
}

// Close implements history.Store.
func (s *Store) Close() error {
	s.pool.Close()
	return nil
}

// partitionName returns the name of the partition of table that holds day d.
func partitionName(table string, d time.Time) string {
	return table + "_" + d.UTC().Format("20060102")
}

// partitionDay parses the day of a partition of table from its name; ok is false for a
// table that is not one of its partitions.
func partitionDay(table, name string) (d time.Time, ok bool) {
	suffix, found := strings.CutPrefix(name, table+"_")
	if !found || len(suffix) != 8 {
		return time.Time{}, false
	}
	d, err := time.Parse("20060102", suffix)
	return d, err == nil
}

// partitionDays returns the days of times and the day after the newest: the partitions
// rows at times need, and the next one, created ahead.
func partitionDays(times []time.Time) []time.Time {
	seen := map[time.Time]bool{}
	var days []time.Time
	var newest time.Time
	for _, t := range times {
		d := t.UTC().Truncate(day)
		if !seen[d] {
			seen[d] = true
			days = append(days, d)
		}
		if d.After(newest) {
			newest = d
		}
	}
	if len(days) > 0 && !seen[newest.Add(day)] {
		days = append(days, newest.Add(day))
	}
	return days
}

// ensurePartitions creates, in tx, the partitions of the three tables for days that are not
// known to exist. The caller serialises calls (wmu, or Open's lock).
func (s *Store) ensurePartitions(ctx context.Context, tx pgx.Tx, days []time.Time) error {
	locked := false
	for _, d := range days {
		for _, table := range s.tables() {
			name := partitionName(table, d)
			if s.parts[name] {
				continue
			}
			if !locked {
				if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockKey); err != nil {
					return fmt.Errorf("lock schema: %w", err)
				}
				locked = true
			}
			if _, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+qualify(s.schema, name)+` PARTITION OF `+
				qualify(s.schema, table)+` FOR VALUES FROM ('`+d.Format(time.RFC3339)+`') TO ('`+
				d.Add(day).Format(time.RFC3339)+`')`); err != nil {
				return fmt.Errorf("create partition %s: %w", name, err)
			}
		}
	}
	return nil
}

// notePartitions records, once their transaction committed, that the partitions of days
// exist.
func (s *Store) notePartitions(days []time.Time) {
	for _, d := range days {
		for _, table := range s.tables() {
			s.parts[partitionName(table, d)] = true
		}
	}
}

// tables returns the names of the tables.
func (s *Store) tables() []string {
	return []string{s.t.Properties, s.t.TwinLifecycle, s.t.RelationshipLifecycle, s.t.Telemetry, s.t.Anomalies}
}

// Write implements history.Store: one transaction locks and reads the cursor (and the
// roll-ups' bounds), creates the partitions the new rows need, copies the rows in (COPY),
// merges those below the watermark into the roll-ups and sets the cursor.
func (s *Store) Write(ctx context.Context, rows *history.Rows, through uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	var times, days []time.Time
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		var c int64
		if err := tx.QueryRow(ctx, `SELECT seq FROM `+s.cursor+` WHERE name = $1 FOR UPDATE`, s.t.Properties).Scan(&c); err != nil {
			return fmt.Errorf("read cursor: %w", err)
		}
		cursor := uint64(c)
		var bounds rollupBounds
		if len(rows.Properties) > 0 {
			var err error
			if bounds, err = s.readRollupBounds(ctx, tx, true); err != nil {
				return err
			}
		}
		times = times[:0]
		var (
			props, twins, rels, tele, anoms [][]any
			late                            []lateRow
		)
		for i := range rows.Properties {
			r := &rows.Properties[i]
			if r.Seq <= cursor {
				continue
			}
			ts := r.TimeStamp.Truncate(time.Microsecond)
			var src, nanos any
			if !r.SourceTimeStamp.IsZero() {
				st := r.SourceTimeStamp.Truncate(time.Microsecond)
				src, nanos = st, int16(r.SourceTimeStamp.Sub(st))
			}
			value := []byte(r.Value)
			if len(value) == 0 {
				value = []byte("null")
			}
			v, numeric := history.Number(value)
			var num any // NULL unless numeric
			if numeric {
				num = v
			}
			props = append(props, []any{ts, src, nanos, r.ServiceID, r.ID, r.ModelID, r.Key, value,
				num, r.RelationshipID, r.RelationshipTarget, r.Action, int64(r.Seq)})
			if numeric && r.RelationshipID == "" && bounds.late(ts) {
				late = append(late, lateRow{id: r.ID, key: r.Key, ts: ts, seq: int64(r.Seq), value: v})
			}
			times = append(times, ts)
		}
		for _, r := range rows.Twins {
			if r.Seq <= cursor {
				continue
			}
			ts := r.TimeStamp.Truncate(time.Microsecond)
			twins = append(twins, []any{r.TwinID, r.Action, ts, r.ServiceID, r.ModelID, int64(r.Seq)})
			times = append(times, ts)
		}
		for _, r := range rows.Relationships {
			if r.Seq <= cursor {
				continue
			}
			ts := r.TimeStamp.Truncate(time.Microsecond)
			rels = append(rels, []any{r.RelationshipID, r.Name, r.Action, ts, r.ServiceID, r.Source, r.Target, int64(r.Seq)})
			times = append(times, ts)
		}
		for i := range rows.Telemetry {
			r := &rows.Telemetry[i]
			if r.Seq <= cursor {
				continue
			}
			ts := r.TimeStamp.Truncate(time.Microsecond)
			var src any
			if !r.SourceTimeStamp.IsZero() {
				src = r.SourceTimeStamp
			}
			value := []byte(r.Value)
			if len(value) == 0 {
				value = []byte("null")
			}
			tele = append(tele, []any{ts, src, r.ServiceID, r.ID, r.Component, r.ModelID, r.MessageID, value, int64(r.Seq)})
			times = append(times, ts)
		}
		for i := range rows.Anomalies {
			r := &rows.Anomalies[i]
			if r.Seq <= cursor {
				continue
			}
			ts := r.TimeStamp.Truncate(time.Microsecond)
			anoms = append(anoms, []any{ts, r.ServiceID, r.ID, r.Key, r.Value, r.Score, r.Kind, r.Detector, int64(r.Seq)})
			times = append(times, ts)
		}
		days = partitionDays(times)
		if err := s.ensurePartitions(ctx, tx, days); err != nil {
			return err
		}
		for _, c := range []struct {
			what  string
			table string
			cols  []string
			rows  [][]any
		}{
			{"property", s.t.Properties, propInsertColumns, props},
			{"twin lifecycle", s.t.TwinLifecycle, twinInsertColumns, twins},
			{"relationship lifecycle", s.t.RelationshipLifecycle, relInsertColumns, rels},
			{"telemetry", s.t.Telemetry, telemetryInsertColumns, tele},
			{"anomaly", s.t.Anomalies, anomalyInsertColumns, anoms},
		} {
			if len(c.rows) == 0 {
				continue
			}
			if _, err := tx.CopyFrom(ctx, pgx.Identifier{s.schema, c.table}, c.cols, pgx.CopyFromRows(c.rows)); err != nil {
				return fmt.Errorf("copy %d %s rows: %w", len(c.rows), c.what, err)
			}
		}
		if err := s.mergeLate(ctx, tx, late); err != nil {
			return err
		}
		if through > cursor {
			if _, err := tx.Exec(ctx, `UPDATE `+s.cursor+` SET seq = $2 WHERE name = $1`, s.t.Properties, int64(through)); err != nil {
				return fmt.Errorf("set cursor: %w", err)
			}
		}
		return nil
	})
	if err != nil {
		// Another process may have dropped a partition this store thought was there.
		clear(s.parts)
		return fmt.Errorf("write history rows through %d: %w", through, err)
	}
	s.notePartitions(days)
	return nil
}

var (
	propInsertColumns = []string{"TimeStamp", "SourceTimeStamp", "SourceTimeStampNanos", "ServiceId", "Id", "ModelId",
		"Key", "Value", "Num", "RelationshipId", "RelationshipTarget", "Action", "Seq"}
	twinInsertColumns      = []string{"TwinId", "Action", "TimeStamp", "ServiceId", "ModelId", "Seq"}
	relInsertColumns       = []string{"RelationshipId", "Name", "Action", "TimeStamp", "ServiceId", "Source", "Target", "Seq"}
	telemetryInsertColumns = []string{"TimeStamp", "SourceTimeStamp", "ServiceId", "Id", "Component", "ModelId",
		"MessageId", "Value", "Seq"}
	anomalyInsertColumns = []string{"TimeStamp", "ServiceId", "Id", "Key", "Value", "Score", "Kind", "Detector", "Seq"}
)

// Cursor implements history.Store.
func (s *Store) Cursor(ctx context.Context) (uint64, error) {
	var c int64
	if err := s.pool.QueryRow(ctx, `SELECT seq FROM `+s.cursor+` WHERE name = $1`, s.t.Properties).Scan(&c); err != nil {
		return 0, fmt.Errorf("read history cursor: %w", err)
	}
	return uint64(c), nil
}
