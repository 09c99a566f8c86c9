package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/google/uuid"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twin"
)

// RestartConfig configures the restart benchmark. Zero fields take the defaults in brackets.
type RestartConfig struct {
	// Binary is the twinflow executable started as the server; required.
	Binary string
	// Dir is where the temporary data directory goes [os.TempDir()].
	Dir string
	// Keep leaves the data directory in place instead of removing it.
	Keep bool
	// Twins is the number of twins stored before the restart [1,000,000].
	Twins int
	// Batch is the number of twins written per store transaction while loading [10,000].
	Batch int
	// Timeout bounds the wait for the restarted server to become ready [10m].
	Timeout time.Duration
}

func (c RestartConfig) withDefaults() RestartConfig {
	if c.Dir == "" {
		c.Dir = os.TempDir()
	}
	if c.Twins <= 0 {
		c.Twins = 1_000_000
	}
	if c.Batch <= 0 {
		c.Batch = 10_000
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	return c
}

// RestartResult is what the restart benchmark measured.
type RestartResult struct {
	Twins int
	// Load is how long storing the twins (and their create events) took, DiskBytes how much
	// the data directory holds afterwards.
	Load      time.Duration
	DiskBytes int64
	// Ready is the time from starting the server process until /readyz first answered 200.
	Ready time.Duration
	// RSS is the server's resident memory (VmRSS) when it became ready.
	RSS int64
}

// Table writes the result as a short table.
func (r RestartResult) Table(w io.Writer) error {
	return table(w, [][2]string{
		{"twins", fmt.Sprintf("%d of %d properties, each with its create event", r.Twins, numProperties)},
		{"load through the store", fmt.Sprintf("%v (%.0f twins/s), %.1f MiB on disk", r.Load.Round(time.Millisecond), float64(r.Twins)/r.Load.Seconds(), float64(r.DiskBytes)/(1<<20))},
		{"start until /readyz 200", r.Ready.Round(time.Millisecond).String()},
		{"resident memory (VmRSS)", fmt.Sprintf("%.1f MiB", float64(r.RSS)/(1<<20))},
	})
}

// Restart runs the restart benchmark: it stores cfg.Twins twins of the benchmark model in a
// fresh data directory through the store, in transactions of cfg.Batch twins, closes the
// store, then starts `Binary serve` on the directory and measures the time until /readyz
// answers 200 and the process's resident memory at that moment; it then reads the last twin
// back, so a server that starts fast without its data fails the run. It stops the server with
// SIGTERM before returning.
func Restart(ctx context.Context, cfg RestartConfig, logger *slog.Logger) (RestartResult, error) {
	cfg = cfg.withDefaults()
	res := RestartResult{Twins: cfg.Twins}
	if cfg.Binary == "" {
		return res, errors.New("restart benchmark: the twinflow binary is required")
	}
	dir, err := os.MkdirTemp(cfg.Dir, "twinflow-bench-restart-")
	if err != nil {
		return res, fmt.Errorf("create bench directory: %w", err)
	}
	if !cfg.Keep {
		defer os.RemoveAll(dir)
	}

	logger.Info("loading twins", slog.Int("twins", cfg.Twins), slog.String("dir", dir))
	start := time.Now()
	if err := loadTwins(ctx, dir, cfg.Twins, cfg.Batch, logger); err != nil {
		return res, err
	}
	res.Load = time.Since(start)
	if res.DiskBytes, err = dirSize(dir); err != nil {
		return res, err
	}

	logger.Info("restarting the server", slog.Duration("load", res.Load))
	probe := "/digitaltwins/" + twinID(cfg.Twins-1) + "?api-version=" + apiVersion
	res.Ready, res.RSS, err = startUntilReady(ctx, cfg.Binary, dir, probe, cfg.Timeout)
	return res, err
}

// loadTwins stores model and twins 0..n-1, with one create event each, in transactions of
// batch twins.
func loadTwins(ctx context.Context, dir string, n, batch int, logger *slog.Logger) (err error) {
	// The load need not survive a machine crash, only reach the disk by Close: commits skip
	// the fsync (NoSync); closing the store checkpoints everything into the database file.
	st, err := sqlite.Open(sqlite.Config{Dir: dir, NoSync: true}, logger)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
		}
	}()

	definition, err := modelDefinition()
	if err != nil {
		return fmt.Errorf("encode model: %w", err)
	}
	err = st.Update(ctx, func(w store.Writer) error {
		return w.PutModel(store.Model{ID: modelID, Definition: definition, UploadTime: time.Now().UTC()})
	})
	if err != nil {
		return fmt.Errorf("store model: %w", err)
	}

	for from := 0; from < n; from += batch {
		to := min(from+batch, n)
		now := twin.FormatTime(time.Now())
		twins := make([]store.Twin, 0, to-from)
		for i := from; i < to; i++ {
			etag := twin.NewETag()
			doc, err := twinDocument(i, etag, now)
			if err != nil {
				return err
			}
			twins = append(twins, store.Twin{ID: twinID(i), ModelID: modelID, ETag: etag, Doc: doc})
		}
		err := st.Update(ctx, func(w store.Writer) error {
			for _, t := range twins {
				if err := w.PutTwin(t); err != nil {
					return err
				}
				err := w.Emit(event.Event{
					ID: uuid.NewString(), Source: "localhost", SpecVersion: event.SpecVersion,
					Type: event.TwinCreate, Subject: t.ID, Time: now,
					DataContentType: "application/json", Data: t.Doc,
				})
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("store twins %d to %d: %w", from, to-1, err)
		}
	}
	return nil
}

// listeningLine matches the log line the server writes once it is bound.
var listeningLine = regexp.MustCompile(`twinflow listening on (https?://[^\s"]+)`)

// startUntilReady starts `bin serve` on dataDir, waits until /readyz answers 200 and returns
// the time that took and the process's VmRSS then, after checking that GET probe answers 200.
// It stops the process before returning.
func startUntilReady(ctx context.Context, bin, dataDir, probe string, timeout time.Duration) (time.Duration, int64, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return 0, 0, fmt.Errorf("start %s: %w", bin, err)
	}
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
	}()

	// The scanner reports the listening URL, or the output so far if the process exits first.
	urls := make(chan string, 1)
	exited := make(chan string, 1)
	go func() {
		var out strings.Builder
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listeningLine.FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
				_, _ = io.Copy(io.Discard, stderr)
				return
			}
			out.WriteString(sc.Text() + "\n")
		}
		exited <- out.String()
	}()
	var url string
	select {
	case url = <-urls:
	case out := <-exited:
		return 0, 0, fmt.Errorf("the server exited before listening:\n%s", out)
	case <-ctx.Done():
		return 0, 0, fmt.Errorf("wait for the server to listen: %w", ctx.Err())
	}

	client := httpClient(1)
	defer client.CloseIdleConnections()
	if err := waitReady(ctx, client, url, timeout); err != nil {
		return 0, 0, err
	}
	ready := time.Since(start)
	rss, err := vmRSS(cmd.Process.Pid)
	if err != nil {
		return 0, 0, err
	}
	// The figures count only if the server serves what was loaded.
	if err := sendOK(ctx, client, http.MethodGet, url+probe, "", nil, http.StatusOK); err != nil {
		return 0, 0, fmt.Errorf("read a loaded twin back: %w", err)
	}
	return ready, rss, nil
}

// vmRSS returns the resident set size of process pid in bytes, from /proc/<pid>/status.
func vmRSS(pid int) (int64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, fmt.Errorf("read process status: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("parse VmRSS %q: %w", rest, err)
			}
			return kb << 10, nil
		}
	}
	return 0, errors.New("no VmRSS in process status")
}

// dirSize returns the bytes held by the regular files under dir.
func dirSize(dir string) (int64, error) {
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Size()
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("measure %s: %w", dir, err)
	}
	return n, nil
}
