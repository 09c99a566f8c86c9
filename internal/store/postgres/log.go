package postgres

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// changeLog is the store.ChangeLog of a Store.
type changeLog struct {
	s *Store
}

var _ store.ChangeLog = (*changeLog)(nil)

// Read implements store.Log. It waits without polling the database itself: this Store's
// commits wake it at once, other nodes' when the listener hears of them (see listen).
// Records still in the in-memory tail are copied from it; others are read from the database.
// max must be positive.
func (l *changeLog) Read(ctx context.Context, after uint64, max int) ([]event.Record, error) {
	return readLog(ctx, l.s, after, max, func(c *store.Change) event.Record { return c.Record })
}

// ReadChanges implements store.ChangeLog. Records of this Store's recent commits come from
// the in-memory tail with their state (those whose Update put or deleted their subject are
// Known); records read back from the database, other nodes' among them, are not Known.
func (l *changeLog) ReadChanges(ctx context.Context, after uint64, max int) ([]store.Change, error) {
	return readLog(ctx, l.s, after, max, func(c *store.Change) store.Change { return *c })
}

// Last implements store.Log: the newest Seq this Store committed or heard of from other
// nodes (see listen), or read.
func (l *changeLog) Last() uint64 { return l.s.last.Load() }

// readLog waits until the log holds records after after, then returns up to max of them,
// each converted by conv: from the tail when it holds record after+1, otherwise from the
// database (as Changes that are not Known).
func readLog[T any](ctx context.Context, s *Store, after uint64, max int, conv func(*store.Change) T) ([]T, error) {
	if max <= 0 {
		return nil, fmt.Errorf("read log: max %d is not positive", max)
	}
	if !s.enter(&s.active) {
		return nil, store.ErrClosed
	}
	defer s.active.Done()
	for {
		s.notifyMu.Lock()
		changed := s.changed
		s.notifyMu.Unlock()
		if changed == nil {
			return nil, store.ErrClosed
		}
		if last := s.last.Load(); last > after {
			var out []T
			if s.tail.Read(after, last, max, func(c *store.Change) { out = append(out, conv(c)) }) {
				return out, nil
			}
			// Every committed record is visible with all those before it (see appendLog), so
			// what this finds is a gap-free run from after+1.
			recs, err := list(poolQuerier{ctx: ctx, s: s}, "log records", scanRecord,
				"SELECT "+logColumns+" FROM log WHERE seq > $1 ORDER BY seq LIMIT $2", int64(after), max)
			if err != nil {
				return nil, markUnavailable(err)
			}
			if len(recs) > 0 {
				s.advance(recs[len(recs)-1].Seq)
				out = make([]T, len(recs))
				for i, rec := range recs {
					out[i] = conv(&store.Change{Record: rec})
				}
				return out, nil
			}
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// poolQuerier is the querier of single statements on the Store's pool.
type poolQuerier struct {
	ctx context.Context
	s   *Store
}

func (q poolQuerier) query(sql string, args []any, each func(pgx.Rows) error) error {
	rows, err := q.s.pool.Query(q.ctx, sql, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := each(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// listen is the listener goroutine: it follows other nodes' commits to the log, so that Last
// reflects them and Read wakes for them, and to the configuration generations, so that
// GenerationsChanged does. On a connection of its own it LISTENs on the log's channel, where
// every commit that appends records notifies its new head (see appendLog) and every commit
// that changes configuration its new generations (see bumpGenerations), and reads both itself
// whenever Config.PollInterval passes without a notification, which covers notifications
// sent while it was not listening. A broken connection is opened again
// after PollInterval. listen returns when ctx ends.
func (s *Store) listen(ctx context.Context, cc *pgx.ConnConfig) {
	defer close(s.listened)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			_ = conn.Close(context.Background())
		}
	}()
	for ctx.Err() == nil {
		if conn == nil {
			var err error
			if conn, err = s.listenOn(ctx, cc); err != nil {
				if ctx.Err() == nil {
					s.logger.Warn("store log listener: connect", "err", err)
				}
				select {
				case <-ctx.Done():
				case <-time.After(s.cfg.PollInterval):
				}
				continue
			}
		}
		var (
			head int64
			gens generations
		)
		if err := readHead(conn.QueryRow(ctx, readHeadSQL), &head, &gens); err != nil {
			if ctx.Err() == nil {
				s.logger.Warn("store log listener: read head", "err", err)
			}
			_ = conn.Close(context.Background())
			conn = nil
			continue
		}
		s.advance(uint64(head))
		s.advanceGenerations(gens)
		for ctx.Err() == nil {
			wctx, cancel := context.WithTimeout(ctx, s.cfg.PollInterval)
			n, err := conn.WaitForNotification(wctx)
			cancel()
			if err != nil {
				if ctx.Err() == nil && !errors.Is(err, context.DeadlineExceeded) {
					s.logger.Warn("store log listener: wait for notification", "err", err)
					_ = conn.Close(context.Background())
					conn = nil
				}
				break
			}
			if seq, err := strconv.ParseUint(n.Payload, 10, 64); err == nil {
				s.advance(seq)
			} else if gens, ok := parseGenerations(n.Payload); ok {
				s.advanceGenerations(gens)
			}
		}
	}
}

// listenOn connects and listens on the log's channel.
func (s *Store) listenOn(ctx context.Context, cc *pgx.ConnConfig) (*pgx.Conn, error) {
	conn, err := pgx.ConnectConfig(ctx, cc)
	if err != nil {
		return nil, err
	}
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{s.channel}.Sanitize()); err != nil {
		return nil, errors.Join(err, conn.Close(context.Background()))
	}
	return conn, nil
}

// readHeadSQL reads the log's head and the configuration generations.
const readHeadSQL = "SELECT h.seq, " + genColumns + " FROM head h, generations g"

// readHead scans the row of readHeadSQL.
func readHead(row pgx.Row, seq *int64, g *generations) error {
	var v [numGenKinds]int64
	if err := row.Scan(seq, &v[0], &v[1], &v[2], &v[3], &v[4]); err != nil {
		return err
	}
	for k := range v {
		g[k] = uint64(v[k])
	}
	return nil
}
