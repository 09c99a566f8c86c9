package twins

import (
	"context"
	"fmt"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twin"
)

// benchGraph returns a Service with cfg over a durable (fsync'd) store holding the fixture
// models and n rooms "r0".."r<n-1>".
func benchGraph(b *testing.B, n int, cfg Config) *Service {
	b.Helper()
	st, err := sqlite.Open(sqlite.Config{Dir: b.TempDir()}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	cfg.ServiceID = serviceID
	g, err := New(cfg, st, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	if _, err := g.AddModels(ctx, []byte(models)); err != nil {
		b.Fatal(err)
	}
	for i := range n {
		if _, err := g.PutTwin(ctx, fmt.Sprintf("r%d", i), []byte(roomBody), "", Trace{}); err != nil {
			b.Fatal(err)
		}
	}
	return g
}

// BenchmarkPatchTwin measures the preparation of one twin patch (decode, apply, validate,
// encode), without the store's commit: the CPU cost the twin service adds per patch.
func BenchmarkPatchTwin(b *testing.B) {
	g := benchGraph(b, 1, Config{})
	tw, err := g.Twin(context.Background(), "r0")
	if err != nil {
		b.Fatal(err)
	}
	iface, _ := g.Models().Interface(tw.ModelID)
	p, err := twin.ParsePatch([]byte(`[{"op":"replace","path":"/temp","value":22.5},{"op":"add","path":"/therm/mode","value":"eco"},{"op":"add","path":"/address","value":{"city":"Oslo"}}]`))
	if err != nil {
		b.Fatal(err)
	}
	now := twin.FormatTime(time.Now())
	b.ReportAllocs()
	for b.Loop() {
		doc, err := twin.DecodeDocument(tw.Doc)
		if err != nil {
			b.Fatal(err)
		}
		s := twin.Schema{IsComponent: componentOf(iface), ValidatePath: iface.ValidatePath}
		if err := twin.ApplyTwinPatch(doc, p, s, now); err != nil {
			b.Fatal(err)
		}
		if err := iface.ValidateTwin(doc); err != nil {
			b.Fatal(err)
		}
		doc[twin.KeyETag] = twin.NewETag()
		if _, err := twin.Encode(doc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPatchTwinParallel runs PatchTwin from 64 goroutines over 1,000 twins against a
// durable store, and reports acknowledged patches per second, with the service's twin cache
// and without it (each patch then reads its twin in a View first), so the cache's worth is
// measured in the same run.
func BenchmarkPatchTwinParallel(b *testing.B) {
	for _, c := range []struct {
		name   string
		cached int
	}{{"cache", 0}, {"no-cache", -1}} {
		b.Run(c.name, func(b *testing.B) { benchPatchTwinParallel(b, Config{CachedTwins: c.cached}) })
	}
}

func benchPatchTwinParallel(b *testing.B, cfg Config) {
	const twins = 1000
	g := benchGraph(b, twins, cfg)
	ctx := context.Background()
	var next atomic.Uint64
	patch := []byte(`[{"op":"replace","path":"/temp","value":22.5},{"op":"add","path":"/therm/mode","value":"eco"}]`)
	b.SetParallelism(32) // 64 goroutines on 2 cores
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			id := fmt.Sprintf("r%d", next.Add(1)%twins)
			if _, err := g.PatchTwin(ctx, id, patch, "", Trace{}); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "patches/s")
}
