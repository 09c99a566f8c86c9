package sqlite

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/storetest"
)

// open opens a store, failing the test on error.
func open(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, Config{Dir: t.TempDir()})
	})
}

func TestContractNoSync(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, Config{Dir: t.TempDir(), NoSync: true})
	})
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cfg     Config
		wantErr []string
	}{
		{"defaults", Config{Dir: "d"}, nil},
		{"everything wrong", Config{MaxBatch: -1, Readers: -2}, []string{"dir: must be set", "maxBatch: -1", "readers: -2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg, err := tc.cfg.withDefaults()
			if tc.wantErr == nil {
				if err != nil {
					t.Fatalf("withDefaults: %v", err)
				}
				if cfg.MaxBatch != DefaultMaxBatch || cfg.Readers <= 0 || cfg.NoSync {
					t.Errorf("defaults = %+v", cfg)
				}
				return
			}
			if err == nil {
				t.Fatal("withDefaults accepted an invalid config")
			}
			for _, want := range tc.wantErr {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("error %q does not report %q", err, want)
				}
			}
		})
	}
}

// update runs fn in an Update and fails the test on error.
func update(t testing.TB, s store.Store, fn func(store.Writer) error) {
	t.Helper()
	if err := s.Update(context.Background(), fn); err != nil {
		t.Fatalf("Update: %v", err)
	}
}

func testEvent(id string) event.Event {
	return event.Event{ID: id, Source: "test", SpecVersion: event.SpecVersion, Type: event.TwinUpdate}
}

func TestReopenKeepsEverything(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Config{Dir: dir})
	upload := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	propagated := testEvent("2")
	propagated.Depth = 5
	update(t, s, func(w store.Writer) error {
		return errors.Join(
			w.PutModel(store.Model{ID: "dtmi:m;1", Definition: json.RawMessage(`{}`), UploadTime: upload}),
			w.PutTwin(store.Twin{ID: "a", ModelID: "dtmi:m;1", ETag: "e1", Doc: json.RawMessage(`{"$dtId":"a"}`)}),
			w.PutTwin(store.Twin{ID: "b", ModelID: "dtmi:m;1", ETag: "e1", Doc: json.RawMessage(`{"$dtId":"b"}`)}),
			w.PutRelationship(store.Relationship{SourceID: "a", ID: "r", Name: "n", TargetID: "b", ETag: "e", Doc: json.RawMessage(`{}`)}),
			w.Emit(testEvent("1")),
			w.Emit(propagated),
		)
	})
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, Config{Dir: dir})
	defer s.Close()
	if last := s.Log().Last(); last != 2 {
		t.Errorf("Last after reopen = %d, want 2", last)
	}
	err := s.View(context.Background(), func(r store.Reader) error {
		if m, err := r.Model("dtmi:m;1"); err != nil || !m.UploadTime.Equal(upload) {
			t.Errorf("Model after reopen = %+v, %v", m, err)
		}
		if n, err := r.CountTwins(); err != nil || n != 2 {
			t.Errorf("CountTwins after reopen = %d, %v; want 2", n, err)
		}
		if rel, err := r.Relationship("a", "r"); err != nil || rel.TargetID != "b" {
			t.Errorf("Relationship after reopen = %+v, %v", rel, err)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("View: %v", err)
	}
	update(t, s, func(w store.Writer) error { return w.Emit(testEvent("3")) })
	recs, err := s.Log().Read(context.Background(), 0, 10)
	if err != nil {
		t.Fatalf("Read: %v", err)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) || r.Event.ID != fmt.Sprint(i+1) {
			t.Errorf("record %d after reopen = seq %d, event %q", i, r.Seq, r.Event.ID)
		}
	}
	if len(recs) != 3 {
		t.Fatalf("log after reopen and one more event holds %d records, want 3", len(recs))
	}
	// Records 1 and 2 come from the database, not the in-memory tail.
	if recs[0].Event.Depth != 0 || recs[1].Event.Depth != 5 {
		t.Errorf("depths after reopen = %d, %d; want 0, 5", recs[0].Event.Depth, recs[1].Event.Depth)
	}
}

func TestOpenRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	if err := open(t, Config{Dir: dir}).Close(); err != nil {
		t.Fatal(err)
	}
	db, err := sql.Open("sqlite", filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec("UPDATE meta SET value = 99 WHERE key = ?", schemaVersionKey); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(Config{Dir: dir}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		s.Close()
		t.Fatal("Open accepted a database with a newer schema")
	}
	if !strings.Contains(err.Error(), "schema version 99") {
		t.Errorf("Open error %q does not name the schema version", err)
	}
}

// holdWriter runs an Update whose fn blocks the writer goroutine until release is called,
// so that Updates queue up behind it. release waits for the blocking Update to return and
// returns its error.
func holdWriter(t *testing.T, s *Store) (release func() error) {
	t.Helper()
	entered, gate, done := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	go func() {
		done <- s.Update(context.Background(), func(store.Writer) error {
			close(entered)
			<-gate
			return nil
		})
	}()
	<-entered
	return func() error {
		close(gate)
		return <-done
	}
}

// waitQueued waits until n Updates wait for the writer goroutine.
func waitQueued(t *testing.T, s *Store, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for len(s.reqs) < n {
		if time.Now().After(deadline) {
			t.Fatalf("%d Updates queued after 10s, want %d", len(s.reqs), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestFailingFnInBatchLeavesNeighbours(t *testing.T) {
	s := open(t, Config{Dir: t.TempDir()})
	defer s.Close()
	release := holdWriter(t, s)
	before := s.batches.Load()

	const n = 30
	errRefused := errors.New("refused")
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			errs[i] = s.Update(context.Background(), func(w store.Writer) error {
				id := fmt.Sprint(i)
				if err := w.PutTwin(store.Twin{ID: id, Doc: json.RawMessage(`{}`)}); err != nil {
					return err
				}
				if err := w.Emit(testEvent(id)); err != nil {
					return err
				}
				if i%2 == 1 {
					return errRefused
				}
				return nil
			})
		})
	}
	waitQueued(t, s, n)
	if err := release(); err != nil {
		t.Errorf("blocking Update: %v", err)
	}
	wg.Wait()

	// The writer adds what is waiting to the open transaction, so all share one.
	if got := s.batches.Load() - before; got != 1 {
		t.Fatalf("the blocking Update and the %d queued behind it took %d transactions, want 1", n, got)
	}
	for i, err := range errs {
		if i%2 == 1 && !errors.Is(err, errRefused) || i%2 == 0 && err != nil {
			t.Errorf("Update %d returned %v", i, err)
		}
	}
	recs, err := s.Log().Read(context.Background(), 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != n/2 {
		t.Fatalf("log holds %d records, want %d", len(recs), n/2)
	}
	for i, r := range recs {
		id, _ := strconv.Atoi(r.Event.ID)
		if r.Seq != uint64(i+1) || id%2 != 0 {
			t.Errorf("record %d: seq %d, event %q", i, r.Seq, r.Event.ID)
		}
	}
	err = s.View(context.Background(), func(r store.Reader) error {
		n, err := r.CountTwins()
		if err != nil {
			return err
		}
		if n != 15 {
			t.Errorf("CountTwins = %d, want 15", n)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestPanicInFnIsRaisedInCaller(t *testing.T) {
	s := open(t, Config{Dir: t.TempDir()})
	defer s.Close()
	release := holdWriter(t, s)
	neighbour := make(chan error, 1)
	go func() {
		neighbour <- s.Update(context.Background(), func(w store.Writer) error { return w.Emit(testEvent("kept")) })
	}()
	panicked := make(chan any, 1)
	go func() {
		defer func() { panicked <- recover() }()
		_ = s.Update(context.Background(), func(w store.Writer) error {
			if err := w.Emit(testEvent("lost")); err != nil {
				return err
			}
			panic("boom")
		})
	}()
	waitQueued(t, s, 2)
	if err := release(); err != nil {
		t.Errorf("blocking Update: %v", err)
	}
	if v := <-panicked; v != "boom" {
		t.Errorf("Update whose fn panicked recovered %v, want the panic value", v)
	}
	if err := <-neighbour; err != nil {
		t.Errorf("neighbour of a panicking fn: %v", err)
	}
	recs, err := s.Log().Read(context.Background(), 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Event.ID != "kept" {
		t.Errorf("log = %+v, want only the neighbour's event", recs)
	}
}

func TestUpdateCancelledWhileQueuedDoesNotRun(t *testing.T) {
	s := open(t, Config{Dir: t.TempDir()})
	defer s.Close()
	release := holdWriter(t, s)
	ctx, cancel := context.WithCancel(context.Background())
	ran := false
	done := make(chan error, 1)
	go func() {
		done <- s.Update(ctx, func(store.Writer) error {
			ran = true
			return nil
		})
	}()
	waitQueued(t, s, 1)
	cancel()
	if err := release(); err != nil {
		t.Errorf("blocking Update: %v", err)
	}
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Update cancelled while queued returned %v, want context.Canceled", err)
	}
	if ran {
		t.Error("fn of an Update cancelled while queued ran")
	}
}

func TestLogReadRejectsNonPositiveMax(t *testing.T) {
	s := open(t, Config{Dir: t.TempDir()})
	defer s.Close()
	if _, err := s.Log().Read(context.Background(), 0, 0); err == nil {
		t.Error("Read with max 0 succeeded")
	}
}

// crashDirEnv names the data directory of the child process TestCrashKeepsAcknowledged starts.
const crashDirEnv = "TWINFLOW_STORE_CRASH_DIR"

// TestCrashKeepsAcknowledged runs Updates in a child process, SIGKILLs it mid-stream and
// checks that every Update the child saw acknowledged survived, with a gap-free log.
func TestCrashKeepsAcknowledged(t *testing.T) {
	if dir := os.Getenv(crashDirEnv); dir != "" {
		crashChild(dir)
		return
	}
	if testing.Short() {
		t.Skip("starts a child process")
	}
	dir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashKeepsAcknowledged$")
	cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// acked maps each writer to the newest version the child saw acknowledged.
	acked := map[string]int{}
	lines, killed := 0, false
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		writer, version, ok := strings.Cut(sc.Text(), " ")
		v, err := strconv.Atoi(version)
		if !ok || err != nil {
			t.Fatalf("child printed %q", sc.Text())
		}
		acked[writer] = max(acked[writer], v)
		if lines++; lines == 3000 && !killed {
			if err := cmd.Process.Kill(); err != nil {
				t.Fatal(err)
			}
			killed = true
		}
	}
	// A SIGKILLed child exits with an error; anything else means it stopped on its own.
	if err := cmd.Wait(); err == nil || !killed {
		t.Fatalf("child ended by itself after %d acknowledged Updates: %v", lines, err)
	}

	s := open(t, Config{Dir: dir})
	defer s.Close()
	recs, err := s.Log().Read(context.Background(), 0, 1<<30)
	if err != nil {
		t.Fatal(err)
	}
	logged := map[string]bool{}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has seq %d: the log has a gap", i, r.Seq)
		}
		logged[r.Event.ID] = true
	}
	err = s.View(context.Background(), func(r store.Reader) error {
		for writer, v := range acked {
			for i := 1; i <= v; i++ {
				if id := fmt.Sprintf("%s-%d", writer, i); !logged[id] {
					t.Errorf("acknowledged event %s is missing after the crash", id)
				}
			}
			tw, err := r.Twin(writer)
			if err != nil {
				return err
			}
			var doc struct{ V int }
			if err := json.Unmarshal(tw.Doc, &doc); err != nil {
				return err
			}
			if doc.V < v {
				t.Errorf("twin %s holds version %d after the crash, but %d was acknowledged", writer, doc.V, v)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d Updates acknowledged before the kill, %d records recovered", lines, len(recs))
}

// crashChild writes to the store in dir from several goroutines until it is killed, printing
// "<writer> <version>" for every acknowledged Update.
func crashChild(dir string) {
	s, err := Open(Config{Dir: dir}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			writer := fmt.Sprintf("w%d", g)
			for v := 1; ; v++ {
				err := s.Update(context.Background(), func(w store.Writer) error {
					doc := json.RawMessage(fmt.Sprintf(`{"v":%d}`, v))
					if err := w.PutTwin(store.Twin{ID: writer, Doc: doc}); err != nil {
						return err
					}
					return w.Emit(testEvent(fmt.Sprintf("%s-%d", writer, v)))
				})
				if err != nil {
					fmt.Fprintln(os.Stderr, err)
					os.Exit(2)
				}
				mu.Lock()
				fmt.Printf("%s %d\n", writer, v)
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

func TestFailedSyncFailsTheStore(t *testing.T) {
	s := open(t, Config{Dir: t.TempDir()})
	update(t, s, func(w store.Writer) error { return w.Emit(testEvent("durable")) })
	// Closing the descriptor makes the next fsync fail, as a failing disk would.
	if err := s.wal.Close(); err != nil {
		t.Fatal(err)
	}
	err := s.Update(context.Background(), func(w store.Writer) error { return w.Emit(testEvent("unknown")) })
	if err == nil || !strings.Contains(err.Error(), "sync write-ahead log") {
		t.Fatalf("Update whose fsync failed returned %v", err)
	}
	if last := s.Log().Last(); last != 1 {
		t.Errorf("Last after a failed fsync = %d, want 1: the record is not known to be durable", last)
	}
	err = s.Update(context.Background(), func(w store.Writer) error { return w.Emit(testEvent("later")) })
	if err == nil || !strings.Contains(err.Error(), "sync write-ahead log") {
		t.Errorf("Update after a failed fsync returned %v, want the store's failure", err)
	}
	// Close reports the descriptor closed above; the store is closed all the same.
	_ = s.Close()
	if err := s.Update(context.Background(), func(store.Writer) error { return nil }); !errors.Is(err, store.ErrClosed) {
		t.Errorf("Update after Close returned %v", err)
	}
}

// TestCloseLeavesNoLogToRecover checks that Close checkpoints the write-ahead log away, so the
// next Open does not have to read it back, however large it grew.
func TestCloseLeavesNoLogToRecover(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Config{Dir: dir})
	update(t, s, func(w store.Writer) error {
		for i := range 1000 {
			if err := w.PutTwin(store.Twin{ID: fmt.Sprint(i), Doc: json.RawMessage(`{}`)}); err != nil {
				return err
			}
		}
		return w.Emit(testEvent("1"))
	})
	if _, err := s.Log().Read(context.Background(), 0, 1); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName+"-wal")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("write-ahead log after Close: %v, want it removed", err)
	}
}

// TestStatsCountCommitsAndSyncs checks that Stats counts every acknowledged Update, the
// transactions carrying them and the fsyncs that made them durable, and that NoSync makes no
// fsync.
func TestStatsCountCommitsAndSyncs(t *testing.T) {
	for _, noSync := range []bool{false, true} {
		t.Run(fmt.Sprintf("NoSync=%v", noSync), func(t *testing.T) {
			s := open(t, Config{Dir: t.TempDir(), NoSync: noSync})
			defer s.Close()
			const updates = 40
			var wg sync.WaitGroup
			for i := range updates {
				wg.Go(func() {
					err := s.Update(context.Background(), func(w store.Writer) error {
						return w.PutTwin(store.Twin{ID: strconv.Itoa(i), ModelID: "dtmi:m;1", ETag: `W/"1"`, Doc: []byte(`{}`)})
					})
					if err != nil {
						t.Errorf("Update: %v", err)
					}
				})
			}
			wg.Wait()
			st := s.Stats()
			if st.Updates != updates || st.Transactions == 0 || st.Transactions > updates {
				t.Errorf("Stats = %+v; want %d updates in 1..%d transactions", st, updates, updates)
			}
			switch {
			case noSync && (st.Syncs != 0 || st.SyncTime != 0):
				t.Errorf("Stats = %+v; want no fsync with NoSync", st)
			case !noSync && (st.Syncs == 0 || st.Syncs > st.Transactions || st.SyncTime <= 0):
				t.Errorf("Stats = %+v; want 1..%d fsyncs taking some time", st, st.Transactions)
			}
		})
	}
}

// TestOneProcessPerDirectory checks that a data directory open in one Store cannot be opened
// again until that Store is closed. The lock is per open file, so a second Open in the same
// process stands for a second process.
func TestOneProcessPerDirectory(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Config{Dir: dir})
	if _, err := Open(Config{Dir: dir}, slog.New(slog.DiscardHandler)); err == nil || !strings.Contains(err.Error(), "in use by another twinflow process") {
		t.Fatalf("second Open of an open directory returned %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	open(t, Config{Dir: dir}).Close()
}
