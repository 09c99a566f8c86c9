package historytest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/history"
)

// RunCheckpoint runs the tests of a Checkpointer's contract: Past answers the same with and
// without checkpoints, after late rows invalidate them, and after pruning. open must return
// stores whose checkpoints are due after a few rows (a few dozen at most), so that the
// histories here take many.
func RunCheckpoint(t *testing.T, open Opener) {
	t.Run("Checkpoint", func(t *testing.T) { testCheckpoint(t, open) })
	t.Run("CheckpointLate", func(t *testing.T) { testCheckpointLate(t, open) })
	t.Run("CheckpointPrune", func(t *testing.T) { testCheckpointPrune(t, open) })
	t.Run("CheckpointConcurrent", func(t *testing.T) { testCheckpointConcurrent(t, open) })
}

// randomHistory is a random graph history over minutes [0, minutes): twins created, patched
// (properties set, changed and removed, a model changed), deleted and created again, and
// relationships created, patched and deleted, with ids that need quoting.
type randomHistory struct {
	rnd     *rand.Rand
	seq     uint64
	alive   map[string]bool
	rels    map[[2]string]string // (source, id) → target, alive
	batches []history.Rows       // one per minute
}

func newRandomHistory(seed uint64, minutes int) *randomHistory {
	h := &randomHistory{rnd: rand.New(rand.NewPCG(seed, 1)), alive: map[string]bool{}, rels: map[[2]string]string{}}
	ids := []string{"a", "b", "c'", "d\x1e", "e", "f", "g", "h"}
	keys := []string{"x", "y", "z'", "w"}
	for m := range minutes {
		var rows history.Rows
		for range 1 + h.rnd.IntN(6) {
			h.seq++
			id := ids[h.rnd.IntN(len(ids))]
			ts := at(m).Add(time.Duration(h.rnd.IntN(50)) * time.Second)
			switch op := h.rnd.IntN(10); {
			case !h.alive[id]:
				h.alive[id] = true
				rows.Twins = append(rows.Twins, history.TwinLifecycleEvent{Seq: h.seq, TwinID: id, Action: history.LifecycleCreate,
					TimeStamp: ts, ServiceID: "svc", ModelID: "dtmi:x:T;1"})
				for _, k := range keys[:h.rnd.IntN(len(keys))] {
					p := prop(h.seq, m, id, k, fmt.Sprint(h.rnd.IntN(100)))
					p.TimeStamp = ts
					rows.Properties = append(rows.Properties, p)
				}
			case op == 0:
				delete(h.alive, id)
				rows.Twins = append(rows.Twins, history.TwinLifecycleEvent{Seq: h.seq, TwinID: id, Action: history.LifecycleDelete,
					TimeStamp: ts, ServiceID: "svc", ModelID: "dtmi:x:T;1"})
				for k := range h.rels {
					if k[0] == id || h.rels[k] == id {
						delete(h.rels, k)
					}
				}
			case op <= 2:
				target := ids[h.rnd.IntN(len(ids))]
				relID := fmt.Sprintf("r%d'", h.rnd.IntN(3))
				k := [2]string{id, relID}
				if !h.alive[target] {
					continue
				}
				action := history.LifecycleCreate
				if _, ok := h.rels[k]; ok {
					action, target = history.LifecycleDelete, h.rels[k]
					delete(h.rels, k)
				} else {
					h.rels[k] = target
				}
				rows.Relationships = append(rows.Relationships, history.RelationshipLifecycleEvent{Seq: h.seq, RelationshipID: relID,
					Name: "to", Action: action, TimeStamp: ts, ServiceID: "svc", Source: id, Target: target})
			case op == 3:
				for k, target := range h.rels {
					if k[0] != id {
						continue
					}
					p := prop(h.seq, m, id, keys[h.rnd.IntN(len(keys))], fmt.Sprint(h.rnd.IntN(100)))
					p.TimeStamp, p.RelationshipID, p.RelationshipTarget = ts, k[1], target
					rows.Properties = append(rows.Properties, p)
					break
				}
			default:
				p := prop(h.seq, m, id, keys[h.rnd.IntN(len(keys))], fmt.Sprint(h.rnd.IntN(100)))
				p.TimeStamp = ts
				switch h.rnd.IntN(6) {
				case 0:
					p.Action, p.Value = history.ActionDelete, []byte("null")
				case 1:
					p.ModelID = fmt.Sprintf("dtmi:x:T%d;1", h.rnd.IntN(3))
				}
				rows.Properties = append(rows.Properties, p)
			}
		}
		h.batches = append(h.batches, rows)
	}
	return h
}

// writeUpTo writes the batches of minutes [from, to) to each store.
func (h *randomHistory) writeUpTo(t *testing.T, from, to int, stores ...history.Store) {
	t.Helper()
	for m := from; m < to; m++ {
		rows := h.batches[m]
		through := uint64(0)
		for _, r := range rows.Properties {
			through = max(through, r.Seq)
		}
		for _, r := range rows.Twins {
			through = max(through, r.Seq)
		}
		for _, r := range rows.Relationships {
			through = max(through, r.Seq)
		}
		for _, st := range stores {
			write(t, st, rows, through)
		}
	}
}

// shift moves the times of the batches of minutes [from, to) by d.
func (h *randomHistory) shift(from, to int, d time.Duration) {
	for m := from; m < to; m++ {
		rows := &h.batches[m]
		for i := range rows.Properties {
			rows.Properties[i].TimeStamp = rows.Properties[i].TimeStamp.Add(d)
		}
		for i := range rows.Twins {
			rows.Twins[i].TimeStamp = rows.Twins[i].TimeStamp.Add(d)
		}
		for i := range rows.Relationships {
			rows.Relationships[i].TimeStamp = rows.Relationships[i].TimeStamp.Add(d)
		}
	}
}

// checkpointAll takes st's checkpoints up to upTo.
func checkpointAll(t *testing.T, st history.Store, upTo time.Time) {
	t.Helper()
	cp, ok := st.(history.Checkpointer)
	if !ok {
		t.Fatalf("%T is not a history.Checkpointer", st)
	}
	for range 10_000 {
		done, err := cp.Checkpoint(context.Background(), upTo)
		if err != nil {
			t.Fatalf("Checkpoint(%s): %v", upTo, err)
		}
		if done {
			return
		}
	}
	t.Fatal("Checkpoint never done")
}

// samePast checks that got and want answer Past alike at 25 s into every minute of
// [from, to), which is amid the minute's rows.
func samePast(t *testing.T, stage string, got, want history.Store, from, to int) {
	t.Helper()
	for minute := from; minute < to; minute++ {
		m := at(minute).Add(25 * time.Second)
		g, err := history.AsOf(context.Background(), got, m)
		if err != nil {
			t.Fatal(err)
		}
		w, err := history.AsOf(context.Background(), want, m)
		if err != nil {
			t.Fatal(err)
		}
		if gs, ws := fmt.Sprintf("%+v", g), fmt.Sprintf("%+v", w); gs != ws {
			t.Fatalf("%s: Past(%s) with checkpoints = %s\nwithout: %s", stage, m.Format(time.TimeOnly), gs, ws)
		}
	}
}

func testCheckpoint(t *testing.T, open Opener) {
	for seed := range uint64(2) {
		h := newRandomHistory(seed, 60)
		got, want := openStore(t, open, t.TempDir()), openStore(t, open, t.TempDir())
		for m := 0; m < 60; m += 10 {
			h.writeUpTo(t, m, m+10, got, want)
			checkpointAll(t, got, at(m+7))
			samePast(t, fmt.Sprintf("seed %d, minute %d", seed, m+10), got, want, max(0, m-5), m+11)
		}
		samePast(t, fmt.Sprintf("seed %d", seed), got, want, 0, 61)
	}
}

// testCheckpointLate writes rows older than the checkpoints and checks that Past still
// answers as the store without them does.
func testCheckpointLate(t *testing.T, open Opener) {
	h := newRandomHistory(7, 60)
	got, want := openStore(t, open, t.TempDir()), openStore(t, open, t.TempDir())
	h.writeUpTo(t, 0, 40, got, want)
	checkpointAll(t, got, at(40))
	h.shift(40, 60, -30*time.Minute)
	h.writeUpTo(t, 40, 50, got, want)
	samePast(t, "after late rows", got, want, 0, 41)
	checkpointAll(t, got, at(40))
	h.writeUpTo(t, 50, 60, got, want)
	samePast(t, "after more late rows", got, want, 0, 41)
}

// testCheckpointPrune prunes a store with checkpoints and one without, and checks that Past
// answers alike at and after the prune's time.
func testCheckpointPrune(t *testing.T, open Opener) {
	h := newRandomHistory(11, 60)
	got, want := openStore(t, open, t.TempDir()), openStore(t, open, t.TempDir())
	h.writeUpTo(t, 0, 60, got, want)
	checkpointAll(t, got, at(60))
	for _, st := range []history.Store{got, want} {
		if _, err := st.Prune(context.Background(), at(30), 0); err != nil {
			t.Fatal(err)
		}
	}
	samePast(t, "after prune", got, want, 30, 61)
	samePast(t, "after prune and checkpoints", got, want, 30, 61)
}

// testCheckpointConcurrent builds checkpoints while late rows are written, and checks that
// no checkpoint built from a snapshot without them survives.
func testCheckpointConcurrent(t *testing.T, open Opener) {
	h := newRandomHistory(13, 70)
	got, want := openStore(t, open, t.TempDir()), openStore(t, open, t.TempDir())
	h.writeUpTo(t, 0, 50, got, want)
	h.shift(50, 70, -45*time.Minute)
	for m := 50; m < 70; m++ {
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				done, err := got.(history.Checkpointer).Checkpoint(context.Background(), at(50))
				if err != nil {
					t.Errorf("Checkpoint: %v", err)
				}
				if done || err != nil {
					return
				}
			}
		}()
		h.writeUpTo(t, m, m+1, got, want)
		<-done
	}
	samePast(t, "after late rows written while checkpointing", got, want, 0, 51)
}
