package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/history"
)

// DefaultRollupRows is the default of Config.RollupRows.
const DefaultRollupRows = 10_000

// hourNanos is an hour in the unit of TimeStamp.
const hourNanos = int64(time.Hour)

// binOf returns the SQL of the epoch-aligned start of the bucket of TimeStamp, for a bucket
// width given by the expression width: history.Bin in SQL (a floor division, also right
// before the epoch).
func binOf(width string) string {
	return `(TimeStamp - TimeStamp % ` + width + ` - (CASE WHEN TimeStamp % ` + width + ` < 0 THEN ` + width + ` ELSE 0 END))`
}

// migrateRollups creates the roll-up table and its bounds. The table holds one row per
// (Id, Key, Hour) — Hour is the hour's start in Unix nanoseconds — with the count, sum,
// minimum and maximum of the hour's numeric values and its first and last values with
// their TimeStamp and Seq. history_rollup holds, by roll-up table, the watermark and the
// floor (Unix nanoseconds; NULL while unset): the roll-ups cover the raw rows with
// TimeStamp in [floor, watermark).
func (s *Store) migrateRollups() error {
	h := s.t.Hourly()
	_, err := s.wdb.Exec(`
CREATE TABLE IF NOT EXISTS history_rollup (name TEXT PRIMARY KEY, watermark INTEGER, floor INTEGER) WITHOUT ROWID;
INSERT OR IGNORE INTO history_rollup (name) VALUES ('` + h + `');
CREATE TABLE IF NOT EXISTS ` + h + ` (
	Id TEXT NOT NULL, Key TEXT NOT NULL, Hour INTEGER NOT NULL,
	Count INTEGER NOT NULL, Sum REAL NOT NULL, Min REAL NOT NULL, Max REAL NOT NULL,
	FirstTime INTEGER NOT NULL, FirstSeq INTEGER NOT NULL, First REAL NOT NULL,
	LastTime INTEGER NOT NULL, LastSeq INTEGER NOT NULL, Last REAL NOT NULL,
	PRIMARY KEY (Id, Key, Hour)) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS ` + h + `_retention ON ` + h + ` (Hour);
`)
	return err
}

// rollupStatements holds the text of the roll-up statements.
type rollupStatements struct {
	// merge rolls the raw rows with TimeStamp in [?1, ?2) up into the table.
	merge string
	// mergeRow merges one row: ?1 Id, ?2 Key, ?3 Hour, ?4 value, ?5 TimeStamp, ?6 Seq.
	mergeRow string
}

func newRollupStatements(t history.Tables) rollupStatements {
	h := t.Hourly()
	// An hour's row merged with its row in the table: the assignments all read the old row.
	const onConflict = ` ON CONFLICT (Id, Key, Hour) DO UPDATE SET
		Count = Count + excluded.Count, Sum = Sum + excluded.Sum,
		Min = min(Min, excluded.Min), Max = max(Max, excluded.Max),
		FirstTime = CASE WHEN (excluded.FirstTime, excluded.FirstSeq) < (FirstTime, FirstSeq) THEN excluded.FirstTime ELSE FirstTime END,
		FirstSeq = CASE WHEN (excluded.FirstTime, excluded.FirstSeq) < (FirstTime, FirstSeq) THEN excluded.FirstSeq ELSE FirstSeq END,
		First = CASE WHEN (excluded.FirstTime, excluded.FirstSeq) < (FirstTime, FirstSeq) THEN excluded.First ELSE First END,
		LastTime = CASE WHEN (excluded.LastTime, excluded.LastSeq) > (LastTime, LastSeq) THEN excluded.LastTime ELSE LastTime END,
		LastSeq = CASE WHEN (excluded.LastTime, excluded.LastSeq) > (LastTime, LastSeq) THEN excluded.LastSeq ELSE LastSeq END,
		Last = CASE WHEN (excluded.LastTime, excluded.LastSeq) > (LastTime, LastSeq) THEN excluded.Last ELSE Last END`
	const columns = ` (Id, Key, Hour, Count, Sum, Min, Max, FirstTime, FirstSeq, First, LastTime, LastSeq, Last) `
	// ?1 and ?2 bound TimeStamp. The window gives every row of an hour its first and last.
	merge := `INSERT INTO ` + h + columns + `
		SELECT Id, Key, Hour, count(*), sum(Num), min(Num), max(Num), min(FT), min(FS), min(FV), min(LT), min(LS), min(LV)
		FROM (SELECT Id, Key, Hour, Num,
				first_value(TimeStamp) OVER w AS FT, first_value(Seq) OVER w AS FS, first_value(Num) OVER w AS FV,
				last_value(TimeStamp) OVER w AS LT, last_value(Seq) OVER w AS LS, last_value(Num) OVER w AS LV
			FROM (SELECT Id, Key, ` + binOf(strconv.FormatInt(hourNanos, 10)) + ` AS Hour, TimeStamp, Seq, Num FROM ` + t.Properties + `
				WHERE TimeStamp >= ?1 AND TimeStamp < ?2 AND RelationshipId = '' AND Num IS NOT NULL)
			WINDOW w AS (PARTITION BY Id, Key, Hour ORDER BY TimeStamp, Seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING))
		WHERE true GROUP BY Id, Key, Hour` + onConflict
	mergeRow := `INSERT INTO ` + h + columns + `VALUES (?1, ?2, ?3, 1, ?4, ?4, ?4, ?5, ?6, ?4, ?5, ?6, ?4)` + onConflict
	return rollupStatements{merge: merge, mergeRow: mergeRow}
}

// rollupBounds are the roll-ups' floor and watermark in Unix nanoseconds, Valid false while
// unset.
type rollupBounds struct {
	floor, watermark sql.NullInt64
}

type querier interface {
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

func (s *Store) readRollupBounds(ctx context.Context, q querier) (rollupBounds, error) {
	var b rollupBounds
	err := q.QueryRowContext(ctx, `SELECT floor, watermark FROM history_rollup WHERE name = ?`, s.t.Hourly()).Scan(&b.floor, &b.watermark)
	if err != nil {
		return b, fmt.Errorf("read roll-up watermark: %w", err)
	}
	return b, nil
}

// late reports whether a row at ts must be merged into the roll-ups as it is written: the
// roll-ups cover its time.
func (b rollupBounds) late(ts int64) bool {
	return b.watermark.Valid && ts < b.watermark.Int64 && (!b.floor.Valid || ts >= b.floor.Int64)
}

// times returns the bounds as times, zero while unset.
func (b rollupBounds) times() (floor, watermark time.Time) {
	if b.floor.Valid {
		floor = time.Unix(0, b.floor.Int64).UTC()
	}
	if b.watermark.Valid {
		watermark = time.Unix(0, b.watermark.Int64).UTC()
	}
	return floor, watermark
}

// mergeLate merges the row r, whose insert had the result res, with its numeric value num
// into its hour's roll-up, unless the insert ignored it as a duplicate.
func (s *Store) mergeLate(ctx context.Context, tx *sql.Tx, res sql.Result, r *history.PropertyEvent, num float64) error {
	if n, err := res.RowsAffected(); err != nil || n == 0 {
		return err
	}
	ts := r.TimeStamp.UnixNano()
	hour := history.Bin(r.TimeStamp, time.Hour).UnixNano()
	if _, err := tx.ExecContext(ctx, s.rq.mergeRow, r.ID, r.Key, hour, num, ts, int64(r.Seq)); err != nil {
		return fmt.Errorf("roll up the late row of %q (record %d): %w", r.ID, r.Seq, err)
	}
	return nil
}

// Rollup implements history.Store. A step rolls up at most Config.RollupRows raw rows (more
// only when that many share one TimeStamp).
func (s *Store) Rollup(ctx context.Context, upTo time.Time) (bool, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	done, err := s.rollup(ctx, upTo.UnixNano())
	if err != nil {
		return false, fmt.Errorf("roll up history before %s: %w", upTo.Format(time.RFC3339Nano), err)
	}
	return done, nil
}

func (s *Store) rollup(ctx context.Context, upTo int64) (done bool, err error) {
	tx, err := s.wdb.BeginTx(ctx, nil)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, tx.Rollback())
		}
	}()
	b, err := s.readRollupBounds(ctx, tx)
	if err != nil {
		return false, err
	}
	if b.watermark.Valid && b.watermark.Int64 >= upTo {
		return true, tx.Rollback()
	}
	// The step starts at the watermark (or the floor, when above: rows below it need no
	// roll-up), or at the oldest row when nothing is rolled up yet.
	lo := b.watermark
	if !lo.Valid {
		if err := tx.QueryRowContext(ctx, `SELECT min(TimeStamp) FROM `+s.t.Properties).Scan(&lo); err != nil {
			return false, fmt.Errorf("find the oldest row: %w", err)
		}
	}
	if b.floor.Valid && (!lo.Valid || lo.Int64 < b.floor.Int64) {
		lo = b.floor
	}
	hi := upTo
	if lo.Valid && lo.Int64 < upTo {
		// Bound the step: it ends at the TimeStamp of the row after the first RollupRows.
		var cut int64
		err := tx.QueryRowContext(ctx, `SELECT TimeStamp FROM `+s.t.Properties+`
			WHERE TimeStamp >= ? AND TimeStamp < ? ORDER BY TimeStamp LIMIT 1 OFFSET ?`, lo.Int64, upTo, s.cfg.RollupRows).Scan(&cut)
		switch {
		case errors.Is(err, sql.ErrNoRows):
		case err != nil:
			return false, fmt.Errorf("bound the step: %w", err)
		default:
			hi = max(cut, lo.Int64+1)
		}
		if _, err := tx.ExecContext(ctx, s.rq.merge, lo.Int64, hi); err != nil {
			return false, fmt.Errorf("merge rows from %d to %d: %w", lo.Int64, hi, err)
		}
	}
	if _, err := tx.ExecContext(ctx, `UPDATE history_rollup SET watermark = ? WHERE name = ?`, hi, s.t.Hourly()); err != nil {
		return false, fmt.Errorf("set watermark: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return false, fmt.Errorf("commit: %w", err)
	}
	return hi >= upTo, nil
}

// pruneRollups raises the floor to the whole hour at or after before, and deletes up to
// limit (-1: no limit) roll-up rows below it. It runs before any raw row before before is
// deleted, so that no roll-up that Aggregate reads ever counts a deleted row.
func (s *Store) pruneRollups(ctx context.Context, before time.Time, limit int64) (int64, error) {
	floor := history.Bin(before.Add(time.Hour-1), time.Hour).UnixNano()
	h := s.t.Hourly()
	if _, err := s.wdb.ExecContext(ctx, `UPDATE history_rollup SET floor = max(coalesce(floor, ?1), ?1) WHERE name = ?2`, floor, h); err != nil {
		return 0, fmt.Errorf("raise the roll-ups' floor: %w", err)
	}
	res, err := s.wdb.ExecContext(ctx, `DELETE FROM `+h+` WHERE (Id, Key, Hour) IN (
		SELECT Id, Key, Hour FROM `+h+` WHERE Hour < ? LIMIT ?)`, floor, limit)
	if err != nil {
		return 0, fmt.Errorf("delete roll-ups: %w", err)
	}
	return res.RowsAffected()
}

// aggregate aggregates q for the twins ids in one read transaction: the whole hours that
// the roll-ups cover from them, the rest from raw rows.
func (s *Store) aggregate(ctx context.Context, q history.Aggregation, ids []string) ([]history.Bucket, error) {
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	b, err := s.readRollupBounds(ctx, tx)
	if err != nil {
		return nil, err
	}
	floor, watermark := b.times()
	lo, hi := history.RollupSpan(q, floor, watermark)
	in := `Id IN (?` + strings.Repeat(",?", len(ids)-1) + `)`
	var m history.Merger
	width := q.Interval.Nanoseconds()
	if lo.Before(hi) {
		args := []any{q.Key}
		for _, id := range ids {
			args = append(args, id)
		}
		args = append(args, lo.UnixNano(), hi.UnixNano())
		rows, err := tx.QueryContext(ctx, `SELECT Id, Hour, Count, Sum, Min, Max, FirstTime, FirstSeq, First, LastTime, LastSeq, Last
			FROM `+s.t.Hourly()+` WHERE Key = ? AND `+in+` AND Hour >= ? AND Hour < ?`, args...)
		if err != nil {
			return nil, fmt.Errorf("read roll-ups: %w", err)
		}
		if err := scanPartials(rows, &m, width); err != nil {
			return nil, fmt.Errorf("read roll-ups: %w", err)
		}
	}
	for _, span := range history.RawSpans(q, lo, hi) {
		args := []any{width, q.Key}
		for _, id := range ids {
			args = append(args, id)
		}
		args = append(args, span[0].UnixNano(), span[1].UnixNano())
		// ?1 is the width; the rows of one bucket are (Id, B).
		raw := `SELECT Id, ` + binOf("?1") + ` AS B, TimeStamp, Seq, Num FROM ` + s.t.Properties + `
			WHERE Key = ? AND RelationshipId = '' AND ` + in + ` AND TimeStamp >= ? AND TimeStamp < ? AND Num IS NOT NULL`
		query := `SELECT Id, B, count(*), sum(Num), min(Num), max(Num), 0, 0, 0, 0, 0, 0 FROM (` + raw + `) GROUP BY Id, B`
		if !q.NoEdges {
			query = `SELECT Id, B, count(*), sum(Num), min(Num), max(Num), min(FT), min(FS), min(FV), min(LT), min(LS), min(LV)
				FROM (SELECT Id, B, Num,
						first_value(TimeStamp) OVER w AS FT, first_value(Seq) OVER w AS FS, first_value(Num) OVER w AS FV,
						last_value(TimeStamp) OVER w AS LT, last_value(Seq) OVER w AS LS, last_value(Num) OVER w AS LV
					FROM (` + raw + `)
					WINDOW w AS (PARTITION BY Id, B ORDER BY TimeStamp, Seq ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING))
				GROUP BY Id, B`
		}
		rows, err := tx.QueryContext(ctx, query, args...)
		if err != nil {
			return nil, fmt.Errorf("aggregate raw rows: %w", err)
		}
		if err := scanPartials(rows, &m, width); err != nil {
			return nil, fmt.Errorf("aggregate raw rows: %w", err)
		}
	}
	return m.Buckets(), nil
}

// scanPartials adds to m the partials rows yields as (Id, start, Count, Sum, Min, Max,
// FirstTime, FirstSeq, First, LastTime, LastSeq, Last), each in the bucket of width that
// holds its start, and closes rows.
func scanPartials(rows *sql.Rows, m *history.Merger, width int64) error {
	defer rows.Close()
	for rows.Next() {
		var (
			p             history.Partial
			start, ft, lt int64
			fs, ls        int64
		)
		if err := rows.Scan(&p.ID, &start, &p.Count, &p.Sum, &p.Min, &p.Max, &ft, &fs, &p.First.Value, &lt, &ls, &p.Last.Value); err != nil {
			return err
		}
		p.Start = history.Bin(time.Unix(0, start), time.Duration(width))
		p.First.TimeStamp, p.First.Seq = time.Unix(0, ft), uint64(fs)
		p.Last.TimeStamp, p.Last.Seq = time.Unix(0, lt), uint64(ls)
		m.Add(p)
	}
	return errors.Join(rows.Err(), rows.Close())
}
