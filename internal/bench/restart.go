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

	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/server"
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
	// Relationships is the number of relationships stored with them, relationship i "next"
	// from twin i to twin i+1 (modulo Twins) [Twins]; negative stores none.
	Relationships int
	// Batch is the number of twins written per store transaction while loading [10,000].
	Batch int
	// Writes is the number of PATCHes made before the server is killed [20,000]: half before
	// a snapshot written in the background, half after it, for the start to replay.
	Writes int
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
	switch {
	case c.Relationships == 0:
		c.Relationships = c.Twins
	case c.Relationships < 0:
		c.Relationships = 0
	}
	if c.Batch <= 0 {
		c.Batch = 10_000
	}
	if c.Writes <= 0 {
		c.Writes = 20_000
	}
	if c.Timeout <= 0 {
		c.Timeout = 10 * time.Minute
	}
	return c
}

// RestartResult is what the restart benchmark measured.
type RestartResult struct {
	Twins, Relationships, Writes int
	// Load is how long storing the twins and relationships (and their create events) took,
	// DiskBytes how much the data directory holds afterwards.
	Load      time.Duration
	DiskBytes int64
	// Build is the first start, with no snapshot: the index is built from the store.
	Build StartResult
	// Stop is how long the clean stop after the first start took, the last snapshot
	// included, and SnapshotBytes the snapshot's size.
	Stop          time.Duration
	SnapshotBytes int64
	// Snapshot is the start after that clean stop, from the snapshot it wrote.
	Snapshot StartResult
	// Replay is the start after the server was killed (SIGKILL), from a snapshot written in
	// the background with Writes/2 PATCHes after it to replay.
	Replay StartResult
}

// StartResult is what one start measured.
type StartResult struct {
	// Ready is the time from starting the server process until /readyz first answered 200.
	Ready time.Duration
	// RSS is the server's resident memory (VmRSS) when it became ready.
	RSS int64
	// From says how the index was made: "snapshot" or "store".
	From string
}

func (r StartResult) String() string {
	return fmt.Sprintf("%v, %.1f MiB resident (index from the %s)", r.Ready.Round(time.Millisecond), float64(r.RSS)/(1<<20), r.From)
}

// Table writes the result as a short table.
func (r RestartResult) Table(w io.Writer) error {
	return table(w, [][2]string{
		{"twins", fmt.Sprintf("%d of %d properties, each with its create event", r.Twins, numProperties)},
		{"relationships", fmt.Sprintf("%d, each with its create event", r.Relationships)},
		{"load through the store", fmt.Sprintf("%v, %.1f MiB on disk", r.Load.Round(time.Millisecond), float64(r.DiskBytes)/(1<<20))},
		{"(a) first start, no snapshot", r.Build.String()},
		{"clean stop, snapshot written", fmt.Sprintf("%v, snapshot %.1f MiB", r.Stop.Round(time.Millisecond), float64(r.SnapshotBytes)/(1<<20))},
		{"(b) start after the clean stop", r.Snapshot.String()},
		{"(c) start after SIGKILL", fmt.Sprintf("%s; %d PATCHes after the snapshot replayed", r.Replay, r.Writes/2)},
	})
}

// Restart runs the restart benchmark: it stores cfg.Twins twins of the benchmark model and
// cfg.Relationships relationships in a fresh data directory through the store, in
// transactions of cfg.Batch, closes the store, and then starts `Binary serve` on the
// directory, with default settings (data history on) but for index.snapshotRecords, three
// times, measuring each time the time until /readyz answers 200 and the process's resident
// memory at that moment:
//
//   - (a) with no snapshot, so the graph index is built from the store, then stops it with
//     SIGTERM, which writes the snapshot;
//   - (b) from that snapshot; it then PATCHes cfg.Writes/2 twins, waits for the snapshot
//     written in the background (index.snapshotRecords is cfg.Writes/2), PATCHes as many
//     again and kills the server with SIGKILL;
//   - (c) from the background snapshot, replaying the PATCHes after it.
//
// After each start it reads a twin back, so a server that starts fast without its data fails
// the run; after (c), the twin PATCHed last, with its last value.
func Restart(ctx context.Context, cfg RestartConfig, logger *slog.Logger) (RestartResult, error) {
	cfg = cfg.withDefaults()
	res := RestartResult{Twins: cfg.Twins, Relationships: cfg.Relationships, Writes: cfg.Writes}
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
	dataDir := filepath.Join(dir, "data")
	configFile := filepath.Join(dir, "twinflow.yaml")
	err = os.WriteFile(configFile, fmt.Appendf(nil, "index:\n  snapshotRecords: %d\n", max(cfg.Writes/2, 1)), 0o600)
	if err != nil {
		return res, fmt.Errorf("write the config file: %w", err)
	}

	logger.Info("loading twins and relationships", slog.Int("twins", cfg.Twins), slog.Int("relationships", cfg.Relationships), slog.String("dir", dataDir))
	start := time.Now()
	err = loadGraph(ctx, dataDir, graphLoad{Twins: cfg.Twins, Relationships: cfg.Relationships, Batch: cfg.Batch, Events: true}, logger)
	if err != nil {
		return res, err
	}
	res.Load = time.Since(start)
	if res.DiskBytes, err = dirSize(dataDir); err != nil {
		return res, err
	}
	client := httpClient(8)
	defer client.CloseIdleConnections()
	twinURL := func(url string, i int) string {
		return url + "/digitaltwins/" + twinID(i) + "?api-version=" + apiVersion
	}

	logger.Info("(a) first start: the index is built from the store", slog.Duration("load", res.Load))
	srv, err := startServe(ctx, cfg.Binary, dataDir, configFile, cfg.Timeout)
	if err != nil {
		return res, err
	}
	if res.Build, err = srv.measure(ctx, client, twinURL(srv.url, cfg.Twins-1)); err != nil {
		srv.kill()
		return res, err
	}
	stopStart := time.Now()
	if err := srv.stop(); err != nil {
		return res, err
	}
	res.Stop = time.Since(stopStart)
	snapshotFile := filepath.Join(dataDir, server.SnapshotFile)
	info, err := os.Stat(snapshotFile)
	if err != nil {
		return res, fmt.Errorf("no snapshot after a clean stop: %w", err)
	}
	res.SnapshotBytes = info.Size()
	stopSeq, err := graph.SnapshotSeq(snapshotFile)
	if err != nil {
		return res, err
	}

	logger.Info("(b) start after a clean stop", slog.Duration("stop", res.Stop))
	if srv, err = startServe(ctx, cfg.Binary, dataDir, configFile, cfg.Timeout); err != nil {
		return res, err
	}
	defer srv.kill()
	if res.Snapshot, err = srv.measure(ctx, client, twinURL(srv.url, cfg.Twins-1)); err != nil {
		return res, err
	}
	half := cfg.Writes / 2
	if err := patchTwins(ctx, client, srv.url, 0, half, cfg.Twins); err != nil {
		return res, err
	}
	logger.Info("waiting for the snapshot written in the background", slog.Int("patches", half))
	for seq := stopSeq; seq <= stopSeq; {
		select {
		case <-ctx.Done():
			return res, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if seq, err = graph.SnapshotSeq(snapshotFile); err != nil && !errors.Is(err, graph.ErrBadSnapshot) {
			return res, err
		}
	}
	if err := patchTwins(ctx, client, srv.url, half, cfg.Writes, cfg.Twins); err != nil {
		return res, err
	}
	srv.kill()

	logger.Info("(c) start after SIGKILL, replaying the PATCHes after the background snapshot", slog.Int("patches", cfg.Writes-half))
	if srv, err = startServe(ctx, cfg.Binary, dataDir, configFile, cfg.Timeout); err != nil {
		return res, err
	}
	defer srv.kill()
	last := cfg.Writes - 1
	if res.Replay, err = srv.measure(ctx, client, twinURL(srv.url, last%cfg.Twins)); err != nil {
		return res, err
	}
	q := fmt.Sprintf(`{"query":"SELECT T.$dtId FROM DIGITALTWINS T WHERE T.$dtId = '%s' AND T.p1 = %d"}`, twinID(last%cfg.Twins), patchValue(last))
	status, body, err := post(ctx, client, srv.url+"/query?api-version="+apiVersion, q)
	if err != nil || status != http.StatusOK || !strings.Contains(body, twinID(last%cfg.Twins)) {
		return res, fmt.Errorf("the index does not hold the last PATCH after the replay: %d %s %v", status, body, err)
	}
	return res, srv.stop()
}

// patchValue is the value PATCH i sets p1 (an integer) to.
func patchValue(i int) int { return 2_000_000 + i }

// patchTwins PATCHes p1 of twins from to to-1 (modulo twins) to patchValue, on eight
// connections.
func patchTwins(ctx context.Context, c *http.Client, url string, from, to, twins int) error {
	const conns = 8
	errs := make(chan error, conns)
	next := make(chan int)
	for range conns {
		go func() {
			for i := range next {
				body := fmt.Appendf(nil, `[{"op":"replace","path":"/p1","value":%d}]`, patchValue(i))
				if err := sendOK(ctx, c, http.MethodPatch, url+"/digitaltwins/"+twinID(i%twins)+"?api-version="+apiVersion,
					"application/json-patch+json", body, http.StatusNoContent); err != nil {
					errs <- err
					for range next {
					}
					return
				}
			}
			errs <- nil
		}()
	}
	for i := from; i < to; i++ {
		next <- i
	}
	close(next)
	var err error
	for range conns {
		err = errors.Join(err, <-errs)
	}
	return err
}

// post POSTs a JSON body and returns the status and body of the answer.
func post(ctx context.Context, c *http.Client, url, body string) (int, string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// listeningLine matches the log line the server writes once it is bound; snapshotLine the one
// it writes when it loaded the graph index from its snapshot.
var (
	listeningLine = regexp.MustCompile(`twinflow listening on (https?://[^\s"]+)`)
	snapshotLine  = regexp.MustCompile(`graph index loaded from its snapshot`)
)

// serverProc is a `twinflow serve` process.
type serverProc struct {
	cmd   *exec.Cmd
	url   string
	start time.Time
	// fromSnapshot is closed once the server logs that it loaded its index from its snapshot.
	fromSnapshot chan struct{}
	timeout      time.Duration
	done         chan struct{} // closed once the process's stderr ends
}

// startServe starts `bin serve` on dataDir with configFile and waits until it listens.
func startServe(ctx context.Context, bin, dataDir, configFile string, timeout time.Duration) (*serverProc, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.Command(bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", dataDir, "--config", configFile)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	p := &serverProc{cmd: cmd, start: time.Now(), fromSnapshot: make(chan struct{}), timeout: timeout, done: make(chan struct{})}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", bin, err)
	}
	// The scanner reports the listening URL, or the output so far if the process exits first.
	urls := make(chan string, 1)
	exited := make(chan string, 1)
	go func() {
		defer close(p.done)
		var out strings.Builder
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		listening := false
		for sc.Scan() {
			line := sc.Text()
			if m := listeningLine.FindStringSubmatch(line); m != nil && !listening {
				listening = true
				urls <- m[1]
			}
			if snapshotLine.MatchString(line) {
				close(p.fromSnapshot)
			}
			if !listening {
				out.WriteString(line + "\n")
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		if !listening {
			exited <- out.String()
		}
	}()
	select {
	case p.url = <-urls:
		return p, nil
	case out := <-exited:
		_ = cmd.Wait()
		return nil, fmt.Errorf("the server exited before listening:\n%s", out)
	case <-ctx.Done():
		p.kill()
		return nil, fmt.Errorf("wait for the server to listen: %w", ctx.Err())
	}
}

// measure waits until the server is ready and returns the time since it started and its
// VmRSS then, after checking that GET probe answers 200.
func (p *serverProc) measure(ctx context.Context, client *http.Client, probe string) (StartResult, error) {
	var r StartResult
	if err := waitReady(ctx, client, p.url, p.timeout); err != nil {
		return r, err
	}
	r.Ready = time.Since(p.start)
	rss, err := vmRSS(p.cmd.Process.Pid)
	if err != nil {
		return r, err
	}
	r.RSS = rss
	r.From = "store"
	select {
	case <-p.fromSnapshot:
		r.From = "snapshot"
	default:
	}
	// The figures count only if the server serves what was loaded.
	if err := sendOK(ctx, client, http.MethodGet, probe, "", nil, http.StatusOK); err != nil {
		return r, fmt.Errorf("read a loaded twin back: %w", err)
	}
	return r, nil
}

// stop stops the server with SIGTERM and waits for it to exit, which must be cleanly.
func (p *serverProc) stop() error {
	if p.cmd.ProcessState != nil {
		return nil
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stop the server: %w", err)
	}
	<-p.done
	if err := p.cmd.Wait(); err != nil {
		return fmt.Errorf("the server did not stop cleanly: %w", err)
	}
	return nil
}

// kill kills the server with SIGKILL, unless it has exited, and waits for it.
func (p *serverProc) kill() {
	if p.cmd.ProcessState != nil {
		return
	}
	_ = p.cmd.Process.Kill()
	<-p.done
	_ = p.cmd.Wait()
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
