package job

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/reserve"
	"github.com/twinflow/twinflow/internal/testenv"
)

// TestImportOnFullDisk runs an import into a store on a small tmpfs that fills up halfway:
// the job does not fail but stops where it got to, and finishes once space is freed, with
// everything imported once and an output log that tells nothing of the wait.
func TestImportOnFullDisk(t *testing.T) {
	disk := testenv.Tmpfs(t, 32<<20)
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, 28<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	space, err := reserve.New(reserve.Config{Dir: disk, Size: 1 << 20, Interval: 10 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = space.Run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })

	e := &env{t: t, dir: t.TempDir(), data: filepath.Join(disk, "data"), cfg: Config{ChunkTime: time.Millisecond, FullWait: 20 * time.Millisecond}, space: space}
	e.open()
	const n = 3000
	in := e.file("big.ndjson", importFile(n))
	if _, err := e.r.CreateImport(t.Context(), "full", in, "file:out.ndjson", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, space.Full)
	// The job waits, unfinished and without an error, while the disk is full.
	time.Sleep(100 * time.Millisecond)
	j, err := e.r.Get(t.Context(), KindImport, "full")
	if err != nil || j.Status != StatusRunning || j.Error != nil {
		t.Fatalf("job on the full disk = %+v, %v; want it running without an error", j, err)
	}
	if j.Progress.Twins == 0 || j.Progress.Relationships == 2*n-1 {
		t.Fatalf("the disk did not fill up halfway through the import: progress %+v", j.Progress)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	j = e.wait(KindImport, "full")
	if j.Status != StatusSucceeded || j.Progress.Twins != n+1 || j.Progress.Relationships != 2*n-1 {
		t.Fatalf("job once space was freed = %+v", j)
	}
	counts := e.counts()
	if counts[event.TwinCreate] != n+1 || counts[event.RelationshipCreate] != 2*n-1 || len(counts) != 2 {
		t.Errorf("events %v", counts)
	}
	if got := e.logLines("file:out.ndjson"); !slices.Equal(got, []string{
		"Info Started", "Info Models Started", "Info Models Succeeded", "Info Twins Started", "Info Twins Succeeded",
		"Info Relationships Started", "Info Relationships Succeeded", "Info Succeeded",
	}) {
		t.Errorf("output log %q", got)
	}
}
