package graph

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

// save writes x's snapshot to a file in a fresh directory and returns its path.
func save(t testing.TB, x *Index) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "index.snapshot")
	if _, err := x.SaveSnapshot(path); err != nil {
		t.Fatal(err)
	}
	return path
}

func (e *env) open(path string) (*Index, error) {
	var st store.Store = e.store
	if e.readBack {
		st = logOnly{st}
	}
	return OpenSnapshot(e.ctx, path, Config{}, st, e.twins.Models, nil)
}

// TestSnapshotReplay checks that an index loaded from a snapshot agrees with one built from
// the store, both right away and after the changes made since the snapshot (creates, patches
// and deletes of twins and relationships, a twin replaced with another model, a slot reused)
// are replayed from the log.
func TestSnapshotReplay(t *testing.T) {
	for _, readBack := range []bool{false, true} {
		t.Run(fmt.Sprint("readBack=", readBack), func(t *testing.T) {
			e := newEnv(t)
			e.readBack = readBack
			e.write()
			// A freed slot and a freed relationship slot, so the free lists are saved too.
			e.twin("gone", "dtmi:ex:Room;1", ``)
			e.rel("gone", "cg", "r1", 9)
			if err := e.twins.DeleteRelationship(e.ctx, "gone", "cg", "", twins.Trace{}); err != nil {
				t.Fatal(err)
			}
			if err := e.twins.DeleteTwin(e.ctx, "gone", "", twins.Trace{}); err != nil {
				t.Fatal(err)
			}
			built := e.index()
			path := save(t, built)
			seq, err := SnapshotSeq(path)
			if err != nil || seq != built.Applied() {
				t.Fatalf("SnapshotSeq = %d, %v; want %d", seq, err, built.Applied())
			}

			loaded, err := e.open(path)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := snapshot(t, loaded), snapshot(t, built); !slices.Equal(got, want) {
				t.Errorf("loaded index:\n got %q\nwant %q", got, want)
			}
			if !sameStructure(built, loaded) {
				t.Error("the loaded index's slots, free lists or columns differ from the saved index's")
			}

			e.change()
			later, err := e.open(path)
			if err != nil {
				t.Fatal(err)
			}
			if later.Applied() != seq {
				t.Errorf("Applied after load = %d, want the snapshot's seq %d", later.Applied(), seq)
			}
			if got, want := snapshot(t, later), snapshot(t, e.index()); !slices.Equal(got, want) {
				t.Errorf("index loaded before the changes and replayed:\n got %q\nwant %q", got, want)
			}
		})
	}
}

// sameStructure reports whether a and b have the same twins and relationships in the same
// slots, the same free slots and the same number columns.
func sameStructure(a, b *Index) bool {
	if len(a.twinSlots) != len(b.twinSlots) || len(a.relSlots) != len(b.relSlots) ||
		!slices.Equal(a.freeTwins, b.freeTwins) || !slices.Equal(a.freeRels, b.freeRels) ||
		a.columnLen != b.columnLen || len(a.numbers) != len(b.numbers) || a.rels != b.rels {
		return false
	}
	for i, t := range a.twinSlots {
		u := b.twinSlots[i]
		if (t == nil) != (u == nil) {
			return false
		}
		if t != nil && (t.id != u.id || a.modelIDs[t.model] != b.modelIDs[u.model] ||
			!bytes.Equal(t.zdoc, u.zdoc) || len(t.out) != len(u.out) || len(t.in) != len(u.in)) {
			return false
		}
		for j := range t.out {
			if t.out[j].slot != u.out[j].slot {
				return false
			}
		}
	}
	for name, col := range a.numbers {
		other := b.numbers[name]
		for i := range col {
			if math.Float64bits(col[i]) != math.Float64bits(other[i]) {
				return false
			}
		}
	}
	return true
}

// TestSnapshotRejected checks that every kind of unusable snapshot is refused with
// ErrBadSnapshot, and never loaded as if it were good.
func TestSnapshotRejected(t *testing.T) {
	e := newEnv(t)
	e.write()
	x := e.index()
	path := save(t, x)
	good, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	if _, err := x.WriteSnapshot(&b); err != nil || !bytes.Equal(b.Bytes(), good) {
		t.Fatalf("WriteSnapshot = %v, or differs from the saved file", err)
	}
	flip := func(at int) []byte {
		b := bytes.Clone(good)
		b[at] ^= 0x10
		return b
	}
	version := func(v uint32) []byte {
		b := bytes.Clone(good)
		binary.LittleEndian.PutUint32(b[8:], v)
		n := snapshotHeaderLen - 4
		binary.LittleEndian.PutUint32(b[n:], crc32.Checksum(b[:n], castagnoli))
		return b
	}
	tests := []struct {
		name  string
		file  []byte // nil: no file
		setup func(t *testing.T, e *env)
	}{
		{name: "missing"},
		{name: "empty", file: []byte{}},
		{name: "cut in the magic", file: good[:5]},
		{name: "cut in the header", file: good[:snapshotHeaderLen-1]},
		{name: "header only", file: good[:snapshotHeaderLen]},
		{name: "cut in a frame", file: good[:snapshotHeaderLen+5]},
		{name: "cut in the middle", file: good[:len(good)/2]},
		{name: "cut before the end chunk", file: good[:len(good)-8-16-4]},
		{name: "last byte missing", file: good[:len(good)-1]},
		{name: "bit flip in the magic", file: flip(1)},
		{name: "bit flip in the seq", file: flip(17)},
		{name: "bit flip in a chunk", file: flip(len(good) / 2)},
		{name: "bit flip in the last checksum", file: flip(len(good) - 1)},
		{name: "older format version", file: version(snapshotVersion - 1)},
		{name: "newer format version", file: version(snapshotVersion + 1)},
		{name: "another model set", file: good, setup: func(t *testing.T, e *env) {
			extra := `[{"@context":"dtmi:dtdl:context;3","@id":"dtmi:ex:Other;1","@type":"Interface"}]`
			if _, err := e.twins.AddModels(e.ctx, []byte(extra)); err != nil {
				t.Fatal(err)
			}
		}},
		{name: "stale: another database", file: good, setup: func(t *testing.T, e *env) {
			*e = *newEnv(t) // the same models, fewer records
		}},
		{name: "another database with as many records", file: good, setup: func(t *testing.T, e *env) {
			if e.store.Log().Last() != x.Applied() {
				t.Fatalf("the other database's log ends at %d, the snapshot's seq is %d", e.store.Log().Last(), x.Applied())
			}
		}},
		{name: "pruned log", file: good, setup: func(t *testing.T, e *env) {
			e.twin("r8", "dtmi:ex:Room;1", ``)
			e.twin("r9", "dtmi:ex:Room;1", ``) // the newest record, which the log keeps
			err := e.store.UpdateDelivery(e.ctx, func(w store.DeliveryWriter) error {
				_, err := w.PruneLog(math.MaxInt64, time.Now().Add(time.Hour), 1000)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := e
			if tt.setup != nil {
				e = newEnv(t)
				e.write()
				tt.setup(t, e)
			}
			path := filepath.Join(t.TempDir(), "index.snapshot")
			if tt.file != nil {
				if err := os.WriteFile(path, tt.file, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			x, err := e.open(path)
			if !errors.Is(err, ErrBadSnapshot) || x != nil {
				t.Fatalf("OpenSnapshot = %v, %v; want ErrBadSnapshot", x, err)
			}
			t.Log(err)
		})
	}
	// The same store and file load once intact.
	if _, err := e.open(path); err != nil {
		t.Fatalf("the intact snapshot: %v", err)
	}
}

// BenchmarkSnapshot measures, for an index of 100,000 twins of ten numeric properties and
// 100,000 relationships, building it from the store (the baseline), writing its snapshot to
// a file, the freeze that starts a write (the only time it stops the follower and queries)
// and loading it.
func BenchmarkSnapshot(b *testing.B) {
	ctx := context.Background()
	st, err := sqlite.Open(sqlite.Config{Dir: b.TempDir(), NoSync: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	g, err := twins.New(twins.Config{ServiceID: "tf.bench"}, st, nil)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := g.AddModels(ctx, []byte(models)); err != nil {
		b.Fatal(err)
	}
	const n = 100_000
	err = st.Update(ctx, func(w store.Writer) error {
		for i := range n {
			doc := fmt.Sprintf(`{"$dtId":"t%d","$etag":"W/\"e\"","$metadata":{"$model":"dtmi:ex:Room;1"}`, i)
			for p := range 10 {
				doc += fmt.Sprintf(`,"p%d":%d.5`, p, i+p)
			}
			if err := w.PutTwin(store.Twin{ID: fmt.Sprintf("t%d", i), ModelID: "dtmi:ex:Room;1", Doc: []byte(doc + "}")}); err != nil {
				return err
			}
		}
		for i := range n {
			src, id, dst := fmt.Sprintf("t%d", i), fmt.Sprintf("r%d", i), fmt.Sprintf("t%d", (i+1)%n)
			doc := fmt.Sprintf(`{"$relationshipId":%q,"$etag":"W/\"e\"","$sourceId":%q,"$relationshipName":"contains","$targetId":%q,"n":%d}`, id, src, dst, i)
			if err := w.PutRelationship(store.Relationship{SourceID: src, ID: id, Name: "contains", TargetID: dst, Doc: []byte(doc)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	x, err := New(ctx, Config{}, st, g.Models, nil)
	if err != nil {
		b.Fatal(err)
	}
	path := filepath.Join(b.TempDir(), "index.snapshot")
	if _, err := x.SaveSnapshot(path); err != nil {
		b.Fatal(err)
	}
	b.Run("build", func(b *testing.B) {
		for b.Loop() {
			if _, err := New(ctx, Config{}, st, g.Models, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("write", func(b *testing.B) {
		for b.Loop() {
			if _, err := x.SaveSnapshot(path); err != nil {
				b.Fatal(err)
			}
		}
		info, err := os.Stat(path)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(info.Size())/(1<<20), "MiB")
	})
	// freeze is the part of writing that holds the lock applying records takes, and the
	// index's lock, for its whole length: the follower's and queries' longest wait.
	b.Run("freeze", func(b *testing.B) {
		for b.Loop() {
			x.freeze(&snapshotWriter{w: io.Discard})
			x.thaw()
		}
	})
	b.Run("load", func(b *testing.B) {
		for b.Loop() {
			if _, err := OpenSnapshot(ctx, path, Config{}, st, g.Models, nil); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// hookWriter calls hook once, before the n-th write.
type hookWriter struct {
	w    *bytes.Buffer
	n    int
	hook func()
}

func (h *hookWriter) Write(p []byte) (int, error) {
	if h.n--; h.n == 0 {
		h.hook()
	}
	return h.w.Write(p)
}

// TestSnapshotWhileApplying applies changes to twins and relationships while a snapshot is
// being written, between its chunks: the snapshot must hold the index as of its seq, and
// catch up with the changes when loaded.
func TestSnapshotWhileApplying(t *testing.T) {
	for at := 2; at <= 17; at += 3 { // before the frame of each chunk: meta, twins, column, rels, adjacency, end
		t.Run(fmt.Sprint("write ", at), func(t *testing.T) {
			e := newEnv(t)
			e.write()
			x := e.index()
			before := snapshot(t, x)
			hw := &hookWriter{w: new(bytes.Buffer), n: at, hook: func() {
				e.change()
				if err := x.Sync(e.ctx); err != nil {
					t.Fatal(err)
				}
			}}
			seq, err := x.WriteSnapshot(hw)
			if err != nil {
				t.Fatal(err)
			}
			if seq >= x.Applied() {
				t.Fatalf("the snapshot's seq %d is not before the changes applied through %d", seq, x.Applied())
			}
			path := filepath.Join(t.TempDir(), "index.snapshot")
			if err := os.WriteFile(path, hw.w.Bytes(), 0o600); err != nil {
				t.Fatal(err)
			}
			f, err := os.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			// Loaded without following the log: the index as of the snapshot's seq.
			y := newIndex(Config{}, e.twins.Models, nil)
			if _, err := readHeader(f); err != nil {
				t.Fatal(err)
			}
			if err := y.loadSnapshot(e.ctx, bufio.NewReader(f)); err != nil {
				t.Fatal(err)
			}
			if got := snapshot(t, y); !slices.Equal(got, before) {
				t.Errorf("snapshot written while changes were applied:\n got %q\nwant %q", got, before)
			}
			after, err := e.open(path)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := snapshot(t, after), snapshot(t, x); !slices.Equal(got, want) {
				t.Errorf("loaded and replayed:\n got %q\nwant %q", got, want)
			}
		})
	}
}
