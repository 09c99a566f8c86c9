// Package graph is the in-memory graph index that queries run against: twins by id and by
// model, and relationships outgoing and incoming for every twin.
//
// # Building and following
//
// New builds the index from a store snapshot, scanning the twins and then the relationships
// in one pass each (store.Scanner), with the twins' documents parsed and compressed on every
// CPU while the scan reads on; it first notes the change log's last seq, so every write
// committed during the load is replayed afterwards. From then on the index follows the
// change log: Run reads it in batches for as long as its context lives, and Sync catches up
// on demand.
//
// A log record names the entity that changed; its event is not enough to rebuild the entity
// (Twin.Update carries only the patch). When the store's log is a store.ChangeLog, the index
// reads it with ReadChanges, which hands out each record with the state its Update left the
// twin or relationship in (a store.Change; nil for a deletion) wherever the log knows it: the
// sqlite store keeps its newest records with their states in an in-memory tail. For each
// batch the index takes, per changed entity, its newest record in the batch, and applies the
// state that record carries, or removes the entity when the record deleted it. Only entities
// whose newest record's state is not Known (the record was read back from the database rather
// than the tail, or its event came without a change of its subject, or the log is a plain
// store.Log) are read from the store, all in one snapshot and only when there are some: they
// get their current state, or are removed when the store no longer has them.
//
// A batch thus collapses repeated changes of one entity into one, and costs no store read
// while the follower keeps up with the tail. Applying a state is idempotent and records
// already applied are skipped, so replaying the records committed while New loaded is
// harmless. Once the index has applied the log up to a seq, every entity is as of that seq,
// or newer where its state came from the store (the snapshot New loaded, or a read for an
// unknown state); the records after that seq bring it in line as they are applied.
//
// # Read-your-writes without slowing writes
//
// Writes never wait for the index: a write is acknowledged when the store has committed it
// and its events. Instead, every query first calls Sync, which reads the log's last committed
// seq and applies records up to it before the query looks at the index. A write acknowledged
// before a query begins has a seq no higher than that, so the query sees it. The write path
// keeps its full speed; a query pays for applying the changes made since the previous query
// (none when the follower is current), and Run keeps that backlog short.
//
// # Role and invariant
//
// The index is one of the copies of twin state the write path keeps (see package store): the
// one queries read, through Read. Nothing else reads its contents (the server's readiness
// check only compares Applied with the log's Last); in particular no write reads it or waits
// for it. It is written only by New or OpenSnapshot and by applying log records (Run and
// Sync, one at a time under applyMu).
//
// Applied never passes the log's Last, because the log hands out only durable records; each
// entity is as of Applied or newer, as above. Newer state comes from store snapshots (the load
// and the reads of unknown states), and a snapshot may include a batch that has committed but
// whose fsync is still running (see package sqlite): like a store View, a query may see a
// write just before it is acknowledged. Following the log needs it to still hold every record
// after Applied: the log's pruner must keep them (the server hands it Applied; see
// outbox.PrunerConfig.Consumers). Seqs are consecutive (see store.Log), so a missing record
// shows as a gap, and the index does not read on past one: the entity the missing record was
// about would keep its older state. Sync, Read and Run fail with ErrLogGap instead, and
// keep failing; only building the index again (a restart) brings it back.
//
// # Snapshots
//
// What the index holds can be derived from the store at any time (New), but reading every
// twin and relationship takes long for a large store. WriteSnapshot (SaveSnapshot, to a file
// atomically) writes the index's own structures as of the seq it has applied, without
// stopping the follower for the whole write (see WriteSnapshot), and OpenSnapshot loads them
// back, mostly copying, on every CPU, and then follows the log from the next record like an
// index New built: the snapshot holds every entity as of its seq, and applying the records
// after it is what New's replay of the records committed while it loaded is. A snapshot is a
// cache of the store: one that is damaged, of another format version or model set, past the
// log's end or older than what the log still holds is refused (ErrBadSnapshot), and the index
// must be built with New; following needs the log to hold every record after the snapshot's
// seq, so the caller's pruner keeps them.
//
// # Memory
//
// A twin is kept as its stored JSON document, compressed with S2 (the per-property $metadata
// timestamps repeat), plus the byte ranges of its top-level members keyed by interned
// property names (packed, see members), so a lookup decompresses the document (once per
// twin and Reader) and decodes only the value it needs; deeper paths walk the raw JSON of the
// member.
// Top-level members that hold numbers also go into dense number columns by twin slot
// (Reader.NumberColumn), so a numeric filter over a million twins reads 8 bytes per twin and
// no document. The documents are compressed with a dictionary made of the first documents
// the index saw (see makeDict), which halves them again. Relationships keep pointers to their
// two twins and, of a document of the usual shape, only the $etag and the properties: Doc
// puts the rest back from the relationship's id and name and its twins' ids (see
// compactRel). They are found through their source twin's outgoing list, not a map of their
// own.
package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/s2"

	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// ErrLogGap reports that the change log no longer holds records the index has not applied:
// they were pruned before the index read them. The index cannot follow the log any more.
var ErrLogGap = errors.New("graph index: the change log lost records the index had not applied")

// Config tunes an Index. Zero fields take their defaults.
type Config struct {
	// LoadBatch is the number of scanned twins a prepare worker takes at a time while
	// building. Default 1,024.
	LoadBatch int
	// FollowBatch is the most log records applied in one step. Default 4,096.
	FollowBatch int
	// MaxNumberColumns caps the number columns (see Reader.NumberColumn): the first this many
	// top-level property names seen holding a number get one. Default 64.
	MaxNumberColumns int
}

// Index is the in-memory graph index. It is safe for concurrent use: queries read it through
// Read, which holds a shared lock, while one writer at a time applies log records.
type Index struct {
	cfg    Config
	st     store.Store // the store followed; nil for a static index (NewStatic)
	models func() *dtdl.ModelSet
	logger *slog.Logger

	// applyMu serialises applying log records (Run and Sync).
	applyMu sync.Mutex
	// applied is the seq of the last record applied.
	applied atomic.Uint64
	// appliedID is the event id of the record at Applied, "" while unknown (no record
	// applied since New); a snapshot records it to recognise its log (see OpenSnapshot).
	// It is guarded by applyMu.
	appliedID string

	mu        sync.RWMutex
	twins     map[string]*Twin
	twinSlots []*Twin
	freeTwins []int32
	// rels counts the relationships. They are found through their source twin's Out list
	// (see findRel), not a map of their own: a map keyed by source and id would cost about
	// a hundred bytes per relationship.
	rels     int
	relSlots []*Rel
	freeRels []int32
	// modelIDs maps a model number to its DTMI; modelNums is the inverse. Numbers are never
	// reused.
	modelIDs  []string
	modelNums map[string]int32
	// byModel lists, per model number, the slots of the twins of exactly that model, sorted.
	byModel [][]int32
	// names interns top-level property names.
	names map[string]uint32
	// lastKeys holds the raw keys of the members of the twin installed last, by position,
	// with their name numbers: a cache in front of names.
	lastKeys []lastKey
	// relNames interns relationship names.
	relNames map[string]string
	// numbers holds, per interned property name, a column of the values of that top-level
	// member by twin slot: the number, or NaN when the member is missing or not a number.
	// Filters over many twins read these dense columns instead of each twin's document.
	numbers map[uint32][]float64
	// columnLen is the length of every number column: each covers slots 0 to columnLen-1,
	// NaN where a twin lacks the member or the slot is free.
	columnLen int
	// dict is the dictionary every twin document is compressed with, nil for plain S2 (see
	// makeDict). It is set before the first document is compressed and never changes.
	dict *s2.Dict
	// arena and zbuf are scratch space for putTwin, packBuf for install.
	arena   prepArena
	zbuf    []byte
	packBuf []byte
	// frozen is the freeze of a snapshot being written, nil when none is (see WriteSnapshot):
	// changes keep what they replace in it. Set and cleared under applyMu and mu.
	frozen *frozen
	// snapshotMu lets one snapshot be written at a time.
	snapshotMu sync.Mutex
}

type relKey struct{ source, id string }

// lastKey is a raw member key and its interned name number.
type lastKey struct {
	key  string
	name uint32
}

// Twin is an indexed twin. Its fields change only while the index is locked for writing.
type Twin struct {
	id    string
	slot  int32
	model int32
	// zdoc is the JSON document, S2-compressed: documents repeat their property names and
	// timestamps, and compressed they take about half the memory.
	zdoc  []byte
	props members
	out   []*Rel
	in    []*Rel
}

// prop locates a top-level member of a twin document: name is an interned name number, the
// value is doc[start:end] of the decompressed document.
type prop struct {
	name       uint32
	start, end uint32
}

// Rel is an indexed relationship.
type Rel struct {
	id   string
	name string
	slot int32
	// etagLen is the length of the $etag at the start of a compact doc, 0 when doc is the
	// whole document (see compactRel).
	etagLen  uint16
	src, dst *Twin
	doc      []byte
}

// New builds an index of st, whose View readers must implement store.Scanner, and which it
// follows afterwards (see Run and Sync). models returns the current model set (for
// IS_OF_MODEL's extends closure); logger may be nil. The goroutines New starts to build the
// index have exited when it returns.
func New(ctx context.Context, cfg Config, st store.Store, models func() *dtdl.ModelSet, logger *slog.Logger) (*Index, error) {
	if st == nil || models == nil {
		return nil, errors.New("graph index: a store and a model source are required")
	}
	x := newIndex(cfg, models, logger)
	x.st = st
	// Records committed while loading are replayed afterwards; applying is idempotent.
	x.applied.Store(st.Log().Last())
	err := st.View(ctx, func(r store.Reader) error {
		sc, ok := r.(store.Scanner)
		if !ok {
			return fmt.Errorf("the store's reader %T cannot scan (store.Scanner)", r)
		}
		n, err := r.CountTwins()
		if err != nil {
			return err
		}
		return x.load(ctx, sc, n)
	})
	if err != nil {
		return nil, fmt.Errorf("graph index: load from store: %w", err)
	}
	x.logger.Info("graph index built", "twins", len(x.twins), "relationships", x.rels, "seq", x.applied.Load())
	return x, nil
}

// NewStatic builds an index of the twins and relationships sc yields, about n twins, that
// follows no store: the graph as it stood at some time, for queries of the past. Sync
// returns at once and Run fails.
func NewStatic(ctx context.Context, cfg Config, sc store.Scanner, n int, models func() *dtdl.ModelSet, logger *slog.Logger) (*Index, error) {
	if sc == nil || models == nil {
		return nil, errors.New("graph index: a scanner and a model source are required")
	}
	x := newIndex(cfg, models, logger)
	if err := x.load(ctx, sc, n); err != nil {
		return nil, fmt.Errorf("graph index: load: %w", err)
	}
	return x, nil
}

// newIndex returns an empty index with cfg's defaults set.
func newIndex(cfg Config, models func() *dtdl.ModelSet, logger *slog.Logger) *Index {
	if cfg.LoadBatch <= 0 {
		cfg.LoadBatch = 1024
	}
	if cfg.FollowBatch <= 0 {
		cfg.FollowBatch = 4096
	}
	if cfg.MaxNumberColumns <= 0 {
		cfg.MaxNumberColumns = 64
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Index{
		cfg: cfg, models: models, logger: logger,
		twins:     make(map[string]*Twin),
		modelNums: make(map[string]int32),
		names:     make(map[string]uint32),
		relNames:  make(map[string]string),
		numbers:   make(map[uint32][]float64),
	}
}

// load reads every twin and then every relationship of sc, n twins expected, scanning each
// once. Twins are prepared (see prepareTwin) on every CPU while the scan goes on, and
// installed in scan order, so slots are numbered as the scanner yields the twins.
func (x *Index) load(ctx context.Context, sc store.Scanner, n int) error {
	x.twins = make(map[string]*Twin, n)
	x.twinSlots = make([]*Twin, 0, n)
	if err := x.loadTwins(ctx, sc); err != nil {
		return err
	}
	return x.loadRels(ctx, sc)
}

// loadBatch is a run of scanned twins on its way through the load pipeline: a worker fills
// prep, then closes done; the installer waits for done and installs them in order.
type loadBatch struct {
	twins []store.Twin
	prep  []preparedTwin
	done  chan struct{}
}

// loadTwins streams the twins of sc through the prepare workers into the index.
func (x *Index) loadTwins(ctx context.Context, sc store.Scanner) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	workers := max(runtime.GOMAXPROCS(0), 1)
	work := make(chan *loadBatch, workers)
	// ordered holds the batches in scan order; its capacity bounds the twins in flight.
	ordered := make(chan *loadBatch, 2*workers)

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			var zbuf []byte
			// perTwin is the members a twin had on average in the previous batch, plus one:
			// the arena is sized for it, so that it rarely has to grow.
			perTwin := 16
			for b := range work {
				b.prep = make([]preparedTwin, len(b.twins))
				n := len(b.twins) * perTwin
				ar := prepArena{keys: make([][]byte, 0, n), props: make([]prop, 0, n), nums: make([]float64, 0, n)}
				for i, t := range b.twins {
					b.prep[i] = prepareTwin(t, x.dict, &ar, &zbuf)
				}
				perTwin = len(ar.keys)/len(b.twins) + 1
				close(b.done)
			}
		})
	}
	installed := make(chan error, 1)
	go func() {
		var err error
		for b := range ordered {
			if err != nil {
				continue // drain, so the scan is never stuck sending
			}
			select {
			case <-b.done:
			case <-ctx.Done():
				err = ctx.Err()
				cancel()
				continue
			}
			x.mu.Lock()
			for _, p := range b.prep {
				x.install(p)
			}
			x.mu.Unlock()
		}
		installed <- err
	}()

	scanErr := func() error {
		defer func() {
			close(work)
			close(ordered)
		}()
		sent := false // whether a batch went to the workers
		newBatch := func() *loadBatch {
			return &loadBatch{twins: make([]store.Twin, 0, x.cfg.LoadBatch), done: make(chan struct{})}
		}
		b := newBatch()
		send := func() bool {
			if !sent && x.dict == nil && len(x.twinSlots) == 0 {
				x.dict = makeDict(b.twins) // before any document is compressed
			}
			sent = true
			select {
			case ordered <- b:
			case <-ctx.Done():
				return false
			}
			select {
			case work <- b:
			case <-ctx.Done():
				return false
			}
			b = newBatch()
			return true
		}
		for t, err := range sc.ScanTwins() {
			if err != nil {
				return err
			}
			if b.twins = append(b.twins, t); len(b.twins) == x.cfg.LoadBatch && !send() {
				return ctx.Err()
			}
		}
		if len(b.twins) > 0 && !send() {
			return ctx.Err()
		}
		return nil
	}()
	if scanErr != nil {
		cancel() // the installer stops too; its error would only repeat the cancellation
	}
	installErr := <-installed
	wg.Wait()
	if scanErr != nil {
		return scanErr
	}
	return installErr
}

// loadRels puts every relationship sc yields.
func (x *Index) loadRels(ctx context.Context, sc store.Scanner) error {
	const lockBatch = 4096
	batch := make([]store.Relationship, 0, lockBatch)
	flush := func() {
		x.mu.Lock()
		for _, r := range batch {
			// A scan yields each relationship once: no need to look for one to replace.
			if src, dst, ok := x.relTwins(r); ok {
				x.addRel(src, dst, r)
			}
		}
		x.mu.Unlock()
		clear(batch)
		batch = batch[:0]
	}
	for r, err := range sc.ScanRelationships() {
		if err != nil {
			return err
		}
		if batch = append(batch, r); len(batch) == lockBatch {
			flush()
			if err := ctx.Err(); err != nil {
				return err
			}
		}
	}
	flush()
	return nil
}

// Run follows the change log until ctx ends, then returns ctx's error; it returns earlier
// only when reading the log or the store fails, save for a log that is unavailable
// (store.ErrUnavailable), which it reads again after a pause. It applies records as they are committed, so
// that Sync rarely has work left to do. It runs on the caller's goroutine and starts none.
func (x *Index) Run(ctx context.Context) error {
	if x.st == nil {
		return errors.New("graph index: a static index follows no change log")
	}
	pause := minReadPause
	for {
		recs, err := x.read(ctx)
		if err == nil {
			x.applyMu.Lock()
			err = x.apply(ctx, recs)
			x.applyMu.Unlock()
		} else {
			err = fmt.Errorf("graph index: read change log after %d: %w", x.applied.Load(), err)
		}
		switch {
		case err == nil:
			pause = minReadPause
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, store.ErrUnavailable):
			// The store's database is out of reach: the index keeps answering queries from
			// what it holds, and reads on once it is back. A failed apply changed nothing
			// (it reads the states it needs before it changes the index), so the same
			// records are read and applied again.
			x.logger.Warn("graph index: store unavailable; retrying", "applied", x.applied.Load(), "retry_in", pause, "err", err)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(pause):
			}
			pause = min(2*pause, maxReadPause)
		default:
			return err
		}
	}
}

// The pauses of Run between reads of a change log that is unavailable: doubling from the
// least to the most.
const (
	minReadPause = 100 * time.Millisecond
	maxReadPause = 2 * time.Second
)

// Sync returns once every record committed to the log before the call is applied, so the
// index reflects every write acknowledged before it.
func (x *Index) Sync(ctx context.Context) error {
	if x.st == nil {
		return nil
	}
	target := x.st.Log().Last()
	if x.applied.Load() >= target {
		return nil
	}
	x.applyMu.Lock()
	defer x.applyMu.Unlock()
	for x.applied.Load() < target {
		recs, err := x.read(ctx)
		if err != nil {
			return fmt.Errorf("graph index: read change log after %d: %w", x.applied.Load(), err)
		}
		if err := x.apply(ctx, recs); err != nil {
			return err
		}
	}
	return nil
}

// read returns the next records to apply, with their states when the log is a
// store.ChangeLog that knows them; records of a plain store.Log are not Known.
func (x *Index) read(ctx context.Context) ([]store.Change, error) {
	after := x.applied.Load()
	if cl, ok := x.st.Log().(store.ChangeLog); ok {
		return cl.ReadChanges(ctx, after, x.cfg.FollowBatch)
	}
	recs, err := x.st.Log().Read(ctx, after, x.cfg.FollowBatch)
	changes := make([]store.Change, len(recs))
	for i, rec := range recs {
		changes[i].Record = rec
	}
	return changes, err
}

// Applied returns the seq of the last log record applied.
func (x *Index) Applied() uint64 { return x.applied.Load() }

// apply brings the entities recs name up to date: each takes the state its newest record in
// recs carries where that is Known, else the state read from the store now (see readStates).
// The caller holds applyMu. Records already applied (seq <= Applied) are skipped; the others
// must follow on from Applied without a gap, or apply fails with ErrLogGap and applies none.
func (x *Index) apply(ctx context.Context, recs []store.Change) error {
	// The changed entities, each once, in the order of their first change (so that new twins
	// take slots in creation order), each with its newest record, whose state is filled in
	// below where the log did not know it (recs is this index's own).
	var (
		twinIDs []string
		relKeys []relKey
		twinAt  = map[string]*store.Change{}
		relAt   = map[relKey]*store.Change{}
	)
	last, lastID := x.applied.Load(), ""
	for i := range recs {
		rec := &recs[i]
		if rec.Seq <= last {
			continue
		}
		if rec.Seq != last+1 {
			return fmt.Errorf("%w: applied through %d, the log's next record is %d", ErrLogGap, last, rec.Seq)
		}
		last, lastID = rec.Seq, rec.Event.ID
		switch rec.Event.Type {
		case event.TwinCreate, event.TwinUpdate, event.TwinDelete:
			id := rec.Event.Subject
			if _, seen := twinAt[id]; !seen {
				twinIDs = append(twinIDs, id)
			}
			twinAt[id] = rec
		case event.RelationshipCreate, event.RelationshipUpdate, event.RelationshipDelete:
			k, ok := relationshipKey(rec.Event)
			if !ok {
				continue
			}
			if _, seen := relAt[k]; !seen {
				relKeys = append(relKeys, k)
			}
			relAt[k] = rec
		}
	}
	if last == x.applied.Load() {
		return nil
	}
	if err := x.readStates(ctx, twinAt, relAt); err != nil {
		return fmt.Errorf("graph index: apply log records up to %d: %w", last, err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	// Twins first, so new relationships find both ends; deleted twins last, after the
	// relationships that pointed at them are gone. A nil state means deleted.
	for _, id := range twinIDs {
		if t := twinAt[id].Twin; t != nil {
			x.putTwin(*t)
		}
	}
	for _, k := range relKeys {
		if relAt[k].Relationship == nil {
			x.deleteRel(k)
		}
	}
	for _, k := range relKeys {
		if r := relAt[k].Relationship; r != nil {
			x.putRel(*r)
		}
	}
	for _, id := range twinIDs {
		if twinAt[id].Twin == nil {
			x.deleteTwin(id)
		}
	}
	x.applied.Store(last)
	x.appliedID = lastID
	return nil
}

// readStates reads from the store the current state of the twins and relationships whose
// change is not Known, and records it in the change (a nil pointer for one that no longer
// exists). It reads nothing when every state is known.
func (x *Index) readStates(ctx context.Context, twins map[string]*store.Change, rels map[relKey]*store.Change) error {
	if allKnown(twins) && allKnown(rels) {
		return nil
	}
	return x.st.View(ctx, func(r store.Reader) error {
		if mr, ok := r.(store.MultiReader); ok {
			return readStatesAtOnce(mr, twins, rels)
		}
		for id, c := range twins {
			if c.Known {
				continue
			}
			t, err := r.Twin(id)
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				return fmt.Errorf("read twin %q: %w", id, err)
			default:
				c.Twin = &t
			}
			c.Known = true
		}
		for k, c := range rels {
			if c.Known {
				continue
			}
			rel, err := r.Relationship(k.source, k.id)
			switch {
			case errors.Is(err, store.ErrNotFound):
			case err != nil:
				return fmt.Errorf("read relationship %q of %q: %w", k.id, k.source, err)
			default:
				c.Relationship = &rel
			}
			c.Known = true
		}
		return nil
	})
}

// readStatesAtOnce is readStates with a store that reads many entities in one request: the
// twins, then the relationships, whose states the log did not know.
func readStatesAtOnce(r store.MultiReader, twins map[string]*store.Change, rels map[relKey]*store.Change) error {
	var ids []string
	for id, c := range twins {
		if !c.Known {
			ids = append(ids, id)
			c.Twin = nil
		}
	}
	if len(ids) > 0 {
		found, err := r.TwinsOf(ids)
		if err != nil {
			return fmt.Errorf("read %d twins: %w", len(ids), err)
		}
		for i := range found {
			twins[found[i].ID].Twin = &found[i]
		}
		for _, id := range ids {
			twins[id].Known = true // a twin not found was deleted: its nil state says so
		}
	}
	var sources, relIDs []string
	for k, c := range rels {
		if !c.Known {
			sources, relIDs = append(sources, k.source), append(relIDs, k.id)
			c.Relationship = nil
		}
	}
	if len(relIDs) > 0 {
		found, err := r.RelationshipsOf(sources, relIDs)
		if err != nil {
			return fmt.Errorf("read %d relationships: %w", len(relIDs), err)
		}
		for i := range found {
			rels[relKey{source: found[i].SourceID, id: found[i].ID}].Relationship = &found[i]
		}
		for i := range relIDs {
			rels[relKey{source: sources[i], id: relIDs[i]}].Known = true
		}
	}
	return nil
}

// allKnown reports whether every change in m is Known.
func allKnown[K comparable](m map[K]*store.Change) bool {
	for _, c := range m {
		if !c.Known {
			return false
		}
	}
	return true
}

// relationshipKey returns the source and id of the relationship a relationship event is
// about: from the document for Create and Delete, from the subject
// "<source>/relationships/<id>" for Update.
func relationshipKey(e event.Event) (relKey, bool) {
	var doc struct {
		Source string `json:"$sourceId"`
		ID     string `json:"$relationshipId"`
	}
	if json.Unmarshal(e.Data, &doc) == nil && doc.Source != "" && doc.ID != "" {
		return relKey{doc.Source, doc.ID}, true
	}
	src, id, ok := strings.Cut(e.Subject, "/relationships/")
	return relKey{src, id}, ok
}

// preparedTwin is a twin worked out ahead of installing it: its top-level members located
// and their numbers parsed, its document compressed. Preparing touches no index state, so the
// load prepares twins on every CPU.
type preparedTwin struct {
	id, model string
	// keys are the raw member keys (sub-slices of the document), props their value ranges
	// (names not yet interned), nums their values when numbers, else NaN.
	keys  [][]byte
	props []prop
	nums  []float64
	zdoc  []byte
}

// prepArena holds the members of many prepared twins in shared arrays, so that preparing a
// twin allocates only its compressed document.
type prepArena struct {
	keys  [][]byte
	props []prop
	nums  []float64
}

// prepareTwin prepares st, compressing its document with dict and keeping its members in
// ar; zbuf is scratch space for compressing. The result refers to st.Doc until installed.
func prepareTwin(st store.Twin, dict *s2.Dict, ar *prepArena, zbuf *[]byte) preparedTwin {
	doc := st.Doc
	k0 := len(ar.keys)
	eachMember(doc, func(k, v []byte) bool {
		start := cap(doc) - cap(v) // v is a sub-slice of the document
		ar.keys = append(ar.keys, k)
		ar.props = append(ar.props, prop{start: uint32(start), end: uint32(start + len(v))})
		ar.nums = append(ar.nums, number(v))
		return true
	})
	*zbuf = compressDoc(dict, *zbuf, doc)
	k1 := len(ar.keys)
	return preparedTwin{
		id: st.ID, model: st.ModelID,
		keys: ar.keys[k0:k1:k1], props: ar.props[k0:k1:k1], nums: ar.nums[k0:k1:k1],
		zdoc: bytes.Clone(*zbuf),
	}
}

// putTwin inserts or replaces a twin. The caller holds mu for writing.
func (x *Index) putTwin(st store.Twin) *Twin {
	x.arena.keys, x.arena.props, x.arena.nums = x.arena.keys[:0], x.arena.props[:0], x.arena.nums[:0]
	if x.dict == nil && len(x.twinSlots) == 0 {
		x.dict = makeDict([]store.Twin{st}) // before any document is compressed
	}
	return x.install(prepareTwin(st, x.dict, &x.arena, &x.zbuf))
}

// install inserts or replaces the prepared twin p. The caller holds mu for writing.
func (x *Index) install(p preparedTwin) *Twin {
	model := x.modelNum(p.model)
	t, ok := x.twins[p.id]
	if !ok {
		t = &Twin{id: p.id, model: -1}
		if n := len(x.freeTwins); n > 0 {
			t.slot = x.freeTwins[n-1]
			x.freeTwins = x.freeTwins[:n-1]
			x.twinSlots[t.slot] = t
		} else {
			t.slot = int32(len(x.twinSlots))
			x.twinSlots = append(x.twinSlots, t)
		}
		x.twins[t.id] = t
	} else {
		x.keepTwin(t)
	}
	if t.model != model {
		if t.model >= 0 {
			x.byModel[t.model] = removeSorted(x.byModel[t.model], t.slot)
		}
		x.byModel[model] = insertSorted(x.byModel[model], t.slot)
		t.model = model
	}
	props := p.props // named in place: the arena is the prepared twin's own
	for i, pr := range p.props {
		// Twins of a model mostly list the same members in the same order: reuse the name
		// the previous twin had at this position when the key is the same.
		if i < len(x.lastKeys) && string(p.keys[i]) == x.lastKeys[i].key {
			pr.name = x.lastKeys[i].name
		} else {
			pr.name = x.nameNum(p.keys[i])
			if i < len(x.lastKeys) {
				x.lastKeys[i] = lastKey{string(p.keys[i]), pr.name}
			} else {
				x.lastKeys = append(x.lastKeys, lastKey{string(p.keys[i]), pr.name})
			}
		}
		props[i] = pr
	}
	x.setNumbers(t, t.props, props, p.nums)
	x.packBuf = packMembers(x.packBuf[:0], props)
	t.props = members(bytes.Clone(x.packBuf)) // exactly sized: there are a million of them
	t.zdoc = p.zdoc
	return t
}

// setNumbers writes t's numeric top-level members, nums by props, into the number columns,
// creating columns for new names up to the cap; old are the members t had before, whose
// values it clears. Only the columns of old and new members are touched, unless t's slot is
// new and every column grows to cover it. The caller holds mu for writing.
func (x *Index) setNumbers(t *Twin, old members, props []prop, nums []float64) {
	if int(t.slot) >= x.columnLen {
		for name, col := range x.numbers {
			x.numbers[name] = x.growColumn(col)
		}
		x.columnLen = len(x.twinSlots)
	}
	for p := range old.all() {
		if col, ok := x.numbers[p.name]; ok {
			col[t.slot] = math.NaN()
		}
	}
	for i, p := range props {
		f := nums[i]
		if math.IsNaN(f) {
			continue
		}
		col, ok := x.numbers[p.name]
		if !ok {
			if len(x.numbers) >= x.cfg.MaxNumberColumns {
				continue
			}
			col = x.growColumn(nil)
			x.numbers[p.name] = col
		}
		col[t.slot] = f
	}
}

// growColumn extends col with NaNs to cover every twin slot.
func (x *Index) growColumn(col []float64) []float64 {
	for len(col) < len(x.twinSlots) {
		col = append(col, math.NaN())
	}
	return col
}

// deleteTwin removes a twin. The caller holds mu for writing.
func (x *Index) deleteTwin(id string) {
	t, ok := x.twins[id]
	if !ok {
		return
	}
	x.keepTwin(t)
	for _, r := range slices.Clone(t.out) {
		x.removeRel(r)
	}
	for _, r := range slices.Clone(t.in) {
		x.removeRel(r)
	}
	delete(x.twins, id)
	x.byModel[t.model] = removeSorted(x.byModel[t.model], t.slot)
	x.twinSlots[t.slot] = nil
	x.freeTwins = append(x.freeTwins, t.slot)
	for _, col := range x.numbers {
		if int(t.slot) < len(col) {
			col[t.slot] = math.NaN()
		}
	}
}

// putRel inserts or replaces a relationship. A relationship whose twins are not indexed is
// skipped (the store never holds one; the log will bring the twin or the deletion). The
// caller holds mu for writing.
func (x *Index) putRel(sr store.Relationship) {
	src, dst, ok := x.relTwins(sr)
	if !ok {
		return
	}
	if r := x.findRel(relKey{sr.SourceID, sr.ID}); r != nil {
		if r.dst == dst && r.name == sr.Name {
			x.keepRel(r)
			r.doc, r.etagLen = compactRel(sr)
			return
		}
		x.removeRel(r)
	}
	x.addRel(src, dst, sr)
}

// relTwins returns the twins a relationship connects, or false (with a warning) when the
// index lacks one. The caller holds mu.
func (x *Index) relTwins(sr store.Relationship) (src, dst *Twin, ok bool) {
	src, dst = x.twins[sr.SourceID], x.twins[sr.TargetID]
	if src == nil || dst == nil {
		x.logger.Warn("graph index: relationship to or from an unknown twin skipped",
			"source", sr.SourceID, "id", sr.ID, "target", sr.TargetID)
		return nil, nil, false
	}
	return src, dst, true
}

// addRel adds a relationship the index does not hold yet. The caller holds mu for writing.
func (x *Index) addRel(src, dst *Twin, sr store.Relationship) {
	name, ok := x.relNames[sr.Name]
	if !ok {
		name = sr.Name
		x.relNames[name] = name
	}
	r := &Rel{id: sr.ID, name: name, src: src, dst: dst}
	r.doc, r.etagLen = compactRel(sr)
	if n := len(x.freeRels); n > 0 {
		r.slot = x.freeRels[n-1]
		x.freeRels = x.freeRels[:n-1]
		x.relSlots[r.slot] = r
	} else {
		r.slot = int32(len(x.relSlots))
		x.relSlots = append(x.relSlots, r)
	}
	x.rels++
	x.keepTwin(src)
	x.keepTwin(dst)
	src.out = append(src.out, r)
	dst.in = append(dst.in, r)
}

// findRel returns the relationship k, or nil. It walks the source twin's outgoing
// relationships, a few as a rule and at most ADT's limit of 50,000. The caller holds mu.
func (x *Index) findRel(k relKey) *Rel {
	src := x.twins[k.source]
	if src == nil {
		return nil
	}
	for _, r := range src.out {
		if r.id == k.id {
			return r
		}
	}
	return nil
}

// deleteRel removes the relationship k if the index holds it. The caller holds mu for
// writing.
func (x *Index) deleteRel(k relKey) {
	if r := x.findRel(k); r != nil {
		x.removeRel(r)
	}
}

// removeRel removes r. The caller holds mu for writing.
func (x *Index) removeRel(r *Rel) {
	x.rels--
	x.keepTwin(r.src)
	x.keepTwin(r.dst)
	r.src.out = slices.DeleteFunc(r.src.out, func(o *Rel) bool { return o == r })
	r.dst.in = slices.DeleteFunc(r.dst.in, func(o *Rel) bool { return o == r })
	x.relSlots[r.slot] = nil
	x.freeRels = append(x.freeRels, r.slot)
}

// modelNum interns a model id. The caller holds mu for writing.
func (x *Index) modelNum(id string) int32 {
	if n, ok := x.modelNums[id]; ok {
		return n
	}
	n := int32(len(x.modelIDs))
	x.modelIDs = append(x.modelIDs, id)
	x.modelNums[id] = n
	x.byModel = append(x.byModel, nil)
	return n
}

// nameNum interns a property name given as its raw JSON key. The caller holds mu for writing.
func (x *Index) nameNum(key []byte) uint32 {
	if bytes.IndexByte(key, '\\') < 0 && len(key) >= 2 {
		if n, ok := x.names[string(key[1:len(key)-1])]; ok { // no allocation
			return n
		}
	}
	name := keyString(key)
	if n, ok := x.names[name]; ok {
		return n
	}
	n := uint32(len(x.names))
	x.names[name] = n
	return n
}

func insertSorted(s []int32, v int32) []int32 {
	i, found := slices.BinarySearch(s, v)
	if found {
		return s
	}
	return slices.Insert(s, i, v)
}

func removeSorted(s []int32, v int32) []int32 {
	i, found := slices.BinarySearch(s, v)
	if !found {
		return s
	}
	return slices.Delete(s, i, i+1)
}
