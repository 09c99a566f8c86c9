package history_test

import (
	"context"
	"fmt"
	"log/slog"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/history"
	hsqlite "github.com/twinflow/twinflow/internal/history/sqlite"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

// benchLog makes the change log the writer benchmarks read: 100 twins and 20,000 patches.
// It returns the log and its rows, derived up front and grouped as the writer groups them
// (the rows of up to DefaultMaxBatch records per batch), with each batch's last record.
func benchLog(b *testing.B) (store.Log, []hsqlite.CeilingBatch) {
	const nTwins, nPatches = 100, 20000
	st, err := sqlite.Open(sqlite.Config{Dir: b.TempDir(), NoSync: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	g, err := twins.New(twins.Config{ServiceID: "tf.bench"}, st, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := g.AddModels(ctx, []byte(models)); err != nil {
		b.Fatal(err)
	}
	for i := range nTwins {
		body := fmt.Sprintf(`{"$metadata":{"$model":"dtmi:ex:Room;1"},"temperature":%d,"name":"r%d","pos":{"x":1,"y":2}}`, i, i)
		if _, err := g.PutTwin(ctx, fmt.Sprintf("room%d", i), []byte(body), "", twins.Trace{}); err != nil {
			b.Fatal(err)
		}
	}
	for i := range nPatches {
		p := fmt.Sprintf(`[{"op":"replace","path":"/temperature","value":%d.5},{"op":"replace","path":"/pos/x","value":%d}]`, i, i)
		if _, err := g.PatchTwin(ctx, fmt.Sprintf("room%d", i%nTwins), []byte(p), "", twins.Trace{}); err != nil {
			b.Fatal(err)
		}
	}
	log := st.Log()

	batches, err := hsqlite.CeilingBatches(ctx, log.(store.ChangeLog), 0, history.Options{RecordRemovals: true})
	if err != nil {
		b.Fatal(err)
	}
	return log, batches
}

// BenchmarkWriter measures the history writer's rows per second against a ceiling: a raw
// insert of the same rows, derived beforehand, into the same kind of history store with the
// same durability (synchronous commits) and the same batching (the rows of up to
// DefaultMaxBatch records per transaction). Both figures are reported in one run, with
// their ratio (goal: at least 0.5).
func BenchmarkWriter(b *testing.B) {
	log, batches := benchLog(b)
	ctx := context.Background()
	var writerRate, ceilingRate float64
	for b.Loop() {
		h, err := hsqlite.Open(hsqlite.Config{Dir: b.TempDir()})
		if err != nil {
			b.Fatal(err)
		}
		start := time.Now()
		s := runUntilCaughtUp(b, log, h)
		writerRate = float64(s.Rows) / time.Since(start).Seconds()
		h.Close()

		c, err := hsqlite.Ceiling(ctx, b.TempDir(), batches)
		if err != nil {
			b.Fatal(err)
		}
		ceilingRate = c.RowsPerSecond()
	}
	b.ReportMetric(writerRate, "writer-rows/s")
	b.ReportMetric(ceilingRate, "ceiling-rows/s")
	b.ReportMetric(writerRate/ceilingRate, "ratio")
}

// BenchmarkDerive measures Derive alone: the rows per second the writer's deriving goroutine
// turns the benchmark's change log (states known, as the server's log gives them) into.
func BenchmarkDerive(b *testing.B) {
	log, _ := benchLog(b)
	changes, err := log.(store.ChangeLog).ReadChanges(context.Background(), 0, history.DefaultMaxBatch)
	if err != nil {
		b.Fatal(err)
	}
	var rows history.Rows
	n := 0
	for b.Loop() {
		rows.Reset()
		prior := history.Overlay(&rows, nil)
		for _, ch := range changes {
			if err := history.Derive(ch, history.Options{RecordRemovals: true}, prior, &rows); err != nil {
				b.Fatal(err)
			}
		}
		n += rows.Len()
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "rows/s")
}
