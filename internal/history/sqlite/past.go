package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/twinflow/twinflow/internal/history"
)

// Past implements history.Store, reading one snapshot of the database: the lifecycle rows of
// the twins and relationships, then the property rows at or before at in one pass in primary
// key order, which SQLite folds into one row per twin (see pastProperties).
func (s *Store) Past(ctx context.Context, at time.Time) (history.Past, error) {
	p, err := s.past(ctx, at.UnixNano())
	if err != nil {
		return history.Past{}, fmt.Errorf("rebuild graph as of %s: %w", at.Format(time.RFC3339Nano), err)
	}
	return p, nil
}

// pastTwin is a twin alive at the time asked, with the Seq of its creation.
type pastTwin struct {
	history.PastTwin
	created uint64
}

// pastRelationship is a relationship alive at the time asked, with the Seq of its creation
// and the property rows read for it.
type pastRelationship struct {
	history.PastRelationship
	created uint64
	members []history.Member
}

func (s *Store) past(ctx context.Context, at int64) (history.Past, error) {
	txs, err := s.readSnapshots(ctx, min(runtime.GOMAXPROCS(0), s.cfg.Readers))
	if err != nil {
		return history.Past{}, err
	}
	defer func() {
		for _, tx := range txs {
			tx.Rollback()
		}
	}()
	twins, err := s.pastTwins(ctx, txs[0], at)
	if err != nil {
		return history.Past{}, fmt.Errorf("read twin lifecycle: %w", err)
	}
	rels, err := s.pastRelationships(ctx, txs[0], at)
	if err != nil {
		return history.Past{}, fmt.Errorf("read relationship lifecycle: %w", err)
	}
	// Each transaction reads the property rows of a range of ids starting at a twin's, each
	// range with about as many twins.
	parts := max(1, min(len(txs), len(twins)))
	var g errgroup.Group
	for i, tx := range txs[:parts] {
		lo, hi := i*len(twins)/parts, (i+1)*len(twins)/parts
		var from, to string
		if i > 0 {
			from = twins[lo].ID
		}
		if i+1 < parts {
			to = twins[hi].ID
		}
		g.Go(func() error { return s.pastProperties(ctx, tx, at, from, to, twins[lo:hi], rels) })
	}
	if err := g.Wait(); err != nil {
		return history.Past{}, fmt.Errorf("read properties: %w", err)
	}
	out := history.Past{
		Twins:         make([]history.PastTwin, len(twins)),
		Relationships: make([]history.PastRelationship, len(rels.list)),
	}
	for i, t := range twins {
		out.Twins[i] = t.PastTwin
	}
	var buf []byte
	for i, r := range rels.list {
		buf = history.AppendProperties(buf[:0], r.members, r.created)
		r.Properties = bytes.Clone(buf)
		out.Relationships[i] = r.PastRelationship
	}
	return out, nil
}

// snapshotAttempts bounds the tries of readSnapshots at getting n transactions that see the
// same commits.
const snapshotAttempts = 3

// readSnapshots begins n read transactions (at least one) on connections of the read pool
// that see the same Writes, so that they can read parts of one state in parallel: each reads
// the cursor, which fixes its snapshot (WAL mode), and the cursors must agree. Every Write
// that adds rows moves the cursor. A Prune moves none, but changes nothing that Past reads
// at or after its time, so transactions on either side of it read the same past graph. When
// writes keep the cursors apart, it settles for one transaction.
func (s *Store) readSnapshots(ctx context.Context, n int) ([]*sql.Tx, error) {
	n = max(n, 1)
	for attempt := 1; ; attempt++ {
		if attempt > snapshotAttempts {
			n = 1
		}
		txs := make([]*sql.Tx, 0, n)
		cursors := make([]int64, n)
		rollback := func() {
			for _, tx := range txs {
				tx.Rollback()
			}
		}
		for i := range n {
			tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
			if err != nil {
				rollback()
				return nil, err
			}
			txs = append(txs, tx)
			if err := tx.QueryRowContext(ctx, `SELECT seq FROM history_cursor WHERE id = 1`).Scan(&cursors[i]); err != nil {
				rollback()
				return nil, fmt.Errorf("read cursor: %w", err)
			}
		}
		if slices.Min(cursors) == slices.Max(cursors) {
			return txs, nil
		}
		rollback()
	}
}

// pastTwins returns the twins alive at at, in id order.
func (s *Store) pastTwins(ctx context.Context, tx *sql.Tx, at int64) ([]pastTwin, error) {
	// Of each twin, the newest lifecycle row (max picks the row the bare columns come from).
	rows, err := tx.QueryContext(ctx, `SELECT TwinId, max(Seq), ModelId FROM `+s.t.TwinLifecycle+
		` WHERE TimeStamp <= ? GROUP BY TwinId HAVING Action = ? ORDER BY TwinId`, at, history.LifecycleCreate)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var twins []pastTwin
	for rows.Next() {
		var (
			t   pastTwin
			seq int64
		)
		if err := rows.Scan(&t.ID, &seq, &t.ModelID); err != nil {
			return nil, err
		}
		t.created = uint64(seq)
		twins = append(twins, t)
	}
	return twins, rows.Err()
}

// pastRels holds the relationships alive at the time asked, in (source, id) order, and
// indexes them.
type pastRels struct {
	list  []*pastRelationship
	index map[[2]string]*pastRelationship
}

// pastRelationships returns the relationships alive at at.
func (s *Store) pastRelationships(ctx context.Context, tx *sql.Tx, at int64) (pastRels, error) {
	rows, err := tx.QueryContext(ctx, `SELECT Source, RelationshipId, max(Seq), Name, Target FROM `+s.t.RelationshipLifecycle+
		` WHERE TimeStamp <= ? GROUP BY Source, RelationshipId HAVING Action = ? ORDER BY Source, RelationshipId`, at, history.LifecycleCreate)
	if err != nil {
		return pastRels{}, err
	}
	defer rows.Close()
	rels := pastRels{index: map[[2]string]*pastRelationship{}}
	for rows.Next() {
		var (
			r   pastRelationship
			seq int64
		)
		if err := rows.Scan(&r.SourceID, &r.ID, &seq, &r.Name, &r.TargetID); err != nil {
			return pastRels{}, err
		}
		r.created = uint64(seq)
		rels.list = append(rels.list, &r)
		rels.index[[2]string{r.SourceID, r.ID}] = &r
	}
	return rels, rows.Err()
}

// pastProperties reads the property rows at or before at of the ids from from on, up to
// to (excluded) unless it is empty, and sets the properties (and the model, when a row
// changed it) of twins, the twins in that range, in order; it collects the relationships'
// rows into rels, each of which belongs to one range.
//
// Of each property only the newest row at or before at counts, so the rows are chosen from
// the index on (Id, RelationshipId, Key, TimeStamp, Seq) alone, in its order and without a
// sort (max picks the bare rowid of the row with the greatest Seq); only the chosen rows are
// then read from the table. SQLite folds the chosen rows of each Id into one text of
// entries: moving a million rows one column at a time through database/sql costs several
// times more than reading them. Of each Id it also returns the Seq and model of its newest
// chosen twin property row that names a model (the bare ModelId takes the row max picks),
// which is the newest of all its twin property rows that name one, since every twin
// property row does. The entries are parsed by parseEntries.
func (s *Store) pastProperties(ctx context.Context, tx *sql.Tx, at int64, from, to string, twins []pastTwin, rels pastRels) error {
	args := []any{from, at}
	bound := ""
	if to != "" {
		bound = ` AND Id < ?`
		args = append(args, to)
	}
	rows, err := tx.QueryContext(ctx, `SELECT g.Id, max(iif(p.RelationshipId = '' AND p.ModelId <> '', p.Seq, NULL)), p.ModelId,
		group_concat(p.Seq || CASE p.RelationshipId WHEN '' THEN '' ELSE quote(p.RelationshipId) END || p.Action || quote(p.Key) || p.Value, char(30))
		FROM (SELECT Id, max(Seq), rowid AS r FROM `+s.t.Properties+` INDEXED BY `+s.t.Properties+`_by_key
			WHERE Id >= ? AND TimeStamp <= ?`+bound+` GROUP BY Id, RelationshipId, Key) AS g
		CROSS JOIN `+s.t.Properties+` AS p ON p.rowid = g.r GROUP BY g.Id ORDER BY g.Id`, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	var (
		arena   arena
		members []history.Member
		id      string
		newest  sql.NullInt64
		model   sql.NullString
		entries sql.RawBytes
	)
	empty := json.RawMessage("{}") // Past's objects are not to be modified: twins may share it
	next := 0                      // the first twin whose properties are not set yet
	emptyUpTo := func(id string) {
		for ; next < len(twins) && twins[next].ID < id; next++ {
			twins[next].Properties = empty
		}
	}
	for rows.Next() {
		if err := rows.Scan(&id, &newest, &model, &entries); err != nil {
			return err
		}
		emptyUpTo(id)
		var t *pastTwin
		if next < len(twins) && twins[next].ID == id {
			t = &twins[next]
			next++
		}
		members = members[:0]
		err := parseEntries(entries, func(seq uint64, relID, key string, value []byte) {
			if relID == "" {
				if t != nil {
					members = append(members, history.Member{Key: key, Seq: seq, Value: value})
				}
				return
			}
			if r := rels.index[[2]string{id, relID}]; r != nil {
				r.members = append(r.members, history.Member{Key: key, Seq: seq, Value: bytes.Clone(value)})
			}
		})
		if err != nil {
			return fmt.Errorf("twin %q: %w", id, err)
		}
		if t == nil {
			continue
		}
		if newest.Valid && uint64(newest.Int64) > t.created {
			t.ModelID = model.String
		}
		t.Properties = arena.appendProperties(members, t.created)
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for ; next < len(twins); next++ {
		twins[next].Properties = empty
	}
	return nil
}

// parseEntries calls fn with each entry of the text pastProperties folds: entries separated
// by U+001E, each <Seq>[<quote(RelationshipId)>]<Action><quote(Key)><Value>, where quote is
// SQLite's (a literal in single quotes, quotes inside doubled) and the relationship's
// literal is left out for a twin property (a function call per row costs as much as the
// rest of the entry): the action keeps the two literals apart, and a JSON value never
// starts with a single quote. The literals may hold
// any character, U+001E too, so each entry is read from its start; the Value, JSON text,
// holds none. value is nil for a delete and, like the strings, valid only during the call.
func parseEntries(text []byte, fn func(seq uint64, relID, key string, value []byte)) error {
	for len(text) > 0 {
		entry := text
		bad := func() error {
			if i := bytes.IndexByte(entry, 0x1e); i >= 0 {
				entry = entry[:i]
			}
			return fmt.Errorf("malformed property entry %q", entry)
		}
		var seq uint64
		digits := 0
		for ; digits < len(text) && text[digits] >= '0' && text[digits] <= '9'; digits++ {
			seq = seq*10 + uint64(text[digits]-'0')
		}
		if digits == 0 {
			return bad()
		}
		relID, rest := "", text[digits:]
		if len(rest) > 0 && rest[0] == '\'' {
			var ok bool
			if relID, rest, ok = cutLiteral(rest); !ok {
				return bad()
			}
		}
		q := bytes.IndexByte(rest, '\'')
		if q < 0 {
			return bad()
		}
		action := rest[:q]
		key, rest, ok := cutLiteral(rest[q:])
		if !ok {
			return bad()
		}
		value := rest
		if i := bytes.IndexByte(rest, 0x1e); i >= 0 {
			value, text = rest[:i], rest[i+1:]
		} else {
			text = nil
		}
		if len(value) == 0 {
			return bad()
		}
		switch string(action) {
		case history.ActionUpdate:
		case history.ActionDelete:
			value = nil
		default:
			return fmt.Errorf("property entry of %q: unknown action %q", key, action)
		}
		fn(seq, relID, key, value)
	}
	return nil
}

// cutLiteral reads the SQL string literal at the start of b and returns its value and what
// follows it.
func cutLiteral(b []byte) (value string, rest []byte, ok bool) {
	if len(b) == 0 || b[0] != '\'' {
		return "", nil, false
	}
	var doubled bool
	for i := 1; i < len(b); i++ {
		if b[i] != '\'' {
			continue
		}
		if i+1 < len(b) && b[i+1] == '\'' {
			doubled = true
			i++
			continue
		}
		v := string(b[1:i])
		if doubled {
			v = string(bytes.ReplaceAll(b[1:i], []byte("''"), []byte("'")))
		}
		return v, b[i+1:], true
	}
	return "", nil, false
}

// arena allocates the property objects of a Past in large chunks: a hundred thousand twins
// then cost a few allocations rather than one each.
type arena struct {
	buf []byte
}

// arenaChunk is the size of an arena's chunks.
const arenaChunk = 1 << 20

// appendProperties returns the properties object of members in the arena (see
// history.AppendProperties).
func (a *arena) appendProperties(members []history.Member, created uint64) []byte {
	n := 2
	for _, m := range members {
		n += len(m.Key) + len(m.Value) + 4
	}
	a.reserve(2 * n) // keys may grow when escaped; append grows the chunk past this if need be
	start := len(a.buf)
	a.buf = history.AppendProperties(a.buf, members, created)
	return a.buf[start:len(a.buf):len(a.buf)]
}

// reserve makes room for n more bytes, starting a new chunk when the current one is short.
func (a *arena) reserve(n int) {
	if cap(a.buf)-len(a.buf) < n {
		a.buf = make([]byte, 0, max(arenaChunk, n))
	}
}
