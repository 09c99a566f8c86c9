package postgres_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

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

// BenchmarkCeiling is the best case BenchmarkUpdate is measured against: it writes the same
// twin rows and log rows straight through pgx, benchClients of each per transaction, with the
// same durability (synchronous commit), sending each transaction (its BEGIN, the upserts, the
// log inserts, the head's update and the COMMIT) in one round trip, and reading nothing.
func BenchmarkCeiling(b *testing.B) {
	dsn, schema := newSchema(b)
	// A store creates the schema, its tables and their indexes; then it steps aside.
	if err := open(b, postgres.Config{DSN: dsn, Schema: schema}).Close(); err != nil {
		b.Fatal(err)
	}
	cc, err := pgx.ParseConfig(dsn)
	if err != nil {
		b.Fatal(err)
	}
	cc.RuntimeParams["search_path"] = schema
	cc.RuntimeParams["synchronous_commit"] = "on"
	conn, err := pgx.ConnectConfig(context.Background(), cc)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close(context.Background())
	seedBatch := &pgx.Batch{}
	for i := range benchTwins {
		id := benchID(i)
		seedBatch.Queue("INSERT INTO twins (id, model_id, etag, doc) VALUES ($1, $2, $3, $4)", id, "dtmi:example:Room;1", `W/"0"`, benchDoc(id, 0))
	}
	if err := conn.SendBatch(context.Background(), seedBatch).Close(); err != nil {
		b.Fatalf("seed: %v", err)
	}
	docs := benchDocs()
	ev, err := json.Marshal(benchEvent("room-0", benchPatch))
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 0))
	var seq int64

	b.ResetTimer()
	start := time.Now()
	for done := 0; done < b.N; {
		n := min(benchClients, b.N-done)
		batch := &pgx.Batch{}
		batch.Queue("BEGIN")
		for range n {
			batch.Queue("INSERT INTO twins (id, model_id, etag, doc) VALUES ($1, $2, $3, $4)"+
				" ON CONFLICT (id) DO UPDATE SET model_id = excluded.model_id, etag = excluded.etag, doc = excluded.doc",
				benchID(rng.IntN(benchTwins)), "dtmi:example:Room;1", `W/"1"`, docs[rng.IntN(len(docs))])
		}
		for range n {
			seq++
			batch.Queue("INSERT INTO log (seq, event, depth) VALUES ($1, $2, 0)", seq, ev)
		}
		batch.Queue("UPDATE head SET seq = $1", seq)
		batch.Queue("COMMIT")
		if err := conn.SendBatch(context.Background(), batch).Close(); err != nil {
			b.Fatal(err)
		}
		done += n
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "updates/s")
}
