package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/history"
	hsqlite "github.com/twinflow/twinflow/internal/history/sqlite"
	"github.com/twinflow/twinflow/internal/server"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

// HistoryConfig configures the data history benchmark. Zero fields take the defaults in
// brackets.
type HistoryConfig struct {
	// Dir is where the temporary data directories go [os.TempDir()].
	Dir string
	// Keep leaves the data directories in place instead of removing them.
	Keep bool
	// Twins is the number of twins the PATCH load patches [10,000].
	Twins int
	// Clients is the number of keep-alive clients of the PATCH load [64].
	Clients int
	// Duration is how long the PATCH load runs, once with history off and once on [20s].
	Duration time.Duration
	// WriterRecords is the number of change log records the history writer catches up on
	// alone, and whose rows the ceiling writes [100,000].
	WriterRecords int
	// QueryTwins is the number of twins whose history POST /history/query aggregates, each
	// with one value a minute over QueryDays days [100, 7].
	QueryTwins, QueryDays int
	// Queries is the number of times each query is timed [20].
	Queries int
	// AsOfTwins is the number of twins whose history spans the last two hours, rebuilt by
	// queries with asOf [100,000].
	AsOfTwins int
	// LoadCommand runs the PATCH load generator in a process of its own, as for PatchConfig.
	// It is required.
	LoadCommand func(ctx context.Context, args []string) *exec.Cmd
}

// Defaults of HistoryConfig.
const (
	DefaultHistoryDuration      = 20 * time.Second
	DefaultHistoryWriterRecords = 100_000
	DefaultHistoryQueryTwins    = 100
	DefaultHistoryQueryDays     = 7
	DefaultHistoryQueries       = 20
	DefaultHistoryAsOfTwins     = 100_000
)

func (c HistoryConfig) withDefaults() HistoryConfig {
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
		c.Duration = DefaultHistoryDuration
	}
	if c.WriterRecords <= 0 {
		c.WriterRecords = DefaultHistoryWriterRecords
	}
	if c.QueryTwins <= 0 {
		c.QueryTwins = DefaultHistoryQueryTwins
	}
	if c.QueryDays <= 0 {
		c.QueryDays = DefaultHistoryQueryDays
	}
	if c.Queries <= 0 {
		c.Queries = DefaultHistoryQueries
	}
	if c.AsOfTwins <= 0 {
		c.AsOfTwins = DefaultHistoryAsOfTwins
	}
	return c
}

// HistoryResult is what the data history benchmark measured.
type HistoryResult struct {
	Twins, Clients int
	// Off and On are what the PATCH load generator measured against a server with history
	// off and one with history on, in the same run.
	Off, On PatchLoad
	// OffStore and OnStore are what the twin store's write path did during each load.
	OffStore, OnStore store.Stats
	// OnCPU is the CPU time this process (server and history writer) used during the load
	// with history on, OffCPU during the load with history off.
	OffCPU, OnCPU time.Duration
	// Lag is the history writer's lag while the load ran on the server with history on.
	Lag HistoryLag
	// Writer is the history writer catching up alone on a change log of WriterRecords
	// records; Ceiling the same rows written raw into the same store.
	Writer  HistoryWriterRun
	Ceiling hsqlite.CeilingResult
	// QueryTwins, QueryRows: the twins POST /history/query aggregates and the rows they have;
	// Query its latencies asking for hourly averages, QueryAll asking for every aggregate.
	QueryTwins, QueryDays, QueryRows int
	Query, QueryAll                  Latencies
	// Rollup is the query server's history writer rolling the history written up.
	Rollup HistoryRollup
	// AsOfTwins, AsOfRelationships: the graph queries with asOf rebuild, one hour ago, from
	// HistoryRows rows in all; AsOfCount and AsOfSelective the latencies of a COUNT() of every
	// twin and of a selective query through a relationship.
	AsOfTwins, AsOfRelationships, HistoryRows int
	AsOfCount, AsOfSelective                  Latencies
}

// HistoryLag is the history writer's lag as sampled while the load ran.
type HistoryLag struct {
	// Samples counts the samples, taken every lagSampleInterval.
	Samples int
	// Seconds is the writer's lagSeconds (how long ago the oldest record not yet in history
	// was committed, as the writer knows it), Events its lagEvents.
	Seconds Latencies
	Events  struct{ P50, P99, Max uint64 }
	// Rows counts the rows the writer wrote while the load ran; Drain is the time from the
	// load's end until the writer had every record.
	Rows  uint64
	Drain time.Duration
}

// HistoryRollup is a history writer rolling up the history written before its server started.
type HistoryRollup struct {
	// Rows counts the property rows there were to roll up; Elapsed is the time from the
	// server's start until the writer had rolled up To, the start of the last hour the
	// queries ask for.
	Rows    int
	Elapsed time.Duration
	To      time.Time
	// Checkpointed is the time from the server's start until the writer had also built the
	// checkpoints due before To, from which the queries with asOf start.
	Checkpointed time.Duration
}

// RowsPerSecond returns the property rows rolled up per second.
func (r HistoryRollup) RowsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Rows) / r.Elapsed.Seconds()
}

// HistoryWriterRun is the history writer catching up alone.
type HistoryWriterRun struct {
	Records int
	Rows    uint64
	Elapsed time.Duration
}

// RowsPerSecond returns the rows written per second.
func (r HistoryWriterRun) RowsPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Rows) / r.Elapsed.Seconds()
}

// Table writes the result as a short table. Its row "PATCH, history on" starts with the
// acknowledged rate as plain digits followed by " patches/s", which scripts read.
func (r HistoryResult) Table(w io.Writer) error {
	cost := "n/a"
	if off := r.Off.PerSecond(); off > 0 {
		cost = fmt.Sprintf("%.1f%% fewer patches/s with history on (goal: at most 15%%)", 100*(1-r.On.PerSecond()/off))
	}
	ratio := "n/a"
	if c := r.Ceiling.RowsPerSecond(); c > 0 {
		ratio = fmt.Sprintf("%.1f%% (goal: at least 50%%)", 100*r.Writer.RowsPerSecond()/c)
	}
	l := r.Lag
	return table(w, [][2]string{
		{"twins / clients", fmt.Sprintf("%d twins of %d properties / %d keep-alive clients (bench patch's load generator)", r.Twins, numProperties, r.Clients)},
		{"PATCH, history off", historyLoadLine(r.Off)},
		{"PATCH, history on", historyLoadLine(r.On)},
		{"history cost", cost},
		{"group commit, history off", groupCommit(r.OffStore)},
		{"group commit, history on", groupCommit(r.OnStore)},
		{"server CPU per patch, off", cpuPerPatch(r.OffCPU, r.Off.Patches, "the server's process")},
		{"server CPU per patch, on", cpuPerPatch(r.OnCPU, r.On.Patches, "the server's process, history writer included")},
		{"history lag (seconds)", fmt.Sprintf("%s  (the writer's lagSeconds, %d samples every %v; goal: max within 2s)", l.Seconds, l.Samples, lagSampleInterval)},
		{"history lag (events)", fmt.Sprintf("p50 %d  p99 %d  max %d", l.Events.P50, l.Events.P99, l.Events.Max)},
		{"history rows under load", fmt.Sprintf("%d (%.0f rows/s)", l.Rows, float64(l.Rows)/max(r.On.Elapsed.Seconds(), 1e-9))},
		{"lag 0 after the load", l.Drain.Round(time.Millisecond).String()},
		{"history writer alone", fmt.Sprintf("%.0f rows/s (catching up on %d change log records: %d rows in %v)",
			r.Writer.RowsPerSecond(), r.Writer.Records, r.Writer.Rows, r.Writer.Elapsed.Round(time.Millisecond))},
		{"history store ceiling", fmt.Sprintf("%.0f rows/s (the same rows derived beforehand, %d Writes of up to %d records' rows, fsync on: %d in %v)",
			r.Ceiling.RowsPerSecond(), r.Ceiling.Transactions, history.DefaultMaxBatch, r.Ceiling.Rows, r.Ceiling.Elapsed.Round(time.Millisecond))},
		{"writer / ceiling", ratio},
		{"history roll-up", fmt.Sprintf("rolled up to %s before the queries: %d property rows in %v from the server's start (%.0f rows/s)",
			r.Rollup.To.Format(time.RFC3339), r.Rollup.Rows, r.Rollup.Elapsed.Round(time.Millisecond), r.Rollup.RowsPerSecond())},
		{"history checkpoints", fmt.Sprintf("built up to %s %v from the server's start", r.Rollup.To.Format(time.RFC3339),
			r.Rollup.Checkpointed.Round(time.Millisecond))},
		{"POST /history/query", fmt.Sprintf("%s  (hourly avg of %d twins over %d days, %d rows; goal: p50 within 250ms)",
			r.Query, r.QueryTwins, r.QueryDays, r.QueryRows)},
		{"POST /history/query, all", r.QueryAll.String() + "  (the same with avg, min, max, count, first and last; goal: p50 within 250ms)"},
		{"asOf COUNT()", fmt.Sprintf("%s  (%d twins and %d relationships one hour ago, %d history rows in all; goal: p50 within 1s)",
			r.AsOfCount, r.AsOfTwins, r.AsOfRelationships, r.HistoryRows)},
		{"asOf selective", r.AsOfSelective.String() + "  (one twin's relationship target)"},
	})
}

func historyLoadLine(l PatchLoad) string {
	return fmt.Sprintf("%.0f patches/s acknowledged (%d in %v, %d failed; p50 %v  p99 %v)", l.PerSecond(), l.Patches,
		l.Elapsed.Round(time.Millisecond), l.Failed, l.P50.Round(time.Microsecond), l.P99.Round(time.Microsecond))
}

// lagSampleInterval is how often the writer's lag is sampled under load.
const lagSampleInterval = 100 * time.Millisecond

// historyDrainTimeout bounds the wait for the history writer to catch up.
const historyDrainTimeout = 10 * time.Minute

// History runs the data history benchmark, on the embedded SQLite history store, in fresh
// data directories. It measures, in one run:
//
//   - the cost and the lag: bench patch's load generator, in a process of its own, against a
//     server with history off and then against one with history on, Duration each, on
//     Twins twins; on the second it samples the writer's status in-process every
//     lagSampleInterval, and after the load the time until the writer has every record;
//   - the writer against its ceiling: a change log of WriterRecords records (twins created
//     and patched with history off), then the history writer catching up on it alone into a
//     fresh history store, then the same rows, derived beforehand, written in the same
//     batches into another (see hsqlite.Ceiling);
//   - queries of the past over HTTP: QueryTwins twins of a sensor model, each with a
//     temperature a minute for QueryDays days, and AsOfTwins twins of the benchmark model
//     created two hours ago, one in ten with a relationship to the next, patched every half
//     hour, one in a hundred deleted half an hour ago. The twins are stored through the twin
//     store (the sensors through the API) and their history rows written directly into the
//     history store with Write, with TimeStamps in the past and Seqs in time order, since
//     the writer only records changes as they happen; the history store's cursor then
//     stands past the change log's end, so the writer records nothing of the set-up. It
//     waits until the server's history writer has rolled up every whole hour the queries ask
//     for, as it does for users, and times Queries runs of POST /history/query (hourly
//     averages of every sensor over the days, and every aggregate) and of POST /query with asOf one hour ago (a COUNT() of every twin, and one
//     twin's relationship target).
func History(ctx context.Context, cfg HistoryConfig, logger *slog.Logger) (HistoryResult, error) {
	cfg = cfg.withDefaults()
	res := HistoryResult{Twins: cfg.Twins, Clients: cfg.Clients, QueryTwins: cfg.QueryTwins, QueryDays: cfg.QueryDays, AsOfTwins: cfg.AsOfTwins}
	if cfg.LoadCommand == nil {
		return res, errors.New("bench history: a load command is required")
	}
	dir, err := os.MkdirTemp(cfg.Dir, "twinflow-bench-history-")
	if err != nil {
		return res, fmt.Errorf("create bench directory: %w", err)
	}
	if !cfg.Keep {
		defer os.RemoveAll(dir)
	}
	for _, mode := range []string{config.HistoryOff, config.HistoryOn} {
		if err := historyLoad(ctx, cfg, filepath.Join(dir, "load-"+mode), mode, logger.With(slog.String("history", mode)), &res); err != nil {
			return res, fmt.Errorf("PATCH load with history %s: %w", mode, err)
		}
	}
	if err := historyWriter(ctx, cfg, filepath.Join(dir, "writer"), logger, &res); err != nil {
		return res, fmt.Errorf("history writer against its ceiling: %w", err)
	}
	if err := historyQueries(ctx, cfg, filepath.Join(dir, "query"), logger, &res); err != nil {
		return res, fmt.Errorf("history queries: %w", err)
	}
	return res, nil
}

// historyLoad runs the PATCH load against a server with history in mode, and with history
// on samples the writer's lag meanwhile.
func historyLoad(ctx context.Context, cfg HistoryConfig, dataDir, mode string, logger *slog.Logger, res *HistoryResult) (err error) {
	srv, stop, err := serve(ctx, config.Config{
		Server:  config.Server{Listen: "127.0.0.1:0", DataDir: dataDir},
		History: config.History{Mode: mode},
	}, logger)
	if err != nil {
		return err
	}
	defer stopServer(stop, &err)
	if err := setUpTwins(ctx, srv.URL(), cfg.Twins, logger); err != nil {
		return err
	}
	on := mode == config.HistoryOn
	if on {
		// The load starts with the twins' creation in history.
		if _, err := historyCaughtUp(ctx, srv); err != nil {
			return err
		}
	}
	logger.Info("patching", slog.Int("clients", cfg.Clients), slog.Duration("duration", cfg.Duration))
	before, _ := srv.HistoryStatus()
	sampleCtx, stopSampling := context.WithCancel(ctx)
	var (
		samples []history.Status
		wg      sync.WaitGroup
	)
	if on {
		wg.Go(func() { samples = sampleHistory(sampleCtx, srv) })
	}
	storeBefore := srv.StoreStats()
	cpu0, cpuOK := processCPU()
	load, err := runLoadProcess(ctx, PatchConfig{Twins: cfg.Twins, Clients: cfg.Clients, Duration: cfg.Duration, LoadCommand: cfg.LoadCommand}, srv.Addr().String())
	var cpu time.Duration
	if cpu1, ok := processCPU(); ok && cpuOK {
		cpu = cpu1 - cpu0
	}
	stopSampling()
	wg.Wait()
	if err != nil {
		return err
	}
	stats := statsSince(storeBefore, srv.StoreStats())
	if !on {
		res.Off, res.OffStore, res.OffCPU = load, stats, cpu
		return nil
	}
	res.On, res.OnStore, res.OnCPU = load, stats, cpu
	after, _ := srv.HistoryStatus()
	if res.Lag.Drain, err = historyCaughtUp(ctx, srv); err != nil {
		return err
	}
	res.Lag.Rows = after.Rows - before.Rows
	res.Lag.Samples = len(samples)
	secs := make([]time.Duration, len(samples))
	events := make([]uint64, len(samples))
	for i, s := range samples {
		secs[i], events[i] = s.LagTime, s.LagEvents
	}
	slices.Sort(secs)
	slices.Sort(events)
	res.Lag.Seconds = summarize(secs)
	if n := len(events); n > 0 {
		pick := func(p float64) uint64 { return events[min(max(int(float64(n)*p/100+0.5)-1, 0), n-1)] }
		res.Lag.Events.P50, res.Lag.Events.P99, res.Lag.Events.Max = pick(50), pick(99), events[n-1]
	}
	return nil
}

// sampleHistory reads the server's history writer status every lagSampleInterval until ctx
// ends, and returns the samples.
func sampleHistory(ctx context.Context, srv *server.Server) []history.Status {
	var out []history.Status
	tick := time.NewTicker(lagSampleInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
			if s, ok := srv.HistoryStatus(); ok {
				out = append(out, s)
			}
		}
	}
}

// historyReached waits until the time the server's history writer reports in its status
// with watermark (how far its roll-ups or checkpoints go) reaches to.
func historyReached(ctx context.Context, srv *server.Server, to time.Time, watermark func(history.Status) time.Time) error {
	start := time.Now()
	for {
		s, ok := srv.HistoryStatus()
		if !ok {
			return errors.New("history is off")
		}
		if !watermark(s).Before(to) {
			return nil
		}
		if time.Since(start) > historyDrainTimeout {
			return fmt.Errorf("the history writer did not reach %s in %v: %+v", to.Format(time.RFC3339), historyDrainTimeout, s)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// historyCaughtUp waits until the server's history writer has every change log record, and
// returns how long that took.
func historyCaughtUp(ctx context.Context, srv *server.Server) (time.Duration, error) {
	start := time.Now()
	for {
		s, ok := srv.HistoryStatus()
		if !ok {
			return 0, errors.New("history is off")
		}
		if s.LagEvents == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > historyDrainTimeout {
			return 0, fmt.Errorf("the history writer did not catch up in %v: %+v", historyDrainTimeout, s)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}

// historyWriter measures the history writer catching up alone on a change log of
// cfg.WriterRecords records, and the ceiling of the same rows.
func historyWriter(ctx context.Context, cfg HistoryConfig, dir string, logger *slog.Logger, res *HistoryResult) (err error) {
	// The change log is the input, not what is measured: its commits skip the fsync.
	st, err := sqlite.Open(sqlite.Config{Dir: filepath.Join(dir, "log"), NoSync: true}, logger)
	if err != nil {
		return fmt.Errorf("open store: %w", err)
	}
	defer func() {
		if cerr := st.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close store: %w", cerr))
		}
	}()
	logger.Info("writing the change log", slog.Int("records", cfg.WriterRecords))
	if err := writeChangeLog(ctx, st, cfg.WriterRecords); err != nil {
		return err
	}
	log, ok := st.Log().(store.ChangeLog)
	if !ok {
		return errors.New("the store's log does not keep states")
	}
	res.Writer.Records = int(log.Last())

	logger.Info("history writer catching up", slog.Int("records", res.Writer.Records))
	hs, err := hsqlite.Open(hsqlite.Config{Dir: filepath.Join(dir, "writer")})
	if err != nil {
		return err
	}
	res.Writer.Rows, res.Writer.Elapsed, err = catchUp(ctx, log, hs)
	if cerr := hs.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("close history store: %w", cerr))
	}
	if err != nil {
		return err
	}

	logger.Info("measuring the history store ceiling")
	batches, err := hsqlite.CeilingBatches(ctx, log, history.DefaultMaxBatch, history.Options{RecordRemovals: true})
	if err != nil {
		return err
	}
	if res.Ceiling, err = hsqlite.Ceiling(ctx, filepath.Join(dir, "ceiling"), batches); err != nil {
		return err
	}
	if uint64(res.Ceiling.Rows) != res.Writer.Rows {
		return fmt.Errorf("the writer wrote %d rows and the ceiling %d", res.Writer.Rows, res.Ceiling.Rows)
	}
	return nil
}

// writeChangeLog creates twins of the benchmark model and patches them at random, through
// the twin service, until st's change log holds n records.
func writeChangeLog(ctx context.Context, st *sqlite.Store, n int) error {
	g, err := twins.New(twins.Config{ServiceID: "twinflow-bench"}, st, nil)
	if err != nil {
		return fmt.Errorf("build the twin service: %w", err)
	}
	model, err := modelDefinition()
	if err != nil {
		return fmt.Errorf("encode model: %w", err)
	}
	if _, err := g.AddModels(ctx, append(append([]byte{'['}, model...), ']')); err != nil {
		return fmt.Errorf("add model: %w", err)
	}
	log := st.Log()
	nTwins := max(1, min(1000, n/10))
	for i := 0; int(log.Last()) < n; i++ {
		if i < nTwins {
			body, err := json.Marshal(twinBody(i))
			if err != nil {
				return fmt.Errorf("encode twin %d: %w", i, err)
			}
			if _, err := g.PutTwin(ctx, twinID(i), body, "", twins.Trace{}); err != nil {
				return fmt.Errorf("create twin %d: %w", i, err)
			}
			continue
		}
		id := twinID(i % nTwins)
		if _, err := g.PatchTwin(ctx, id, patchBody(1+i%3, i), "", twins.Trace{}); err != nil {
			return fmt.Errorf("patch twin %s: %w", id, err)
		}
	}
	return nil
}

// catchUp runs a history writer of log into hs until it has every record of log, and
// returns the rows it wrote and the time it took.
func catchUp(ctx context.Context, log store.Log, hs history.Store) (uint64, time.Duration, error) {
	// Retention off: no pruning pass runs beside the writer.
	w, err := history.New(history.Config{Retention: -1}, log, hs, nil)
	if err != nil {
		return 0, 0, err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	done := make(chan error, 1)
	start := time.Now()
	go func() { done <- w.Run(ctx) }()
	last := log.Last()
	for {
		s := w.Status()
		if s.Cursor >= last {
			elapsed := time.Since(start)
			cancel()
			if err := <-done; !errors.Is(err, context.Canceled) {
				return 0, 0, fmt.Errorf("run the history writer: %w", err)
			}
			return s.Rows, elapsed, nil
		}
		if s.Err != nil {
			cancel()
			<-done
			return 0, 0, fmt.Errorf("the history writer failed: %w", s.Err)
		}
		select {
		case err := <-done:
			return 0, 0, fmt.Errorf("the history writer stopped: %w", err)
		case <-time.After(time.Millisecond):
		}
	}
}

// sensorModelID is the model of the twins POST /history/query aggregates: a temperature.
const sensorModelID = "dtmi:twinflow:bench:Sensor;1"

// sensorID names sensor twin i.
func sensorID(i int) string { return fmt.Sprintf("sensor-%04d", i) }

// historyServiceID is the service id of the query server and of its history rows.
const historyServiceID = "twinflow-bench"

// historyQueries sets up the query server's twins and history, and times the queries.
func historyQueries(ctx context.Context, cfg HistoryConfig, dataDir string, logger *slog.Logger, res *HistoryResult) (err error) {
	logger.Info("storing twins", slog.Int("twins", cfg.AsOfTwins))
	if err := loadGraph(ctx, dataDir, graphLoad{Twins: cfg.AsOfTwins, Batch: 10_000, Events: true}, logger); err != nil {
		return err
	}
	now := time.Now().UTC().Truncate(time.Minute)
	logger.Info("writing history", slog.Int("sensors", cfg.QueryTwins), slog.Int("days", cfg.QueryDays), slog.Int("twins", cfg.AsOfTwins))
	start := time.Now()
	counts, err := writeHistory(ctx, dataDir, cfg, now)
	if err != nil {
		return err
	}
	res.QueryRows, res.AsOfRelationships, res.HistoryRows = counts.sensorRows, counts.relationships, counts.rows
	logger.Info("wrote history", slog.Int("rows", counts.rows), slog.Duration("took", time.Since(start)))
	from := now.Add(-time.Duration(cfg.QueryDays) * 24 * time.Hour)
	res.Rollup = HistoryRollup{Rows: counts.propertyRows, To: history.Bin(now, time.Hour)}
	start = time.Now()

	srv, stop, err := serve(ctx, config.Config{
		Server: config.Server{Listen: "127.0.0.1:0", DataDir: dataDir, ServiceID: historyServiceID},
	}, logger)
	if err != nil {
		return err
	}
	defer stopServer(stop, &err)
	client := httpClient(1)
	defer client.CloseIdleConnections()
	if err := waitReady(ctx, client, srv.URL(), historyDrainTimeout); err != nil {
		return err
	}
	if err := createSensors(ctx, client, srv.URL(), cfg.QueryTwins); err != nil {
		return err
	}
	if _, err := historyCaughtUp(ctx, srv); err != nil {
		return err
	}
	logger.Info("waiting for the history roll-ups", slog.Time("to", res.Rollup.To))
	if err := historyReached(ctx, srv, res.Rollup.To, func(s history.Status) time.Time { return s.RolledUpTo }); err != nil {
		return err
	}
	res.Rollup.Elapsed = time.Since(start)
	logger.Info("history rolled up", slog.Int("rows", res.Rollup.Rows), slog.Duration("took", res.Rollup.Elapsed))
	if err := historyReached(ctx, srv, res.Rollup.To, func(s history.Status) time.Time { return s.CheckpointedTo }); err != nil {
		return err
	}
	res.Rollup.Checkpointed = time.Since(start)
	logger.Info("history checkpointed", slog.Duration("took", res.Rollup.Checkpointed))

	logger.Info("timing POST /history/query", slog.Int("queries", cfg.Queries))
	// Buckets are whole hours from the epoch: from and to cut the first and the last.
	buckets := int(history.Bin(now.Add(time.Hour-1), time.Hour).Sub(history.Bin(from, time.Hour)) / time.Hour)
	agg := map[string]any{
		"query":    "SELECT T FROM DIGITALTWINS T WHERE IS_OF_MODEL('" + sensorModelID + "')",
		"property": "temperature", "interval": "PT1H", "aggregates": []string{"avg"},
		"from": from.Format(time.RFC3339), "to": now.Format(time.RFC3339),
	}
	queryURL := srv.URL() + "/history/query?api-version=" + apiVersion
	fixed := func(body map[string]any) func(int) map[string]any {
		return func(int) map[string]any { return body }
	}
	if res.Query, err = timeQueries(ctx, client, queryURL, fixed(agg), cfg.Queries, checkSeries(cfg.QueryTwins, buckets)); err != nil {
		return err
	}
	agg["aggregates"] = []string{"avg", "min", "max", "count", "first", "last"}
	if res.QueryAll, err = timeQueries(ctx, client, queryURL, fixed(agg), cfg.Queries, checkSeries(cfg.QueryTwins, buckets)); err != nil {
		return err
	}

	// Each query asks for a time a second after the one before, so that none is answered
	// from the graph a query before it read (the server keeps it for the pages of a query).
	asOf := func(i int) string { return now.Add(-time.Hour + time.Duration(i)*time.Second).Format(time.RFC3339) }
	logger.Info("timing POST /query with asOf", slog.Int("queries", cfg.Queries), slog.String("asOf", asOf(0)))
	url := srv.URL() + "/query?api-version=" + apiVersion
	count := func(i int) map[string]any {
		return map[string]any{"query": "SELECT COUNT() FROM DIGITALTWINS", "asOf": asOf(i)}
	}
	if res.AsOfCount, err = timeQueries(ctx, client, url, count, cfg.Queries, checkCount(cfg.AsOfTwins+cfg.QueryTwins)); err != nil {
		return err
	}
	src, dst := twinID(0), twinID(1)
	selective := func(i int) map[string]any {
		return map[string]any{"query": "SELECT N FROM DIGITALTWINS T JOIN N RELATED T.next WHERE T.$dtId = '" + src + "'",
			"asOf": asOf(cfg.Queries + i)}
	}
	if res.AsOfSelective, err = timeQueries(ctx, client, url, selective, cfg.Queries, checkTarget(dst)); err != nil {
		return err
	}
	return nil
}

// createSensors adds the sensor model and sensors 0..n-1 through the API.
func createSensors(ctx context.Context, client *http.Client, base string, n int) error {
	model, err := json.Marshal([]map[string]any{{
		"@id": sensorModelID, "@type": "Interface", "@context": "dtmi:dtdl:context;2", "displayName": "Bench sensor",
		"contents": []map[string]any{{"@type": "Property", "name": "temperature", "schema": "double", "writable": true}},
	}})
	if err != nil {
		return fmt.Errorf("encode sensor model: %w", err)
	}
	if err := sendOK(ctx, client, http.MethodPost, base+"/models?api-version="+apiVersion, "application/json", model, http.StatusCreated); err != nil {
		return fmt.Errorf("add sensor model: %w", err)
	}
	for i := range n {
		body := []byte(`{"$metadata":{"$model":"` + sensorModelID + `"},"temperature":` + strconv.FormatFloat(sensorValue(i, 0), 'f', 2, 64) + `}`)
		if err := sendOK(ctx, client, http.MethodPut, base+"/digitaltwins/"+sensorID(i)+"?api-version="+apiVersion, "application/json", body, http.StatusOK); err != nil {
			return fmt.Errorf("create sensor: %w", err)
		}
	}
	return nil
}

// sensorValue is sensor i's temperature at minute m: a daily cycle around a value of its
// own.
func sensorValue(i, m int) float64 {
	return 19 + float64(i%10)/2 + 3*math.Sin(2*math.Pi*float64(m)/(24*60)) + float64((i*7+m*13)%10)/20
}

// historyCounts counts the rows writeHistory wrote.
type historyCounts struct {
	rows, propertyRows, sensorRows, relationships int
}

// writeHistory writes, directly into the history store in dataDir, the past of the
// benchmark's twins in time order (see History), in Writes of about historyWriteRows rows.
// The store commits without fsync (NoSync) and is closed, so checkpointed, at the end.
func writeHistory(ctx context.Context, dataDir string, cfg HistoryConfig, now time.Time) (counts historyCounts, err error) {
	hs, err := hsqlite.Open(hsqlite.Config{Dir: dataDir, NoSync: true})
	if err != nil {
		return counts, err
	}
	defer func() {
		if cerr := hs.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close history store: %w", cerr))
		}
	}()
	h := pastWriter{ctx: ctx, hs: hs}
	minutes := cfg.QueryDays * 24 * 60
	from := now.Add(-time.Duration(minutes) * time.Minute)
	for i := range cfg.QueryTwins {
		h.seq++
		h.rows.Twins = append(h.rows.Twins, history.TwinLifecycleEvent{Seq: h.seq, TwinID: sensorID(i), Action: history.LifecycleCreate,
			TimeStamp: from.Add(-time.Minute), ServiceID: historyServiceID, ModelID: sensorModelID})
	}
	// The asOf twins live in the last two hours: created in its first ten minutes, patched
	// every half hour after, one in a hundred deleted at its 90th minute.
	const window, createMinutes, patchEvery, deleteAt = 120, 10, 30, 90
	n := cfg.AsOfTwins
	createdIn := func(m int) (int, int) { // the twins created in minute m of the window
		if m < 0 || m >= createMinutes {
			return 0, 0
		}
		return (m*n + createMinutes - 1) / createMinutes, ((m+1)*n + createMinutes - 1) / createMinutes
	}
	for m := range minutes {
		t := from.Add(time.Duration(m) * time.Minute)
		for i := range cfg.QueryTwins {
			h.seq++
			ts := t.Add(time.Duration(i) * 10 * time.Millisecond)
			h.rows.Properties = append(h.rows.Properties, history.PropertyEvent{
				Seq: h.seq, TimeStamp: ts, SourceTimeStamp: ts.Add(-time.Second), ServiceID: historyServiceID,
				ID: sensorID(i), ModelID: sensorModelID, Key: "temperature",
				Value: strconv.AppendFloat(nil, sensorValue(i, m), 'f', 2, 64), Action: history.ActionUpdate,
			})
			counts.sensorRows++
		}
		w := m - (minutes - window) // minute of the asOf window
		if w < 0 {
			if err := h.flush(false); err != nil {
				return counts, err
			}
			continue
		}
		at := func(k int) time.Time { return t.Add(time.Duration(k) * time.Millisecond) }
		k := 0
		lo, hi := createdIn(w)
		for i := lo; i < hi; i++ {
			k++
			h.createDevice(i, at(k))
			if i > 0 && (i-1)%10 == 0 {
				h.seq++
				h.rows.Relationships = append(h.rows.Relationships, history.RelationshipLifecycleEvent{
					Seq: h.seq, RelationshipID: "next-" + twinID(i-1), Name: "next", Action: history.LifecycleCreate,
					TimeStamp: at(k), ServiceID: historyServiceID, Source: twinID(i - 1), Target: twinID(i)})
				counts.relationships++
			}
		}
		for p := 1; p*patchEvery <= w; p++ {
			lo, hi := createdIn(w - p*patchEvery)
			for i := lo; i < hi; i++ {
				k++
				h.patchDevice(i, p, at(k))
			}
		}
		if w == deleteAt {
			for i := 99; i < n; i += 100 {
				k++
				h.seq++
				h.rows.Twins = append(h.rows.Twins, history.TwinLifecycleEvent{Seq: h.seq, TwinID: twinID(i), Action: history.LifecycleDelete,
					TimeStamp: at(k), ServiceID: historyServiceID, ModelID: modelID})
			}
		}
		if err := h.flush(false); err != nil {
			return counts, err
		}
	}
	if err := h.flush(true); err != nil {
		return counts, err
	}
	counts.rows, counts.propertyRows = h.written, h.properties
	return counts, nil
}

// historyWriteRows is the number of rows writeHistory writes per Write, about.
const historyWriteRows = 20_000

// pastWriter accumulates history rows in Seq order and writes them in batches.
type pastWriter struct {
	ctx     context.Context
	hs      history.Store
	rows    history.Rows
	seq     uint64
	written int
	// properties counts the property rows among those written.
	properties int
}

// createDevice adds the rows of benchmark twin i's creation at t: its lifecycle row and a
// row per property.
func (h *pastWriter) createDevice(i int, t time.Time) {
	h.seq++
	h.rows.Twins = append(h.rows.Twins, history.TwinLifecycleEvent{Seq: h.seq, TwinID: twinID(i), Action: history.LifecycleCreate,
		TimeStamp: t, ServiceID: historyServiceID, ModelID: modelID})
	for p := range numProperties {
		h.addProperty(i, p, i+p, t)
	}
}

// patchDevice adds the rows of the p-th patch of benchmark twin i at t: one or two
// properties.
func (h *pastWriter) patchDevice(i, p int, t time.Time) {
	h.seq++
	for j := range 1 + (i+p)%2 {
		h.addProperty(i, (i+p+j)%numProperties, i+p*1000+j, t)
	}
}

// addProperty adds the row of property p of twin i set to its value from n, with the
// current Seq.
func (h *pastWriter) addProperty(i, p, n int, t time.Time) {
	v, _ := json.Marshal(propValue(p, n))
	h.rows.Properties = append(h.rows.Properties, history.PropertyEvent{
		Seq: h.seq, TimeStamp: t, ServiceID: historyServiceID, ID: twinID(i), ModelID: modelID,
		Key: propName(p), Value: v, Action: history.ActionUpdate,
	})
}

// flush writes the rows accumulated when they are historyWriteRows or more, or when final.
func (h *pastWriter) flush(final bool) error {
	n := h.rows.Len()
	if n == 0 || (!final && n < historyWriteRows) {
		return nil
	}
	if err := h.hs.Write(h.ctx, &h.rows, h.seq); err != nil {
		return err
	}
	h.written += n
	h.properties += len(h.rows.Properties)
	h.rows.Reset()
	return nil
}

// timeQueries POSTs body to url n times, following nextLinks, checks each answer's rows
// with check and returns the latencies of the whole answers.
func timeQueries(ctx context.Context, client *http.Client, url string, body func(i int) map[string]any, n int, check func(rows []json.RawMessage) error) (Latencies, error) {
	lat := make([]time.Duration, 0, n)
	for i := range n {
		data, err := json.Marshal(body(i))
		if err != nil {
			return Latencies{}, fmt.Errorf("encode query: %w", err)
		}
		start := time.Now()
		var rows []json.RawMessage
		for next := url; next != ""; {
			var page struct {
				Value    []json.RawMessage `json:"value"`
				NextLink *string           `json:"nextLink"`
			}
			if err := postJSON(ctx, client, next, data, &page); err != nil {
				return Latencies{}, err
			}
			rows = append(rows, page.Value...)
			next = ""
			if page.NextLink != nil {
				next = *page.NextLink
			}
		}
		lat = append(lat, time.Since(start))
		if err := check(rows); err != nil {
			return Latencies{}, fmt.Errorf("POST %s %s: %w", url, data, err)
		}
	}
	slices.Sort(lat)
	return summarize(lat), nil
}

// postJSON POSTs body to url, which must answer 200, and decodes the answer into out.
func postJSON(ctx context.Context, client *http.Client, url string, body []byte, out any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := client.Do(req)
	if err != nil {
		return fmt.Errorf("POST %s: %w", url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("POST %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("POST %s: status %d: %s", url, resp.StatusCode, bytes.TrimSpace(data))
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("POST %s: decode answer: %w", url, err)
	}
	return nil
}

// checkSeries checks an answer of POST /history/query: a series of buckets for each of twins
// twins.
func checkSeries(twins, buckets int) func([]json.RawMessage) error {
	return func(rows []json.RawMessage) error {
		if len(rows) != twins {
			return fmt.Errorf("%d series, want %d", len(rows), twins)
		}
		var s struct {
			Series []map[string]any `json:"series"`
		}
		if err := json.Unmarshal(rows[0], &s); err != nil {
			return fmt.Errorf("decode series: %w", err)
		}
		if len(s.Series) != buckets {
			return fmt.Errorf("%d buckets in the first series, want %d", len(s.Series), buckets)
		}
		return nil
	}
}

// checkCount checks the answer of a COUNT() query.
func checkCount(want int) func([]json.RawMessage) error {
	return func(rows []json.RawMessage) error {
		var got []map[string]int
		if err := json.Unmarshal(jsonArray(rows), &got); err != nil {
			return fmt.Errorf("decode count: %w", err)
		}
		if len(got) != 1 || len(got[0]) != 1 {
			return fmt.Errorf("count answered %v", got)
		}
		for _, n := range got[0] {
			if n != want {
				return fmt.Errorf("counted %d twins, want %d", n, want)
			}
		}
		return nil
	}
}

// checkTarget checks that the answer is the one twin id projected as N.
func checkTarget(id string) func([]json.RawMessage) error {
	return func(rows []json.RawMessage) error {
		var got []struct {
			N struct {
				ID string `json:"$dtId"`
			} `json:"N"`
		}
		if err := json.Unmarshal(jsonArray(rows), &got); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
		if len(got) != 1 || got[0].N.ID != id {
			return fmt.Errorf("answered %s, want the twin %s", jsonArray(rows), id)
		}
		return nil
	}
}

// jsonArray returns rows as one JSON array.
func jsonArray(rows []json.RawMessage) []byte {
	b := []byte{'['}
	for i, r := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	return append(b, ']')
}
