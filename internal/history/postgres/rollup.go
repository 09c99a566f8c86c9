package postgres

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/history"
)

// DefaultRollupRows is the default of Config.RollupRows.
const DefaultRollupRows = 10_000

// epoch is the origin of date_bin's buckets: the Unix epoch.
const epoch = `TIMESTAMPTZ '1970-01-01 00:00:00+00'`

// migrateRollups creates, in tx, the roll-up table and its bounds. The table holds one row
// per ("Id", "Key", "Hour") with the count, sum, minimum and maximum of the hour's numeric
// values and its first and last values with their "TimeStamp" and "Seq". history_rollup
// holds, by roll-up table, the watermark and the floor (NULL while unset): the roll-ups
// cover the raw rows with "TimeStamp" in [floor, watermark). An index on "TimeStamp" lets
// a roll-up step find where to stop.
func (s *Store) migrateRollups(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `
CREATE TABLE IF NOT EXISTS `+s.bounds+` (name text COLLATE "C" PRIMARY KEY, watermark timestamptz, floor timestamptz);
CREATE TABLE IF NOT EXISTS `+s.hourly+` (
	"Id" text COLLATE "C" NOT NULL,
	"Key" text COLLATE "C" NOT NULL,
	"Hour" timestamptz NOT NULL,
	"Count" bigint NOT NULL,
	"Sum" double precision NOT NULL,
	"Min" double precision NOT NULL,
	"Max" double precision NOT NULL,
	"FirstTime" timestamptz NOT NULL,
	"FirstSeq" bigint NOT NULL,
	"First" double precision NOT NULL,
	"LastTime" timestamptz NOT NULL,
	"LastSeq" bigint NOT NULL,
	"Last" double precision NOT NULL,
	PRIMARY KEY ("Id", "Key", "Hour"));
CREATE INDEX IF NOT EXISTS `+quote(s.t.Hourly()+"_retention")+` ON `+s.hourly+` ("Hour");
CREATE INDEX IF NOT EXISTS `+quote(s.t.Properties+"_by_timestamp")+` ON `+s.prop+` ("TimeStamp");
`)
	if err != nil {
		return err
	}
	if _, err := tx.Exec(ctx, `INSERT INTO `+s.bounds+` (name) VALUES ($1) ON CONFLICT (name) DO NOTHING`, s.t.Hourly()); err != nil {
		return fmt.Errorf("create roll-up watermark: %w", err)
	}
	return nil
}

// onConflict merges an hour's new row with its row in the table.
const onConflict = ` ON CONFLICT ("Id", "Key", "Hour") DO UPDATE SET
	"Count" = h."Count" + excluded."Count", "Sum" = h."Sum" + excluded."Sum",
	"Min" = least(h."Min", excluded."Min"), "Max" = greatest(h."Max", excluded."Max"),
	"FirstTime" = CASE WHEN (excluded."FirstTime", excluded."FirstSeq") < (h."FirstTime", h."FirstSeq") THEN excluded."FirstTime" ELSE h."FirstTime" END,
	"FirstSeq" = CASE WHEN (excluded."FirstTime", excluded."FirstSeq") < (h."FirstTime", h."FirstSeq") THEN excluded."FirstSeq" ELSE h."FirstSeq" END,
	"First" = CASE WHEN (excluded."FirstTime", excluded."FirstSeq") < (h."FirstTime", h."FirstSeq") THEN excluded."First" ELSE h."First" END,
	"LastTime" = CASE WHEN (excluded."LastTime", excluded."LastSeq") > (h."LastTime", h."LastSeq") THEN excluded."LastTime" ELSE h."LastTime" END,
	"LastSeq" = CASE WHEN (excluded."LastTime", excluded."LastSeq") > (h."LastTime", h."LastSeq") THEN excluded."LastSeq" ELSE h."LastSeq" END,
	"Last" = CASE WHEN (excluded."LastTime", excluded."LastSeq") > (h."LastTime", h."LastSeq") THEN excluded."Last" ELSE h."Last" END`

const hourlyColumns = ` ("Id", "Key", "Hour", "Count", "Sum", "Min", "Max", "FirstTime", "FirstSeq", "First", "LastTime", "LastSeq", "Last") `

// mergeSQL rolls the raw rows with "TimeStamp" in [$1, $2) up into the table. The window
// gives every row of an hour its first and last.
func (s *Store) mergeSQL() string {
	return `INSERT INTO ` + s.hourly + ` AS h` + hourlyColumns + `
		SELECT "Id", "Key", "Hour", count(*), sum("Num"), min("Num"), max("Num"),
			min("FT"), min("FS"), min("FV"), min("LT"), min("LS"), min("LV")
		FROM (SELECT "Id", "Key", "Hour", "Num",
				first_value("TimeStamp") OVER w AS "FT", first_value("Seq") OVER w AS "FS", first_value("Num") OVER w AS "FV",
				last_value("TimeStamp") OVER w AS "LT", last_value("Seq") OVER w AS "LS", last_value("Num") OVER w AS "LV"
			FROM (SELECT "Id", "Key", date_bin('1 hour', "TimeStamp", ` + epoch + `) AS "Hour", "TimeStamp", "Seq", "Num" FROM ` + s.prop + `
				WHERE "TimeStamp" >= $1 AND "TimeStamp" < $2 AND "RelationshipId" = '' AND "Num" IS NOT NULL) r
			WINDOW w AS (PARTITION BY "Id", "Key", "Hour" ORDER BY "TimeStamp", "Seq" ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)) e
		GROUP BY "Id", "Key", "Hour"` + onConflict
}

// mergeRowSQL merges one row: $1 Id, $2 Key, $3 Hour, $4 value, $5 TimeStamp, $6 Seq.
func (s *Store) mergeRowSQL() string {
	return `INSERT INTO ` + s.hourly + ` AS h` + hourlyColumns + `VALUES ($1, $2, $3, 1, $4, $4, $4, $5, $6, $4, $5, $6, $4)` + onConflict
}

// rollupBounds are the roll-ups' floor and watermark, nil while unset.
type rollupBounds struct {
	floor, watermark *time.Time
}

// readRollupBounds reads the bounds in tx, locking them against other writers when lock is
// set.
func (s *Store) readRollupBounds(ctx context.Context, tx pgx.Tx, lock bool) (rollupBounds, error) {
	var b rollupBounds
	q := `SELECT floor, watermark FROM ` + s.bounds + ` WHERE name = $1`
	if lock {
		q += ` FOR UPDATE`
	}
	if err := tx.QueryRow(ctx, q, s.t.Hourly()).Scan(&b.floor, &b.watermark); err != nil {
		return b, fmt.Errorf("read roll-up watermark: %w", err)
	}
	return b, nil
}

// late reports whether a row at ts must be merged into the roll-ups as it is written: the
// roll-ups cover its time.
func (b rollupBounds) late(ts time.Time) bool {
	return b.watermark != nil && ts.Before(*b.watermark) && (b.floor == nil || !ts.Before(*b.floor))
}

// times returns the bounds, zero while unset.
func (b rollupBounds) times() (floor, watermark time.Time) {
	if b.floor != nil {
		floor = b.floor.UTC()
	}
	if b.watermark != nil {
		watermark = b.watermark.UTC()
	}
	return floor, watermark
}

// Rollup implements history.Store. A step rolls up at most Config.RollupRows raw rows (more
// only when that many share one TimeStamp); upTo is taken to the microsecond.
func (s *Store) Rollup(ctx context.Context, upTo time.Time) (bool, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	upTo = upTo.Truncate(time.Microsecond)
	var done bool
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		b, err := s.readRollupBounds(ctx, tx, true)
		if err != nil {
			return err
		}
		if b.watermark != nil && !b.watermark.Before(upTo) {
			done = true
			return nil
		}
		// The step starts at the watermark (or the floor, when above: rows below it need no
		// roll-up), or at the oldest row when nothing is rolled up yet.
		lo := b.watermark
		if lo == nil {
			if err := tx.QueryRow(ctx, `SELECT min("TimeStamp") FROM `+s.prop).Scan(&lo); err != nil {
				return fmt.Errorf("find the oldest row: %w", err)
			}
		}
		if b.floor != nil && (lo == nil || lo.Before(*b.floor)) {
			lo = b.floor
		}
		hi := upTo
		if lo != nil && lo.Before(upTo) {
			// Bound the step: it ends at the TimeStamp of the row after the first RollupRows.
			var cut time.Time
			err := tx.QueryRow(ctx, `SELECT "TimeStamp" FROM `+s.prop+` WHERE "TimeStamp" >= $1 AND "TimeStamp" < $2
				ORDER BY "TimeStamp" OFFSET $3 LIMIT 1`, *lo, upTo, s.rollupRows).Scan(&cut)
			switch {
			case errors.Is(err, pgx.ErrNoRows):
			case err != nil:
				return fmt.Errorf("bound the step: %w", err)
			default:
				hi = cut
				if !hi.After(*lo) {
					hi = lo.Add(time.Microsecond)
				}
			}
			if _, err := tx.Exec(ctx, s.mergeSQL(), *lo, hi); err != nil {
				return fmt.Errorf("merge rows from %s to %s: %w", lo.Format(time.RFC3339Nano), hi.Format(time.RFC3339Nano), err)
			}
		}
		if _, err := tx.Exec(ctx, `UPDATE `+s.bounds+` SET watermark = $2 WHERE name = $1`, s.t.Hourly(), hi); err != nil {
			return fmt.Errorf("set watermark: %w", err)
		}
		done = !hi.Before(upTo)
		return nil
	})
	if err != nil {
		return false, fmt.Errorf("roll up history before %s: %w", upTo.Format(time.RFC3339Nano), err)
	}
	return done, nil
}

// lateRow is a row Write inserts below the watermark, to merge into the roll-ups.
type lateRow struct {
	id, key string
	ts      time.Time
	seq     int64
	value   float64
}

// mergeLate merges rows into the roll-ups in tx.
func (s *Store) mergeLate(ctx context.Context, tx pgx.Tx, rows []lateRow) error {
	if len(rows) == 0 {
		return nil
	}
	var batch pgx.Batch
	q := s.mergeRowSQL()
	for _, r := range rows {
		batch.Queue(q, r.id, r.key, history.Bin(r.ts, time.Hour), r.value, r.ts, r.seq)
	}
	if err := tx.SendBatch(ctx, &batch).Close(); err != nil {
		return fmt.Errorf("roll up %d late rows: %w", len(rows), err)
	}
	return nil
}

// pruneRollups raises the floor to the whole hour at or after before, and deletes up to
// limit (nil: no limit) roll-up rows below it. It commits before any raw row before before
// is deleted, so that no roll-up that Aggregate reads ever counts a deleted row.
func (s *Store) pruneRollups(ctx context.Context, before time.Time, limit any) (int64, error) {
	floor := history.Bin(before.Add(time.Hour-1), time.Hour)
	if _, err := s.pool.Exec(ctx, `UPDATE `+s.bounds+` SET floor = greatest(floor, $2) WHERE name = $1`, s.t.Hourly(), floor); err != nil {
		return 0, fmt.Errorf("raise the roll-ups' floor: %w", err)
	}
	tag, err := s.pool.Exec(ctx, `DELETE FROM `+s.hourly+` WHERE ("Id", "Key", "Hour") IN (
		SELECT "Id", "Key", "Hour" FROM `+s.hourly+` WHERE "Hour" < $1 LIMIT $2)`, floor, limit)
	if err != nil {
		return 0, fmt.Errorf("delete roll-ups: %w", err)
	}
	return tag.RowsAffected(), nil
}

// aggregate aggregates q in one snapshot: the whole hours that the roll-ups cover from
// them, the rest from raw rows.
func (s *Store) aggregate(ctx context.Context, tx pgx.Tx, q history.Aggregation) ([]history.Bucket, error) {
	b, err := s.readRollupBounds(ctx, tx, false)
	if err != nil {
		return nil, err
	}
	floor, watermark := b.times()
	lo, hi := history.RollupSpan(q, floor, watermark)
	var m history.Merger
	if lo.Before(hi) {
		rows, _ := tx.Query(ctx, `SELECT "Id", "Hour", "Count", "Sum", "Min", "Max", "FirstTime", "FirstSeq", "First",
			"LastTime", "LastSeq", "Last" FROM `+s.hourly+` WHERE "Id" = ANY($1) AND "Key" = $2 AND "Hour" >= $3 AND "Hour" < $4`,
			q.IDs, q.Key, lo, hi)
		var (
			p      history.Partial
			fs, ls int64
		)
		_, err := pgx.ForEachRow(rows, []any{&p.ID, &p.Start, &p.Count, &p.Sum, &p.Min, &p.Max, &p.First.TimeStamp, &fs,
			&p.First.Value, &p.Last.TimeStamp, &ls, &p.Last.Value}, func() error {
			p.Start = history.Bin(p.Start, q.Interval)
			p.First.Seq, p.Last.Seq = uint64(fs), uint64(ls)
			m.Add(p)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("read roll-ups: %w", err)
		}
	}
	// The edges are the least and greatest [microseconds since the epoch, Seq, Num]: both
	// are integers that a double holds exactly.
	edges := `min(ARRAY[(extract(epoch FROM "TimeStamp") * 1000000)::float8, "Seq"::float8, "Num"]),
		max(ARRAY[(extract(epoch FROM "TimeStamp") * 1000000)::float8, "Seq"::float8, "Num"])`
	if q.NoEdges {
		edges = `NULL::float8[], NULL::float8[]`
	}
	for _, span := range history.RawSpans(q, lo, hi) {
		rows, _ := tx.Query(ctx, `SELECT "Id", date_bin($1, "TimeStamp", `+epoch+`) AS b, count(*), sum("Num"), min("Num"), max("Num"), `+edges+`
			FROM `+s.prop+` WHERE "Id" = ANY($2) AND "Key" = $3 AND "RelationshipId" = '' AND "TimeStamp" >= $4 AND "TimeStamp" < $5
			AND "Num" IS NOT NULL GROUP BY "Id", b`,
			q.Interval.Truncate(time.Microsecond), q.IDs, q.Key, span[0], span[1])
		var (
			p           history.Partial
			first, last []float64
		)
		_, err := pgx.ForEachRow(rows, []any{&p.ID, &p.Start, &p.Count, &p.Sum, &p.Min, &p.Max, &first, &last}, func() error {
			p.First, p.Last = edgeOf(first), edgeOf(last)
			m.Add(p)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("aggregate raw rows: %w", err)
		}
	}
	return m.Buckets(), nil
}

// edgeOf returns the edge of a [microseconds, Seq, Num] array; the zero edge for none.
func edgeOf(a []float64) history.Edge {
	if len(a) != 3 {
		return history.Edge{}
	}
	return history.Edge{TimeStamp: time.UnixMicro(int64(a[0])), Seq: uint64(a[1]), Value: a[2]}
}
