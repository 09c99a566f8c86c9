package detector

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

// eventually polls cond until it holds, failing t with what after thirty seconds.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(30 * time.Second); !cond(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited thirty seconds for %s", what)
		}
	}
}

// TestFollowsOtherNodes runs the detectors of one service while another over the same store
// (another node's) creates, replaces and deletes one: the running service starts, restarts and
// stops its scorer.
func TestFollowsOtherNodes(t *testing.T) {
	ctx := context.Background()
	st, tw, logger := openTwins(t)
	idx, err := graph.New(ctx, graph.Config{}, st, tw.Models, logger)
	if err != nil {
		t.Fatal(err)
	}
	here, err := New(Config{MembershipInterval: 10 * time.Millisecond}, st, idx, nil, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	there, err := New(Config{}, st, idx, nil, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		here.Run(runCtx)
	}()
	t.Cleanup(func() {
		stop()
		<-done
	})
	running := func() *scorer {
		here.mu.Lock()
		defer here.mu.Unlock()
		return here.scorers["d"]
	}

	if _, err := there.Put(ctx, "d", []byte(`{"twins":"SELECT * FROM DIGITALTWINS","properties":["temp"]}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the detector created elsewhere to run here", func() bool { return running() != nil })
	first := running()
	if _, err := there.Put(ctx, "d", []byte(`{"twins":"SELECT * FROM DIGITALTWINS","properties":["temp"],"sensitivity":0.9}`)); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the detector replaced elsewhere to restart here", func() bool {
		sc := running()
		return sc != nil && sc != first && sc.def.Sensitivity == 0.9
	})
	if err := there.Delete(ctx, "d"); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the detector deleted elsewhere to stop here", func() bool { return running() == nil })
}

// openTwins opens a store in a new directory, closed when the test ends, and the twins
// service over it, both logging to the returned logger.
func openTwins(t *testing.T) (*sqlite.Store, *twins.Service, *slog.Logger) {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(sqlite.Config{Dir: t.TempDir(), NoSync: true}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	tw, err := twins.New(twins.Config{ServiceID: "test"}, st, logger)
	if err != nil {
		t.Fatal(err)
	}
	return st, tw, logger
}
