// Package sqlite is the embedded history.Store: the three history tables in a SQLite
// database file of their own in the data directory, apart from the twin store's, so that
// history's volume and its pruning never slow twin writes.
//
// One connection writes; commits are durable (WAL with synchronous=FULL: each commit fsyncs
// the write-ahead log). A pool of connections reads. The property table is stored in the
// order rows are written (log order), so a batch appends to its last pages; one index on
// (Id, RelationshipId, Key, TimeStamp, Seq) finds a property's history and one on TimeStamp
// serves retention. Rows are narrow in the index and wide only at the table's end, so a
// commit under load rewrites few pages, where a table clustered on the twin id would rewrite
// one page per twin patched.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"iter"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // the database/sql driver "sqlite"

	"github.com/twinflow/twinflow/internal/history"
)

// FileName is the database's file name in the data directory.
const FileName = "history.db"

// DefaultReaders is the default size of the read pool.
const DefaultReaders = 4

// readMmap is how much of the database file each reading connection maps into memory.
const readMmap = 1 << 32

// Config configures a Store.
type Config struct {
	// Dir is the data directory; the database is Dir/FileName. Required.
	Dir string
	// Tables names the tables; empty names take ADT's defaults.
	Tables history.Tables
	// Readers is the number of reading connections; 0 means DefaultReaders.
	Readers int
	// NoSync turns off fsync (synchronous=OFF): for tests only, a crash may lose commits.
	NoSync bool
	// RollupRows bounds the raw rows one Rollup step aggregates; 0 means DefaultRollupRows.
	RollupRows int
	// CheckpointRows is the fewest property rows after the newest checkpoint that make the
	// next one due (see Store.Checkpoint); 0 means DefaultCheckpointRows.
	CheckpointRows int
}

// Store is the SQLite history.Store. It is safe for concurrent use.
type Store struct {
	cfg  Config
	path string
	t    history.Tables
	// wmu serialises writing transactions on wdb's one connection.
	wmu sync.Mutex
	wdb *sql.DB
	rdb *sql.DB
	q   queries
	rq  rollupStatements
	// reads holds the reading statements prepared on rdb, by text, guarded by readsMu:
	// database/sql prepares each on a connection the first time it runs there and reuses it
	// after. Their texts are built from a fixed set of fragments, so there are few of them.
	readsMu sync.Mutex
	reads   map[string]*sql.Stmt
	// newestCheckpoint is at least the time of the newest checkpoint, complete or not (-1:
	// none), and building the checkpoint being built, if any; both guarded by wmu.
	newestCheckpoint int64
	building         *build
	// beforePublish, if set, is called by a checkpoint's build after it has written the
	// entries and before it publishes them: tests write rows there.
	beforePublish func()
}

var _ history.Store = (*Store)(nil)

// queries holds the statements' text with the configured table names.
type queries struct {
	insertProp, insertTwin, insertRel, insertTelemetry, insertAnomaly string
	latest                                                            string
}

// Open opens (creating if needed) the history database in cfg.Dir.
func Open(cfg Config) (*Store, error) {
	if cfg.Dir == "" {
		return nil, errors.New("sqlite history config: dir: must be set")
	}
	if cfg.Readers == 0 {
		cfg.Readers = DefaultReaders
	}
	if cfg.Readers < 0 {
		return nil, fmt.Errorf("sqlite history config: readers: %d is negative", cfg.Readers)
	}
	if cfg.RollupRows == 0 {
		cfg.RollupRows = DefaultRollupRows
	}
	if cfg.RollupRows < 0 {
		return nil, fmt.Errorf("sqlite history config: rollupRows: %d is negative", cfg.RollupRows)
	}
	if cfg.CheckpointRows == 0 {
		cfg.CheckpointRows = DefaultCheckpointRows
	}
	if cfg.CheckpointRows < 0 {
		return nil, fmt.Errorf("sqlite history config: checkpointRows: %d is negative", cfg.CheckpointRows)
	}
	t := cfg.Tables.WithDefaults()
	if err := t.Validate(); err != nil {
		return nil, fmt.Errorf("sqlite history config: tables: %w", err)
	}
	if err := os.MkdirAll(cfg.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("create data directory: %w", err)
	}
	path, err := filepath.Abs(filepath.Join(cfg.Dir, FileName))
	if err != nil {
		return nil, fmt.Errorf("locate history database: %w", err)
	}
	s := &Store{cfg: cfg, path: path, t: t, reads: map[string]*sql.Stmt{}}
	sync := "synchronous(FULL)"
	if cfg.NoSync {
		sync = "synchronous(OFF)"
	}
	s.wdb, err = sql.Open("sqlite", dsn(path, "journal_mode(WAL)", sync, "busy_timeout(10000)", "cache_size(-32768)"))
	if err != nil {
		return nil, fmt.Errorf("open history database: %w", err)
	}
	s.wdb.SetMaxOpenConns(1)
	if err := errors.Join(s.migrate(), s.migrateRollups(), s.migrateCheckpoints()); err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("create history schema in %s: %w", path, err)
	}
	// Readers map the file (up to readMmap bytes) instead of copying each page in with a
	// system call: a past graph scans the whole property table.
	s.rdb, err = sql.Open("sqlite", dsn(path, "query_only(1)", "busy_timeout(10000)", "cache_size(-16384)",
		fmt.Sprintf("mmap_size(%d)", readMmap)))
	if err != nil {
		s.wdb.Close()
		return nil, fmt.Errorf("open history database: %w", err)
	}
	s.rdb.SetMaxOpenConns(cfg.Readers)
	s.rdb.SetMaxIdleConns(cfg.Readers)
	s.q = queries{
		insertProp: `INSERT OR IGNORE INTO ` + t.Properties + ` (Id, Key, TimeStamp, Seq, SourceTimeStamp, ServiceId,
			ModelId, Value, Num, RelationshipId, RelationshipTarget, Action) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)`,
		insertTwin: `INSERT OR IGNORE INTO ` + t.TwinLifecycle + ` (TwinId, Seq, Action, TimeStamp, ServiceId, ModelId)
			VALUES (?,?,?,?,?,?)`,
		insertRel: `INSERT OR IGNORE INTO ` + t.RelationshipLifecycle + ` (Source, RelationshipId, Seq, Name, Action,
			TimeStamp, ServiceId, Target) VALUES (?,?,?,?,?,?,?,?)`,
		insertTelemetry: `INSERT OR IGNORE INTO ` + t.Telemetry + ` (Id, TimeStamp, Seq, SourceTimeStamp, ServiceId,
			ModelId, Component, MessageId, Value) VALUES (?,?,?,?,?,?,?,?,?)`,
		insertAnomaly: `INSERT OR IGNORE INTO ` + t.Anomalies + ` (Id, Seq, TimeStamp, ServiceId, Key, Value, Score, Kind,
			Detector) VALUES (?,?,?,?,?,?,?,?,?)`,
		latest: `SELECT ` + propColumns + ` FROM ` + t.Properties + ` WHERE Id = ? AND Key = ? AND RelationshipId = ?
			ORDER BY TimeStamp DESC, Seq DESC LIMIT 1`,
	}
	s.rq = newRollupStatements(t)
	return s, nil
}

func dsn(path string, pragmas ...string) string {
	q := url.Values{}
	for _, p := range pragmas {
		q.Add("_pragma", p)
	}
	return (&url.URL{Scheme: "file", Path: path, RawQuery: q.Encode()}).String()
}

// migrate creates the schema. TimeStamp is Unix nanoseconds; SourceTimeStamp is RFC 3339
// text (it keeps the client's precision and range) or NULL; Num is Value when Value is a
// JSON number, for aggregates.
func (s *Store) migrate() error {
	p, tw, r, te, an := s.t.Properties, s.t.TwinLifecycle, s.t.RelationshipLifecycle, s.t.Telemetry, s.t.Anomalies
	_, err := s.wdb.Exec(`
CREATE TABLE IF NOT EXISTS history_cursor (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
INSERT OR IGNORE INTO history_cursor (id, seq) VALUES (1, 0);
CREATE TABLE IF NOT EXISTS ` + p + ` (
	Id TEXT NOT NULL, Key TEXT NOT NULL, TimeStamp INTEGER NOT NULL, Seq INTEGER NOT NULL,
	SourceTimeStamp TEXT, ServiceId TEXT NOT NULL, ModelId TEXT NOT NULL, Value TEXT NOT NULL, Num REAL,
	RelationshipId TEXT NOT NULL, RelationshipTarget TEXT NOT NULL, Action TEXT NOT NULL);
CREATE UNIQUE INDEX IF NOT EXISTS ` + p + `_by_key ON ` + p + ` (Id, RelationshipId, Key, TimeStamp, Seq);
CREATE INDEX IF NOT EXISTS ` + p + `_retention ON ` + p + ` (TimeStamp);
CREATE TABLE IF NOT EXISTS ` + tw + ` (
	TwinId TEXT NOT NULL, Seq INTEGER NOT NULL, Action TEXT NOT NULL, TimeStamp INTEGER NOT NULL,
	ServiceId TEXT NOT NULL, ModelId TEXT NOT NULL,
	PRIMARY KEY (TwinId, Seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ` + tw + `_retention ON ` + tw + ` (TimeStamp);
CREATE TABLE IF NOT EXISTS ` + r + ` (
	Source TEXT NOT NULL, RelationshipId TEXT NOT NULL, Seq INTEGER NOT NULL, Name TEXT NOT NULL,
	Action TEXT NOT NULL, TimeStamp INTEGER NOT NULL, ServiceId TEXT NOT NULL, Target TEXT NOT NULL,
	PRIMARY KEY (Source, RelationshipId, Seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ` + r + `_retention ON ` + r + ` (TimeStamp);
CREATE TABLE IF NOT EXISTS ` + te + ` (
	Id TEXT NOT NULL, TimeStamp INTEGER NOT NULL, Seq INTEGER NOT NULL, SourceTimeStamp TEXT,
	ServiceId TEXT NOT NULL, ModelId TEXT NOT NULL, Component TEXT NOT NULL, MessageId TEXT NOT NULL,
	Value TEXT NOT NULL,
	PRIMARY KEY (Id, TimeStamp, Seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ` + te + `_retention ON ` + te + ` (TimeStamp);
CREATE TABLE IF NOT EXISTS ` + an + ` (
	Id TEXT NOT NULL, Seq INTEGER NOT NULL, TimeStamp INTEGER NOT NULL, ServiceId TEXT NOT NULL,
	Key TEXT NOT NULL, Value REAL NOT NULL, Score REAL NOT NULL, Kind TEXT NOT NULL, Detector TEXT NOT NULL,
	PRIMARY KEY (Id, Seq)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ` + an + `_retention ON ` + an + ` (TimeStamp);
`)
	return err
}

// Close implements history.Store.
func (s *Store) Close() error {
	s.readsMu.Lock()
	var errs []error
	for _, st := range s.reads {
		errs = append(errs, st.Close())
	}
	s.reads = nil
	s.readsMu.Unlock()
	return errors.Join(append(errs, s.rdb.Close(), s.wdb.Close())...)
}

// read returns the reading statement of text query, prepared on rdb once and kept until
// Close. query must come from a bounded set of texts (fixed fragments, values bound as
// arguments): each text keeps a statement per reading connection.
func (s *Store) read(ctx context.Context, query string) (*sql.Stmt, error) {
	s.readsMu.Lock()
	defer s.readsMu.Unlock()
	if st, ok := s.reads[query]; ok {
		return st, nil
	}
	if s.reads == nil {
		return nil, errors.New("the history store is closed")
	}
	st, err := s.rdb.PrepareContext(ctx, query)
	if err != nil {
		return nil, err
	}
	s.reads[query] = st
	return st, nil
}

// Write implements history.Store.
func (s *Store) Write(ctx context.Context, rows *history.Rows, through uint64) error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if err := s.write(ctx, rows, through); err != nil {
		return fmt.Errorf("write history rows through %d: %w", through, err)
	}
	return nil
}

func (s *Store) write(ctx context.Context, rows *history.Rows, through uint64) (err error) {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, tx.Rollback())
		}
	}()
	var cursor uint64
	if err := tx.QueryRowContext(ctx, `SELECT seq FROM history_cursor WHERE id = 1`).Scan(&cursor); err != nil {
		return fmt.Errorf("read cursor: %w", err)
	}
	if err := s.insertProperties(ctx, tx, rows.Properties, cursor); err != nil {
		return err
	}
	if len(rows.Twins) > 0 {
		st, err := tx.PrepareContext(ctx, s.q.insertTwin)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, r := range rows.Twins {
			if r.Seq <= cursor {
				continue
			}
			if _, err := st.ExecContext(ctx, r.TwinID, int64(r.Seq), r.Action, r.TimeStamp.UnixNano(), r.ServiceID, r.ModelID); err != nil {
				return fmt.Errorf("insert twin lifecycle row of %q (record %d): %w", r.TwinID, r.Seq, err)
			}
		}
	}
	if len(rows.Relationships) > 0 {
		st, err := tx.PrepareContext(ctx, s.q.insertRel)
		if err != nil {
			return err
		}
		defer st.Close()
		for _, r := range rows.Relationships {
			if r.Seq <= cursor {
				continue
			}
			if _, err := st.ExecContext(ctx, r.Source, r.RelationshipID, int64(r.Seq), r.Name, r.Action,
				r.TimeStamp.UnixNano(), r.ServiceID, r.Target); err != nil {
				return fmt.Errorf("insert relationship lifecycle row of %q (record %d): %w", r.RelationshipID, r.Seq, err)
			}
		}
	}
	if len(rows.Telemetry) > 0 {
		st, err := tx.PrepareContext(ctx, s.q.insertTelemetry)
		if err != nil {
			return err
		}
		defer st.Close()
		for i := range rows.Telemetry {
			r := &rows.Telemetry[i]
			if r.Seq <= cursor {
				continue
			}
			if _, err := st.ExecContext(ctx, r.ID, r.TimeStamp.UnixNano(), int64(r.Seq), sourceTime(r.SourceTimeStamp),
				r.ServiceID, r.ModelID, r.Component, r.MessageID, string(r.Value)); err != nil {
				return fmt.Errorf("insert telemetry row of %q (record %d): %w", r.ID, r.Seq, err)
			}
		}
	}
	if len(rows.Anomalies) > 0 {
		st, err := tx.PrepareContext(ctx, s.q.insertAnomaly)
		if err != nil {
			return err
		}
		defer st.Close()
		for i := range rows.Anomalies {
			r := &rows.Anomalies[i]
			if r.Seq <= cursor {
				continue
			}
			if _, err := st.ExecContext(ctx, r.ID, int64(r.Seq), r.TimeStamp.UnixNano(), r.ServiceID, r.Key, r.Value,
				r.Score, r.Kind, r.Detector); err != nil {
				return fmt.Errorf("insert anomaly row of %q (record %d): %w", r.ID, r.Seq, err)
			}
		}
	}
	if through > cursor {
		if _, err := tx.ExecContext(ctx, `UPDATE history_cursor SET seq = ? WHERE id = 1`, int64(through)); err != nil {
			return fmt.Errorf("set cursor: %w", err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// propertyChunk is the most property rows one INSERT statement carries: one statement of
// many rows costs much less than as many statements of one.
const propertyChunk = 64

// insertProperties inserts the rows after cursor, propertyChunk rows per statement, except
// numeric twin property rows below the roll-ups' watermark: those are inserted one by one and
// merged into the roll-ups (mergeLate), unless the insert ignored them as already there.
func (s *Store) insertProperties(ctx context.Context, tx *sql.Tx, rows []history.PropertyEvent, cursor uint64) error {
	if len(rows) == 0 {
		return nil
	}
	bounds, err := s.readRollupBounds(ctx, tx)
	if err != nil {
		return err
	}
	oldest := int64(1<<63 - 1)
	for i := range rows {
		if rows[i].Seq > cursor {
			oldest = min(oldest, rows[i].TimeStamp.UnixNano())
		}
	}
	if err := s.noteWritten(ctx, tx, oldest); err != nil {
		return err
	}
	const columns = 12
	var (
		stmts = map[int]*sql.Stmt{}
		args  = make([]any, 0, propertyChunk*columns)
		n     int
	)
	defer func() {
		for _, st := range stmts {
			st.Close()
		}
	}()
	flush := func() (sql.Result, error) {
		if n == 0 {
			return nil, nil
		}
		st := stmts[n]
		if st == nil {
			var err error
			if st, err = tx.PrepareContext(ctx, s.q.insertProp+strings.Repeat(",(?,?,?,?,?,?,?,?,?,?,?,?)", n-1)); err != nil {
				return nil, err
			}
			stmts[n] = st
		}
		res, err := st.ExecContext(ctx, args...)
		if err != nil {
			return nil, fmt.Errorf("insert %d property rows from record %v: %w", n, args[3], err)
		}
		args, n = args[:0], 0
		return res, nil
	}
	for i := range rows {
		r := &rows[i]
		if r.Seq <= cursor {
			continue
		}
		v, numeric := history.Number(r.Value)
		var num any // NULL unless numeric
		if numeric {
			num = v
		}
		late := numeric && r.RelationshipID == "" && bounds.late(r.TimeStamp.UnixNano())
		if late {
			if _, err := flush(); err != nil {
				return err
			}
		}
		args = append(args, r.ID, r.Key, r.TimeStamp.UnixNano(), int64(r.Seq), sourceTime(r.SourceTimeStamp),
			r.ServiceID, r.ModelID, string(r.Value), num, r.RelationshipID, r.RelationshipTarget, r.Action)
		if n++; n == propertyChunk || late {
			res, err := flush()
			if err != nil {
				return err
			}
			if late {
				if err := s.mergeLate(ctx, tx, res, r, v); err != nil {
					return err
				}
			}
		}
	}
	_, err = flush()
	return err
}

// sourceTime is the stored form of a SourceTimeStamp: RFC 3339 text, NULL when unknown.
func sourceTime(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(time.RFC3339Nano)
}

// Cursor implements history.Store.
func (s *Store) Cursor(ctx context.Context) (uint64, error) {
	var c int64
	if err := s.rdb.QueryRowContext(ctx, `SELECT seq FROM history_cursor WHERE id = 1`).Scan(&c); err != nil {
		return 0, fmt.Errorf("read history cursor: %w", err)
	}
	return uint64(c), nil
}

const propColumns = `Seq, TimeStamp, SourceTimeStamp, ServiceId, Id, ModelId, Key, Value, RelationshipId, RelationshipTarget, Action`

type scanner interface{ Scan(...any) error }

func scanProp(sc scanner) (history.PropertyEvent, error) {
	var (
		r      history.PropertyEvent
		seq    int64
		ts     int64
		source sql.NullString
		value  string
	)
	if err := sc.Scan(&seq, &ts, &source, &r.ServiceID, &r.ID, &r.ModelID, &r.Key, &value, &r.RelationshipID,
		&r.RelationshipTarget, &r.Action); err != nil {
		return r, err
	}
	r.Seq, r.TimeStamp, r.Value = uint64(seq), time.Unix(0, ts).UTC(), []byte(value)
	if source.Valid {
		t, err := time.Parse(time.RFC3339Nano, source.String)
		if err != nil {
			return r, fmt.Errorf("parse SourceTimeStamp %q: %w", source.String, err)
		}
		r.SourceTimeStamp = t
	}
	return r, nil
}

// Select implements history.Store.
func (s *Store) Select(ctx context.Context, q history.Selection) iter.Seq2[history.PropertyEvent, error] {
	return func(yield func(history.PropertyEvent, error) bool) {
		fail := func(err error) { yield(history.PropertyEvent{}, fmt.Errorf("select history of %q: %w", q.ID, err)) }
		if q.ID == "" {
			fail(errors.New("a twin id is required"))
			return
		}
		var b strings.Builder
		args := []any{q.ID}
		b.WriteString(`SELECT ` + propColumns + ` FROM ` + s.t.Properties + ` WHERE Id = ?`)
		if q.Key != "" {
			b.WriteString(` AND Key = ?`)
			args = append(args, q.Key)
		}
		if q.RelationshipID != "" || !q.AllRelationships {
			b.WriteString(` AND RelationshipId = ?`)
			args = append(args, q.RelationshipID)
		}
		if !q.From.IsZero() {
			b.WriteString(` AND TimeStamp >= ?`)
			args = append(args, q.From.UnixNano())
		}
		if !q.To.IsZero() {
			b.WriteString(` AND TimeStamp < ?`)
			args = append(args, q.To.UnixNano())
		}
		if q.After != "" {
			p, err := history.ParseContinuation(q.After)
			if err != nil {
				fail(err)
				return
			}
			b.WriteString(` AND (TimeStamp, Seq, Key) > (?, ?, ?)`)
			args = append(args, p.TimeStamp, int64(p.Seq), p.Key)
		}
		b.WriteString(` ORDER BY TimeStamp, Seq, Key`)
		if q.Limit > 0 {
			b.WriteString(` LIMIT ?`)
			args = append(args, q.Limit)
		}
		st, err := s.read(ctx, b.String())
		if err != nil {
			fail(err)
			return
		}
		rows, err := st.QueryContext(ctx, args...)
		if err != nil {
			fail(err)
			return
		}
		defer rows.Close()
		for rows.Next() {
			r, err := scanProp(rows)
			if err != nil {
				fail(err)
				return
			}
			if !yield(r, nil) {
				return
			}
		}
		if err := rows.Err(); err != nil {
			fail(err)
		}
	}
}

// Latest implements history.Store.
func (s *Store) Latest(ctx context.Context, id, relationshipID, key string) (history.PropertyEvent, bool, error) {
	r, err := scanProp(s.rdb.QueryRowContext(ctx, s.q.latest, id, key, relationshipID))
	if errors.Is(err, sql.ErrNoRows) {
		return history.PropertyEvent{}, false, nil
	}
	if err != nil {
		return history.PropertyEvent{}, false, fmt.Errorf("read latest %q of %q: %w", key, id, err)
	}
	return r, true, nil
}

// aggregateChunk bounds the twin ids bound in one aggregate statement.
const aggregateChunk = 500

// Aggregate implements history.Store.
func (s *Store) Aggregate(ctx context.Context, q history.Aggregation) ([]history.Bucket, error) {
	if q.Interval <= 0 || q.From.IsZero() || q.To.IsZero() || q.Key == "" {
		return nil, errors.New("aggregate history: key, from, to and a positive interval are required")
	}
	var out []history.Bucket
	for ids := range slicesChunk(q.IDs, aggregateChunk) {
		b, err := s.aggregate(ctx, q, ids)
		if err != nil {
			return nil, fmt.Errorf("aggregate history of %q: %w", q.Key, err)
		}
		out = append(out, b...)
	}
	return out, nil
}

func slicesChunk(ids []string, n int) iter.Seq[[]string] {
	return func(yield func([]string) bool) {
		for len(ids) > 0 {
			k := min(n, len(ids))
			if !yield(ids[:k]) {
				return
			}
			ids = ids[k:]
		}
	}
}
