package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/history"
)

// Lifecycle implements history.Store. It reads both tables in one read transaction, up to
// q.Limit rows of each, and merges them.
func (s *Store) Lifecycle(ctx context.Context, q history.LifecycleSelection) ([]history.LifecycleEvent, error) {
	if q.ID == "" {
		return nil, errors.New("read the lifecycle history: a twin id is required")
	}
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, fmt.Errorf("read the lifecycle history of %q: %w", q.ID, err)
	}
	defer tx.Rollback()
	where, args := lifecycleWhere(q)
	var twins []history.TwinLifecycleEvent
	err = s.scanRead(ctx, tx, `SELECT Seq, Action, TimeStamp, ServiceId, ModelId FROM `+s.t.TwinLifecycle+
		` WHERE TwinId = ?`+where, args, func(rows *sql.Rows) error {
		e := history.TwinLifecycleEvent{TwinID: q.ID}
		var seq, ts int64
		if err := rows.Scan(&seq, &e.Action, &ts, &e.ServiceID, &e.ModelID); err != nil {
			return err
		}
		e.Seq, e.TimeStamp = uint64(seq), time.Unix(0, ts).UTC()
		twins = append(twins, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the lifecycle history of %q: %w", q.ID, err)
	}
	var rels []history.RelationshipLifecycleEvent
	err = s.scanRead(ctx, tx, `SELECT Seq, RelationshipId, Name, Action, TimeStamp, ServiceId, Target FROM `+
		s.t.RelationshipLifecycle+` WHERE Source = ?`+where, args, func(rows *sql.Rows) error {
		e := history.RelationshipLifecycleEvent{Source: q.ID}
		var seq, ts int64
		if err := rows.Scan(&seq, &e.RelationshipID, &e.Name, &e.Action, &ts, &e.ServiceID, &e.Target); err != nil {
			return err
		}
		e.Seq, e.TimeStamp = uint64(seq), time.Unix(0, ts).UTC()
		rels = append(rels, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the relationship lifecycle history of %q: %w", q.ID, err)
	}
	return history.MergeLifecycle(twins, rels, q.Limit), nil
}

// lifecycleWhere returns the conditions after "WHERE <id column> = ?" that select q's rows
// in Seq order, and their arguments, q.ID first.
func lifecycleWhere(q history.LifecycleSelection) (string, []any) {
	var b strings.Builder
	args := []any{q.ID}
	if !q.From.IsZero() {
		b.WriteString(` AND TimeStamp >= ?`)
		args = append(args, q.From.UnixNano())
	}
	if !q.To.IsZero() {
		b.WriteString(` AND TimeStamp < ?`)
		args = append(args, q.To.UnixNano())
	}
	if q.After > 0 {
		b.WriteString(` AND Seq > ?`)
		args = append(args, int64(q.After))
	}
	b.WriteString(` ORDER BY Seq`)
	if q.Limit > 0 {
		b.WriteString(` LIMIT ?`)
		args = append(args, q.Limit)
	}
	return b.String(), args
}

// scanRows runs query on q, a read transaction or the readers' pool, and calls scan for each
// row.
func scanRows(ctx context.Context, q interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
}, query string, args []any, scan func(*sql.Rows) error) error {
	rows, err := q.QueryContext(ctx, query, args...)
	return eachRow(rows, err, scan)
}

// eachRow calls scan for each of rows, the result of a query that failed with err when err
// is not nil, and closes them.
func eachRow(rows *sql.Rows, err error, scan func(*sql.Rows) error) error {
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// scanRead runs query, one of the store's reading statements (see Store.read), in read
// transaction tx and calls scan for each row.
func (s *Store) scanRead(ctx context.Context, tx *sql.Tx, query string, args []any, scan func(*sql.Rows) error) error {
	st, err := s.read(ctx, query)
	if err != nil {
		return err
	}
	st = tx.StmtContext(ctx, st)
	defer st.Close()
	rows, err := st.QueryContext(ctx, args...)
	return eachRow(rows, err, scan)
}

// Anomalies implements history.Store.
func (s *Store) Anomalies(ctx context.Context, q history.AnomalySelection) ([]history.AnomalyEvent, error) {
	if q.ID == "" {
		return nil, errors.New("read the anomaly history: a twin id is required")
	}
	where, args := lifecycleWhere(history.LifecycleSelection{ID: q.ID, From: q.From, To: q.To, After: q.After, Limit: q.Limit})
	if q.Detector != "" {
		where = ` AND Detector = ?` + where
		args = append([]any{q.ID, q.Detector}, args[1:]...)
	}
	var out []history.AnomalyEvent
	err := scanRows(ctx, s.rdb, `SELECT Seq, TimeStamp, ServiceId, Key, Value, Score, Kind, Detector FROM `+s.t.Anomalies+
		` WHERE Id = ?`+where, args, func(rows *sql.Rows) error {
		e := history.AnomalyEvent{ID: q.ID}
		var seq, ts int64
		if err := rows.Scan(&seq, &ts, &e.ServiceID, &e.Key, &e.Value, &e.Score, &e.Kind, &e.Detector); err != nil {
			return err
		}
		e.Seq, e.TimeStamp = uint64(seq), time.Unix(0, ts).UTC()
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the anomaly history of %q: %w", q.ID, err)
	}
	return out, nil
}
