package sqlite

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// benchTwins is the number of twins the write benchmarks seed; benchClients is the number of
// concurrent clients they model.
const (
	benchTwins   = 10_000
	benchClients = 64
)

// benchDoc returns an ADT-shaped document of a twin with ten properties, version v.
func benchDoc(id string, v int) []byte {
	doc := map[string]any{
		"$dtId": id,
		"$etag": fmt.Sprintf(`W/"%d"`, v),
	}
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

// BenchmarkUpdateParallel measures acknowledged, fsync'd twin updates per second with
// benchClients concurrent clients, each Update reading a twin, writing its new document and
// emitting one event.
func BenchmarkUpdateParallel(b *testing.B) {
	s := open(b, Config{Dir: b.TempDir()})
	defer s.Close()
	for start := 0; start < benchTwins; start += 1000 {
		err := s.Update(context.Background(), func(w store.Writer) error {
			for i := start; i < start+1000; i++ {
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
	docs := make([][]byte, 16)
	for v := range docs {
		docs[v] = benchDoc("room", v+1)
	}
	patch := []byte(`[{"op":"replace","path":"/property1","value":42}]`)
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
				t.ETag, t.Doc = `W/"1"`, doc
				if err := w.PutTwin(t); err != nil {
					return err
				}
				return w.Emit(benchEvent(id, patch))
			})
			if err != nil {
				b.Errorf("Update: %v", err)
				return
			}
		}
	})
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "updates/s")
	after := s.Stats()
	if n := after.Transactions - before.Transactions; n > 0 {
		b.ReportMetric(float64(after.Updates-before.Updates)/float64(n), "updates/commit")
	}
	if n := after.Syncs - before.Syncs; n > 0 {
		b.ReportMetric(float64((after.SyncTime-before.SyncTime).Microseconds())/float64(n), "µs/fsync")
	}
}

// BenchmarkRawCeiling measures the same twin and log rows written straight into SQLite, with
// the same schema and pragmas, in transactions of benchClients rows that SQLite fsyncs at
// commit (synchronous=FULL): the ceiling BenchmarkUpdateParallel is measured against. It
// does not read the twin first.
func BenchmarkRawCeiling(b *testing.B) {
	ctx := context.Background()
	// The writer's settings, but with SQLite fsyncing every commit itself.
	db, err := sql.Open("sqlite", dsn(filepath.Join(b.TempDir(), FileName), false,
		"journal_mode(WAL)", "synchronous(FULL)", "temp_store(MEMORY)", fmt.Sprintf("cache_size(%d)", -cacheKiB)))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	if err := migrate(ctx, conn); err != nil {
		b.Fatal(err)
	}
	for start := 0; start < benchTwins; start += 1000 {
		if _, err := conn.ExecContext(ctx, "BEGIN"); err != nil {
			b.Fatal(err)
		}
		for i := start; i < start+1000; i++ {
			id := benchID(i)
			if _, err := conn.ExecContext(ctx, "INSERT INTO twins (id, model_id, etag, doc) VALUES (?, ?, ?, ?)",
				id, "dtmi:example:Room;1", `W/"0"`, benchDoc(id, 0)); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
			b.Fatal(err)
		}
	}
	put, err := conn.PrepareContext(ctx, "UPDATE twins SET etag = ?, doc = ? WHERE id = ?")
	if err != nil {
		b.Fatal(err)
	}
	defer put.Close()
	emit, err := conn.PrepareContext(ctx, stmtText[stmtEmit])
	if err != nil {
		b.Fatal(err)
	}
	defer emit.Close()
	docs := make([][]byte, 16)
	for v := range docs {
		docs[v] = benchDoc("room", v+1)
	}
	patch := []byte(`[{"op":"replace","path":"/property1","value":42}]`)
	rng := rand.New(rand.NewPCG(1, 0))
	seq := int64(1)
	var buf []byte

	b.ResetTimer()
	start := time.Now()
	for done := 0; done < b.N; {
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			b.Fatal(err)
		}
		for i := 0; i < benchClients && done < b.N; i, done = i+1, done+1 {
			id := benchID(rng.IntN(benchTwins))
			if _, err := put.ExecContext(ctx, `W/"1"`, docs[rng.IntN(len(docs))], id); err != nil {
				b.Fatal(err)
			}
			e := benchEvent(id, patch)
			if buf, err = appendEvent(buf[:0], &e); err != nil {
				b.Fatal(err)
			}
			if _, err := emit.ExecContext(ctx, seq, buf); err != nil {
				b.Fatal(err)
			}
			seq++
		}
		if _, err := conn.ExecContext(ctx, "COMMIT"); err != nil {
			b.Fatal(err)
		}
	}
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), "rows/s")
}

// BenchmarkOpenMillionTwins measures Open, CountTwins and Close of a store holding a million
// twins and a million log records: start-up must not scan them.
func BenchmarkOpenMillionTwins(b *testing.B) {
	const n = 1_000_000
	dir := b.TempDir()
	s := open(b, Config{Dir: dir})
	// Seeded inside SQLite: a million Updates would take minutes, and Open is what is measured.
	err := s.Update(context.Background(), func(store.Writer) error {
		_, err := s.wconn.ExecContext(context.Background(), `
WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < ?1)
INSERT INTO twins (id, model_id, etag, doc)
SELECT 'room-' || n, 'dtmi:example:Room;1', 'W/"1"', json_object('$dtId', 'room-' || n, 'temperature', n) FROM i`, n)
		if err != nil {
			return err
		}
		_, err = s.wconn.ExecContext(context.Background(), `
WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < ?1)
INSERT INTO log (seq, event) SELECT n, '{"id":"' || n || '","source":"s","specversion":"1.0","type":"t"}' FROM i`, n)
		return err
	})
	if err != nil {
		b.Fatalf("seed: %v", err)
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for b.Loop() {
		s := open(b, Config{Dir: dir})
		err := s.View(context.Background(), func(r store.Reader) error {
			count, err := r.CountTwins()
			if err == nil && count != n {
				err = fmt.Errorf("CountTwins = %d, want %d", count, n)
			}
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
		if last := s.Log().Last(); last != n {
			b.Fatalf("Last = %d, want %d", last, n)
		}
		if err := s.Close(); err != nil {
			b.Fatal(err)
		}
	}
}
