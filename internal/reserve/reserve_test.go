package reserve

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/testenv"
)

const mib = 1 << 20

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// fill writes a file of zeros at path until the disk is full, and returns the error that
// stopped it, which must be ENOSPC.
func fill(t *testing.T, path string) error {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	buf := make([]byte, 64<<10)
	for {
		if _, err := f.Write(buf); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v, want ENOSPC", err)
			}
			return err
		}
	}
}

// allocated returns the bytes of path allocated on the disk, 0 when it does not exist.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0
	}
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// waitFor polls cond until it holds, failing t after 10 seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 10s", what)
		}
	}
}

// run runs r until the test ends.
func run(t *testing.T, r *Reserve) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := r.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	t.Cleanup(func() { cancel(); wg.Wait() })
}

// TestReserve fills a small tmpfs and checks that the reserve gives its space back once a
// write fails for lack of it, stays Full while the disk is, and comes back once space is
// freed.
func TestReserve(t *testing.T) {
	dir := testenv.Tmpfs(t, 8*mib)
	r, err := New(Config{Dir: dir, Size: 2 * mib, Interval: 10 * time.Millisecond}, discard)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, FileName)
	if got := allocated(t, path); got < 2*mib {
		t.Fatalf("reserve file holds %d bytes on the disk, want %d", got, 2*mib)
	}
	if r.Full() {
		t.Fatal("Full on an empty disk")
	}
	run(t, r)

	filler := filepath.Join(dir, "filler")
	enospc := fill(t, filler)
	if r.Exhausted(errors.New("some other failure")) || r.Full() {
		t.Fatal("an error other than ENOSPC made the reserve Full")
	}
	if !r.Exhausted(&os.PathError{Op: "write", Path: filler, Err: enospc}) || !r.Full() {
		t.Fatal("ENOSPC did not make the reserve Full")
	}
	if got := allocated(t, path); got != 0 {
		t.Fatalf("the released reserve still holds %d bytes", got)
	}
	if !r.Exhausted(enospc) {
		t.Fatal("a second ENOSPC was not reported as a full disk")
	}
	// The space released takes writes that would have failed.
	if err := os.WriteFile(filepath.Join(dir, "delete"), make([]byte, mib), 0o600); err != nil {
		t.Fatalf("writing into the released reserve: %v", err)
	}
	// The disk has room for the reserve now, but not for twice as much: it stays Full.
	time.Sleep(100 * time.Millisecond)
	if !r.Full() || allocated(t, path) != 0 {
		t.Fatal("the reserve came back on a disk that is still nearly full")
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reserve is no longer Full once space is freed", func() bool { return !r.Full() })
	if got := allocated(t, path); got < 2*mib {
		t.Fatalf("the reserve file holds %d bytes on the disk after it came back, want %d", got, 2*mib)
	}

	// It is released again when the disk fills up again.
	enospc = fill(t, filler)
	if !r.Exhausted(enospc) || allocated(t, path) != 0 {
		t.Fatal("the reserve was not released the second time the disk filled up")
	}
}

// TestNewOnFullDisk starts a reserve on a disk that is full already: it starts Full, and
// comes back once space is freed.
func TestNewOnFullDisk(t *testing.T) {
	dir := testenv.Tmpfs(t, 4*mib)
	filler := filepath.Join(dir, "filler")
	fill(t, filler)
	r, err := New(Config{Dir: dir, Size: mib, Interval: 10 * time.Millisecond}, discard)
	if err != nil {
		t.Fatalf("New on a full disk: %v", err)
	}
	if !r.Full() {
		t.Fatal("a reserve that could not be allocated is not Full")
	}
	if got := allocated(t, filepath.Join(dir, FileName)); got != 0 {
		t.Fatalf("a partly allocated reserve file holds %d bytes", got)
	}
	run(t, r)
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the reserve is no longer Full once space is freed", func() bool { return !r.Full() })
}

func TestConfig(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{}, "dir: must be set"},
		{Config{Dir: t.TempDir(), Size: -1}, "size: -1 is negative"},
		{Config{Dir: t.TempDir(), Interval: -time.Second}, "interval: -1s is negative"},
		{Config{Dir: filepath.Join(t.TempDir(), "missing")}, "open the disk reserve"},
	} {
		_, err := New(tc.cfg, discard)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%+v) = %v, want an error with %q", tc.cfg, err, tc.want)
		}
	}
}
