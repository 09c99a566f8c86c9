package sqlite

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/reserve"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/testenv"
)

// putTwin is an Update that puts twin id with a document of about 3 KB and its event.
func putTwin(id string) func(store.Writer) error {
	doc := fmt.Sprintf(`{"$dtId":%q,"pad":%q}`, id, strings.Repeat("x", 3000))
	return func(w store.Writer) error {
		if err := w.PutTwin(store.Twin{ID: id, ModelID: "dtmi:m;1", ETag: "e", Doc: []byte(doc)}); err != nil {
			return err
		}
		return w.Emit(testEvent("put " + id))
	}
}

// deleteTwin is an Update that deletes twin id with its event.
func deleteTwin(id string) func(store.Writer) error {
	return func(w store.Writer) error {
		if err := w.DeleteTwin(id); err != nil {
			return err
		}
		return w.Emit(testEvent("delete " + id))
	}
}

// TestDiskFull fills a small tmpfs with Updates: the Update that meets the full disk fails
// with store.ErrFull and nothing of it is kept; from then on only deletes are written, in the
// space the reserve gave back; once space is freed writes succeed again, and every
// acknowledged Update is there after a reopen.
func TestDiskFull(t *testing.T) {
	dir := testenv.Tmpfs(t, 16<<20)
	// The filler leaves the store a few MB, which it fills; removing it frees the disk.
	filler := filepath.Join(dir, "filler")
	if err := os.WriteFile(filler, make([]byte, 10<<20), 0o600); err != nil {
		t.Fatal(err)
	}
	space, err := reserve.New(reserve.Config{Dir: dir, Size: 1 << 20, Interval: 10 * time.Millisecond}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = space.Run(ctx) })
	defer func() { cancel(); wg.Wait() }()

	s := open(t, Config{Dir: dir, Space: space})
	var acked []string
	var full error
	for i := 0; full == nil; i++ {
		if i == 100_000 {
			t.Fatal("the disk never filled up")
		}
		// Concurrent Updates, so that full batches meet the full disk.
		var mu sync.Mutex
		var batch sync.WaitGroup
		for j := range 8 {
			id := fmt.Sprintf("t%d-%d", i, j)
			batch.Go(func() {
				err := s.Update(context.Background(), putTwin(id))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err == nil:
					acked = append(acked, id)
				case errors.Is(err, store.ErrFull):
					full = err
				default:
					t.Errorf("Update of %s: %v, want nil or store.ErrFull", id, err)
				}
			})
		}
		batch.Wait()
	}
	t.Logf("%d twins written before the disk filled up: %v", len(acked), full)
	if !space.Full() {
		t.Fatal("the store did not tell its Space that the disk is full")
	}

	// Anything that grows the store is refused at once...
	if err := s.Update(context.Background(), putTwin("new")); !errors.Is(err, store.ErrFull) {
		t.Fatalf("put on a full disk: %v, want store.ErrFull", err)
	}
	if err := s.Update(context.Background(), func(w store.Writer) error { return w.Emit(testEvent("telemetry")) }); !errors.Is(err, store.ErrFull) {
		t.Fatalf("an event alone on a full disk: %v, want store.ErrFull", err)
	}
	// ...also when fn ignores the refusal, and a delete before it is undone.
	err = s.Update(context.Background(), func(w store.Writer) error {
		if err := deleteTwin(acked[0])(w); err != nil {
			return err
		}
		_ = putTwin("ignored")(w)
		return nil
	})
	if !errors.Is(err, store.ErrFull) {
		t.Fatalf("an Update that ignored a refused put: %v, want store.ErrFull", err)
	}
	// ...but deletes go through.
	last := s.Log().Last()
	deleted := map[string]bool{}
	for _, id := range acked[:20] {
		if err := s.Update(context.Background(), deleteTwin(id)); err != nil {
			t.Fatalf("delete %s on a full disk: %v", id, err)
		}
		deleted[id] = true
	}
	if got := s.Log().Last(); got != last+20 {
		t.Errorf("Last after 20 deletes = %d, want %d", got, last+20)
	}

	// Space returns: writes are accepted again.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(10 * time.Second); space.Full(); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("the reserve did not come back once space was freed")
		}
	}
	if err := s.Update(context.Background(), putTwin("after")); err != nil {
		t.Fatalf("put once space returned: %v", err)
	}
	acked = append(acked, "after")
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	s = open(t, Config{Dir: dir})
	defer s.Close()
	err = s.View(context.Background(), func(r store.Reader) error {
		for _, id := range acked {
			_, err := r.Twin(id)
			switch {
			case deleted[id] && !errors.Is(err, store.ErrNotFound):
				t.Errorf("twin %s deleted on the full disk: %v, want not found", id, err)
			case !deleted[id] && err != nil:
				t.Errorf("acknowledged twin %s after reopen: %v", id, err)
			}
		}
		for _, id := range []string{"new", "ignored"} {
			if _, err := r.Twin(id); !errors.Is(err, store.ErrNotFound) {
				t.Errorf("refused twin %s after reopen: %v, want not found", id, err)
			}
		}
		n, err := r.CountTwins()
		if want := len(acked) - len(deleted); err != nil || n != want {
			t.Errorf("CountTwins after reopen = %d, %v; want %d", n, err, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := s.Log().Read(context.Background(), 0, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	if want := len(acked) + len(deleted); len(recs) != want {
		t.Errorf("log holds %d records after reopen, want %d: one per acknowledged put and delete", len(recs), want)
	}
	for i, r := range recs {
		if r.Seq != uint64(i+1) {
			t.Fatalf("record %d has Seq %d: the log has a gap", i, r.Seq)
		}
	}
}

// TestSyncFailure makes the fsync of the write-ahead log fail for real, by putting a pipe,
// which cannot be synced, in place of the descriptor the store syncs: the store fails for
// good, says so through Failed and Err, refuses every later Update with store.ErrFailed, and a
// reopen reads back every acknowledged Update.
func TestSyncFailure(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Config{Dir: dir})
	update(t, s, putTwin("before"))

	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	if err := syscall.Dup3(int(pw.Fd()), int(s.wal.Fd()), syscall.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	select {
	case <-s.Failed():
		t.Fatal("Failed before any fsync failed")
	default:
	}
	err = s.Update(context.Background(), putTwin("unsynced"))
	if !errors.Is(err, store.ErrFailed) {
		t.Fatalf("Update whose fsync failed: %v, want store.ErrFailed", err)
	}
	select {
	case <-s.Failed():
	case <-time.After(10 * time.Second):
		t.Fatal("Failed not closed after a failed fsync")
	}
	if !errors.Is(s.Err(), store.ErrFailed) || !strings.Contains(s.Err().Error(), "fdatasync") {
		t.Errorf("Err = %v, want the failed fdatasync", s.Err())
	}
	if err := s.Update(context.Background(), putTwin("later")); !errors.Is(err, store.ErrFailed) {
		t.Fatalf("Update after the failure: %v, want store.ErrFailed", err)
	}
	err = s.View(context.Background(), func(r store.Reader) error {
		_, err := r.Twin("before")
		return err
	})
	if err != nil {
		t.Errorf("View after the failure: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("Close after the failure: %v", err)
	}

	s = open(t, Config{Dir: dir})
	defer s.Close()
	err = s.View(context.Background(), func(r store.Reader) error {
		if _, err := r.Twin("before"); err != nil {
			t.Errorf("acknowledged twin after reopen: %v", err)
		}
		if _, err := r.Twin("later"); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("twin refused after the failure: %v, want not found", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	update(t, s, putTwin("reopened"))
}
