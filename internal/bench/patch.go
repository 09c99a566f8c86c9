package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/server"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/postgres"
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
	// CeilingDuration is how long the SQLite ceiling is measured, and the HTTP floor after it
	// [Duration].
	CeilingDuration time.Duration
	// Store, when set, is a PostgreSQL database (DSN) to run the servers on instead of the
	// embedded store, in a schema of their own that is dropped afterwards; the ceiling is
	// then postgres.Ceiling's, and data history is off (it would stay in each node's data
	// directory, and its writer's CPU time is not what this measures).
	Store string
	// Nodes is the number of servers sharing the PostgreSQL store, the clients spread over
	// them in turn [1]. More than one requires Store.
	Nodes int
	// Detector runs the load a second time, in the same run and on the same servers, with an
	// anomaly detector watching every twin and each numeric property the load patches, to
	// measure what scoring costs.
	Detector bool
	// LoadCommand returns the command that runs the load generator, in a process of its own so
	// that its CPU time is told apart from the server's: a command that calls RunPatchLoad
	// with args (twinflow bench patch-load args...). It is required.
	LoadCommand func(ctx context.Context, args []string) *exec.Cmd
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
	if c.Nodes <= 0 {
		c.Nodes = 1
	}
	return c
}

// PatchResult is what the PATCH benchmark measured.
type PatchResult struct {
	Twins, Clients int
	// StoreName names the store the servers ran on ("SQLite" or "PostgreSQL"); Nodes is the
	// number of servers.
	StoreName string
	Nodes     int
	// Load is what the load generator measured: acknowledged and failed patches, the time
	// they took and their latencies.
	Load PatchLoad
	// ServerCPU is the CPU time, user and system, the server's process used while the clients
	// patched; zero where the system does not report it. The load generator's own is in Load.
	ServerCPU time.Duration
	// Store is what the store's write path did while the clients patched: transactions,
	// the Updates they carried, fsyncs and their time.
	Store store.Stats
	// Ceiling is the ceiling of the store for the same rows, measured in the same run, and
	// CeilingCPU the CPU time this process took meanwhile (with PostgreSQL, the database
	// server's own is not counted). CeilingMechanism says how the ceiling wrote.
	Ceiling          sqlite.CeilingResult
	CeilingMechanism string
	CeilingCPU       time.Duration
	// Floor is what the same load generator measured against a bare net/http server that
	// answers every PATCH 204 without doing anything, and FloorCPU that server's CPU time:
	// what HTTP over loopback alone costs on this machine.
	Floor    PatchLoad
	FloorCPU time.Duration
	// Detector is what the run with a detector measured, when PatchConfig.Detector is set.
	Detector *PatchDetectorRun
}

// PatchesPerSecond returns acknowledged patches per second.
func (r PatchResult) PatchesPerSecond() float64 { return r.Load.PerSecond() }

// Table writes the result as a short table. Its row "HTTP PATCH (fsync on)" starts with the
// acknowledged rate as plain digits followed by " patches/s acknowledged", which scripts read.
func (r PatchResult) Table(w io.Writer) error {
	perSec := r.PatchesPerSecond()
	ceil := r.Ceiling.WritesPerSecond()
	ratio := "n/a"
	if ceil > 0 {
		ratio = fmt.Sprintf("%.1f%%", 100*perSec/ceil)
	}
	l := r.Load
	rows := [][2]string{
		{"twins / clients", fmt.Sprintf("%d twins of %d properties / %d keep-alive clients", r.Twins, numProperties, r.Clients)},
		{"store / nodes", fmt.Sprintf("%s / %d", r.StoreName, r.Nodes)},
		{"HTTP PATCH (fsync on)", fmt.Sprintf("%.0f patches/s acknowledged (%d in %v, %d failed%s)", perSec, l.Patches, l.Elapsed.Round(time.Millisecond), l.Failed, failedBy(l.FailedBy))},
		{"latency", fmt.Sprintf("p50 %v  p99 %v  max %v", l.P50.Round(time.Microsecond), l.P99.Round(time.Microsecond), l.Max.Round(time.Microsecond))},
		{"group commit", groupCommit(r.Store)},
		{"server CPU per patch", cpuPerPatch(r.ServerCPU, l.Patches, "the server's process")},
		{"load CPU per patch", cpuPerPatch(l.CPU, l.Patches, "the load generator's process, on the same cores")},
		{r.StoreName + " ceiling", fmt.Sprintf("%.0f patches/s (the same twin and log rows, %d per transaction, %s: %d in %v)",
			ceil, r.Ceiling.Batch, r.CeilingMechanism, r.Ceiling.Writes, r.Ceiling.Elapsed.Round(time.Millisecond))},
		{"ceiling CPU per patch", cpuPerPatch(r.CeilingCPU, r.Ceiling.Writes, "this process: the database's driver")},
		{"HTTP floor", fmt.Sprintf("%.0f requests/s (the same PATCHes answered 204 by a bare net/http handler: %d in %v)",
			r.Floor.PerSecond(), r.Floor.Patches, r.Floor.Elapsed.Round(time.Millisecond))},
		{"floor CPU per request", cpuPerPatch(r.FloorCPU, r.Floor.Patches, "the bare server's process")},
		{"HTTP / ceiling", ratio},
	}
	if d := r.Detector; d != nil {
		rows = append(rows, d.rows(perSec)...)
	}
	return table(w, rows)
}

// failedBy describes failed requests counted by status: ": 412 x 3, 503 x 10", or "".
func failedBy(m map[int]int) string {
	var out []string
	for _, status := range slices.Sorted(maps.Keys(m)) {
		out = append(out, fmt.Sprintf("%d x %d", status, m[status]))
	}
	if len(out) == 0 {
		return ""
	}
	return ": " + strings.Join(out, ", ")
}

// cpuPerPatch describes the CPU time spent per patch by who, and the rate that would make
// busy every core of this machine, which is the most it can reach whatever else waits.
func cpuPerPatch(cpu time.Duration, patches int, who string) string {
	return cpuPer(cpu, patches, "patches", who)
}

// cpuPer describes the CPU time spent per item (of the plural unit) by who, and the rate
// that would make busy every core of this machine.
func cpuPer(cpu time.Duration, n int, unit, who string) string {
	if cpu <= 0 || n == 0 {
		return "n/a"
	}
	per := cpu / time.Duration(n)
	return fmt.Sprintf("%v (%s; all %d cores busy at %.0f %s/s)",
		per.Round(100*time.Nanosecond), who, runtime.NumCPU(), float64(runtime.NumCPU())*float64(time.Second)/float64(per), unit)
}

// statsSince returns what the store's write path did between the snapshots before and after.
func statsSince(before, after store.Stats) store.Stats {
	return store.Stats{
		Transactions: after.Transactions - before.Transactions,
		Updates:      after.Updates - before.Updates,
		Syncs:        after.Syncs - before.Syncs,
		SyncTime:     after.SyncTime - before.SyncTime,
	}
}

// groupCommit describes how the store grouped writes into transactions and fsyncs.
func groupCommit(st store.Stats) string {
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
// directory, Twins twins of the benchmark model, and Clients keep-alive clients, run by the
// load generator in a process of its own, each sending PATCHes of one to three random
// properties of random twins for Duration over loopback HTTP. Then, with the server stopped,
// it measures the SQLite ceiling (see sqlite.Ceiling) for the same rows: the twin documents
// the server stores and Twin.Update events as the server emits them, in transactions of
// Clients rows, and the HTTP floor: the same load against a server that does nothing.
func Patch(ctx context.Context, cfg PatchConfig, logger *slog.Logger) (res PatchResult, err error) {
	cfg = cfg.withDefaults()
	res = PatchResult{Twins: cfg.Twins, Clients: cfg.Clients, StoreName: "SQLite", Nodes: cfg.Nodes}
	if cfg.Store != "" {
		res.StoreName = "PostgreSQL"
	}
	if cfg.LoadCommand == nil {
		return res, errors.New("bench patch: a load command is required")
	}
	if cfg.Nodes > 1 && cfg.Store == "" {
		return res, errors.New("bench patch: several nodes need a PostgreSQL store")
	}
	dir, err := os.MkdirTemp(cfg.Dir, "twinflow-bench-patch-")
	if err != nil {
		return res, fmt.Errorf("create bench directory: %w", err)
	}
	if !cfg.Keep {
		defer os.RemoveAll(dir)
	}

	var schema string
	if cfg.Store != "" {
		// A schema of this run's own, and one for its ceiling, both dropped at the end.
		schema = "bench_patch_" + strconv.FormatInt(time.Now().UnixNano(), 36)
		defer func() { err = errors.Join(err, dropSchemas(cfg.Store, schema, schema+"_ceiling")) }()
	}
	serviceID, err := runPatchLoad(ctx, cfg, dir, schema, logger, &res)
	if err != nil {
		return res, err
	}
	logger.Info("measuring the ceiling", slog.String("store", res.StoreName), slog.Duration("duration", cfg.CeilingDuration))
	twins, next, err := ceilingRows(cfg.Twins, serviceID)
	if err != nil {
		return res, err
	}
	cpu0, cpuOK := processCPU()
	if cfg.Store != "" {
		var pr postgres.CeilingResult
		pr, err = postgres.Ceiling(ctx, postgres.CeilingConfig{
			Store: postgres.Config{DSN: cfg.Store, Schema: schema + "_ceiling"},
			Twins: twins, Next: next, Batch: cfg.Clients, Duration: cfg.CeilingDuration,
		}, logger)
		res.Ceiling = sqlite.CeilingResult{Batch: pr.Batch, Writes: pr.Writes, Elapsed: pr.Elapsed, Transactions: pr.Transactions}
		res.CeilingMechanism = fmt.Sprintf("synchronous commit, each transaction one round trip, %d connections side by side", pr.Conns)
	} else {
		res.Ceiling, err = sqlite.Ceiling(ctx, sqlite.CeilingConfig{
			Dir: filepath.Join(dir, "ceiling"), Twins: twins, Next: next, Batch: cfg.Clients, Duration: cfg.CeilingDuration,
		}, logger)
		res.CeilingMechanism = "WAL fdatasync'd beside the next transaction"
	}
	if cpu1, ok := processCPU(); ok && cpuOK {
		res.CeilingCPU = cpu1 - cpu0
	}
	if err != nil {
		return res, fmt.Errorf("measure the ceiling: %w", err)
	}
	logger.Info("measuring the HTTP floor", slog.Duration("duration", cfg.CeilingDuration))
	floorCfg := cfg
	floorCfg.Duration = cfg.CeilingDuration
	if res.Floor, res.FloorCPU, err = runFloor(ctx, floorCfg); err != nil {
		return res, fmt.Errorf("measure the HTTP floor: %w", err)
	}
	return res, nil
}

// runFloor runs the load generator for cfg.Duration against a bare net/http server on
// loopback that drains each request's body and answers 204 with an ETag, and returns what
// the load generator measured and the CPU time this process used meanwhile.
func runFloor(ctx context.Context, cfg PatchConfig) (PatchLoad, time.Duration, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return PatchLoad{}, 0, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("ETag", `W/"00000000-0000-0000-0000-000000000000"`)
			w.WriteHeader(http.StatusNoContent)
		}),
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	cpu0, cpuOK := processCPU()
	load, err := runLoadProcess(ctx, cfg, ln.Addr().String())
	var cpu time.Duration
	if cpu1, ok := processCPU(); ok && cpuOK {
		cpu = cpu1 - cpu0
	}
	if cerr := srv.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, serr)
	}
	return load, cpu, err
}

// runPatchLoad starts the servers (cfg.Nodes of them, each with a data directory under dir,
// on the PostgreSQL schema when cfg.Store is set), loads the twins through the first and runs
// the load generator against all of them, filling in res. It returns the first server's
// service id.
func runPatchLoad(ctx context.Context, cfg PatchConfig, dir, schema string, logger *slog.Logger, res *PatchResult) (serviceID string, err error) {
	var (
		servers []*server.Server
		stops   []func() error
	)
	defer func() {
		for _, stop := range stops {
			stopServer(stop, &err)
		}
	}()
	start := func(i int) (*server.Server, error) {
		c := config.Config{Server: config.Server{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "server"+strconv.Itoa(i))}}
		if cfg.Store != "" {
			c.Store = config.Store{DSN: cfg.Store, Schema: schema}
			c.History.Mode = config.HistoryOff
		}
		srv, stop, err := serve(ctx, c, logger)
		if err != nil {
			return nil, err
		}
		stops = append(stops, stop)
		servers = append(servers, srv)
		return srv, nil
	}
	first, err := start(0)
	if err != nil {
		return "", err
	}
	if err := setUpTwins(ctx, first.URL(), cfg.Twins, logger); err != nil {
		return "", err
	}
	// The other nodes start once the model and the twins are stored, and load them; the load
	// starts once every one is ready.
	for i := 1; i < cfg.Nodes; i++ {
		srv, err := start(i)
		if err != nil {
			return "", err
		}
		if err := waitReady(ctx, http.DefaultClient, srv.URL(), time.Minute); err != nil {
			return "", err
		}
	}
	addrs := make([]string, len(servers))
	for i, srv := range servers {
		addrs[i] = srv.Addr().String()
	}

	logger.Info("patching", slog.Int("clients", cfg.Clients), slog.Int("nodes", cfg.Nodes), slog.Duration("duration", cfg.Duration))
	if res.Load, res.ServerCPU, res.Store, err = measureLoad(ctx, cfg, servers, addrs); err != nil {
		return "", err
	}
	if cfg.Detector {
		d, err := runDetectorLoad(ctx, cfg, servers, addrs, logger)
		if err != nil {
			return "", err
		}
		res.Detector = &d
	}
	return first.ServiceID(), nil
}

// measureLoad runs the load generator against the servers listening on addrs and returns
// what it measured, the CPU time this process (the servers') used meanwhile, and what the
// servers' stores did.
func measureLoad(ctx context.Context, cfg PatchConfig, servers []*server.Server, addrs []string) (load PatchLoad, cpu time.Duration, stats store.Stats, err error) {
	before := make([]store.Stats, len(servers))
	for i, srv := range servers {
		before[i] = srv.StoreStats()
	}
	cpu0, cpuOK := processCPU()
	if load, err = runLoadProcess(ctx, cfg, strings.Join(addrs, ",")); err != nil {
		return load, 0, stats, err
	}
	if cpu1, ok := processCPU(); ok && cpuOK {
		cpu = cpu1 - cpu0
	}
	for i, srv := range servers {
		st := statsSince(before[i], srv.StoreStats())
		stats.Transactions += st.Transactions
		stats.Updates += st.Updates
		stats.Syncs += st.Syncs
		stats.SyncTime += st.SyncTime
	}
	return load, cpu, stats, nil
}

// dropSchemas drops the PostgreSQL schemas of a run from the database at dsn.
func dropSchemas(dsn string, schemas ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		return fmt.Errorf("connect to drop the benchmark's schemas: %w", err)
	}
	defer conn.Close(ctx)
	for _, s := range schemas {
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{s}.Sanitize()+" CASCADE"); err != nil {
			return fmt.Errorf("drop schema %s: %w", s, err)
		}
	}
	return nil
}

// runLoadProcess runs cfg.LoadCommand against the server at addr and returns what it
// measured.
func runLoadProcess(ctx context.Context, cfg PatchConfig, addr string) (PatchLoad, error) {
	var out, errOut bytes.Buffer
	cmd := cfg.LoadCommand(ctx, []string{
		"-addr", addr, "-twins", strconv.Itoa(cfg.Twins), "-clients", strconv.Itoa(cfg.Clients),
		"-duration", cfg.Duration.String(),
	})
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return PatchLoad{}, fmt.Errorf("run the load generator: %w: %s", err, bytes.TrimSpace(errOut.Bytes()))
	}
	var load PatchLoad
	if err := json.Unmarshal(out.Bytes(), &load); err != nil {
		return PatchLoad{}, fmt.Errorf("read the load generator's result %q: %w", out.String(), err)
	}
	return load, nil
}

// PatchLoad is what the load generator measured, as it reports it on its standard output.
type PatchLoad struct {
	// Elapsed is how long the clients patched; Patches counts the patches acknowledged with
	// 204 in that time and Failed the requests that got anything else.
	Elapsed time.Duration `json:"elapsed"`
	Patches int           `json:"patches"`
	Failed  int           `json:"failed"`
	// FailedBy counts the failed requests by their status code.
	FailedBy map[int]int `json:"failedBy,omitempty"`
	// P50, P99 and Max are latencies of acknowledged patches, from sending the request to
	// reading the whole response.
	P50 time.Duration `json:"p50"`
	P99 time.Duration `json:"p99"`
	Max time.Duration `json:"max"`
	// CPU is the CPU time, user and system, the load generator's process used while it
	// patched; zero where the system does not report it.
	CPU time.Duration `json:"cpu"`
}

// PerSecond returns acknowledged patches per second.
func (l PatchLoad) PerSecond() float64 {
	if l.Elapsed <= 0 {
		return 0
	}
	return float64(l.Patches) / l.Elapsed.Seconds()
}

// LoadFlags registers on fs the flags of the PATCH load, -twins, -clients and -duration, which
// set c's fields of those names.
func (c *PatchConfig) LoadFlags(fs *flag.FlagSet) {
	fs.IntVar(&c.Twins, "twins", 10_000, "number of twins")
	fs.IntVar(&c.Clients, "clients", 64, "concurrent keep-alive HTTP clients")
	fs.DurationVar(&c.Duration, "duration", 30*time.Second, "how long the clients patch")
}

// RunPatchLoad is the load generator of the PATCH benchmark, run in a process of its own: it
// parses args (-addr host:port, -twins, -clients, -duration), patches the benchmark twins of
// the server at addr and writes its PatchLoad to stdout as JSON.
func RunPatchLoad(ctx context.Context, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("patch-load", flag.ContinueOnError)
	addr := fs.String("addr", "", "`host:port` of the server; several, comma-separated, share the clients in turn")
	var cfg PatchConfig
	cfg.LoadFlags(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" {
		return errors.New("patch-load: -addr is required")
	}
	cpu0, cpuOK := processCPU()
	lat, failedBy, elapsed, err := patchLoad(ctx, *addr, cfg.withDefaults())
	if err != nil {
		return err
	}
	load := PatchLoad{Elapsed: elapsed, Patches: len(lat), FailedBy: failedBy}
	for _, n := range failedBy {
		load.Failed += n
	}
	if cpu1, ok := processCPU(); ok && cpuOK {
		load.CPU = cpu1 - cpu0
	}
	slices.Sort(lat)
	load.P50, load.P99 = percentile(lat, 50), percentile(lat, 99)
	if len(lat) > 0 {
		load.Max = lat[len(lat)-1]
	}
	return json.NewEncoder(stdout).Encode(load)
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

// patchLoad runs cfg.Clients clients patching random twins until cfg.Duration has passed,
// client c on the c-th of the comma-separated addresses in addr (in turn). It
// returns the latency of every acknowledged patch, the failed requests counted by status and the time
// the load ran. A transport error ends the run with that error.
//
// Each client is one keep-alive HTTP/1.1 connection of its own (see patchClient) rather than
// a net/http Transport, whose connection pool and per-connection reader and writer goroutines
// cost about as much CPU per request as the server's handling of it does; the load generator
// shares the machine with the server, so what it spends the server cannot.
func patchLoad(ctx context.Context, addr string, cfg PatchConfig) ([]time.Duration, map[int]int, time.Duration, error) {
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
	addrs := strings.Split(addr, ",")
	clients := make([]*patchClient, cfg.Clients)
	for c := range clients {
		pc, err := dialPatchClient(ctx, addrs[c%len(addrs)])
		if err != nil {
			for _, pc := range clients[:c] {
				pc.conn.Close()
			}
			return nil, nil, 0, err
		}
		clients[c] = pc
	}
	var (
		wg      sync.WaitGroup
		lats    = make([][]time.Duration, cfg.Clients)
		failed  = make([]map[int]int, cfg.Clients)
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
		failed[c] = map[int]int{}
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
					failed[c][status]++
				}
			}
			lats[c] = lat
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	var all []time.Duration
	total := map[int]int{}
	for c := range cfg.Clients {
		all = append(all, lats[c]...)
		for status, n := range failed[c] {
			total[status] += n
		}
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
