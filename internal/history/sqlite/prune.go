package sqlite

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/twinflow/twinflow/internal/history"
)

// Prune implements history.Store. It deletes, among rows older than before:
//   - a property row when a newer row of the same property, also older than before, or the
//     deletion of its twin or relationship before before supersedes it;
//   - a lifecycle row when a newer lifecycle row of the same entity older than before
//     supersedes it, or when it is the deletion and no property row of the entity before it
//     is left;
//   - every telemetry row.
//
// So Past at any time at or after before gives what it gave before the prune. First, it
// drops the checkpoints older than the newest at or before before (see pruneCheckpoints),
// then raises the roll-ups' floor and deletes the roll-ups below it (see pruneRollups).
func (s *Store) Prune(ctx context.Context, before time.Time, max int) (int, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	limit := int64(-1)
	if max > 0 {
		limit = int64(max)
	}
	b := before.UnixNano()
	p, tw, r, te, an := s.t.Properties, s.t.TwinLifecycle, s.t.RelationshipLifecycle, s.t.Telemetry, s.t.Anomalies
	stmts := []struct {
		what, sql string
		args      func(limit int64) []any
	}{
		{"property rows", `DELETE FROM ` + p + ` WHERE rowid IN (
			SELECT rowid FROM ` + p + ` AS o WHERE o.TimeStamp < ?1 AND (
				EXISTS (SELECT 1 FROM ` + p + ` n WHERE n.Id = o.Id AND n.RelationshipId = o.RelationshipId
					AND n.Key = o.Key AND n.TimeStamp < ?1 AND n.Seq > o.Seq)
				OR (o.RelationshipId = '' AND EXISTS (SELECT 1 FROM ` + tw + ` d WHERE d.TwinId = o.Id
					AND d.Seq > o.Seq AND d.Action = 'Delete' AND d.TimeStamp < ?1))
				OR (o.RelationshipId <> '' AND EXISTS (SELECT 1 FROM ` + r + ` d WHERE d.Source = o.Id
					AND d.RelationshipId = o.RelationshipId AND d.Seq > o.Seq AND d.Action = 'Delete' AND d.TimeStamp < ?1)))
			LIMIT ?2)`, func(l int64) []any { return []any{b, l} }},
		{"twin lifecycle rows", `DELETE FROM ` + tw + ` WHERE (TwinId, Seq) IN (
			SELECT TwinId, Seq FROM ` + tw + ` AS o WHERE o.TimeStamp < ?1 AND (
				EXISTS (SELECT 1 FROM ` + tw + ` n WHERE n.TwinId = o.TwinId AND n.Seq > o.Seq AND n.TimeStamp < ?1)
				OR (o.Action = 'Delete' AND NOT EXISTS (SELECT 1 FROM ` + p + ` q WHERE q.Id = o.TwinId
					AND q.RelationshipId = '' AND q.Seq < o.Seq)))
			LIMIT ?2)`, func(l int64) []any { return []any{b, l} }},
		{"relationship lifecycle rows", `DELETE FROM ` + r + ` WHERE (Source, RelationshipId, Seq) IN (
			SELECT Source, RelationshipId, Seq FROM ` + r + ` AS o WHERE o.TimeStamp < ?1 AND (
				EXISTS (SELECT 1 FROM ` + r + ` n WHERE n.Source = o.Source AND n.RelationshipId = o.RelationshipId
					AND n.Seq > o.Seq AND n.TimeStamp < ?1)
				OR (o.Action = 'Delete' AND NOT EXISTS (SELECT 1 FROM ` + p + ` q WHERE q.Id = o.Source
					AND q.RelationshipId = o.RelationshipId AND q.Seq < o.Seq)))
			LIMIT ?2)`, func(l int64) []any { return []any{b, l} }},
		{"telemetry rows", `DELETE FROM ` + te + ` WHERE (Id, TimeStamp, Seq) IN (
			SELECT Id, TimeStamp, Seq FROM ` + te + ` WHERE TimeStamp < ?1 LIMIT ?2)`, func(l int64) []any { return []any{b, l} }},
		{"anomaly rows", `DELETE FROM ` + an + ` WHERE (Id, Seq) IN (
			SELECT Id, Seq FROM ` + an + ` WHERE TimeStamp < ?1 LIMIT ?2)`, func(l int64) []any { return []any{b, l} }},
	}
	if err := s.pruneCheckpoints(ctx, b); err != nil {
		return 0, fmt.Errorf("prune history checkpoints before %s: %w", before.Format(time.RFC3339), err)
	}
	n, err := s.pruneRollups(ctx, before, limit)
	if err != nil {
		return 0, fmt.Errorf("prune history roll-ups before %s: %w", before.Format(time.RFC3339), err)
	}
	total := int(n)
	if limit > 0 {
		limit -= n
	}
	for _, st := range stmts {
		if limit == 0 {
			break
		}
		res, err := s.wdb.ExecContext(ctx, st.sql, st.args(limit)...)
		if err != nil {
			return total, fmt.Errorf("prune history %s before %s: %w", st.what, before.Format(time.RFC3339), err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, fmt.Errorf("prune history %s: %w", st.what, err)
		}
		total += int(n)
		if limit > 0 {
			limit -= n
		}
	}
	return total, nil
}

// Stats implements history.Store. Bytes counts the database file and its write-ahead log.
func (s *Store) Stats(ctx context.Context) (history.Stats, error) {
	var st history.Stats
	for _, name := range []string{s.t.Properties, s.t.TwinLifecycle, s.t.RelationshipLifecycle, s.t.Telemetry, s.t.Anomalies, s.t.Hourly()} {
		var n int64
		if err := s.rdb.QueryRowContext(ctx, `SELECT count(*) FROM `+name).Scan(&n); err != nil {
			return history.Stats{}, fmt.Errorf("count rows of %s: %w", name, err)
		}
		st.Tables = append(st.Tables, history.TableStats{Name: name, Rows: n})
	}
	for _, f := range []string{s.path, s.path + "-wal"} {
		fi, err := os.Stat(f)
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return history.Stats{}, fmt.Errorf("size history database: %w", err)
		}
		if err == nil {
			st.Bytes += fi.Size()
		}
	}
	var err error
	if st.Cursor, err = s.Cursor(ctx); err != nil {
		return history.Stats{}, err
	}
	b, err := s.readRollupBounds(ctx, s.rdb)
	if err != nil {
		return history.Stats{}, err
	}
	_, st.RolledUpTo = b.times()
	return st, nil
}
