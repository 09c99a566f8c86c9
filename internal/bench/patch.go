package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinflow/twinflow/internal/server"
	"github.com/twinflow/twinflow/internal/store/sqlite"
)

// PatchConfig configures the PATCH benchmark. Zero fields take the defaults in brackets.
type PatchConfig struct {
	// Dir is where the temporary data directories go [os.TempDir()].
	Dir string
	// Keep leaves the data directories in place instead of removing them.
	Keep bool
	// Twins is the number of twins patched at random [10,000].
	Twins int
	// Clients is the number of concurrent keep-alive HTTP clients [64].
	Clients int
	// Duration is how long the clients patch [30s].
	Duration time.Duration
	// CeilingDuration is how long the raw SQLite ceiling is measured [Duration].
	CeilingDuration time.Duration
}

func (c PatchConfig) withDefaults() PatchConfig {
	if c.Dir == "" {
		c.Dir = os.TempDir()
	}
	if c.Twins <= 0 {
		c.Twins = 10_000
	}
	if c.Clients <= 0 {
		c.Clients = 64
	}
	if c.Duration <= 0 {
		c.Duration = 30 * time.Second
	}
	if c.CeilingDuration <= 0 {
		c.CeilingDuration = c.Duration
	}
	return c
}

// PatchResult is what the PATCH benchmark measured.
type PatchResult struct {
	Twins, Clients int
	// Elapsed is how long the clients patched; Patches counts the patches acknowledged with
	// 204 in that time and Failed the requests that got anything else.
	Elapsed time.Duration
	Patches int
	Failed  int
	// P50, P99 and Max are latencies of acknowledged patches, from sending the request to
	// reading the whole response.
	P50, P99, Max time.Duration
	// CPU is the CPU time, user and system, the whole process (server and load generator
	// alike) used while the clients patched; zero where the system does not report it.
	CPU time.Duration
	// Store is what the store's write path did while the clients patched: transactions,
	// the Updates they carried, fsyncs and their time.
	Store sqlite.Stats
	// Ceiling is the raw SQLite measurement of the same rows.
	Ceiling CeilingResult
}

// PatchesPerSecond returns acknowledged patches per second.
func (r PatchResult) PatchesPerSecond() float64 {
	return float64(r.Patches) / r.Elapsed.Seconds()
}

// Table writes the result as a short table.
func (r PatchResult) Table(w io.Writer) error {
	perSec := r.PatchesPerSecond()
	ceil := r.Ceiling.PatchesPerSecond()
	ratio := "n/a"
	if ceil > 0 {
		ratio = fmt.Sprintf("%.1f%%", 100*perSec/ceil)
	}
	return table(w, [][2]string{
		{"twins / clients", fmt.Sprintf("%d twins of %d properties / %d keep-alive clients", r.Twins, numProperties, r.Clients)},
		{"HTTP PATCH (fsync on)", fmt.Sprintf("%.0f patches/s acknowledged (%d in %v, %d failed)", perSec, r.Patches, r.Elapsed.Round(time.Millisecond), r.Failed)},
		{"latency", fmt.Sprintf("p50 %v  p99 %v  max %v", r.P50.Round(time.Microsecond), r.P99.Round(time.Microsecond), r.Max.Round(time.Microsecond))},
		{"group commit", groupCommit(r.Store)},
		{"CPU per patch", cpuPerPatch(r.CPU, r.Patches, "server and load generator")},
		{"raw SQLite ceiling", fmt.Sprintf("%.0f patches/s (twin row + log row each, %d per transaction, %d in %v)", ceil, r.Ceiling.Batch, r.Ceiling.Patches, r.Ceiling.Elapsed.Round(time.Millisecond))},
		{"ceiling CPU per patch", cpuPerPatch(r.Ceiling.CPU, r.Ceiling.Patches, "SQLite and its driver")},
		{"HTTP / ceiling", ratio},
	})
}

// cpuPerPatch describes the CPU time spent per patch by who, and the rate that would make
// busy every core of this machine, which is the most it can reach whatever else waits.
func cpuPerPatch(cpu time.Duration, patches int, who string) string {
	if cpu <= 0 || patches == 0 {
		return "n/a"
	}
	per := cpu / time.Duration(patches)
	return fmt.Sprintf("%v (%s; all %d cores busy at %.0f patches/s)",
		per.Round(100*time.Nanosecond), who, runtime.NumCPU(), float64(runtime.NumCPU())*float64(time.Second)/float64(per))
}

// statsSince returns what the store's write path did between the snapshots before and after.
func statsSince(before, after sqlite.Stats) sqlite.Stats {
	return sqlite.Stats{
		Transactions: after.Transactions - before.Transactions,
		Updates:      after.Updates - before.Updates,
		Syncs:        after.Syncs - before.Syncs,
		SyncTime:     after.SyncTime - before.SyncTime,
	}
}

// groupCommit describes how the store grouped writes into transactions and fsyncs.
func groupCommit(st sqlite.Stats) string {
	if st.Transactions == 0 {
		return "n/a"
	}
	out := fmt.Sprintf("%.1f updates per commit (%d transactions)", float64(st.Updates)/float64(st.Transactions), st.Transactions)
	if st.Syncs > 0 {
		out += fmt.Sprintf(", %d fsyncs of %v on average", st.Syncs, (st.SyncTime / time.Duration(st.Syncs)).Round(time.Microsecond))
	}
	return out
}

// Patch runs the PATCH benchmark: an in-process server over a durable store in a fresh data
// directory, Twins twins of the benchmark model, and Clients keep-alive clients each sending
// PATCHes of one to three random properties of random twins for Duration over loopback HTTP.
// Then, with the server stopped, it measures the raw SQLite ceiling (see Ceiling) for the same
// rows.
func Patch(ctx context.Context, cfg PatchConfig, logger *slog.Logger) (PatchResult, error) {
	cfg = cfg.withDefaults()
	res := PatchResult{Twins: cfg.Twins, Clients: cfg.Clients}
	dir, err := os.MkdirTemp(cfg.Dir, "twinflow-bench-patch-")
	if err != nil {
		return res, fmt.Errorf("create bench directory: %w", err)
	}
	if !cfg.Keep {
		defer os.RemoveAll(dir)
	}

	if err := runPatchLoad(ctx, cfg, filepath.Join(dir, "server"), logger, &res); err != nil {
		return res, err
	}
	logger.Info("measuring the raw SQLite ceiling", slog.Duration("duration", cfg.CeilingDuration))
	res.Ceiling, err = Ceiling(ctx, CeilingConfig{
		Dir: filepath.Join(dir, "ceiling"), Twins: cfg.Twins, Batch: cfg.Clients, Duration: cfg.CeilingDuration,
	}, logger)
	return res, err
}

// runPatchLoad starts the server, loads the twins and runs the clients, filling in res.
func runPatchLoad(ctx context.Context, cfg PatchConfig, dataDir string, logger *slog.Logger, res *PatchResult) (err error) {
	srv, err := server.New(server.Config{Listen: "127.0.0.1:0", DataDir: dataDir}, logger)
	if err != nil {
		return fmt.Errorf("start server: %w", err)
	}
	stop := runServer(ctx, srv)
	defer func() {
		if runErr := stop(); runErr != nil {
			err = errors.Join(err, fmt.Errorf("run server: %w", runErr))
		}
	}()

	if err := setUpTwins(ctx, srv.URL(), cfg.Twins, logger); err != nil {
		return err
	}

	logger.Info("patching", slog.Int("clients", cfg.Clients), slog.Duration("duration", cfg.Duration))
	before := srv.StoreStats()
	cpu0, cpuOK := processCPU()
	lat, failed, elapsed, err := patchLoad(ctx, srv.Addr().String(), cfg)
	if err != nil {
		return err
	}
	if cpu1, ok := processCPU(); ok && cpuOK {
		res.CPU = cpu1 - cpu0
	}
	after := srv.StoreStats()
	res.Store = statsSince(before, after)
	slices.Sort(lat)
	res.Elapsed, res.Patches, res.Failed = elapsed, len(lat), failed
	res.P50, res.P99 = percentile(lat, 50), percentile(lat, 99)
	if len(lat) > 0 {
		res.Max = lat[len(lat)-1]
	}
	return nil
}

// createTwins PUTs twins 0..n-1 with workers concurrent clients.
func createTwins(ctx context.Context, client *http.Client, base string, n, workers int) error {
	var (
		next atomic.Int64
		wg   sync.WaitGroup
		errs = make([]error, workers)
	)
	for w := range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				body, err := json.Marshal(twinBody(i))
				if err != nil {
					errs[w] = err
					return
				}
				url := base + "/digitaltwins/" + twinID(i) + "?api-version=" + apiVersion
				if err := sendOK(ctx, client, http.MethodPut, url, "application/json", body, http.StatusOK); err != nil {
					errs[w] = fmt.Errorf("create twin: %w", err)
					return
				}
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// bodiesPerClient is the number of distinct PATCH bodies each client encodes before the run
// and then sends in turn, so that the load generator, which shares the machine with the
// server, spends its time sending requests rather than building them.
const bodiesPerClient = 512

// patchLoad runs cfg.Clients clients patching random twins until cfg.Duration has passed. It
// returns the latency of every acknowledged patch, the number of failed requests and the time
// the load ran. A transport error ends the run with that error.
//
// Each client is one keep-alive HTTP/1.1 connection of its own (see patchClient) rather than
// a net/http Transport, whose connection pool and per-connection reader and writer goroutines
// cost about as much CPU per request as the server's handling of it does; the load generator
// shares the machine with the server, so what it spends the server cannot.
func patchLoad(ctx context.Context, addr string, cfg PatchConfig) ([]time.Duration, int, time.Duration, error) {
	ids := make([]string, cfg.Twins)
	for i := range ids {
		ids[i] = twinID(i)
	}
	bodies := make([][][]byte, cfg.Clients)
	for c := range bodies {
		bodies[c] = make([][]byte, bodiesPerClient)
		for n := range bodies[c] {
			bodies[c][n] = patchBody(1+rand.N(3), c<<20|n)
		}
	}
	clients := make([]*patchClient, cfg.Clients)
	for c := range clients {
		pc, err := dialPatchClient(ctx, addr)
		if err != nil {
			for _, pc := range clients[:c] {
				pc.conn.Close()
			}
			return nil, 0, 0, err
		}
		clients[c] = pc
	}
	var (
		wg      sync.WaitGroup
		lats    = make([][]time.Duration, cfg.Clients)
		failed  = make([]int, cfg.Clients)
		errs    = make([]error, cfg.Clients)
		start   = time.Now()
		endTime = start.Add(cfg.Duration)
	)
	// Ending ctx closes the connections, which ends every client's request in flight.
	stop := context.AfterFunc(ctx, func() {
		for _, pc := range clients {
			pc.conn.Close()
		}
	})
	defer stop()
	for c, pc := range clients {
		wg.Go(func() {
			defer pc.conn.Close()
			lat := make([]time.Duration, 0, 1<<14)
			for n := 0; time.Now().Before(endTime); n++ {
				id := ids[rand.N(cfg.Twins)]
				t0 := time.Now()
				status, err := pc.patch(id, bodies[c][n%bodiesPerClient])
				d := time.Since(t0)
				if err != nil {
					errs[c] = fmt.Errorf("PATCH twin %s: %w", id, err)
					break
				}
				if status == http.StatusNoContent {
					lat = append(lat, d)
				} else {
					failed[c]++
				}
			}
			lats[c] = lat
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	total := 0
	for c := range cfg.Clients {
		all = append(all, lats[c]...)
		total += failed[c]
	}
	if err := ctx.Err(); err != nil {
		return all, total, elapsed, err
	}
	return all, total, elapsed, errors.Join(errs...)
}

// patchClient is one keep-alive HTTP/1.1 connection sending PATCH requests one at a time.
// It writes each request with a single write from a reused buffer and reads the response
// with http.ReadResponse. It is not safe for concurrent use.
type patchClient struct {
	conn net.Conn
	host string
	rd   *bufio.Reader
	req  []byte
}

// dialPatchClient connects a patchClient to the server at addr (host:port).
func dialPatchClient(ctx context.Context, addr string) (*patchClient, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("connect to %s: %w", addr, err)
	}
	return &patchClient{conn: conn, host: addr, rd: bufio.NewReader(conn)}, nil
}

// patch sends body as a JSON Patch of twin id and returns the response's status once the
// whole response was read.
func (c *patchClient) patch(id string, body []byte) (int, error) {
	b := append(c.req[:0], "PATCH /digitaltwins/"...)
	b = append(b, id...)
	b = append(b, "?api-version="+apiVersion+" HTTP/1.1\r\nHost: "...)
	b = append(b, c.host...)
	b = append(b, "\r\nContent-Type: application/json-patch+json\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, body...)
	c.req = b
	if _, err := c.conn.Write(b); err != nil {
		return 0, err
	}
	resp, err := http.ReadResponse(c.rd, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.Close {
		err = errors.New("the server closed the connection")
	}
	return resp.StatusCode, err
}

// patchBody returns a JSON Patch replacing k distinct random properties with values from n.
func patchBody(k, n int) []byte {
	props := rand.Perm(numProperties)[:k]
	b := []byte{'['}
	for j, p := range props {
		if j > 0 {
			b = append(b, ',')
		}
		b = appendReplace(b, p, n)
	}
	return append(b, ']')
}

// appendReplace appends the JSON Patch op replacing property p with its value from n.
func appendReplace(b []byte, p, n int) []byte {
	b = append(b, `{"op":"replace","path":"/`...)
	b = append(b, propName(p)...)
	b = append(b, `","value":`...)
	switch v := propValue(p, n).(type) {
	case float64:
		b = strconv.AppendFloat(b, v, 'g', -1, 64)
	case int:
		b = strconv.AppendInt(b, int64(v), 10)
	case string:
		b = strconv.AppendQuote(b, v)
	case bool:
		b = strconv.AppendBool(b, v)
	}
	return append(b, '}')
}
