package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/history"
)

// Lifecycle implements history.Store. It reads both tables in one snapshot (a repeatable
// read transaction), up to q.Limit rows of each, and merges them.
func (s *Store) Lifecycle(ctx context.Context, q history.LifecycleSelection) ([]history.LifecycleEvent, error) {
	if q.ID == "" {
		return nil, errors.New("read the lifecycle history: a twin id is required")
	}
	var (
		twins []history.TwinLifecycleEvent
		rels  []history.RelationshipLifecycleEvent
	)
	where, args := lifecycleWhere(q)
	err := pgx.BeginTxFunc(ctx, s.pool, pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly},
		func(tx pgx.Tx) error {
			var (
				seq int64
				ts  time.Time
			)
			e := history.TwinLifecycleEvent{TwinID: q.ID}
			rows, _ := tx.Query(ctx, `SELECT "Seq", "Action", "TimeStamp", "ServiceId", "ModelId" FROM `+s.twin+
				` WHERE "TwinId" = $1`+where, args...)
			_, err := pgx.ForEachRow(rows, []any{&seq, &e.Action, &ts, &e.ServiceID, &e.ModelID}, func() error {
				e.Seq, e.TimeStamp = uint64(seq), ts.UTC()
				twins = append(twins, e)
				return nil
			})
			if err != nil {
				return fmt.Errorf("read the twin lifecycle rows: %w", err)
			}
			r := history.RelationshipLifecycleEvent{Source: q.ID}
			rows, _ = tx.Query(ctx, `SELECT "Seq", "RelationshipId", "Name", "Action", "TimeStamp", "ServiceId", "Target" FROM `+
				s.rel+` WHERE "Source" = $1`+where, args...)
			_, err = pgx.ForEachRow(rows, []any{&seq, &r.RelationshipID, &r.Name, &r.Action, &ts, &r.ServiceID, &r.Target}, func() error {
				r.Seq, r.TimeStamp = uint64(seq), ts.UTC()
				rels = append(rels, r)
				return nil
			})
			if err != nil {
				return fmt.Errorf("read the relationship lifecycle rows: %w", err)
			}
			return nil
		})
	if err != nil {
		return nil, fmt.Errorf("read the lifecycle history of %q: %w", q.ID, err)
	}
	return history.MergeLifecycle(twins, rels, q.Limit), nil
}

// lifecycleWhere returns the conditions after `WHERE <id column> = $1` that select q's rows
// in Seq order, and their arguments, q.ID first.
func lifecycleWhere(q history.LifecycleSelection) (string, []any) {
	var b strings.Builder
	args := []any{q.ID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	if !q.From.IsZero() {
		b.WriteString(` AND "TimeStamp" >= ` + arg(q.From))
	}
	if !q.To.IsZero() {
		b.WriteString(` AND "TimeStamp" < ` + arg(q.To))
	}
	if q.After > 0 {
		b.WriteString(` AND "Seq" > ` + arg(int64(q.After)))
	}
	b.WriteString(` ORDER BY "Seq"`)
	if q.Limit > 0 {
		b.WriteString(` LIMIT ` + arg(q.Limit))
	}
	return b.String(), args
}

// Anomalies implements history.Store.
func (s *Store) Anomalies(ctx context.Context, q history.AnomalySelection) ([]history.AnomalyEvent, error) {
	if q.ID == "" {
		return nil, errors.New("read the anomaly history: a twin id is required")
	}
	where, args := lifecycleWhere(history.LifecycleSelection{ID: q.ID, From: q.From, To: q.To, After: q.After, Limit: q.Limit})
	if q.Detector != "" {
		args = append(args, q.Detector)
		where = ` AND "Detector" = $` + strconv.Itoa(len(args)) + where
	}
	var (
		out []history.AnomalyEvent
		seq int64
		ts  time.Time
	)
	e := history.AnomalyEvent{ID: q.ID}
	rows, _ := s.pool.Query(ctx, `SELECT "Seq", "TimeStamp", "ServiceId", "Key", "Value", "Score", "Kind", "Detector" FROM `+
		s.anom+` WHERE "Id" = $1`+where, args...)
	_, err := pgx.ForEachRow(rows, []any{&seq, &ts, &e.ServiceID, &e.Key, &e.Value, &e.Score, &e.Kind, &e.Detector}, func() error {
		e.Seq, e.TimeStamp = uint64(seq), ts.UTC()
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the anomaly history of %q: %w", q.ID, err)
	}
	return out, nil
}
