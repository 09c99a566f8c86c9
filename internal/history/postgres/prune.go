package postgres

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/history"
)

// Prune implements history.Store. Rows are prunable as in the contract: among rows older
// than before,
//   - a property row when a newer row of the same property, also older than before, or the
//     deletion of its twin or relationship before before supersedes it;
//   - a lifecycle row when a newer lifecycle row of the same entity older than before
//     supersedes it, or when it is the deletion and no property row of the entity before it
//     is left;
//   - every telemetry row.
//
// First, the roll-ups' floor rises and the roll-ups below it go (see pruneRollups). Then
// each day wholly before before whose partitions (of all the tables) hold only
// prunable rows is dropped, partitions and all, however many rows that is. Then up to max
// prunable rows are deleted one by one from what is left, and partitions wholly before
// before that this leaves empty are dropped.
func (s *Store) Prune(ctx context.Context, before time.Time, max int) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	before = before.Truncate(time.Microsecond)
	var limit any // NULL: no limit
	budget := int64(max)
	if max > 0 {
		limit = budget
	}
	n, err := s.pruneRollups(ctx, before, limit)
	if err != nil {
		return 0, fmt.Errorf("prune history roll-ups before %s: %w", before.Format(time.RFC3339), err)
	}
	if max > 0 {
		budget -= n
		limit = budget
	}
	dropped, err := s.dropPrunableDays(ctx, before)
	total := int(n) + dropped
	if err != nil {
		return total, fmt.Errorf("prune history before %s: %w", before.Format(time.RFC3339), err)
	}
	for _, st := range s.pruneStatements() {
		if max > 0 && budget <= 0 {
			break
		}
		tag, err := s.pool.Exec(ctx, st.sql, before, limit)
		if err != nil {
			return total, fmt.Errorf("prune history %s before %s: %w", st.what, before.Format(time.RFC3339), err)
		}
		total += int(tag.RowsAffected())
		if max > 0 {
			budget -= tag.RowsAffected()
			limit = budget
		}
	}
	if err := s.dropEmptyPartitions(ctx, before); err != nil {
		return total, fmt.Errorf("prune history before %s: %w", before.Format(time.RFC3339), err)
	}
	return total, nil
}

// pruneStatements returns the row-by-row deletes of prunable rows: $1 is the cut, $2 the
// limit (NULL for none).
func (s *Store) pruneStatements() []struct{ what, sql string } {
	p, tw, r := s.prop, s.twin, s.rel
	return []struct{ what, sql string }{
		{"property rows", `DELETE FROM ` + p + ` WHERE "TimeStamp" < $1 AND ("Id", "Key", "RelationshipId", "Seq") IN (
			SELECT "Id", "Key", "RelationshipId", "Seq" FROM ` + p + ` AS o WHERE o."TimeStamp" < $1 AND (
				EXISTS (SELECT 1 FROM ` + p + ` n WHERE n."Id" = o."Id" AND n."Key" = o."Key"
					AND n."RelationshipId" = o."RelationshipId" AND n."TimeStamp" < $1 AND n."Seq" > o."Seq")
				OR (o."RelationshipId" = '' AND EXISTS (SELECT 1 FROM ` + tw + ` d WHERE d."TwinId" = o."Id"
					AND d."Seq" > o."Seq" AND d."Action" = 'Delete' AND d."TimeStamp" < $1))
				OR (o."RelationshipId" <> '' AND EXISTS (SELECT 1 FROM ` + r + ` d WHERE d."Source" = o."Id"
					AND d."RelationshipId" = o."RelationshipId" AND d."Seq" > o."Seq" AND d."Action" = 'Delete' AND d."TimeStamp" < $1)))
			LIMIT $2)`},
		{"twin lifecycle rows", `DELETE FROM ` + tw + ` WHERE "TimeStamp" < $1 AND ("TwinId", "Seq") IN (
			SELECT "TwinId", "Seq" FROM ` + tw + ` AS o WHERE o."TimeStamp" < $1 AND (
				EXISTS (SELECT 1 FROM ` + tw + ` n WHERE n."TwinId" = o."TwinId" AND n."Seq" > o."Seq" AND n."TimeStamp" < $1)
				OR (o."Action" = 'Delete' AND NOT EXISTS (SELECT 1 FROM ` + p + ` q WHERE q."Id" = o."TwinId"
					AND q."RelationshipId" = '' AND q."Seq" < o."Seq")))
			LIMIT $2)`},
		{"relationship lifecycle rows", `DELETE FROM ` + r + ` WHERE "TimeStamp" < $1 AND ("Source", "RelationshipId", "Seq") IN (
			SELECT "Source", "RelationshipId", "Seq" FROM ` + r + ` AS o WHERE o."TimeStamp" < $1 AND (
				EXISTS (SELECT 1 FROM ` + r + ` n WHERE n."Source" = o."Source" AND n."RelationshipId" = o."RelationshipId"
					AND n."Seq" > o."Seq" AND n."TimeStamp" < $1)
				OR (o."Action" = 'Delete' AND NOT EXISTS (SELECT 1 FROM ` + p + ` q WHERE q."Id" = o."Source"
					AND q."RelationshipId" = o."RelationshipId" AND q."Seq" < o."Seq")))
			LIMIT $2)`},
		// One telemetry row per log record: Seq tells them apart.
		{"telemetry rows", `DELETE FROM ` + s.tele + ` WHERE "TimeStamp" < $1 AND "Seq" IN (
			SELECT "Seq" FROM ` + s.tele + ` WHERE "TimeStamp" < $1 LIMIT $2)`},
		// One anomaly row per log record, too.
		{"anomaly rows", `DELETE FROM ` + s.anom + ` WHERE "TimeStamp" < $1 AND "Seq" IN (
			SELECT "Seq" FROM ` + s.anom + ` WHERE "TimeStamp" < $1 LIMIT $2)`},
	}
}

// Partitions returns the days that have a partition in any of the three tables, oldest
// first.
func (s *Store) Partitions(ctx context.Context) ([]time.Time, error) {
	parts, err := s.partitions(ctx)
	if err != nil {
		return nil, fmt.Errorf("list history partitions: %w", err)
	}
	var days []time.Time
	for d := range parts {
		days = append(days, d)
	}
	slices.SortFunc(days, func(a, b time.Time) int { return a.Compare(b) })
	return days, nil
}

// partitions maps each day that has a partition to the names of its partitions, by table.
func (s *Store) partitions(ctx context.Context) (map[time.Time]map[string]string, error) {
	out := map[time.Time]map[string]string{}
	for _, table := range s.tables() {
		rows, _ := s.pool.Query(ctx, `SELECT c.relname::text FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
			WHERE i.inhparent = $1::regclass`, qualify(s.schema, table))
		names, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return nil, fmt.Errorf("list partitions of %s: %w", table, err)
		}
		for _, n := range names {
			if d, ok := partitionDay(table, n); ok {
				if out[d] == nil {
					out[d] = map[string]string{}
				}
				out[d][table] = n
			}
		}
	}
	return out, nil
}

// oldDays returns the days with partitions that end at or before before, oldest first.
func (s *Store) oldDays(ctx context.Context, before time.Time) ([]time.Time, map[time.Time]map[string]string, error) {
	parts, err := s.partitions(ctx)
	if err != nil {
		return nil, nil, err
	}
	var days []time.Time
	for d := range parts {
		if !d.Add(day).After(before) {
			days = append(days, d)
		}
	}
	slices.SortFunc(days, func(a, b time.Time) int { return a.Compare(b) })
	return days, parts, nil
}

// dropPrunableDays drops the partitions of each day wholly before before in which every row
// is prunable, and returns how many rows they held.
func (s *Store) dropPrunableDays(ctx context.Context, before time.Time) (int, error) {
	days, parts, err := s.oldDays(ctx, before)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, d := range days {
		names := parts[d]
		n := 0
		err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockKey); err != nil {
				return fmt.Errorf("lock schema: %w", err)
			}
			keep, err := s.keepsRows(ctx, tx, names, d, before)
			if err != nil || keep {
				return err
			}
			for _, table := range s.tables() {
				name, ok := names[table]
				if !ok {
					continue
				}
				var rows int64
				if err := tx.QueryRow(ctx, `SELECT count(*) FROM `+qualify(s.schema, name)).Scan(&rows); err != nil {
					return fmt.Errorf("count rows of %s: %w", name, err)
				}
				if _, err := tx.Exec(ctx, `DROP TABLE `+qualify(s.schema, name)); err != nil {
					return fmt.Errorf("drop partition %s: %w", name, err)
				}
				n += int(rows)
			}
			return nil
		})
		if err != nil {
			return total, fmt.Errorf("prune day %s: %w", d.Format(time.DateOnly), err)
		}
		for _, name := range names {
			delete(s.parts, name)
		}
		total += n
	}
	return total, nil
}

// keepsRows reports whether a row of the day d's partitions (names, by table) is not
// prunable at before. Rows of one entity in one partition are superseded by its newest one
// there, so only the newest is checked; property rows of the day itself do not keep its
// deletion, since they go with it.
func (s *Store) keepsRows(ctx context.Context, tx pgx.Tx, names map[string]string, d, before time.Time) (bool, error) {
	p, tw, r := s.prop, s.twin, s.rel
	type check struct {
		sql  string
		args []any
	}
	var checks []check
	if n, ok := names[s.t.Properties]; ok {
		checks = append(checks, check{`SELECT 1 FROM (SELECT "Id", "Key", "RelationshipId", max("Seq") AS "Seq" FROM ` +
			qualify(s.schema, n) + ` GROUP BY "Id", "Key", "RelationshipId") o
			WHERE NOT EXISTS (SELECT 1 FROM ` + p + ` n WHERE n."Id" = o."Id" AND n."Key" = o."Key"
					AND n."RelationshipId" = o."RelationshipId" AND n."TimeStamp" < $1 AND n."Seq" > o."Seq")
				AND NOT (o."RelationshipId" = '' AND EXISTS (SELECT 1 FROM ` + tw + ` d WHERE d."TwinId" = o."Id"
					AND d."Seq" > o."Seq" AND d."Action" = 'Delete' AND d."TimeStamp" < $1))
				AND NOT (o."RelationshipId" <> '' AND EXISTS (SELECT 1 FROM ` + r + ` d WHERE d."Source" = o."Id"
					AND d."RelationshipId" = o."RelationshipId" AND d."Seq" > o."Seq" AND d."Action" = 'Delete' AND d."TimeStamp" < $1))`, []any{before}})
	}
	if n, ok := names[s.t.TwinLifecycle]; ok {
		checks = append(checks, check{`SELECT 1 FROM (SELECT DISTINCT ON ("TwinId") "TwinId", "Seq", "Action" FROM ` +
			qualify(s.schema, n) + ` ORDER BY "TwinId", "Seq" DESC) o
			WHERE NOT EXISTS (SELECT 1 FROM ` + tw + ` n WHERE n."TwinId" = o."TwinId" AND n."Seq" > o."Seq" AND n."TimeStamp" < $1)
				AND NOT (o."Action" = 'Delete' AND NOT EXISTS (SELECT 1 FROM ` + p + ` q WHERE q."Id" = o."TwinId"
					AND q."RelationshipId" = '' AND q."Seq" < o."Seq" AND NOT (q."TimeStamp" >= $2 AND q."TimeStamp" < $3)))`,
			[]any{before, d, d.Add(day)}})
	}
	if n, ok := names[s.t.RelationshipLifecycle]; ok {
		checks = append(checks, check{`SELECT 1 FROM (SELECT DISTINCT ON ("Source", "RelationshipId") "Source", "RelationshipId", "Seq", "Action" FROM ` +
			qualify(s.schema, n) + ` ORDER BY "Source", "RelationshipId", "Seq" DESC) o
			WHERE NOT EXISTS (SELECT 1 FROM ` + r + ` n WHERE n."Source" = o."Source" AND n."RelationshipId" = o."RelationshipId"
					AND n."Seq" > o."Seq" AND n."TimeStamp" < $1)
				AND NOT (o."Action" = 'Delete' AND NOT EXISTS (SELECT 1 FROM ` + p + ` q WHERE q."Id" = o."Source"
					AND q."RelationshipId" = o."RelationshipId" AND q."Seq" < o."Seq" AND NOT (q."TimeStamp" >= $2 AND q."TimeStamp" < $3)))`,
			[]any{before, d, d.Add(day)}})
	}
	for _, c := range checks {
		var keep bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (`+c.sql+`)`, c.args...).Scan(&keep); err != nil {
			return false, fmt.Errorf("look for rows to keep: %w", err)
		}
		if keep {
			return true, nil
		}
	}
	return false, nil
}

// dropEmptyPartitions drops the empty partitions that end at or before before.
func (s *Store) dropEmptyPartitions(ctx context.Context, before time.Time) error {
	days, parts, err := s.oldDays(ctx, before)
	if err != nil {
		return err
	}
	for _, d := range days {
		for _, name := range parts[d] {
			err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
				if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, s.lockKey); err != nil {
					return fmt.Errorf("lock schema: %w", err)
				}
				var rows bool
				if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM `+qualify(s.schema, name)+`)`).Scan(&rows); err != nil {
					return fmt.Errorf("look into %s: %w", name, err)
				}
				if rows {
					return nil
				}
				if _, err := tx.Exec(ctx, `DROP TABLE `+qualify(s.schema, name)); err != nil {
					return fmt.Errorf("drop partition %s: %w", name, err)
				}
				return nil
			})
			if err != nil {
				return err
			}
			delete(s.parts, name)
		}
	}
	return nil
}

// Stats implements history.Store. Bytes counts every partition with its indexes and TOAST.
func (s *Store) Stats(ctx context.Context) (history.Stats, error) {
	var st history.Stats
	for _, name := range append(s.tables(), s.t.Hourly()) {
		var n, size int64
		if err := s.pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM `+qualify(s.schema, name)+`),
			(SELECT coalesce(sum(pg_total_relation_size(relid)), 0)::bigint FROM pg_partition_tree($1::regclass))`,
			qualify(s.schema, name)).Scan(&n, &size); err != nil {
			return history.Stats{}, fmt.Errorf("size %s: %w", name, err)
		}
		st.Tables = append(st.Tables, history.TableStats{Name: name, Rows: n})
		st.Bytes += size
	}
	var err error
	if st.Cursor, err = s.Cursor(ctx); err != nil {
		return history.Stats{}, err
	}
	err = pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{AccessMode: pgx.ReadOnly}, func(tx pgx.Tx) error {
		b, err := s.readRollupBounds(ctx, tx, false)
		_, st.RolledUpTo = b.times()
		return err
	})
	if err != nil {
		return history.Stats{}, fmt.Errorf("read history roll-ups' watermark: %w", err)
	}
	return st, nil
}
