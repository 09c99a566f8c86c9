package sqlite

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

// benchRows returns benchTwins twins of version 0 and a Ceiling Next function that writes
// random ones of them with documents of later versions, each with its update event.
func benchRows() ([]store.Twin, func() (store.Twin, event.Event)) {
	twins := make([]store.Twin, benchTwins)
	for i := range twins {
		id := benchID(i)
		twins[i] = store.Twin{ID: id, ModelID: "dtmi:example:Room;1", ETag: `W/"0"`, Doc: benchDoc(id, 0)}
	}
	docs := make([][]byte, 16)
	for v := range docs {
		docs[v] = benchDoc("room", v+1)
	}
	patch := []byte(`[{"op":"replace","path":"/property1","value":42}]`)
	rng := rand.New(rand.NewPCG(1, 0))
	next := func() (store.Twin, event.Event) {
		t := twins[rng.IntN(len(twins))]
		t.ETag, t.Doc = `W/"1"`, docs[rng.IntN(len(docs))]
		return t, benchEvent(t.ID, patch)
	}
	return twins, next
}

// BenchmarkUpdateParallel measures acknowledged, fsync'd twin updates per second with
// benchClients concurrent clients, each Update reading a twin, writing its new document and
// emitting one event. It then measures the Ceiling of the same number of the same rows in the
// same run and reports the store's rate as a share of it.
func BenchmarkUpdateParallel(b *testing.B) {
	s := open(b, Config{Dir: b.TempDir()})
	twins, next := benchRows()
	for start := 0; start < len(twins); start += 1000 {
		err := s.Update(context.Background(), func(w store.Writer) error {
			for _, t := range twins[start:min(start+1000, len(twins))] {
				if err := w.PutTwin(t); err != nil {
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
	rate := float64(b.N) / elapsed.Seconds()
	b.ReportMetric(rate, "updates/s")
	after := s.Stats()
	if n := after.Transactions - before.Transactions; n > 0 {
		b.ReportMetric(float64(after.Updates-before.Updates)/float64(n), "updates/commit")
	}
	if n := after.Syncs - before.Syncs; n > 0 {
		b.ReportMetric(float64((after.SyncTime-before.SyncTime).Microseconds())/float64(n), "µs/fsync")
	}
	if err := s.Close(); err != nil {
		b.Fatal(err)
	}
	res, err := Ceiling(context.Background(), CeilingConfig{
		Dir: b.TempDir(), Twins: twins, Next: next, Batch: benchClients, Writes: max(b.N, 10*benchClients),
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		b.Fatalf("ceiling: %v", err)
	}
	b.ReportMetric(res.WritesPerSecond(), "ceiling-writes/s")
	b.ReportMetric(100*rate/res.WritesPerSecond(), "%ceiling")
}

// BenchmarkOpenMillionTwins measures Open, CountTwins and Close of a store holding a million
// twins and a million log records: start-up must not scan them.
func BenchmarkOpenMillionTwins(b *testing.B) {
	const n = 1_000_000
	dir := b.TempDir()
	s := open(b, Config{Dir: dir})
	// Seeded inside SQLite: a million Updates would take minutes, and Open is what is measured.
	err := s.Update(context.Background(), func(store.Writer) error {
		_, err := s.conn.ExecContext(context.Background(), `
WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < ?1)
INSERT INTO twins (id, model_id, etag, doc)
SELECT 'room-' || n, 'dtmi:example:Room;1', 'W/"1"', json_object('$dtId', 'room-' || n, 'temperature', n) FROM i`, n)
		if err != nil {
			return err
		}
		_, err = s.conn.ExecContext(context.Background(), `
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

// TestCeiling checks that the ceiling writes what it claims to, durably: a store opened on
// its database afterwards finds every record in the log with its event, the twins with their
// new documents, and the log's clock marked.
func TestCeiling(t *testing.T) {
	dir := t.TempDir()
	twins, next := benchRows()
	var last store.Twin
	res, err := Ceiling(t.Context(), CeilingConfig{
		Dir: dir, Twins: twins, Batch: 8, Writes: 100,
		Next: func() (store.Twin, event.Event) {
			tw, e := next()
			last = tw
			return tw, e
		},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Ceiling: %v", err)
	}
	if res.Writes != 100 || res.Transactions != 13 || res.Syncs == 0 || res.WritesPerSecond() <= 0 {
		t.Fatalf("result %+v: want 100 writes in 13 transactions, synced", res)
	}
	s := open(t, Config{Dir: dir})
	defer s.Close()
	if s.Log().Last() != 100 {
		t.Fatalf("log Last = %d, want 100", s.Log().Last())
	}
	recs, err := s.Log().Read(t.Context(), 0, 200)
	if err != nil || len(recs) != 100 || recs[99].Event.Type != event.TwinUpdate || recs[99].Event.Subject != last.ID {
		t.Fatalf("log holds %d records (err %v), want 100 twin updates ending with %s", len(recs), err, last.ID)
	}
	err = s.View(t.Context(), func(r store.Reader) error {
		got, err := r.Twin(last.ID)
		if err == nil && (got.ETag != last.ETag || string(got.Doc) != string(last.Doc)) {
			err = fmt.Errorf("twin %s is %s %s, want %s %s", last.ID, got.ETag, got.Doc, last.ETag, last.Doc)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	err = s.View(t.Context(), func(store.Reader) error {
		var marks int
		return s.conn.QueryRowContext(t.Context(), "SELECT count(*) FROM log_clock").Scan(&marks)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Ceiling(t.Context(), CeilingConfig{Dir: t.TempDir()}, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("Ceiling without twins, rows or an end succeeded")
	}
}

// TestInsertCeiling checks that the insert ceiling writes what it claims to, durably: a store
// opened on its database afterwards finds the twins and relationships, and a Create event for
// each in the log.
func TestInsertCeiling(t *testing.T) {
	dir := t.TempDir()
	const n = 50
	i := 0
	next := func() InsertRow {
		defer func() { i++ }()
		if i < n {
			tw := store.Twin{ID: fmt.Sprint("t", i), ModelID: "dtmi:ex:T;1", ETag: `W/"1"`, Doc: json.RawMessage(fmt.Sprintf(`{"$dtId":"t%d"}`, i))}
			return InsertRow{Twin: &tw, Event: event.Event{ID: fmt.Sprint("e", i), Source: "x", SpecVersion: "1.0", Type: event.TwinCreate, Subject: tw.ID, Data: tw.Doc}}
		}
		k := i - n
		r := store.Relationship{SourceID: fmt.Sprint("t", k), ID: "next", Name: "next", TargetID: fmt.Sprint("t", (k+1)%n), ETag: `W/"1"`, Doc: json.RawMessage(`{}`)}
		return InsertRow{Relationship: &r, Event: event.Event{ID: fmt.Sprint("r", k), Source: "x", SpecVersion: "1.0",
			Type: event.RelationshipCreate, Subject: event.RelationshipSubject(r.SourceID, r.ID), Data: r.Doc}}
	}
	res, err := InsertCeiling(t.Context(), InsertCeilingConfig{Dir: dir, Rows: 2 * n, Next: next, Batch: 30}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("InsertCeiling: %v", err)
	}
	if res.Writes != 2*n || res.Transactions != 4 || res.Syncs == 0 {
		t.Fatalf("result %+v: want %d rows in 4 transactions, synced", res, 2*n)
	}
	s := open(t, Config{Dir: dir})
	defer s.Close()
	if s.Log().Last() != 2*n {
		t.Fatalf("log Last = %d, want %d", s.Log().Last(), 2*n)
	}
	err = s.View(t.Context(), func(r store.Reader) error {
		count, err := r.CountTwins()
		if err != nil || count != n {
			return fmt.Errorf("CountTwins = %d, %v", count, err)
		}
		rel, err := r.Relationship("t49", "next")
		if err != nil || rel.TargetID != "t0" {
			return fmt.Errorf("relationship t49/next = %+v, %v", rel, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
