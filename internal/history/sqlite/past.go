package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strings"
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
	base, err := newestCheckpointAt(ctx, txs[0], at)
	if err != nil {
		return history.Past{}, err
	}
	// The rows after the checkpoint are read once, beside the lifecycle rows when there is
	// a second transaction.
	var (
		twins []pastTwin
		rels  pastRels
		delta []deltaRow
		first errgroup.Group
	)
	first.Go(func() (err error) {
		if twins, err = s.pastTwins(ctx, txs[0], at); err != nil {
			return fmt.Errorf("read twin lifecycle: %w", err)
		}
		if rels, err = s.pastRelationships(ctx, txs[0], at); err != nil {
			return fmt.Errorf("read relationship lifecycle: %w", err)
		}
		return nil
	})
	if base.id != 0 {
		first.Go(func() (err error) {
			if delta, err = s.readDelta(ctx, txs[len(txs)-1], base, at); err != nil {
				return fmt.Errorf("read property rows after the checkpoint: %w", err)
			}
			return nil
		})
	}
	if err := first.Wait(); err != nil {
		return history.Past{}, err
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
		g.Go(func() error { return s.pastProperties(ctx, tx, base, delta, at, from, to, twins[lo:hi], rels) })
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

// pastProperties sets the properties (and the model, when a row changed it) of twins, the
// twins alive at at whose ids are from from on, up to to (excluded) unless it is empty, in
// order, from what fold reads of that range (base and delta as fold takes them); it collects the relationships' rows into rels,
// each of which belongs to one range.
func (s *Store) pastProperties(ctx context.Context, tx *sql.Tx, base checkpoint, delta []deltaRow, at int64, from, to string, twins []pastTwin, rels pastRels) error {
	var (
		arena   arena
		members []history.Member
	)
	empty := json.RawMessage("{}") // Past's objects are not to be modified: twins may share it
	next := 0                      // the first twin whose properties are not set yet
	err := s.fold(ctx, tx, base, delta, at, from, to, func(f *folded) error {
		for ; next < len(twins) && twins[next].ID < f.id; next++ {
			twins[next].Properties = empty
		}
		var t *pastTwin
		if next < len(twins) && twins[next].ID == f.id {
			t = &twins[next]
			next++
		}
		members = members[:0]
		for _, text := range f.entries {
			err := parseEntries(text, func(seq uint64, relID, key string, value []byte) {
				if relID == "" {
					if t != nil {
						members = append(members, history.Member{Key: key, Seq: seq, Value: value})
					}
					return
				}
				if r := rels.index[[2]string{f.id, relID}]; r != nil {
					r.members = append(r.members, history.Member{Key: key, Seq: seq, Value: bytes.Clone(value)})
				}
			})
			if err != nil {
				return fmt.Errorf("twin %q: %w", f.id, err)
			}
		}
		if t == nil {
			return nil
		}
		if f.newest.Valid && uint64(f.newest.Int64) > t.created {
			t.ModelID = f.model
		}
		t.Properties = arena.appendProperties(members, t.created)
		return nil
	})
	if err != nil {
		return err
	}
	for ; next < len(twins); next++ {
		twins[next].Properties = empty
	}
	return nil
}

// folded is what fold reads of one id: the texts of entries (see parseEntries) of its
// property rows, which may hold several rows of a property, of which the greatest Seq
// counts; and the Seq and model of its newest twin property row that names a model, if any.
// Like sql.RawBytes, the texts are valid only until fn returns.
type folded struct {
	id      string
	newest  sql.NullInt64
	model   string
	entries [2][]byte
}

// add takes in the newest model row of another text of the same id.
func (f *folded) add(newest sql.NullInt64, model sql.NullString) {
	if newest.Valid && (!f.newest.Valid || newest.Int64 > f.newest.Int64) {
		f.newest, f.model = newest, model.String
	}
}

// fold calls fn, in id order, with the property rows at or before at of each id from from on,
// up to to (excluded) unless it is empty: without a base (the zero checkpoint), the newest
// row of each property; with one, the newest of each property in base's entries and the rows
// of delta, which readDelta read after base up to at.
//
// Without a base, the rows are chosen from the index on (Id, RelationshipId, Key, TimeStamp,
// Seq) alone, in its order and without a sort (max picks the bare rowid of the row with the
// greatest Seq); only the chosen rows are then read from the table. SQLite folds the chosen
// rows of each Id into one text of entries (see selectFolded).
func (s *Store) fold(ctx context.Context, tx *sql.Tx, base checkpoint, delta []deltaRow, at int64, from, to string, fn func(*folded) error) error {
	bound, idArgs := "", []any{from}
	if to != "" {
		bound, idArgs = ` AND Id < ?`, append(idArgs, to)
	}
	if base.id == 0 {
		rows, err := tx.QueryContext(ctx, selectFolded("g.Id")+` FROM (SELECT Id, max(Seq), rowid AS r FROM `+s.t.Properties+
			` INDEXED BY `+s.t.Properties+`_by_key WHERE TimeStamp <= ? AND Id >= ?`+bound+` GROUP BY Id, RelationshipId, Key) AS g
			CROSS JOIN `+s.t.Properties+` AS p ON p.rowid = g.r GROUP BY g.Id ORDER BY g.Id`, append([]any{at}, idArgs...)...)
		if err != nil {
			return err
		}
		defer rows.Close()
		for rows.Next() {
			var (
				f      folded
				newest sql.NullInt64
				model  sql.NullString
				text   sql.RawBytes
			)
			if err := rows.Scan(&f.id, &newest, &model, &text); err != nil {
				return err
			}
			f.add(newest, model)
			f.entries[1] = text
			if err := fn(&f); err != nil {
				return err
			}
		}
		return rows.Err()
	}
	lo, _ := slices.BinarySearchFunc(delta, from, func(d deltaRow, id string) int { return strings.Compare(d.id, id) })
	hi := len(delta)
	if to != "" {
		hi, _ = slices.BinarySearchFunc(delta, to, func(d deltaRow, id string) int { return strings.Compare(d.id, id) })
	}
	delta = delta[lo:hi]
	cp, err := tx.QueryContext(ctx, `SELECT Id, Newest, ModelId, Entries FROM history_checkpoint_entries
		WHERE Checkpoint = ? AND Id >= ?`+bound+` ORDER BY Id`, append([]any{base.id}, idArgs...)...)
	if err != nil {
		return err
	}
	defer cp.Close()
	var (
		cpID    string
		cpNew   sql.NullInt64
		cpModel sql.NullString
		cpText  sql.RawBytes
	)
	nextCP := func() (bool, error) {
		if !cp.Next() {
			return false, cp.Err()
		}
		return true, cp.Scan(&cpID, &cpNew, &cpModel, &cpText)
	}
	cpOK, err := nextCP()
	// A merge join on Id: both are in byte order (SQLite's BINARY collation).
	for err == nil && (cpOK || len(delta) > 0) {
		takeCP := cpOK && (len(delta) == 0 || cpID <= delta[0].id)
		takeDelta := len(delta) > 0 && (!cpOK || delta[0].id <= cpID)
		var f folded
		if takeCP {
			f.id, f.entries[0] = cpID, cpText
			f.add(cpNew, cpModel)
		}
		if takeDelta {
			d := &delta[0]
			f.id, f.entries[1] = d.id, d.text
			f.add(d.newest, d.model)
			delta = delta[1:]
		}
		if err := fn(&f); err != nil {
			return err
		}
		if takeCP {
			cpOK, err = nextCP()
		}
	}
	return err
}

// selectFolded is the select list that folds the property rows p of each id (idColumn)
// into one text of entries (see parseEntries), with the Seq and model of its newest twin
// property row that names a model (the bare ModelId takes the row max picks); among rows
// chosen as the newest of each property, that is the newest of all its twin property rows
// that name one, since every twin property row does. Moving a million rows one column at a
// time through database/sql costs several times more than reading them folded.
func selectFolded(idColumn string) string {
	return `SELECT ` + idColumn + `, max(iif(p.RelationshipId = '' AND p.ModelId <> '', p.Seq, NULL)), p.ModelId,
		group_concat(p.Seq || CASE p.RelationshipId WHEN '' THEN '' ELSE quote(p.RelationshipId) END || p.Action || quote(p.Key) || p.Value, char(30))`
}

// deltaRow is the property rows of one id after a checkpoint, folded as selectFolded does.
type deltaRow struct {
	id     string
	newest sql.NullInt64
	model  sql.NullString
	text   []byte
}

// readDelta returns, in id order, the property rows after base up to at, folded per id,
// read through the TimeStamp index: as many rows as a checkpoint's policy lets pass before
// the next, in one pass over the index for every range of ids fold is asked for.
func (s *Store) readDelta(ctx context.Context, tx *sql.Tx, base checkpoint, at int64) ([]deltaRow, error) {
	rows, err := tx.QueryContext(ctx, selectFolded("p.Id")+` FROM `+s.t.Properties+` AS p INDEXED BY `+s.t.Properties+`_retention
		WHERE TimeStamp > ? AND TimeStamp <= ? GROUP BY p.Id ORDER BY p.Id`, base.at, at)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var (
		out   []deltaRow
		arena arena
	)
	for rows.Next() {
		var (
			d    deltaRow
			text sql.RawBytes
		)
		if err := rows.Scan(&d.id, &d.newest, &d.model, &text); err != nil {
			return nil, err
		}
		arena.reserve(len(text))
		start := len(arena.buf)
		arena.buf = append(arena.buf, text...)
		d.text = arena.buf[start:len(arena.buf):len(arena.buf)]
		out = append(out, d)
	}
	return out, rows.Err()
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
