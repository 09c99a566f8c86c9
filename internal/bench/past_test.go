package bench

import (
	"context"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/history"
	hsqlite "github.com/twinflow/twinflow/internal/history/sqlite"
)

// BenchmarkPast rebuilds the graph of bench history's queries with asOf (its default
// history: 100,000 twins over the last two hours, 100 sensors over seven days) one hour ago,
// from the rows alone and then from the checkpoints the history writer would have built,
// in the same run on the same store.
func BenchmarkPast(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	cfg := HistoryConfig{}.withDefaults()
	now := time.Now().UTC().Truncate(time.Minute)
	if _, err := writeHistory(ctx, dir, cfg, now); err != nil {
		b.Fatal(err)
	}
	st, err := hsqlite.Open(hsqlite.Config{Dir: dir})
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	asOf := now.Add(-time.Hour)
	past := func(b *testing.B) {
		for b.Loop() {
			p, err := st.Past(ctx, asOf)
			if err != nil {
				b.Fatal(err)
			}
			if len(p.Twins) < cfg.AsOfTwins {
				b.Fatalf("%d twins as of %s", len(p.Twins), asOf)
			}
		}
	}
	b.Run("rows", past)
	start := time.Now()
	for {
		done, err := st.Checkpoint(ctx, now.Add(-history.DefaultRollupDelay))
		if err != nil {
			b.Fatal(err)
		}
		if done {
			break
		}
	}
	b.Logf("checkpoints built in %v", time.Since(start))
	b.Run("checkpoint", past)
}
