package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/postgres"
)

// benchTwins is the number of twins the write benchmarks seed; benchClients is the number of
// concurrent clients they model, and the rows BenchmarkCeiling commits at once.
const (
	benchTwins   = 10_000
	benchClients = 64
)

// benchDoc returns an ADT-shaped document of a twin with ten properties, version v.
func benchDoc(id string, v int) []byte {
	doc := map[string]any{"$dtId": id, "$etag": fmt.Sprintf(`W/"%d"`, v)}
	meta := map[string]any{"$model": "dtmi:example:Room;1", "$lastUpdateTime": "2026-01-02T03:04:05.0000000Z"}
	for p := range 10 {
		name := fmt.Sprintf("property%d", p)
		doc[name] = float64(v) + float64(p)/10
		meta[name] = map[string]any{"lastUpdateTime": "2026-01-02T03:04:05.0000000Z"}
	}
	doc["$metadata"] = meta
	b, err := json.Marshal(doc)
	if err != nil {
		panic(err)
	}
	return b
}

// benchEvent returns the update event of twin id carrying patch.
func benchEvent(id string, patch []byte) event.Event {
	return event.Event{
		ID: "00000000-0000-0000-0000-000000000000", Source: "twinflow.local", SpecVersion: event.SpecVersion,
		Type: event.TwinUpdate, Subject: id, Time: "2026-01-02T03:04:05.0000000Z",
		DataContentType: "application/json", DataSchema: "dtmi:example:Room;1", Data: patch,
	}
}

func benchID(i int) string { return "room-" + strconv.Itoa(i) }

var benchPatch = []byte(`[{"op":"replace","path":"/property1","value":42}]`)

// benchDocs returns documents of later versions for the benchmarks to write.
func benchDocs() [][]byte {
	docs := make([][]byte, 16)
	for v := range docs {
		docs[v] = benchDoc("room", v+1)
	}
	return docs
}

// BenchmarkUpdate measures acknowledged twin updates per second with benchClients
// concurrent clients, each Update doing what a PATCH does: read a twin (FOR UPDATE), check
// its ETag, write its new document and emit one event. Compare with BenchmarkCeiling.
func BenchmarkUpdate(b *testing.B) {
	s := fresh(b)
	for start := 0; start < benchTwins; start += 1000 {
		err := s.Update(context.Background(), func(w store.Writer) error {
			for i := start; i < min(start+1000, benchTwins); i++ {
				id := benchID(i)
				if err := w.PutTwin(store.Twin{ID: id, ModelID: "dtmi:example:Room;1", ETag: `W/"0"`, Doc: benchDoc(id, 0)}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatalf("seed: %v", err)
		}
	}
	docs := benchDocs()
	before := s.Stats()
	var seed atomic.Uint64

	b.SetParallelism((benchClients + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
	b.ResetTimer()
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		rng := rand.New(rand.NewPCG(seed.Add(1), 0))
		for pb.Next() {
			id := benchID(rng.IntN(benchTwins))
			doc := docs[rng.IntN(len(docs))]
			err := s.Update(context.Background(), func(w store.Writer) error {
				t, err := w.Twin(id)
				if err != nil {
					return err
				}
				if t.ETag == "" {
					return fmt.Errorf("twin %s has no ETag", id)
				}
				t.ETag, t.Doc = `W/"1"`, doc
				if err := w.PutTwin(t); err != nil {
					return err
				}
				return w.Emit(benchEvent(id, benchPatch))
			})
			if err != nil {
				b.Error(err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	after := s.Stats()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "updates/s")
	if txns := after.Transactions - before.Transactions; txns > 0 {
		b.ReportMetric(float64(after.Updates-before.Updates)/float64(txns), "updates/txn")
	}
}

// BenchmarkCeiling is the best case BenchmarkUpdate is measured against: postgres.Ceiling
// writing the same twin rows and log rows, benchClients of each per transaction, with the
// same durability, for two seconds per iteration.
func BenchmarkCeiling(b *testing.B) {
	twins := make([]store.Twin, benchTwins)
	for i := range twins {
		id := benchID(i)
		twins[i] = store.Twin{ID: id, ModelID: "dtmi:example:Room;1", ETag: `W/"0"`, Doc: benchDoc(id, 0)}
	}
	docs := benchDocs()
	rng := rand.New(rand.NewPCG(1, 0))
	next := func() (store.Twin, event.Event) {
		id := benchID(rng.IntN(benchTwins))
		return store.Twin{ID: id, ModelID: "dtmi:example:Room;1", ETag: `W/"1"`, Doc: docs[rng.IntN(len(docs))]}, benchEvent(id, benchPatch)
	}
	var writes int
	var elapsed time.Duration
	for range b.N {
		dsn, schema := newSchema(b)
		res, err := postgres.Ceiling(context.Background(), postgres.CeilingConfig{
			Store: postgres.Config{DSN: dsn, Schema: schema},
			Twins: twins, Next: next, Batch: benchClients, Duration: 2 * time.Second,
		}, slog.New(slog.DiscardHandler))
		if err != nil {
			b.Fatal(err)
		}
		writes += res.Writes
		elapsed += res.Elapsed
	}
	b.ReportMetric(float64(writes)/elapsed.Seconds(), "updates/s")
}
