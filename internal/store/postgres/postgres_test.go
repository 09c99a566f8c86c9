package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/postgres"
	"github.com/twinflow/twinflow/internal/store/storetest"
	"github.com/twinflow/twinflow/internal/testenv"
)

// newSchema returns the DSN of the test database and the name of a schema of t's own,
// dropped with all in it when t ends.
func newSchema(t testing.TB) (dsn, schema string) {
	t.Helper()
	return testenv.PostgreSQLSchema(t, "storetest")
}

// open opens a Store with cfg, closed when t ends.
func open(t testing.TB, cfg postgres.Config) *postgres.Store {
	t.Helper()
	s, err := postgres.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil && !errors.Is(err, store.ErrClosed) {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// fresh opens a Store on a schema of its own.
func fresh(t testing.TB) *postgres.Store {
	dsn, schema := newSchema(t)
	return open(t, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 4})
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store { return fresh(t) })
}

func TestTwinReplacer(t *testing.T) {
	storetest.RunTwinReplacer(t, func(t *testing.T) store.Store { return fresh(t) })
}

func TestMultiReader(t *testing.T) {
	storetest.RunMultiReader(t, func(t *testing.T) store.Store { return fresh(t) })
}

func TestScan(t *testing.T) {
	storetest.RunScan(t, func(t *testing.T) store.Store { return fresh(t) })
}

func TestChangeLog(t *testing.T) {
	storetest.RunChangeLog(t, func(t *testing.T) store.Store { return fresh(t) })
}

func TestDelivery(t *testing.T) {
	storetest.RunDelivery(t, func(t *testing.T) storetest.DeliveryStore { return fresh(t) })
}

func TestIngress(t *testing.T) {
	storetest.RunIngress(t, func(t *testing.T) storetest.IngressStore { return fresh(t) })
}

func TestJobs(t *testing.T) {
	storetest.RunJobs(t, func(t *testing.T) storetest.JobStore { return fresh(t) })
}

func TestDetectors(t *testing.T) {
	storetest.RunDetectors(t, func(t *testing.T) storetest.DetectorStore { return fresh(t) })
}

func TestKeys(t *testing.T) {
	storetest.RunKeys(t, func(t *testing.T) storetest.KeyStore { return fresh(t) })
}

func TestConfig(t *testing.T) {
	for _, cfg := range []postgres.Config{
		{},
		{DSN: "postgres://x", Schema: "Upper"},
		{DSN: "postgres://x", Schema: "x; DROP"},
		{DSN: "postgres://x", Schema: strings.Repeat("a", 64)},
		{DSN: "postgres://x", MaxBatch: -1},
		{DSN: "postgres://x", MaxConns: -1},
		{DSN: "postgres://x", StatementTimeout: time.Microsecond},
		{DSN: "postgres://x", PollInterval: -time.Second},
		{DSN: "::not a dsn"},
	} {
		if s, err := postgres.New(cfg, slog.New(slog.NewTextHandler(io.Discard, nil))); err == nil {
			s.Close()
			t.Errorf("New(%+v) succeeded", cfg)
		}
	}
}

// TestConcurrentNew starts several stores together on a fresh schema: they migrate it once,
// and all work on it.
func TestConcurrentNew(t *testing.T) {
	dsn, schema := newSchema(t)
	const n = 6
	stores := make([]*postgres.Store, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			stores[i], errs[i] = postgres.New(postgres.Config{DSN: dsn, Schema: schema, MaxConns: 2},
				slog.New(slog.NewTextHandler(io.Discard, nil)))
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("New %d: %v", i, err)
		}
		t.Cleanup(func() { stores[i].Close() })
	}
	for i, s := range stores {
		err := s.Update(context.Background(), func(w store.Writer) error {
			return w.PutTwin(store.Twin{ID: fmt.Sprint(i), ModelID: "m", ETag: "e", Doc: json.RawMessage(`{}`)})
		})
		if err != nil {
			t.Fatalf("Update on store %d: %v", i, err)
		}
	}
	err := stores[0].View(context.Background(), func(r store.Reader) error {
		n, err := r.CountTwins()
		if err == nil && n != len(stores) {
			t.Errorf("CountTwins = %d, want %d", n, len(stores))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var rows, version int
	if err := c.QueryRow(t.Context(), "SELECT count(*), max(version) FROM "+schema+".schema_version").Scan(&rows, &version); err != nil {
		t.Fatal(err)
	}
	if rows != 1 || version < 1 {
		t.Errorf("schema_version holds %d rows, version %d; want one row", rows, version)
	}
}

// TestLogGapFreeAcrossNodes has two stores on one schema (two nodes) append to the log
// concurrently, in transactions of many sizes, while readers on both follow the log with
// seq > cursor. Each reader must see every Seq exactly once, in order, and every event
// emitted. To have transactions commit in another order than they began, a transaction
// outside the stores holds a twin that an early Update of node 0 reads: that Update's batch,
// begun first, waits while node 1 commits all its Updates, and commits after them.
func TestLogGapFreeAcrossNodes(t *testing.T) {
	dsn, schema := newSchema(t)
	nodes := []*postgres.Store{
		open(t, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 4, MaxBatch: 8}),
		open(t, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 4, MaxBatch: 8}),
	}
	const writers, updates = 8, 40
	total := 0
	for i := range writers {
		for j := range updates {
			total += 1 + (i+j)%4
		}
	}
	total = total*len(nodes) + 1 // and the held twin's record

	hold := func(w store.Writer) error {
		return w.PutTwin(store.Twin{ID: "held", ModelID: "m", ETag: "e", Doc: json.RawMessage(`{}`)})
	}
	if err := nodes[0].Update(context.Background(), hold); err != nil {
		t.Fatal(err)
	}
	holder, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.Close(context.Background())
	held, err := holder.Begin(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := held.Exec(t.Context(), "SELECT 1 FROM "+schema+".twins WHERE id = 'held' FOR UPDATE"); err != nil {
		t.Fatal(err)
	}
	heldUpdate := make(chan error, 1)
	go func() {
		heldUpdate <- nodes[0].Update(context.Background(), func(w store.Writer) error {
			// The event comes first: a log that numbered records as they are emitted would
			// give this one a Seq lower than all of node 1's, and commit it after them.
			if err := w.Emit(event.Event{ID: "held", Source: "s", SpecVersion: event.SpecVersion, Type: event.TwinUpdate}); err != nil {
				return err
			}
			_, err := w.Twin("held")
			return err
		})
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		ids []string
		err error
	}
	results := make(chan result, len(nodes))
	for _, n := range nodes {
		go func() {
			var r result
			seen := map[string]bool{}
			for after := uint64(0); len(r.ids) < total; {
				recs, err := n.Log().Read(ctx, after, 7)
				if err != nil {
					r.err = fmt.Errorf("Read after %d (%d of %d read): %w", after, len(r.ids), total, err)
					break
				}
				for _, rec := range recs {
					if rec.Seq != after+1 {
						r.err = fmt.Errorf("after Seq %d came %d: the reader skipped or repeated records", after, rec.Seq)
						break
					}
					if seen[rec.Event.ID] {
						r.err = fmt.Errorf("event %s read twice", rec.Event.ID)
						break
					}
					seen[rec.Event.ID] = true
					r.ids = append(r.ids, rec.Event.ID)
					after = rec.Seq
				}
				if r.err != nil {
					break
				}
			}
			results <- r
		}()
	}

	var wg, node1 sync.WaitGroup
	for ni, n := range nodes {
		for i := range writers {
			g := &wg
			if ni == 1 {
				g = &node1
			}
			g.Go(func() {
				for j := range updates {
					err := n.Update(ctx, func(w store.Writer) error {
						id := fmt.Sprintf("n%d-w%d-%d", ni, i, j)
						if err := w.PutTwin(store.Twin{ID: id, ModelID: "m", ETag: "e", Doc: json.RawMessage(`{}`)}); err != nil {
							return err
						}
						for k := range 1 + (i+j)%4 {
							if err := w.Emit(event.Event{ID: fmt.Sprintf("%s-%d", id, k), Source: "s", SpecVersion: event.SpecVersion, Type: event.TwinUpdate}); err != nil {
								return err
							}
						}
						return nil
					})
					if err != nil {
						t.Errorf("Update: %v", err)
						return
					}
				}
			})
		}
	}
	node1.Wait()
	if err := held.Rollback(t.Context()); err != nil {
		t.Fatal(err)
	}
	if err := <-heldUpdate; err != nil {
		t.Errorf("the Update of the held twin: %v", err)
	}
	wg.Wait()
	for range nodes {
		r := <-results
		if r.err != nil {
			t.Error(r.err)
			continue
		}
		if len(r.ids) != total {
			t.Errorf("a reader read %d records, want %d", len(r.ids), total)
		}
	}
	for i, n := range nodes {
		waitLast(t, n, uint64(total))
		if last := n.Log().Last(); last != uint64(total) {
			t.Errorf("node %d: Last = %d, want %d", i, last, total)
		}
	}
}

// waitLast waits until s's log reports Last of at least want.
func waitLast(t *testing.T, s store.Store, want uint64) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for s.Log().Last() < want {
		if time.Now().After(deadline) {
			t.Fatalf("Last = %d, still short of %d", s.Log().Last(), want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestOtherNodesWakeReaders checks that a Read waiting on one node returns when another node
// commits, and that Last follows it.
func TestOtherNodesWakeReaders(t *testing.T) {
	dsn, schema := newSchema(t)
	a := open(t, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 2})
	b := open(t, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 2})
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		recs, err := b.Log().Read(ctx, 0, 10)
		if err == nil && (len(recs) != 1 || recs[0].Event.ID != "x") {
			err = fmt.Errorf("read %+v, want the one record", recs)
		}
		done <- err
	}()
	err := a.Update(context.Background(), func(w store.Writer) error {
		return w.Emit(event.Event{ID: "x", Source: "s", SpecVersion: event.SpecVersion, Type: event.Telemetry})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatalf("Read on the other node: %v", err)
	}
	waitLast(t, b, 1)
	// The other node's record is not in b's memory: its change is not Known.
	cs, err := b.Log().(store.ChangeLog).ReadChanges(context.Background(), 0, 10)
	if err != nil || len(cs) != 1 || cs[0].Known {
		t.Errorf("ReadChanges on the other node = %+v, %v", cs, err)
	}
}

// TestETagAcrossNodes has Updates on two stores sharing a schema race to replace one twin,
// each checking the ETag it read first, as the twin service does: exactly one of them may
// win each round.
func TestETagAcrossNodes(t *testing.T) {
	dsn, schema := newSchema(t)
	nodes := []*postgres.Store{
		open(t, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 2}),
		open(t, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 2}),
	}
	errStale := errors.New("etag mismatch")
	put := func(s store.Store, etag string) error {
		return s.Update(context.Background(), func(w store.Writer) error {
			return w.PutTwin(store.Twin{ID: "t", ModelID: "m", ETag: etag, Doc: json.RawMessage(`{}`)})
		})
	}
	if err := put(nodes[0], "0"); err != nil {
		t.Fatal(err)
	}
	const rounds, racers = 20, 6
	for round := range rounds {
		ifMatch, next := fmt.Sprint(round), fmt.Sprint(round+1)
		var (
			wg   sync.WaitGroup
			mu   sync.Mutex
			wins int
		)
		for i := range racers {
			s := nodes[i%len(nodes)]
			wg.Go(func() {
				err := s.Update(context.Background(), func(w store.Writer) error {
					tw, err := w.Twin("t")
					if err != nil {
						return err
					}
					if tw.ETag != ifMatch {
						return errStale
					}
					tw.ETag = next
					tw.Doc = json.RawMessage(fmt.Sprintf(`{"winner":%d}`, i))
					return w.PutTwin(tw)
				})
				switch {
				case err == nil:
					mu.Lock()
					wins++
					mu.Unlock()
				case !errors.Is(err, errStale):
					t.Errorf("Update: %v", err)
				}
			})
		}
		wg.Wait()
		if wins != 1 {
			t.Fatalf("round %d: %d Updates replaced the twin with If-Match %s, want 1", round, wins, ifMatch)
		}
	}
}

// TestFailingStatementFailsOnlyItsUpdate checks that an Update whose statement the server
// refuses (text may not hold a NUL byte) fails alone, even when fn ignores the error, while
// the Updates batched with it commit. The refused put is sent after its fn returned, with the
// next fn's read (half of the fns begin with one) or with the commit.
func TestFailingStatementFailsOnlyItsUpdate(t *testing.T) {
	dsn, schema := newSchema(t)
	s := open(t, postgres.Config{DSN: dsn, Schema: schema})
	const n = 60
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Update(context.Background(), func(w store.Writer) error {
				id := fmt.Sprint(i)
				if i%2 == 1 {
					if _, err := w.Twin(fmt.Sprint(i - 1)); err != nil && !errors.Is(err, store.ErrNotFound) {
						return err
					}
				}
				if i%5 == 0 {
					_ = w.PutTwin(store.Twin{ID: id + "\x00", ModelID: "m", ETag: "e", Doc: json.RawMessage(`{}`)})
				}
				if err := w.PutTwin(store.Twin{ID: id, ModelID: "m", ETag: "e", Doc: json.RawMessage(`{}`)}); err != nil {
					return err
				}
				return w.Emit(event.Event{ID: id, Source: "s", SpecVersion: event.SpecVersion, Type: event.TwinCreate, Subject: id})
			})
		})
	}
	wg.Wait()
	want := 0
	wantIDs := map[string]bool{}
	for i, err := range errs {
		if (i%5 == 0) != (err != nil) {
			t.Errorf("Update %d returned %v", i, err)
		}
		if err == nil {
			want++
			wantIDs[fmt.Sprint(i)] = true
		}
	}
	err := s.View(context.Background(), func(r store.Reader) error {
		got, err := r.CountTwins()
		if err == nil && got != want {
			t.Errorf("CountTwins = %d, want %d", got, want)
		}
		ts, err := r.Twins("", 0)
		if err == nil && len(ts) != want {
			t.Errorf("%d twins stored, want %d", len(ts), want)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if last := s.Log().Last(); last != uint64(want) {
		t.Fatalf("Last = %d, want %d", last, want)
	}
	// The records of the failed Updates are gone from the middle of their batches: this
	// store's tail and the database (read through another store) hold exactly the others.
	other := open(t, postgres.Config{DSN: dsn, Schema: schema})
	for _, l := range []store.Log{s.Log(), other.Log()} {
		recs, err := l.Read(context.Background(), 0, n)
		if err != nil {
			t.Fatal(err)
		}
		seen := map[string]bool{}
		for i, r := range recs {
			if r.Seq != uint64(i+1) || !wantIDs[r.Event.ID] || seen[r.Event.ID] {
				t.Errorf("record %d: Seq %d, event %q", i, r.Seq, r.Event.ID)
			}
			seen[r.Event.ID] = true
		}
		if len(recs) != want {
			t.Errorf("read %d records, want %d", len(recs), want)
		}
	}
}

// TestReconnects checks that a store outlives its connections: after the server ends them
// all, an Update may fail, but the next ones work, and the log's listener hears other nodes
// again.
func TestReconnects(t *testing.T) {
	dsn, schema := newSchema(t)
	app := "twinflow_" + schema
	a := open(t, postgres.Config{DSN: dsn + "&application_name=" + app, Schema: schema, MaxConns: 2, PollInterval: 50 * time.Millisecond})
	b := open(t, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 2})
	emit := func(s store.Store, id string) error {
		return s.Update(context.Background(), func(w store.Writer) error {
			if err := w.PutTwin(store.Twin{ID: id, ModelID: "m", ETag: "e", Doc: json.RawMessage(`{}`)}); err != nil {
				return err
			}
			return w.Emit(event.Event{ID: id, Source: "s", SpecVersion: event.SpecVersion, Type: event.TwinCreate})
		})
	}
	if err := emit(a, "before"); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var ended int
	err = c.QueryRow(t.Context(), "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1", app).Scan(&ended)
	if err != nil || ended < 2 {
		t.Fatalf("ended %d connections of the store, %v; want its writer and listener at least", ended, err)
	}
	// The first Updates may meet the broken connections; the store then replaces them, without
	// a restart. How many fail depends on which connections the pool hands out first.
	var lastErr error
	for i, deadline := 0, time.Now().Add(10*time.Second); ; i++ {
		if lastErr = emit(a, fmt.Sprint("after", i)); lastErr == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no Update succeeded in ten seconds after the connections ended: %v", lastErr)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := emit(b, "other"); err != nil {
		t.Fatal(err)
	}
	waitLast(t, b, a.Log().Last())
	waitLast(t, a, b.Log().Last())
	err = a.View(context.Background(), func(r store.Reader) error {
		_, err := r.Twin("other")
		return err
	})
	if err != nil {
		t.Fatalf("View after the connections ended: %v", err)
	}
}

// TestPanicRollsBack checks that a fn's panic reaches Update's caller after the fn's changes
// were rolled back, sent or not, and that the Updates after it commit.
func TestPanicRollsBack(t *testing.T) {
	s := fresh(t)
	put := func(w store.Writer, id string) error {
		return w.PutTwin(store.Twin{ID: id, ModelID: "m", ETag: "e", Doc: json.RawMessage(`{}`)})
	}
	for _, sent := range []bool{false, true} {
		func() {
			defer func() {
				if v := recover(); v != "boom" {
					t.Errorf("Update raised %v, want fn's panic", v)
				}
			}()
			_ = s.Update(context.Background(), func(w store.Writer) error {
				if err := put(w, fmt.Sprint("panicked-", sent)); err != nil {
					return err
				}
				if sent { // a read sends the put before the panic
					if _, err := w.Twin("missing"); !errors.Is(err, store.ErrNotFound) {
						return err
					}
				}
				panic("boom")
			})
		}()
	}
	if err := s.Update(context.Background(), func(w store.Writer) error { return put(w, "after") }); err != nil {
		t.Fatal(err)
	}
	err := s.View(context.Background(), func(r store.Reader) error {
		ts, err := r.Twins("", 0)
		if err == nil && (len(ts) != 1 || ts[0].ID != "after") {
			t.Errorf("twins after the panics: %+v, want only the one put after them", ts)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestLongSchemaName checks that a schema name of the longest length allowed works,
// notifications included, though "twinflow_log_" and the name are too long for a channel.
func TestLongSchemaName(t *testing.T) {
	dsn, short := newSchema(t)
	schema := short + strings.Repeat("x", 63-len(short))
	t.Cleanup(func() {
		ctx := context.Background()
		if c, err := pgx.Connect(ctx, dsn); err == nil {
			_, _ = c.Exec(ctx, "DROP SCHEMA IF EXISTS "+schema+" CASCADE")
			c.Close(ctx)
		}
	})
	a := open(t, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 2})
	b := open(t, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 2, PollInterval: time.Minute})
	changed := b.GenerationsChanged()
	ctx := context.Background()
	err := a.Update(ctx, func(w store.Writer) error {
		return w.PutModel(store.Model{ID: "dtmi:x:m;1", Definition: json.RawMessage(`{}`), UploadTime: time.Now()})
	})
	if err != nil {
		t.Fatalf("Update on a schema of 63 bytes: %v", err)
	}
	select {
	case <-changed:
	case <-time.After(20 * time.Second):
		t.Fatal("the other node was not notified")
	}
}
