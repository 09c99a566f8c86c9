package graph

import (
	"bufio"
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sync"

	"github.com/klauspost/compress/s2"

	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/store"
)

// ErrBadSnapshot reports that a snapshot cannot be loaded: the file is missing, cut short,
// damaged, of another format version or model set, or does not fit the store's change log
// (its seq is past the log's end, or the log no longer holds the records after it). The
// error wraps the reason. The index must then be built from the store (New).
var ErrBadSnapshot = errors.New("graph index: unusable snapshot")

// The snapshot format.
//
// A snapshot starts with a header of snapshotHeaderLen bytes: the magic, the format version
// (uint32), a reserved uint32, the seq the index had applied (uint64), the SHA-256 of the
// model set (modelSetHash), the fingerprint of the log record at the seq (fingerprintOf; zero
// when unknown), and the CRC-32C of the bytes before it; all integers are little
// endian. Chunks follow, each a tag (uint32), the payload's length (uint32), the payload and
// the CRC-32C of tag, length and payload. The chunks come in this order: one chunkMeta, the
// chunkTwins, the chunkColumn, the chunkRels, the chunkAdjacency, and one chunkEnd, which
// repeats the counts so that a file cut at a chunk boundary is told from a whole one.
//
// The index's structures are written as they are, slots included, so that loading is mostly
// copying: twins with their compressed documents and located members, number columns,
// relationships, and each twin's outgoing and incoming relationships by slot, in order. The
// meta chunk carries the dictionary the documents are compressed with.
const (
	snapshotMagic     = "TFGRAPH\x00"
	snapshotVersion   = 2
	snapshotHeaderLen = 8 + 4 + 4 + 8 + sha256.Size + fingerprintLen + 4

	chunkMeta      = 1
	chunkTwins     = 2
	chunkColumn    = 3
	chunkRels      = 4
	chunkAdjacency = 5
	chunkEnd       = 6

	// chunkTarget is the payload size at which a chunk is closed; chunkMax the largest
	// payload a loader accepts.
	chunkTarget = 1 << 20
	chunkMax    = 64 << 20
	// columnRun is the number of values of a number column per chunk.
	columnRun = 64 << 10
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// WriteSnapshot writes the index to w in the snapshot format (see OpenSnapshot) and returns
// the seq it is as of: every twin and relationship is as the index held it once it had
// applied the log through that seq.
//
// It does not stop the index for the whole write. Holding the lock that applying log records
// takes, it notes the seq, copies the slot tables, free lists, names and number columns (a
// few bytes per twin and relationship), and starts a freeze; then it lets the follower go on.
// While the freeze lasts, applying a record first keeps the state as of the seq of every
// twin and relationship it is about to change (see keepTwin and keepRel), once each. The
// writer then visits the copied slots a chunk at a time under the index's shared lock, taking
// each entity's kept state where there is one and its current state otherwise (which is then
// still the state as of the seq), and writes each chunk out with no lock held. The snapshot
// is therefore exactly the index as of the seq, however many records are applied meanwhile;
// the cost is a brief shared lock per chunk and the memory of the states kept. Snapshots are
// written one at a time. The index must follow a store.
func (x *Index) WriteSnapshot(w io.Writer) (seq uint64, err error) {
	if x.st == nil {
		return 0, errors.New("graph index: a static index has no snapshot")
	}
	x.snapshotMu.Lock()
	defer x.snapshotMu.Unlock()
	hash, err := modelSetHash(context.Background(), x.st)
	if err != nil {
		return 0, err
	}
	sw := &snapshotWriter{w: w}
	fz := x.freeze(sw)
	defer x.thaw()
	seq = fz.seq
	fp := x.fingerprintAt(seq, fz.seqID)

	header := make([]byte, 0, snapshotHeaderLen)
	header = append(header, snapshotMagic...)
	header = binary.LittleEndian.AppendUint32(header, snapshotVersion)
	header = binary.LittleEndian.AppendUint32(header, 0)
	header = binary.LittleEndian.AppendUint64(header, seq)
	header = append(header, hash[:]...)
	header = append(header, fp[:]...)
	header = binary.LittleEndian.AppendUint32(header, crc32.Checksum(header, castagnoli))
	if _, err := w.Write(header); err != nil {
		return 0, fmt.Errorf("graph index: write snapshot: %w", err)
	}
	meta := sw.buf
	sw.buf = nil
	sw.write(chunkMeta, meta)
	x.writeTwins(sw, fz)
	fz.writeColumns(sw)
	x.writeRels(sw, fz)
	x.writeAdjacency(sw, fz)
	b := binary.LittleEndian.AppendUint64(nil, uint64(fz.twins))
	b = binary.LittleEndian.AppendUint64(b, uint64(fz.rels))
	sw.write(chunkEnd, b)
	if sw.err != nil {
		return 0, fmt.Errorf("graph index: write snapshot: %w", sw.err)
	}
	return seq, nil
}

// frozen is the index as of a seq while a snapshot of it is written: what WriteSnapshot
// copied at the start, and the states applying records has kept since (see keepTwin).
type frozen struct {
	seq uint64
	// seqID is the event id of the record at seq, "" when the index does not know it.
	seqID       string
	twinSlots   []*Twin
	relSlots    []*Rel
	twins, rels int
	columns     map[uint32][]float64
	relNameNums map[string]uint32
	// twinStates and relStates hold, for each twin and relationship changed since the
	// freeze began, its state as of seq. They are guarded by mu.
	twinStates map[*Twin]twinState
	relStates  map[*Rel]relState
}

// relState is what of a relationship may change.
type relState struct {
	doc     []byte
	etagLen uint16
}

// twinState is what of a twin may change.
type twinState struct {
	model   int32
	zdoc    []byte
	props   members
	out, in []*Rel
}

// freeze starts a freeze of the index as of the seq it has applied and returns it, with the
// meta chunk's payload in sw.buf.
func (x *Index) freeze(sw *snapshotWriter) *frozen {
	x.applyMu.Lock()
	defer x.applyMu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	fz := &frozen{
		seq: x.applied.Load(), seqID: x.appliedID,
		twinSlots: slices.Clone(x.twinSlots), relSlots: slices.Clone(x.relSlots),
		twins: len(x.twins), rels: x.rels,
		columns:    make(map[uint32][]float64, len(x.numbers)),
		twinStates: make(map[*Twin]twinState), relStates: make(map[*Rel]relState),
	}
	for n, col := range x.numbers {
		fz.columns[n] = slices.Clone(col)
	}
	relNames := x.relNameList()
	fz.relNameNums = make(map[string]uint32, len(relNames))
	for i, name := range relNames {
		fz.relNameNums[name] = uint32(i)
	}
	sw.buf = x.appendMeta(sw.buf, relNames)
	x.frozen = fz
	return fz
}

// thaw ends the freeze.
func (x *Index) thaw() {
	x.applyMu.Lock()
	defer x.applyMu.Unlock()
	x.mu.Lock()
	defer x.mu.Unlock()
	x.frozen = nil
}

// keepTwin keeps t's state for the snapshot being written, unless it was kept already,
// before t changes. The caller holds mu for writing.
func (x *Index) keepTwin(t *Twin) {
	if x.frozen == nil {
		return
	}
	if _, ok := x.frozen.twinStates[t]; ok {
		return
	}
	// The lists are changed in place (removeRel); the documents and members are replaced.
	x.frozen.twinStates[t] = twinState{model: t.model, zdoc: t.zdoc, props: t.props, out: slices.Clone(t.out), in: slices.Clone(t.in)}
}

// keepRel keeps r's document for the snapshot being written, as keepTwin does.
func (x *Index) keepRel(r *Rel) {
	if x.frozen == nil {
		return
	}
	if _, ok := x.frozen.relStates[r]; !ok {
		x.frozen.relStates[r] = relState{doc: r.doc, etagLen: r.etagLen}
	}
}

// twinState returns t's state as of the freeze. The caller holds mu.
func (fz *frozen) twinState(t *Twin) twinState {
	if st, ok := fz.twinStates[t]; ok {
		return st
	}
	return twinState{model: t.model, zdoc: t.zdoc, props: t.props, out: t.out, in: t.in}
}

// snapshotWriter writes chunks: buf collects a chunk's payload.
type snapshotWriter struct {
	w   io.Writer
	buf []byte
	err error
}

// write writes payload as a chunk of the tag.
func (sw *snapshotWriter) write(tag uint32, payload []byte) {
	if sw.err != nil {
		return
	}
	var frame [8]byte
	binary.LittleEndian.PutUint32(frame[0:], tag)
	binary.LittleEndian.PutUint32(frame[4:], uint32(len(payload)))
	crc := crc32.Update(crc32.Checksum(frame[:], castagnoli), castagnoli, payload)
	var sum [4]byte
	binary.LittleEndian.PutUint32(sum[:], crc)
	for _, b := range [][]byte{frame[:], payload, sum[:]} {
		if _, err := sw.w.Write(b); err != nil {
			sw.err = err
			return
		}
	}
}

// chunks calls fill for the items from to n in runs under x's shared lock, each run until
// the chunk being filled reaches chunkTarget, and writes each chunk with no lock held. fill
// appends item i to b.
func (x *Index) chunks(sw *snapshotWriter, tag uint32, n int, fill func(b []byte, i int) []byte) {
	for i := 0; i < n && sw.err == nil; {
		b := sw.buf[:0]
		x.mu.RLock()
		for ; i < n && len(b) < chunkTarget; i++ {
			b = fill(b, i)
		}
		x.mu.RUnlock()
		if len(b) > 0 {
			sw.write(tag, b)
		}
		sw.buf = b
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendInt32s(b []byte, s []int32) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	for _, v := range s {
		b = binary.LittleEndian.AppendUint32(b, uint32(v))
	}
	return b
}

// appendMeta appends the meta chunk's payload: the slot counts, the interned model ids,
// property names and relationship names, the names that have number columns, and the free
// slots, and the documents' dictionary. The caller holds mu.
func (x *Index) appendMeta(b []byte, relNames []string) []byte {
	b = binary.AppendUvarint(b, uint64(len(x.twinSlots)))
	b = binary.AppendUvarint(b, uint64(len(x.relSlots)))
	b = binary.AppendUvarint(b, uint64(x.columnLen))
	b = binary.AppendUvarint(b, uint64(len(x.modelIDs)))
	for _, id := range x.modelIDs {
		b = appendString(b, id)
	}
	names := make([]string, len(x.names))
	for name, n := range x.names {
		names[n] = name
	}
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, name := range names {
		b = appendString(b, name)
	}
	b = binary.AppendUvarint(b, uint64(len(relNames)))
	for _, name := range relNames {
		b = appendString(b, name)
	}
	columns := make([]int32, 0, len(x.numbers))
	for n := range x.numbers {
		columns = append(columns, int32(n))
	}
	slices.Sort(columns)
	b = appendInt32s(b, columns)
	b = appendInt32s(b, x.freeTwins)
	b = appendInt32s(b, x.freeRels)
	var dict []byte
	if x.dict != nil {
		dict = x.dict.Bytes()
	}
	b = binary.AppendUvarint(b, uint64(len(dict)))
	return append(b, dict...)
}

// relNameList returns the interned relationship names, sorted.
func (x *Index) relNameList() []string {
	names := make([]string, 0, len(x.relNames))
	for name := range x.relNames {
		names = append(names, name)
	}
	slices.Sort(names)
	return names
}

// writeTwins writes every twin: slot, model number, id, compressed document and packed
// members.
func (x *Index) writeTwins(sw *snapshotWriter, fz *frozen) {
	x.chunks(sw, chunkTwins, len(fz.twinSlots), func(b []byte, i int) []byte {
		t := fz.twinSlots[i]
		if t == nil {
			return b
		}
		st := fz.twinState(t)
		b = binary.LittleEndian.AppendUint32(b, uint32(t.slot))
		b = binary.LittleEndian.AppendUint32(b, uint32(st.model))
		b = appendString(b, t.id)
		b = binary.AppendUvarint(b, uint64(len(st.zdoc)))
		b = append(b, st.zdoc...)
		b = binary.AppendUvarint(b, uint64(len(st.props)))
		return append(b, st.props...)
	})
}

// writeColumns writes the number columns in runs of columnRun values: name, first slot,
// number of values, values.
func (fz *frozen) writeColumns(sw *snapshotWriter) {
	names := make([]uint32, 0, len(fz.columns))
	for n := range fz.columns {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		col := fz.columns[n]
		for from := 0; from < len(col); from += columnRun {
			run := col[from:min(from+columnRun, len(col))]
			b := sw.buf[:0]
			b = binary.LittleEndian.AppendUint32(b, n)
			b = binary.LittleEndian.AppendUint32(b, uint32(from))
			b = binary.LittleEndian.AppendUint32(b, uint32(len(run)))
			for _, f := range run {
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(f))
			}
			sw.write(chunkColumn, b)
			sw.buf = b
		}
	}
}

// writeRels writes every relationship: slot, source and target slots, name number, id, and
// document, compact or not (see compactRel).
func (x *Index) writeRels(sw *snapshotWriter, fz *frozen) {
	x.chunks(sw, chunkRels, len(fz.relSlots), func(b []byte, i int) []byte {
		r := fz.relSlots[i]
		if r == nil {
			return b
		}
		st, ok := fz.relStates[r]
		if !ok {
			st = relState{doc: r.doc, etagLen: r.etagLen}
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(r.slot))
		b = binary.LittleEndian.AppendUint32(b, uint32(r.src.slot))
		b = binary.LittleEndian.AppendUint32(b, uint32(r.dst.slot))
		b = binary.LittleEndian.AppendUint32(b, fz.relNameNums[r.name])
		b = appendString(b, r.id)
		b = binary.AppendUvarint(b, uint64(st.etagLen))
		b = binary.AppendUvarint(b, uint64(len(st.doc)))
		return append(b, st.doc...)
	})
}

// writeAdjacency writes, for each twin with relationships, its slot and the slots of its
// outgoing and incoming relationships in their order.
func (x *Index) writeAdjacency(sw *snapshotWriter, fz *frozen) {
	x.chunks(sw, chunkAdjacency, len(fz.twinSlots), func(b []byte, i int) []byte {
		t := fz.twinSlots[i]
		if t == nil {
			return b
		}
		st := fz.twinState(t)
		if len(st.out) == 0 && len(st.in) == 0 {
			return b
		}
		b = binary.LittleEndian.AppendUint32(b, uint32(t.slot))
		b = binary.AppendUvarint(b, uint64(len(st.out)))
		for _, r := range st.out {
			b = binary.LittleEndian.AppendUint32(b, uint32(r.slot))
		}
		b = binary.AppendUvarint(b, uint64(len(st.in)))
		for _, r := range st.in {
			b = binary.LittleEndian.AppendUint32(b, uint32(r.slot))
		}
		return b
	})
}

// modelSetHash returns the SHA-256 of st's models, ids and definitions, in id order.
func modelSetHash(ctx context.Context, st store.Store) ([sha256.Size]byte, error) {
	h := sha256.New()
	err := st.View(ctx, func(r store.Reader) error {
		models, err := r.Models("", 0)
		if err != nil {
			return err
		}
		slices.SortFunc(models, func(a, b store.Model) int { return cmp.Compare(a.ID, b.ID) })
		for _, m := range models {
			h.Write(binary.AppendUvarint(nil, uint64(len(m.ID))))
			h.Write([]byte(m.ID))
			h.Write(binary.AppendUvarint(nil, uint64(len(m.Definition))))
			h.Write(m.Definition)
		}
		return nil
	})
	var sum [sha256.Size]byte
	if err != nil {
		return sum, fmt.Errorf("graph index: read the models: %w", err)
	}
	h.Sum(sum[:0])
	return sum, nil
}

// SnapshotTempSuffix follows the path of a snapshot in the name of the temporary file
// SaveSnapshot writes it to, before a random part: such a file left behind (by a crash while
// writing) can be removed.
const SnapshotTempSuffix = ".tmp-"

// SaveSnapshot writes the index's snapshot to path atomically: to a temporary file in the
// same directory (see SnapshotTempSuffix), synced, renamed over path, and the directory
// synced. It returns the seq the snapshot is as of (see WriteSnapshot).
func (x *Index) SaveSnapshot(path string) (seq uint64, err error) {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, filepath.Base(path)+SnapshotTempSuffix+"*")
	if err != nil {
		return 0, fmt.Errorf("graph index: save snapshot: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	bw := bufio.NewWriterSize(f, 1<<20)
	if seq, err = x.WriteSnapshot(bw); err != nil {
		return 0, err
	}
	if err = bw.Flush(); err != nil {
		return 0, fmt.Errorf("graph index: save snapshot: %w", err)
	}
	if err = f.Sync(); err != nil {
		return 0, fmt.Errorf("graph index: save snapshot: sync: %w", err)
	}
	if err = f.Close(); err != nil {
		return 0, fmt.Errorf("graph index: save snapshot: %w", err)
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return 0, fmt.Errorf("graph index: save snapshot: %w", err)
	}
	if err := syncDir(dir); err != nil {
		return 0, fmt.Errorf("graph index: save snapshot: sync %s: %w", dir, err)
	}
	return seq, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// SnapshotSeq returns the seq of the snapshot at path as its header records it, after
// checking the header; it reads nothing else.
func SnapshotSeq(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	defer f.Close()
	h, err := readHeader(f)
	if err != nil {
		return 0, err
	}
	return h.seq, nil
}

type snapshotHeader struct {
	seq  uint64
	hash [sha256.Size]byte
	// fp fingerprints the log record at seq; zero when it was not known.
	fp fingerprint
}

// fingerprintLen is the length of a fingerprint.
const fingerprintLen = 16

// fingerprint identifies a change-log record by its event id: the first bytes of the id's
// SHA-256. A snapshot keeps the fingerprint of the record at its seq, so that a log that has
// reached that seq with other records (another or a restored database under the same data
// directory) is told from the one the snapshot was written from.
type fingerprint [fingerprintLen]byte

// fingerprintOf returns the fingerprint of the record whose event id is id.
func fingerprintOf(id string) fingerprint {
	sum := sha256.Sum256([]byte(id))
	return fingerprint(sum[:fingerprintLen])
}

// fingerprintAt returns the fingerprint of the log record at seq, whose event id is id when
// the index knows it; otherwise it reads the record from the log. It returns the zero
// fingerprint for seq 0 and when the log no longer holds the record.
func (x *Index) fingerprintAt(seq uint64, id string) fingerprint {
	if seq == 0 {
		return fingerprint{}
	}
	if id == "" {
		recs, err := x.st.Log().Read(context.Background(), seq-1, 1)
		if err != nil || len(recs) == 0 || recs[0].Seq != seq {
			return fingerprint{}
		}
		id = recs[0].Event.ID
	}
	return fingerprintOf(id)
}

// readHeader reads and checks a snapshot's header.
func readHeader(r io.Reader) (snapshotHeader, error) {
	var h snapshotHeader
	b := make([]byte, snapshotHeaderLen)
	if _, err := io.ReadFull(r, b); err != nil {
		return h, fmt.Errorf("%w: read the header: %w", ErrBadSnapshot, err)
	}
	if string(b[:8]) != snapshotMagic {
		return h, fmt.Errorf("%w: not a graph index snapshot", ErrBadSnapshot)
	}
	n := snapshotHeaderLen - 4
	if crc32.Checksum(b[:n], castagnoli) != binary.LittleEndian.Uint32(b[n:]) {
		return h, fmt.Errorf("%w: the header's checksum does not match", ErrBadSnapshot)
	}
	if v := binary.LittleEndian.Uint32(b[8:]); v != snapshotVersion {
		return h, fmt.Errorf("%w: format version %d, this build reads %d", ErrBadSnapshot, v, snapshotVersion)
	}
	h.seq = binary.LittleEndian.Uint64(b[16:])
	copy(h.hash[:], b[24:])
	copy(h.fp[:], b[24+sha256.Size:])
	return h, nil
}

// OpenSnapshot loads the index from the snapshot at path, written by SaveSnapshot for an
// index of st, and returns it as of the snapshot's seq: it follows st's change log from the
// next record on (see Run and Sync), like an index New built, and reflects every write once
// it has caught up. The arguments are New's. It fails with ErrBadSnapshot, wrapping the
// reason, when the file is missing, cut short, damaged or of another format version, when it
// was written with another model set than st holds, when its seq is past the end of st's
// log, or when the log no longer holds the records after it; the index must then be built
// with New. Any other error is the store's.
func OpenSnapshot(ctx context.Context, path string, cfg Config, st store.Store, models func() *dtdl.ModelSet, logger *slog.Logger) (*Index, error) {
	if st == nil || models == nil {
		return nil, errors.New("graph index: a store and a model source are required")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrBadSnapshot, err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<20)
	h, err := readHeader(br)
	if err != nil {
		return nil, err
	}
	hash, err := modelSetHash(ctx, st)
	if err != nil {
		return nil, err
	}
	if hash != h.hash {
		return nil, fmt.Errorf("%w: written with another model set", ErrBadSnapshot)
	}
	if err := checkLog(ctx, st.Log(), h.seq, h.fp); err != nil {
		return nil, err
	}
	x := newIndex(cfg, models, logger)
	x.st = st
	if err := x.loadSnapshot(ctx, br); err != nil {
		return nil, err
	}
	x.applied.Store(h.seq)
	return x, nil
}

// checkLog checks that log is the one a snapshot at seq was written from (its record at seq
// has the fingerprint fp, unless fp is zero) and that it can be followed from the record
// after seq.
func checkLog(ctx context.Context, log store.Log, seq uint64, fp fingerprint) error {
	last := log.Last()
	if seq > last {
		return fmt.Errorf("%w: its seq %d is past the change log's last record %d", ErrBadSnapshot, seq, last)
	}
	if seq > 0 && fp != (fingerprint{}) {
		// Records up to last exist, so this read does not wait.
		recs, err := log.Read(ctx, seq-1, 1)
		if err != nil {
			return fmt.Errorf("graph index: read the change log at %d: %w", seq, err)
		}
		switch {
		case len(recs) == 0 || recs[0].Seq != seq:
			return fmt.Errorf("%w: the change log no longer holds the record at its seq %d", ErrBadSnapshot, seq)
		case fingerprintOf(recs[0].Event.ID) != fp:
			return fmt.Errorf("%w: the change log's record at its seq %d is another one than when it was written (another database?)", ErrBadSnapshot, seq)
		}
	}
	if seq == last {
		return nil
	}
	recs, err := log.Read(ctx, seq, 1)
	if err != nil {
		return fmt.Errorf("graph index: read the change log after %d: %w", seq, err)
	}
	if len(recs) == 0 || recs[0].Seq != seq+1 {
		next := uint64(0)
		if len(recs) > 0 {
			next = recs[0].Seq
		}
		return fmt.Errorf("%w: the change log no longer holds the records after its seq %d (next is %d)", ErrBadSnapshot, seq, next)
	}
	return nil
}

// snapshotMeta is the content of the meta chunk.
type snapshotMeta struct {
	twinSlots, relSlots, columnLen int
	relNames                       []string
	columns                        []int32
}

// loadSnapshot reads the chunks after the header into the empty index x. Chunks of twins,
// columns, relationships and adjacency are decoded on every CPU, each kind once the kinds
// before it are in place; their entities know their slots, so workers fill disjoint parts of
// the index. The twins map and model lists are filled after the twins, while the
// relationships are read.
func (x *Index) loadSnapshot(ctx context.Context, br *bufio.Reader) error {
	tag, payload, err := readChunk(br, nil)
	if err != nil {
		return err
	}
	if tag != chunkMeta {
		return fmt.Errorf("%w: chunk %d where the meta chunk belongs", ErrBadSnapshot, tag)
	}
	meta, err := x.decodeMeta(payload)
	if err != nil {
		return err
	}

	workers := max(runtime.GOMAXPROCS(0), 1)
	var (
		wg       sync.WaitGroup
		errMu    sync.Mutex
		firstErr error
		// bufs holds the chunk buffers not in use: decoding copies out what it keeps, so a
		// buffer goes back for the next chunk, and loading leaves little garbage.
		// Their number bounds the chunks in memory.
		bufs   = make(chan []byte, 2*workers)
		phase  = uint32(chunkMeta)
		mapped = make(chan struct{}) // closed once the twins map and model lists are filled
		twins  = 0
	)
	fail := func(err error) {
		errMu.Lock()
		if firstErr == nil {
			firstErr = err
		}
		errMu.Unlock()
	}
	failed := func() error {
		errMu.Lock()
		defer errMu.Unlock()
		return firstErr
	}
	for range cap(bufs) {
		bufs <- nil
	}
	mapStarted := false
	defer func() {
		wg.Wait()
		if mapStarted {
			<-mapped
		}
	}()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := failed(); err != nil {
			return err
		}
		tag, payload, err := readChunk(br, <-bufs)
		if err != nil {
			return err
		}
		if tag < phase || tag > chunkEnd {
			return fmt.Errorf("%w: chunk %d after chunk %d", ErrBadSnapshot, tag, phase)
		}
		if tag != phase {
			// Every chunk of a kind is in place before the next kind begins: relationships
			// point at twins, adjacency at relationships.
			wg.Wait()
			if err := failed(); err != nil {
				return err
			}
			phase = tag
			if phase > chunkTwins && !mapStarted {
				mapStarted = true
				go func() {
					twins = x.mapTwins()
					close(mapped)
				}()
			}
		}
		if tag == chunkEnd {
			<-mapped
			return x.checkEnd(payload, twins)
		}
		var decode func([]byte) error
		switch tag {
		case chunkTwins:
			decode = x.decodeTwins
		case chunkColumn:
			decode = x.decodeColumn
		case chunkRels:
			decode = func(p []byte) error { return x.decodeRels(p, meta.relNames) }
		case chunkAdjacency:
			decode = x.decodeAdjacency
		default:
			return fmt.Errorf("%w: unexpected chunk %d", ErrBadSnapshot, tag)
		}
		wg.Go(func() {
			if err := decode(payload); err != nil {
				fail(err)
			}
			bufs <- payload
		})
	}
}

// readChunk reads the next chunk and checks its checksum. It reads into buf when it has room.
func readChunk(br *bufio.Reader, buf []byte) (tag uint32, payload []byte, err error) {
	var frame [8]byte
	if _, err := io.ReadFull(br, frame[:]); err != nil {
		return 0, nil, fmt.Errorf("%w: read a chunk: %w", ErrBadSnapshot, noEOF(err))
	}
	tag = binary.LittleEndian.Uint32(frame[0:])
	n := binary.LittleEndian.Uint32(frame[4:])
	if n > chunkMax {
		return 0, nil, fmt.Errorf("%w: chunk of %d bytes", ErrBadSnapshot, n)
	}
	if payload = buf[:0]; cap(payload) < int(n)+4 {
		payload = make([]byte, n+4, max(n+4, chunkTarget+64<<10))
	}
	payload = payload[:n+4]
	if _, err := io.ReadFull(br, payload); err != nil {
		return 0, nil, fmt.Errorf("%w: read a chunk: %w", ErrBadSnapshot, noEOF(err))
	}
	crc := crc32.Update(crc32.Checksum(frame[:], castagnoli), castagnoli, payload[:n])
	if crc != binary.LittleEndian.Uint32(payload[n:]) {
		return 0, nil, fmt.Errorf("%w: a chunk's checksum does not match", ErrBadSnapshot)
	}
	return tag, payload[:n], nil
}

// noEOF turns io.EOF into io.ErrUnexpectedEOF: a snapshot ends with its end chunk.
func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// decoder reads the fields of a chunk's payload; the first read past its end sets err.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail() {
	if d.err == nil {
		d.err = fmt.Errorf("%w: a chunk's content is malformed", ErrBadSnapshot)
	}
	d.b = nil
}

func (d *decoder) u32() uint32 {
	if len(d.b) < 4 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint32(d.b)
	d.b = d.b[4:]
	return v
}

func (d *decoder) u64() uint64 {
	if len(d.b) < 8 {
		d.fail()
		return 0
	}
	v := binary.LittleEndian.Uint64(d.b)
	d.b = d.b[8:]
	return v
}

func (d *decoder) uvarint() uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail()
		return 0
	}
	d.b = d.b[n:]
	return v
}

// count reads a length and checks that at least each bytes per element remain.
func (d *decoder) count(each int) int {
	n := d.uvarint()
	if n > uint64(len(d.b)/max(each, 1)) {
		d.fail()
		return 0
	}
	return int(n)
}

// bytes returns the next length-prefixed bytes, sharing the payload's memory.
func (d *decoder) bytes() []byte {
	n := d.count(1)
	if d.err != nil {
		return nil
	}
	b := d.b[:n:n]
	d.b = d.b[n:]
	return b
}

func (d *decoder) string() string { return string(d.bytes()) }

func (d *decoder) int32s() []int32 {
	n := d.count(4)
	s := make([]int32, n)
	for i := range s {
		s[i] = int32(d.u32())
	}
	return s
}

// decodeMeta reads the meta chunk into x and sizes its slices.
func (x *Index) decodeMeta(payload []byte) (snapshotMeta, error) {
	d := decoder{b: payload}
	var m snapshotMeta
	twinSlots, relSlots, columnLen := d.uvarint(), d.uvarint(), d.uvarint()
	if twinSlots > math.MaxInt32 || relSlots > math.MaxInt32 || columnLen > twinSlots {
		d.fail()
	}
	m.twinSlots, m.relSlots, m.columnLen = int(twinSlots), int(relSlots), int(columnLen)
	models := d.count(1)
	for range models {
		x.modelNum(d.string())
	}
	names := d.count(1)
	for i := range names {
		x.names[d.string()] = uint32(i)
	}
	m.relNames = make([]string, d.count(1))
	for i := range m.relNames {
		m.relNames[i] = d.string()
		x.relNames[m.relNames[i]] = m.relNames[i]
	}
	m.columns = d.int32s()
	x.freeTwins = d.int32s()
	x.freeRels = d.int32s()
	if dict := d.bytes(); len(dict) > 0 {
		if x.dict = s2.NewDict(slices.Clone(dict)); x.dict == nil {
			return m, fmt.Errorf("%w: the documents' dictionary is malformed", ErrBadSnapshot)
		}
	}
	if d.err != nil || len(d.b) != 0 || len(x.names) != names || len(x.modelIDs) != models {
		return m, fmt.Errorf("%w: the meta chunk is malformed", ErrBadSnapshot)
	}
	x.twinSlots = make([]*Twin, m.twinSlots)
	x.relSlots = make([]*Rel, m.relSlots)
	x.columnLen = m.columnLen
	for _, n := range m.columns {
		if uint32(n) >= uint32(names) {
			return m, fmt.Errorf("%w: a number column of an unknown name", ErrBadSnapshot)
		}
		col := make([]float64, m.columnLen)
		for i := range col {
			col[i] = math.NaN()
		}
		x.numbers[uint32(n)] = col
	}
	for _, s := range x.freeTwins {
		if s < 0 || int(s) >= m.twinSlots {
			return m, fmt.Errorf("%w: a free twin slot out of range", ErrBadSnapshot)
		}
	}
	for _, s := range x.freeRels {
		if s < 0 || int(s) >= m.relSlots {
			return m, fmt.Errorf("%w: a free relationship slot out of range", ErrBadSnapshot)
		}
	}
	return m, nil
}

// decodeTwins reads a chunk of twins into their slots. The Twins of a chunk share one
// allocation; a twin's compressed document and members get allocations of their own, since
// they are replaced whenever the twin changes.
func (x *Index) decodeTwins(payload []byte) error {
	d := decoder{b: payload}
	var slab []Twin
	for len(d.b) > 0 && d.err == nil {
		if len(slab) == cap(slab) {
			slab = make([]Twin, 0, 256)
		}
		slot, model := d.u32(), d.u32()
		id := d.string()
		zdoc := slices.Clone(d.bytes())
		props := members(slices.Clone(d.bytes()))
		if d.err != nil {
			break
		}
		if int(slot) >= len(x.twinSlots) || int(model) >= len(x.modelIDs) || x.twinSlots[slot] != nil {
			return fmt.Errorf("%w: a twin's slot or model is out of range", ErrBadSnapshot)
		}
		if !props.valid(len(x.names)) {
			return fmt.Errorf("%w: a twin's members are malformed", ErrBadSnapshot)
		}
		slab = append(slab, Twin{id: id, slot: int32(slot), model: int32(model), zdoc: zdoc, props: props})
		x.twinSlots[slot] = &slab[len(slab)-1]
	}
	return d.err
}

// mapTwins fills the twins map and the lists of twins by model from the twin slots, and
// returns the number of twins.
func (x *Index) mapTwins() int {
	n := 0
	for _, t := range x.twinSlots {
		if t != nil {
			n++
		}
	}
	x.twins = make(map[string]*Twin, n)
	for _, t := range x.twinSlots {
		if t != nil {
			x.twins[t.id] = t
			x.byModel[t.model] = append(x.byModel[t.model], t.slot) // slots ascend: sorted
		}
	}
	return n
}

// decodeColumn reads a run of a number column.
func (x *Index) decodeColumn(payload []byte) error {
	d := decoder{b: payload}
	name, from, n := d.u32(), int(d.u32()), int(d.u32())
	col, ok := x.numbers[name]
	if d.err != nil || !ok || from+n > len(col) || len(d.b) != 8*n {
		return fmt.Errorf("%w: a number column chunk is malformed", ErrBadSnapshot)
	}
	for i := range n {
		col[from+i] = math.Float64frombits(d.u64())
	}
	return nil
}

// decodeRels reads a chunk of relationships into their slots.
func (x *Index) decodeRels(payload []byte, names []string) error {
	d := decoder{b: payload}
	var slab []Rel
	for len(d.b) > 0 && d.err == nil {
		if len(slab) == cap(slab) {
			slab = make([]Rel, 0, 256)
		}
		slot, src, dst, name := d.u32(), d.u32(), d.u32(), d.u32()
		id := d.string()
		etagLen := d.uvarint()
		doc := slices.Clone(d.bytes())
		if d.err != nil {
			break
		}
		if etagLen > 0 && (etagLen >= 1<<16 || etagLen+2 > uint64(len(doc)) || doc[0] != '"' || doc[etagLen-1] != '"' || doc[etagLen] != '{') {
			return fmt.Errorf("%w: a relationship's compact document is malformed", ErrBadSnapshot)
		}
		if int(slot) >= len(x.relSlots) || x.relSlots[slot] != nil || int(name) >= len(names) ||
			int(src) >= len(x.twinSlots) || int(dst) >= len(x.twinSlots) ||
			x.twinSlots[src] == nil || x.twinSlots[dst] == nil {
			return fmt.Errorf("%w: a relationship's slot, name or twins are out of range", ErrBadSnapshot)
		}
		slab = append(slab, Rel{id: id, name: names[name], slot: int32(slot), etagLen: uint16(etagLen),
			src: x.twinSlots[src], dst: x.twinSlots[dst], doc: doc})
		x.relSlots[slot] = &slab[len(slab)-1]
	}
	return d.err
}

// decodeAdjacency reads a chunk of twins' outgoing and incoming relationships.
func (x *Index) decodeAdjacency(payload []byte) error {
	d := decoder{b: payload}
	rels := func() []*Rel {
		s := make([]*Rel, d.count(4))
		for i := range s {
			if slot := d.u32(); int(slot) < len(x.relSlots) {
				s[i] = x.relSlots[slot]
			}
			if s[i] == nil {
				d.fail()
				return nil
			}
		}
		return s
	}
	for len(d.b) > 0 && d.err == nil {
		slot := d.u32()
		out, in := rels(), rels()
		if d.err != nil {
			break
		}
		if int(slot) >= len(x.twinSlots) || x.twinSlots[slot] == nil {
			return fmt.Errorf("%w: adjacency of a twin out of range", ErrBadSnapshot)
		}
		t := x.twinSlots[slot]
		for _, r := range out {
			if r.src != t {
				return fmt.Errorf("%w: adjacency does not match the relationships", ErrBadSnapshot)
			}
		}
		for _, r := range in {
			if r.dst != t {
				return fmt.Errorf("%w: adjacency does not match the relationships", ErrBadSnapshot)
			}
		}
		t.out, t.in = out, in
	}
	return d.err
}

// checkEnd reads the end chunk and checks the counts it repeats against what was loaded.
func (x *Index) checkEnd(payload []byte, twins int) error {
	d := decoder{b: payload}
	wantTwins, wantRels := d.u64(), d.u64()
	rels := 0
	for _, r := range x.relSlots {
		if r != nil {
			rels++
		}
	}
	x.rels = rels
	if d.err != nil || len(d.b) != 0 || wantTwins != uint64(twins) || wantRels != uint64(rels) {
		return fmt.Errorf("%w: the end chunk does not match the content", ErrBadSnapshot)
	}
	return nil
}
