package detector

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

// node is a store in a data directory with twins, their index and a running detector service
// over them, as a server has them.
type node struct {
	t    *testing.T
	st   *sqlite.Store
	tw   *twins.Service
	svc  *Service
	stop func()
}

// startNode opens the store in dir, creating room-1 in it when it is new, and runs a detector
// service of cfg over it until stop; the store stays open until the test ends.
func startNode(t *testing.T, dir string, cfg Config) *node {
	t.Helper()
	ctx := context.Background()
	logger := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(sqlite.Config{Dir: dir, NoSync: true}, logger)
	if err != nil {
		t.Fatal(err)
	}
	tw, err := twins.New(twins.Config{ServiceID: "test"}, st, logger)
	if err != nil {
		t.Fatal(err)
	}
	if st.Log().Last() == 0 {
		if _, err := tw.AddModels(ctx, []byte(`[{"@id":"dtmi:t:Room;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
			"contents":[{"@type":"Property","name":"temp","schema":"double"}]}]`)); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.PutTwin(ctx, "room-1", []byte(`{"$metadata":{"$model":"dtmi:t:Room;1"},"temp":20}`), "", twins.Trace{}); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := graph.New(ctx, graph.Config{}, st, tw.Models, logger)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := New(cfg, st, idx, nil, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		svc.Run(runCtx)
	}()
	n := &node{t: t, st: st, tw: tw, svc: svc}
	n.stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(func() {
		n.stop()
		st.Close()
	})
	return n
}

// patch sends room-1 the readings from, ..., to-1 of a quiet series with a jump every 13th,
// each measured a minute after the one before, and waits until the detector every has scored
// them; it returns the last reading's record.
func (n *node) patch(from, to int) uint64 {
	n.t.Helper()
	ctx := context.Background()
	for i := from; i < to; i++ {
		v := 20 + 0.3*math.Sin(float64(i)*1.7) + 0.2*math.Cos(float64(i)*0.61)
		if i%13 == 12 {
			v += 3
		}
		at := time.Date(2026, 1, 1, 0, i, 0, 0, time.UTC).Format(time.RFC3339)
		patch := fmt.Sprintf(`[{"op":"replace","path":"/temp","value":%v},{"op":"add","path":"/$metadata/temp/sourceTime","value":%q}]`, v, at)
		if _, err := n.tw.PatchTwin(ctx, "room-1", []byte(patch), "", twins.Trace{}); err != nil {
			n.t.Fatal(err)
		}
	}
	last := n.st.Log().Last()
	eventually(n.t, "the detector to score every reading", func() bool {
		n.svc.mu.Lock()
		sc := n.svc.scorers["every"]
		n.svc.mu.Unlock()
		return sc != nil && sc.cursor.Load() >= last
	})
	return last
}

// anomalies returns the data of the anomaly events in the log, in log order, failing the test
// when an event is there twice.
func (n *node) anomalies() []AnomalyData {
	n.t.Helper()
	recs, err := n.st.Log().Read(context.Background(), 0, 1_000_000)
	if err != nil {
		n.t.Fatal(err)
	}
	var out []AnomalyData
	ids := map[string]bool{}
	for _, r := range recs {
		if r.Event.Type != AnomalyType {
			continue
		}
		if ids[r.Event.ID] {
			n.t.Errorf("anomaly event %s raised twice: %s", r.Event.ID, r.Event.Data)
		}
		ids[r.Event.ID] = true
		var d AnomalyData
		if err := json.Unmarshal(r.Event.Data, &d); err != nil {
			n.t.Fatal(err)
		}
		out = append(out, d)
	}
	return out
}

// stored returns the detector's stored cursors and states.
func (n *node) stored() (checkpoint, events uint64, states []store.DetectorState) {
	n.t.Helper()
	err := n.st.ViewDetectors(context.Background(), func(r store.DetectorReader) error {
		var err error
		if checkpoint, events, err = cursors(r, "every"); err != nil {
			return err
		}
		states, err = r.DetectorStates("every")
		return err
	})
	if err != nil {
		n.t.Fatal(err)
	}
	return checkpoint, events, states
}

const everyPoint = `{"twins":"SELECT * FROM DIGITALTWINS","properties":["temp"],"sensitivity":1,"warmUp":5}`

// TestCrashBeforeCheckpoint scores a series, crashes after anomalies were raised but before
// any checkpoint (the store goes away under the detector, which so writes nothing more),
// starts again on the same data directory and scores the rest: the log holds each anomaly
// once, the same as an uninterrupted run's, and the clean stop at the end checkpoints the
// same model an uninterrupted run has.
func TestCrashBeforeCheckpoint(t *testing.T) {
	const n, crashAt = 60, 35
	cfg := Config{CheckpointInterval: time.Hour}

	straight := startNode(t, t.TempDir(), cfg)
	if _, err := straight.svc.Put(context.Background(), "every", []byte(everyPoint)); err != nil {
		t.Fatal(err)
	}
	last := straight.patch(0, n)
	straight.stop()
	want := straight.anomalies()
	if len(want) < n/4 {
		t.Fatalf("%d anomalies of %d points; the test wants many points raised", len(want), n)
	}
	wantCheckpoint, wantEvents, wantStates := straight.stored()
	if wantCheckpoint != wantEvents || wantCheckpoint < last || len(wantStates) != 1 {
		t.Fatalf("after a clean stop the checkpoint is of record %d with %d states, the events of record %d;"+
			" want both at or after the last reading's record %d, with room-1's state", wantCheckpoint, len(wantStates), wantEvents, last)
	}

	dir := t.TempDir()
	first := startNode(t, dir, cfg)
	if _, err := first.svc.Put(context.Background(), "every", []byte(everyPoint)); err != nil {
		t.Fatal(err)
	}
	first.patch(0, crashAt)
	raised := len(first.anomalies())
	// The crash: the store closes first, so the detector's stop has nothing to commit to.
	first.st.Close()
	first.stop()

	second := startNode(t, dir, cfg)
	checkpoint, events, states := second.stored()
	if raised == 0 || checkpoint >= events || len(states) != 0 {
		t.Fatalf("after the crash: %d anomalies raised, the checkpoint is of record %d with %d states, the events of record %d;"+
			" want anomalies raised after a checkpoint without states", raised, checkpoint, len(states), events)
	}
	second.patch(crashAt, n)
	second.stop()
	if got := second.anomalies(); !slices.Equal(got, want) {
		t.Errorf("after a crash the anomalies differ:\nstraight %+v\ncrashed  %+v", want, got)
	}
	checkpoint, events, states = second.stored()
	if checkpoint != events || len(states) != 1 || !bytes.Equal(states[0].State, wantStates[0].State) {
		t.Errorf("after a crash and a clean stop the checkpoint is of record %d with %d states, the events of record %d;"+
			" want both at the last scored record with the model of an uninterrupted run", checkpoint, len(states), events)
	}
}
