package sqlite

import (
	"cmp"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/history"
)

// DefaultCheckpointRows is the default of Config.CheckpointRows.
const DefaultCheckpointRows = 100_000

// checkpointChunk is the number of ids whose entries one transaction of a checkpoint's build
// inserts: the build's transactions are short, so Writes are not held up.
const checkpointChunk = 2_000

// checkpointShare divides the newest checkpoint's entries into the rows after it that make
// the next one due: with a quarter, Past reads at most a quarter as many rows after a
// checkpoint as the checkpoint has entries (and the rows after the newest until the next is
// due), and checkpoints take about as much room as the rows between them, which are each
// larger than an entry and indexed twice.
const checkpointShare = 4

// cleanupChunk is the most entries of an invalid checkpoint one transaction deletes.
const cleanupChunk = 20_000

var _ history.Checkpointer = (*Store)(nil)

// checkpoint is a published checkpoint: the property rows at or before At folded into the
// entries of id id, members entries in all. The zero checkpoint stands for none.
type checkpoint struct {
	id      int64
	at      int64
	members int64
}

// build is the checkpoint being built, watched by Write: a row written at or before at
// after the build began makes it late, and a late build is not published.
type build struct {
	at   int64
	late bool
}

// migrateCheckpoints creates the checkpoint tables. A checkpoint's header is in
// history_checkpoints (Complete once published); its entries are in history_checkpoint_entries,
// one row per id of the property table: the entries text pastProperties folds, with the Seq
// and model of the id's newest twin property row that names a model. Ids are AUTOINCREMENT,
// never reused, so entries left behind by a checkpoint never mix with a later one's. A build
// a crash cut short leaves an incomplete header, which Open deletes, its entries with it.
func (s *Store) migrateCheckpoints() error {
	_, err := s.wdb.Exec(`
CREATE TABLE IF NOT EXISTS history_checkpoints (
	Id INTEGER PRIMARY KEY AUTOINCREMENT, At INTEGER NOT NULL, Members INTEGER NOT NULL,
	Complete INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS history_checkpoint_entries (
	Checkpoint INTEGER NOT NULL, Id TEXT NOT NULL, Newest INTEGER, ModelId TEXT, Entries BLOB NOT NULL,
	PRIMARY KEY (Checkpoint, Id)) WITHOUT ROWID;
DELETE FROM history_checkpoints WHERE Complete = 0;
`)
	if err != nil {
		return err
	}
	return s.wdb.QueryRow(`SELECT coalesce(max(At), -1) FROM history_checkpoints`).Scan(&s.newestCheckpoint)
}

// noteWritten invalidates the checkpoints a Write of property rows as old as oldest makes
// stale: it deletes those at or after oldest and marks the build in progress late. The caller
// holds wmu, and tx is the Write's. newestCheckpoint stays as it was: it only needs to be at
// least the newest checkpoint's time, and tx may yet roll back.
func (s *Store) noteWritten(ctx context.Context, tx *sql.Tx, oldest int64) error {
	if s.building != nil && oldest <= s.building.at {
		s.building.late = true
	}
	if oldest > s.newestCheckpoint {
		return nil
	}
	if _, err := tx.ExecContext(ctx, `DELETE FROM history_checkpoints WHERE At >= ?`, oldest); err != nil {
		return fmt.Errorf("invalidate checkpoints from %d: %w", oldest, err)
	}
	return nil
}

// Checkpoint implements history.Checkpointer. A checkpoint is due when the property rows
// after the newest one (or after none), up to upTo, number at least CheckpointRows and at
// least the newest one's entries divided by checkpointShare. Its time is the TimeStamp of
// the row that makes up the count. It is
// built from the newest checkpoint and the rows after it, merged as Past merges them. A step
// first deletes the entries of a checkpoint no longer valid, if there is one.
func (s *Store) Checkpoint(ctx context.Context, upTo time.Time) (bool, error) {
	if cleaned, err := s.cleanCheckpoints(ctx); err != nil || cleaned {
		return false, err
	}
	base, at, err := s.nextCheckpoint(ctx, upTo.UnixNano())
	if err != nil || at < 0 {
		return err == nil, err
	}
	if err := s.buildCheckpoint(ctx, base, at); err != nil {
		return false, fmt.Errorf("build history checkpoint at %s: %w", time.Unix(0, at).UTC().Format(time.RFC3339Nano), err)
	}
	return false, nil
}

// cleanCheckpoints deletes up to cleanupChunk entries of a checkpoint whose header is gone,
// and reports whether there were any.
func (s *Store) cleanCheckpoints(ctx context.Context) (bool, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	for id := int64(-1); ; {
		var next sql.NullInt64
		if err := s.wdb.QueryRowContext(ctx, `SELECT min(Checkpoint) FROM history_checkpoint_entries WHERE Checkpoint > ?`, id).Scan(&next); err != nil {
			return false, fmt.Errorf("find history checkpoints: %w", err)
		}
		if !next.Valid {
			return false, nil
		}
		id = next.Int64
		var n int
		if err := s.wdb.QueryRowContext(ctx, `SELECT count(*) FROM history_checkpoints WHERE Id = ?`, id).Scan(&n); err != nil {
			return false, fmt.Errorf("find history checkpoint %d: %w", id, err)
		}
		if n > 0 {
			continue
		}
		if _, err := s.wdb.ExecContext(ctx, `DELETE FROM history_checkpoint_entries WHERE Checkpoint = ?1 AND Id IN (
			SELECT Id FROM history_checkpoint_entries WHERE Checkpoint = ?1 LIMIT ?2)`, id, cleanupChunk); err != nil {
			return false, fmt.Errorf("delete entries of history checkpoint %d: %w", id, err)
		}
		return true, nil
	}
}

// newestCheckpointAt returns the newest published checkpoint at or before at as tx sees
// them; the zero checkpoint when there is none.
func newestCheckpointAt(ctx context.Context, tx *sql.Tx, at int64) (checkpoint, error) {
	var c checkpoint
	err := tx.QueryRowContext(ctx, `SELECT Id, At, Members FROM history_checkpoints WHERE Complete = 1 AND At <= ?
		ORDER BY At DESC LIMIT 1`, at).Scan(&c.id, &c.at, &c.members)
	if errors.Is(err, sql.ErrNoRows) {
		return checkpoint{}, nil
	}
	if err != nil {
		return checkpoint{}, fmt.Errorf("find history checkpoint: %w", err)
	}
	return c, nil
}

// nextCheckpoint returns the newest checkpoint at or before upTo and the time of the next
// one due; -1 when none is.
func (s *Store) nextCheckpoint(ctx context.Context, upTo int64) (checkpoint, int64, error) {
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return checkpoint{}, -1, err
	}
	defer tx.Rollback()
	base, err := newestCheckpointAt(ctx, tx, upTo)
	if err != nil {
		return checkpoint{}, -1, err
	}
	after := int64(-1 << 63)
	if base.id != 0 {
		after = base.at
	}
	rows := max(int64(s.cfg.CheckpointRows), base.members/checkpointShare)
	var at int64
	err = tx.QueryRowContext(ctx, `SELECT TimeStamp FROM `+s.t.Properties+` INDEXED BY `+s.t.Properties+`_retention
		WHERE TimeStamp > ? AND TimeStamp <= ? ORDER BY TimeStamp LIMIT 1 OFFSET ?`, after, upTo, rows-1).Scan(&at)
	if errors.Is(err, sql.ErrNoRows) {
		return base, -1, nil
	}
	if err != nil {
		return checkpoint{}, -1, fmt.Errorf("find the next history checkpoint's time: %w", err)
	}
	return base, at, nil
}

// buildCheckpoint builds and publishes the checkpoint at at from base (the zero checkpoint:
// from the rows alone). It registers the build with Write before it takes the snapshot it
// reads, so a row at or before at is either in the snapshot or makes the build late. It
// publishes nothing when the build is late or base was invalidated meanwhile.
func (s *Store) buildCheckpoint(ctx context.Context, base checkpoint, at int64) (err error) {
	s.wmu.Lock()
	b := &build{at: at}
	s.building = b
	var id int64
	err = s.wdb.QueryRowContext(ctx, `INSERT INTO history_checkpoints (At, Members, Complete) VALUES (?, 0, 0) RETURNING Id`, at).Scan(&id)
	s.wmu.Unlock()
	defer func() {
		s.wmu.Lock()
		defer s.wmu.Unlock()
		s.building = b
		if err != nil || b.late {
			// The entries go with the next cleanCheckpoints.
			_, derr := s.wdb.ExecContext(context.WithoutCancel(ctx), `DELETE FROM history_checkpoints WHERE Id = ?`, id)
			err = errors.Join(err, derr)
		}
	}()
	if err != nil {
		return fmt.Errorf("insert header: %w", err)
	}
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return err
	}
	defer tx.Rollback()
	if base.id != 0 { // still published in this snapshot?
		var n int
		if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM history_checkpoints WHERE Id = ? AND Complete = 1`, base.id).Scan(&n); err != nil {
			return err
		}
		if n == 0 {
			b.late = true
			return nil
		}
	}
	var (
		pending []any // Checkpoint, Id, Newest, ModelId, Entries of the ids not inserted yet
		members int64
		entries []entry
		text    []byte
	)
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		s.wmu.Lock()
		defer s.wmu.Unlock()
		if b.late {
			return nil
		}
		_, err := s.wdb.ExecContext(ctx, `INSERT INTO history_checkpoint_entries (Checkpoint, Id, Newest, ModelId, Entries) VALUES `+
			strings.TrimSuffix(strings.Repeat("(?,?,?,?,?),", len(pending)/5), ","), pending...)
		pending = pending[:0]
		return err
	}
	var delta []deltaRow
	if base.id != 0 {
		if delta, err = s.readDelta(ctx, tx, base, at); err != nil {
			return fmt.Errorf("read property rows after checkpoint %d: %w", base.id, err)
		}
	}
	err = s.fold(ctx, tx, base, delta, at, "", "", func(f *folded) error {
		entries = entries[:0]
		for _, text := range f.entries {
			err := parseEntries(text, func(seq uint64, relID, key string, value []byte) {
				entries = append(entries, entry{seq: seq, relID: relID, key: key, value: string(value), delete: value == nil})
			})
			if err != nil {
				return fmt.Errorf("id %q: %w", f.id, err)
			}
		}
		text, entries = appendEntries(text[:0], entries)
		members += int64(len(entries))
		var newest any
		if f.newest.Valid {
			newest = f.newest.Int64
		}
		pending = append(pending, id, f.id, newest, f.model, slices.Clone(text))
		if len(pending) == 5*checkpointChunk {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return err
	}
	if s.beforePublish != nil {
		s.beforePublish()
	}
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if b.late {
		return nil
	}
	if _, err := s.wdb.ExecContext(ctx, `UPDATE history_checkpoints SET Complete = 1, Members = ? WHERE Id = ?`, members, id); err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	s.newestCheckpoint = max(s.newestCheckpoint, at)
	return nil
}

// entry is one entry of a folded text, parsed.
type entry struct {
	seq        uint64
	relID, key string
	value      string
	delete     bool
}

// appendEntries appends to dst the folded text (see parseEntries) of the newest entry (by
// Seq) of each property in entries, which it sorts, and returns it with those entries.
func appendEntries(dst []byte, entries []entry) ([]byte, []entry) {
	slices.SortFunc(entries, func(a, b entry) int {
		return cmp.Or(strings.Compare(a.relID, b.relID), strings.Compare(a.key, b.key), cmp.Compare(a.seq, b.seq))
	})
	kept := entries[:0]
	for i, e := range entries {
		if i+1 < len(entries) && entries[i+1].relID == e.relID && entries[i+1].key == e.key {
			continue // superseded
		}
		kept = append(kept, e)
		if len(kept) > 1 {
			dst = append(dst, 0x1e)
		}
		dst = strconv.AppendUint(dst, e.seq, 10)
		if e.relID != "" {
			dst = appendLiteral(dst, e.relID)
		}
		value := e.value
		if e.delete {
			dst, value = append(dst, history.ActionDelete...), "null"
		} else {
			dst = append(dst, history.ActionUpdate...)
		}
		dst = appendLiteral(dst, e.key)
		dst = append(dst, value...)
	}
	return dst, kept
}

// appendLiteral appends s as an SQL string literal, as SQLite's quote writes it.
func appendLiteral(dst []byte, s string) []byte {
	dst = append(dst, '\'')
	for i := range len(s) {
		if s[i] == '\'' {
			dst = append(dst, '\'')
		}
		dst = append(dst, s[i])
	}
	return append(dst, '\'')
}

// pruneCheckpoints deletes the headers of the checkpoints that Past at or after before no
// longer needs: those older than the newest checkpoint at or before before. Their entries go
// with later cleanCheckpoints. The caller holds wmu.
func (s *Store) pruneCheckpoints(ctx context.Context, before int64) error {
	_, err := s.wdb.ExecContext(ctx, `DELETE FROM history_checkpoints WHERE At < (
		SELECT max(At) FROM history_checkpoints WHERE Complete = 1 AND At <= ?)`, before)
	return err
}
