package bench

import (
	"bytes"
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
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

	natsgo "github.com/nats-io/nats.go"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/ingress/runner"
	"github.com/twinflow/twinflow/internal/outbox"
	"github.com/twinflow/twinflow/internal/server"
	"github.com/twinflow/twinflow/internal/store/sqlite"
)

// MixedConfig configures the mixed benchmark. Zero fields take the defaults in brackets.
type MixedConfig struct {
	// Dir is where the temporary data directory goes [os.TempDir()].
	Dir string
	// Keep leaves the data directory in place instead of removing it.
	Keep bool
	// Twins is the number of twins, each with a relationship "next" to the twin after it,
	// the last to the first [1,000,000].
	Twins int
	// Rate is the messages per second the source applies to the twins; zero means half the
	// PATCHes per second that bench patch's load generator reaches on the same server, in
	// a calibration phase of Calibration first.
	Rate int
	// Calibration is how long the calibration phase patches [10s]; CalibrationClients its
	// keep-alive clients [64].
	Calibration        time.Duration
	CalibrationClients int
	// Clients is the number of concurrent query clients [8].
	Clients int
	// Idle is how long the query clients run on the idle server, before the load [10s].
	Idle time.Duration
	// Duration is how long the load and the query clients run together [1m].
	Duration time.Duration
	// Sample is the interval of the soak samples [1m].
	Sample time.Duration
	// Retention, when set, is how long the server keeps the change log (delivery.retention),
	// history (history.retention) and the source's message ids (ingress.dedupWindow) instead
	// of their defaults (168h, 720h, 1h): a soak longer than it shows them pruned as fast as
	// they grow [0, the defaults].
	Retention time.Duration
	// PageSize is the max-items-per-page of the filtered query [100].
	PageSize int
	// Batch is the number of messages per request to the http source [10], Conns the
	// requests in flight at most [8].
	Batch, Conns int
	// WebhookMode is the mode of the webhook endpoint: structured, binary or batched
	// [batched: in the other modes the webhook posts one event per request, in order, one
	// request at a time, which on a 2-core machine keeps up with fewer events per second
	// than the calibrated rate].
	WebhookMode string
	// NATS is the URL of the NATS JetStream server one route delivers to
	// [nats://127.0.0.1:4222]. The run creates a stream of its own there and deletes it
	// afterwards.
	NATS string
	// LoadCommand runs the PATCH load generator in a process of its own, as for PatchConfig.
	// It is required when Rate is zero.
	LoadCommand func(ctx context.Context, args []string) *exec.Cmd
}

// Defaults of MixedConfig.
const (
	DefaultMixedTwins       = 1_000_000
	DefaultMixedCalibration = 10 * time.Second
	DefaultMixedClients     = 8
	DefaultMixedIdle        = 10 * time.Second
	DefaultMixedDuration    = time.Minute
	DefaultMixedSample      = time.Minute
	DefaultMixedPageSize    = 100
	DefaultMixedWebhookMode = "batched"
)

func (c MixedConfig) withDefaults() MixedConfig {
	if c.Dir == "" {
		c.Dir = os.TempDir()
	}
	if c.Twins <= 0 {
		c.Twins = DefaultMixedTwins
	}
	if c.Calibration <= 0 {
		c.Calibration = DefaultMixedCalibration
	}
	if c.CalibrationClients <= 0 {
		c.CalibrationClients = 64
	}
	if c.Clients <= 0 {
		c.Clients = DefaultMixedClients
	}
	if c.Idle <= 0 {
		c.Idle = DefaultMixedIdle
	}
	if c.Duration <= 0 {
		c.Duration = DefaultMixedDuration
	}
	if c.Sample <= 0 {
		c.Sample = DefaultMixedSample
	}
	if c.PageSize <= 0 {
		c.PageSize = DefaultMixedPageSize
	}
	if c.Batch <= 0 {
		c.Batch = 10
	}
	if c.Conns <= 0 {
		c.Conns = 8
	}
	if c.NATS == "" {
		c.NATS = DefaultDeliveryNATS
	}
	if c.WebhookMode == "" {
		c.WebhookMode = DefaultMixedWebhookMode
	}
	return c
}

// Goals of the mixed benchmark.
const (
	goalQueryP99      = 10 * time.Millisecond
	goalQueriesPerSec = 5000
	goalLag           = 2 * time.Second
)

// MixedResult is what the mixed benchmark measured.
type MixedResult struct {
	Twins int
	// Load is how long storing the twins and relationships took, DiskBytes the data
	// directory's size afterwards, Ready the time from the server's start until /readyz
	// answered 200 (its index built from the store).
	Load      time.Duration
	DiskBytes int64
	Ready     time.Duration
	// Calibration is what bench patch's load generator reached on the server, when the rate
	// was calibrated; Rate is the rate the source was fed at.
	Calibration *PatchLoad
	Rate        int
	Batch       int
	// Clients is the number of query clients; Idle what they measured before the load,
	// Loaded during it.
	Clients      int
	Idle, Loaded QueryRun
	// Ingest is the source's messages: sent, committed, and their latency from publish to
	// commit.
	Ingest IngestPhase
	// NATS and Webhook are the events of the committed messages at each endpoint;
	// WebhookMode the webhook's mode.
	NATS, Webhook DeliveryLag
	WebhookMode   string
	// History is the history writer's lag, sampled while the load ran.
	History MixedHistory
	// Sample is the soak sample interval, Samples the samples.
	Sample  time.Duration
	Samples []SoakSample
	// Retention is MixedConfig.Retention: 0 when the server kept its default retentions.
	Retention time.Duration
}

// QueryRun is what the query clients measured in one phase.
type QueryRun struct {
	Elapsed time.Duration
	Kinds   []QueryKindResult
}

// Total returns the queries answered in the run.
func (q QueryRun) Total() int {
	n := 0
	for _, k := range q.Kinds {
		n += k.Answered
	}
	return n
}

// PerSecond returns the queries answered per second.
func (q QueryRun) PerSecond() float64 { return perSecond(q.Total(), q.Elapsed) }

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// QueryKindResult is what the query clients measured of one kind of query.
type QueryKindResult struct {
	Kind string
	// Answered counts the answers that were right; Failed the requests that failed or got
	// a wrong answer, FirstError the first of those.
	Answered, Failed int
	FirstError       string
	// Latency is that of the right answers, from sending the request to reading the whole
	// answer, to 1%.
	Latency Latencies
}

// DeliveryLag is what arrived at one endpoint.
type DeliveryLag struct {
	// Delivered counts the committed messages whose events arrived, Missing those whose
	// did not within drainTimeout of the end, Duplicates events that arrived again.
	Delivered, Missing, Duplicates int
	// Lag runs from each event's time attribute (set when the change was made, before its
	// commit) to its arrival at the receiver, both on this machine's wall clock.
	Lag Latencies
}

// MixedHistory is the history writer's lag while the load ran.
type MixedHistory struct {
	// Samples counts the samples of the writer's status, every lagSampleInterval; Lag is
	// its LagTime (how long ago the oldest change not yet written to history committed).
	Samples int
	Lag     Latencies
	// Drain is the time from the load's end until the writer had every change.
	Drain time.Duration
}

// SoakSample is one sample of the process's resources. The server runs in the benchmark's
// process, so RSS, heap, goroutines and descriptors are the server's together with the
// benchmark's own (query clients, publisher, NATS subscriber, webhook receiver).
type SoakSample struct {
	At         time.Duration
	RSS        int64
	HeapInuse  uint64
	Goroutines int
	FDs        int
	// DBBytes is the size of the data directory (databases with their WAL files).
	DBBytes int64
	// LogRecords is the number of records in the change log; DedupIDs the message ids the
	// sources keep for de-duplication.
	LogRecords, DedupIDs int64
	// DeadLetters counts the endpoints' dead letters, DeadLetterBytes their events' bytes.
	DeadLetters, DeadLetterBytes int64
	// Stall is the longest a goroutine that sleeps stallProbe at a time woke late since the
	// sample before: how long the process's goroutines waited for a core.
	Stall time.Duration
}

// stallProbe is the sleep of the goroutine that measures SoakSample.Stall.
const stallProbe = 100 * time.Millisecond

// stallMeter measures how late a goroutine that sleeps stallProbe at a time wakes.
type stallMeter struct {
	worst atomic.Int64
}

// run sleeps stallProbe at a time until ctx ends, noting the worst lateness.
func (m *stallMeter) run(ctx context.Context) {
	timer := time.NewTimer(stallProbe)
	defer timer.Stop()
	due := time.Now().Add(stallProbe)
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		now := time.Now()
		late := int64(now.Sub(due))
		for {
			old := m.worst.Load()
			if late <= old || m.worst.CompareAndSwap(old, late) {
				break
			}
		}
		due = now.Add(stallProbe)
		timer.Reset(stallProbe)
	}
}

// take returns the worst lateness since the last take.
func (m *stallMeter) take() time.Duration { return time.Duration(max(m.worst.Swap(0), 0)) }

// soakSeries are the series of the samples, with how each is shown and what bounds it.
var soakSeries = []struct {
	name  string
	value func(SoakSample) float64
	show  func(float64) string
	// bound says what bounds the series, given the run's retention (0: the defaults).
	bound func(retention time.Duration) string
}{
	{"RSS", func(s SoakSample) float64 { return float64(s.RSS) }, mib, fixed("VmRSS of /proc/self/status: server and benchmark in one process")},
	{"heap in use", func(s SoakSample) float64 { return float64(s.HeapInuse) }, mib, fixed("runtime.MemStats.HeapInuse")},
	{"goroutines", func(s SoakSample) float64 { return float64(s.Goroutines) }, plain, nil},
	{"open files", func(s SoakSample) float64 { return float64(s.FDs) }, plain, fixed("entries of /proc/self/fd")},
	{"data dir", func(s SoakSample) float64 { return float64(s.DBBytes) }, mib, func(r time.Duration) string {
		return fmt.Sprintf("bounded by delivery.retention (%v) and history.retention (%v)", cmp.Or(r, outbox.DefaultRetention), cmp.Or(r, history.DefaultRetention))
	}},
	{"log records", func(s SoakSample) float64 { return float64(s.LogRecords) }, plain, func(r time.Duration) string {
		return fmt.Sprintf("kept for delivery.retention (%v)", cmp.Or(r, outbox.DefaultRetention))
	}},
	{"dedup ids", func(s SoakSample) float64 { return float64(s.DedupIDs) }, plain, func(r time.Duration) string {
		return fmt.Sprintf("kept for ingress.dedupWindow (%v)", cmp.Or(r, runner.DefaultDedupWindow))
	}},
	{"dead letters", func(s SoakSample) float64 { return float64(s.DeadLetters) }, plain, nil},
	{"dead letter bytes", func(s SoakSample) float64 { return float64(s.DeadLetterBytes) }, mib, nil},
	{"stall", func(s SoakSample) float64 { return float64(s.Stall) }, func(v float64) string { return time.Duration(v).Round(time.Millisecond).String() },
		fixed("the longest a goroutine sleeping 100ms woke late since the sample before")},
}

// fixed is a bound that does not depend on the retention.
func fixed(note string) func(time.Duration) string { return func(time.Duration) string { return note } }

func mib(v float64) string   { return fmt.Sprintf("%.1f MiB", v/(1<<20)) }
func plain(v float64) string { return strconv.FormatFloat(v, 'f', 0, 64) }

// growthTolerance is how much the max of a series' last third may exceed the max of its
// middle third before the series counts as growing.
const growthTolerance = 0.10

// Growth says whether values grow without bound over a soak: "grows" when the max of the
// last third of the samples exceeds the max of the middle third by more than
// growthTolerance (and by more than 1, for small counts), "steady" otherwise, and "too few
// samples" with fewer than three. The first third is the warm-up, left out.
func Growth(values []float64) string {
	n := len(values)
	if n < 3 {
		return "too few samples"
	}
	middle := slices.Max(values[n/3 : 2*n/3])
	last := slices.Max(values[2*n/3:])
	if last > middle*(1+growthTolerance) && last-middle > 1 {
		return "grows"
	}
	return "steady"
}

// Table writes the result as a short table.
func (r MixedResult) Table(w io.Writer) error {
	rows := [][2]string{
		{"twins", fmt.Sprintf("%d of %d properties, each with a relationship next to the one after it", r.Twins, numProperties)},
		{"load through the store", fmt.Sprintf("%v (%.0f twins and relationships/s), %.1f MiB on disk", r.Load.Round(time.Millisecond),
			perSecond(2*r.Twins, r.Load), float64(r.DiskBytes)/(1<<20))},
		{"server start until /readyz 200", r.Ready.Round(time.Millisecond).String()},
	}
	if c := r.Calibration; c != nil {
		rows = append(rows, [2]string{"calibration (bench patch)", fmt.Sprintf("%.0f patches/s acknowledged (%d in %v, %d failed; p99 %v): the source is fed half",
			c.PerSecond(), c.Patches, c.Elapsed.Round(time.Millisecond), c.Failed, c.P99.Round(time.Microsecond))})
	}
	in := r.Ingest
	rows = append(rows,
		[2]string{"http source", fmt.Sprintf("%d messages/s offered in requests of %d: %.0f/s committed (%s)", r.Rate, r.Batch, in.PerSecond(), in.counts())},
		[2]string{"ingest latency", in.Latency.String() + "  (publish to commit, seen by a follower of the change log)"},
		[2]string{"NATS JetStream", deliveryLine(r.NATS)},
		[2]string{"webhook (" + r.WebhookMode + ")", deliveryLine(r.Webhook)},
		[2]string{"history lag", fmt.Sprintf("%s  (the writer's lagSeconds, %d samples every %v; %v to lag 0 after the load)",
			r.History.Lag, r.History.Samples, lagSampleInterval, r.History.Drain.Round(time.Millisecond))},
	)
	rows = append(rows, [2]string{"queries", fmt.Sprintf("%d clients, each its kinds in turn; idle %v, under load %v", r.Clients,
		r.Idle.Elapsed.Round(time.Millisecond), r.Loaded.Elapsed.Round(time.Millisecond))})
	rows = append(rows, [2]string{"queries/s", fmt.Sprintf("%.0f idle, %.0f under load (%s)", r.Idle.PerSecond(), r.Loaded.PerSecond(), ratio(r.Loaded.PerSecond(), r.Idle.PerSecond()))})
	for i, lk := range r.Loaded.Kinds {
		ik := QueryKindResult{}
		if i < len(r.Idle.Kinds) {
			ik = r.Idle.Kinds[i]
		}
		rows = append(rows,
			[2]string{lk.Kind + " idle", queryLine(ik, r.Idle.Elapsed)},
			[2]string{lk.Kind + " loaded", queryLine(lk, r.Loaded.Elapsed) + fmt.Sprintf("; p99 %s of idle", ratio(float64(lk.Latency.P99), float64(ik.Latency.P99)))},
		)
	}
	worst := time.Duration(0)
	for _, k := range r.Loaded.Kinds {
		worst = max(worst, k.Latency.P99)
	}
	rows = append(rows,
		[2]string{"goal: query p99 < 10ms", met(worst < goalQueryP99 && len(r.Loaded.Kinds) > 0, fmt.Sprintf("worst p99 under load %v", worst.Round(10*time.Microsecond)))},
		[2]string{"goal: >= 5,000 queries/s", met(r.Loaded.PerSecond() >= goalQueriesPerSec, fmt.Sprintf("%.0f under load", r.Loaded.PerSecond()))},
		[2]string{"goal: delivery lag < 2s", met(r.NATS.Lag.Max < goalLag && r.Webhook.Lag.Max < goalLag && r.NATS.Missing == 0 && r.Webhook.Missing == 0,
			fmt.Sprintf("max NATS %v, webhook %v", r.NATS.Lag.Max.Round(time.Millisecond), r.Webhook.Lag.Max.Round(time.Millisecond)))},
		[2]string{"goal: history lag < 2s", met(r.History.Lag.Max < goalLag, fmt.Sprintf("max %v", r.History.Lag.Max.Round(time.Millisecond)))},
	)
	if err := table(w, rows); err != nil {
		return err
	}
	return r.soakTable(w)
}

// soakTable writes the samples, one line each, and the verdict on each series.
func (r MixedResult) soakTable(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "\n  soak: a sample every %v\n", r.Sample)
	fmt.Fprintf(&b, "  %9s %10s %10s %10s %6s %11s %11s %10s %8s %10s %9s\n", "at", "RSS MiB", "heap MiB", "goroutines", "fds", "data MiB", "log recs", "dedup ids", "dead", "dead MiB", "stall")
	for _, s := range r.Samples {
		fmt.Fprintf(&b, "  %9v %10.1f %10.1f %10d %6d %11.1f %11d %10d %8d %10.2f %9v\n", s.At.Round(time.Second), float64(s.RSS)/(1<<20),
			float64(s.HeapInuse)/(1<<20), s.Goroutines, s.FDs, float64(s.DBBytes)/(1<<20), s.LogRecords, s.DedupIDs, s.DeadLetters,
			float64(s.DeadLetterBytes)/(1<<20), s.Stall.Round(time.Millisecond))
	}
	if _, err := io.WriteString(w, b.String()); err != nil {
		return err
	}
	rows := make([][2]string, 0, len(soakSeries))
	for _, s := range soakSeries {
		values := make([]float64, len(r.Samples))
		for i, smp := range r.Samples {
			values[i] = s.value(smp)
		}
		line := Growth(values)
		if len(values) > 0 {
			line += fmt.Sprintf(" (first %s, last %s, max %s)", s.show(values[0]), s.show(values[len(values)-1]), s.show(slices.Max(values)))
		}
		if s.bound != nil {
			line += "; " + s.bound(r.Retention)
		}
		rows = append(rows, [2]string{s.name, line})
	}
	if _, err := fmt.Fprintf(w, "\n  growth: %q when the max of the last third of the samples exceeds the max of the middle third by more than %.0f%%\n",
		"grows", 100*growthTolerance); err != nil {
		return err
	}
	return table(w, rows)
}

func ratio(a, b float64) string {
	if b <= 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}

func met(ok bool, detail string) string {
	if ok {
		return "met (" + detail + ")"
	}
	return "NOT met (" + detail + ")"
}

func queryLine(k QueryKindResult, elapsed time.Duration) string {
	out := fmt.Sprintf("%.0f/s  %s  (%d answered, %d failed", perSecond(k.Answered, elapsed), k.Latency, k.Answered, k.Failed)
	if k.FirstError != "" {
		out += ": " + k.FirstError
	}
	return out + ")"
}

func deliveryLine(d DeliveryLag) string {
	return fmt.Sprintf("%s  (event time to received; %d delivered, %d missing, %d duplicates)", d.Lag, d.Delivered, d.Missing, d.Duplicates)
}

// Mixed runs the mixed benchmark: the whole server under users' load at once. It stores
// Twins twins of the benchmark model, each with a relationship to the next, through the
// store (no change log records, so nothing waits to be delivered or recorded), starts an
// in-process server on them with default settings (SQLite store, history on), and then:
//
//   - unless Rate is set, runs bench patch's load generator against it for Calibration,
//     and feeds the source half the acknowledged rate;
//   - creates a NATS JetStream endpoint (on a stream of its own) and a webhook endpoint (a
//     receiver in this process, binary CloudEvents), each with a route for every event, and
//     an http source with a mapping that patches the twin a message names;
//   - runs Clients query clients on the idle server for Idle, each asking in turn a
//     filtered first page, a JOIN from a $dtId, a 3-hop MATCH and a COUNT() by model, and
//     checking each answer;
//   - then, for Duration, feeds the source Rate messages a second, open loop, while the same
//     clients query; it samples the history writer's lag every lagSampleInterval and the
//     process's resources every Sample, and times each message from publish to commit (a
//     follower of the change log) and each event from its time to its arrival at either
//     endpoint.
func Mixed(ctx context.Context, cfg MixedConfig, logger *slog.Logger) (res MixedResult, err error) {
	cfg = cfg.withDefaults()
	res = MixedResult{Twins: cfg.Twins, Rate: cfg.Rate, Batch: cfg.Batch, Clients: cfg.Clients, Sample: cfg.Sample, Retention: cfg.Retention, WebhookMode: cfg.WebhookMode}
	if cfg.Rate <= 0 && cfg.LoadCommand == nil {
		return res, errors.New("bench mixed: a load command is required to calibrate the rate")
	}
	switch cfg.WebhookMode {
	case "structured", "binary", "batched":
	default:
		return res, fmt.Errorf("bench mixed: unknown webhook mode %q (want structured, binary or batched)", cfg.WebhookMode)
	}
	if cfg.Twins < 4 {
		return res, errors.New("bench mixed: at least 4 twins are needed for a 3-hop MATCH")
	}
	dir, err := os.MkdirTemp(cfg.Dir, "twinflow-bench-mixed-")
	if err != nil {
		return res, fmt.Errorf("create bench directory: %w", err)
	}
	if !cfg.Keep {
		defer os.RemoveAll(dir)
	}
	dataDir := filepath.Join(dir, "server")

	logger.Info("loading twins and relationships", slog.Int("twins", cfg.Twins), slog.String("dir", dir))
	start := time.Now()
	if err := loadGraph(ctx, dataDir, graphLoad{Twins: cfg.Twins, Relationships: cfg.Twins, Batch: 10_000}, logger); err != nil {
		return res, err
	}
	res.Load = time.Since(start)
	if res.DiskBytes, err = dirSize(dataDir); err != nil {
		return res, err
	}

	// The receivers of both endpoints.
	recv := newMixedReceiver()
	hook, err := recv.serveWebhook()
	if err != nil {
		return res, err
	}
	defer hook.Close()
	ns, err := openNATSStream(ctx, cfg.NATS, "twinflow bench mixed", "twinflowmixed",
		func(m *natsgo.Msg) { recv.nats.arrived(m.Header.Get("ce-time"), m.Data) })
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, ns.close(ctx)) }()
	subject, stream := ns.subject, ns.name

	logger.Info("starting the server")
	start = time.Now()
	srv, stop, err := serve(ctx, config.Config{
		Server:   config.Server{Listen: "127.0.0.1:0", DataDir: dataDir},
		Delivery: config.Delivery{Retention: cfg.Retention},
		History:  config.History{Retention: cfg.Retention},
		Ingress:  config.Ingress{DedupWindow: cfg.Retention},
	}, logger)
	if err != nil {
		return res, err
	}
	defer stopServer(stop, &err)
	api := apiClient{http: httpClient(4), base: srv.URL()}
	defer api.http.CloseIdleConnections()
	if err := waitReady(ctx, api.http, srv.URL(), 30*time.Minute); err != nil {
		return res, err
	}
	res.Ready = time.Since(start)
	logger.Info("server ready", slog.Duration("took", res.Ready))

	if cfg.Rate <= 0 {
		logger.Info("calibrating: bench patch's load", slog.Int("clients", cfg.CalibrationClients), slog.Duration("duration", cfg.Calibration))
		load, err := runLoadProcess(ctx, PatchConfig{Twins: cfg.Twins, Clients: cfg.CalibrationClients, Duration: cfg.Calibration, LoadCommand: cfg.LoadCommand}, srv.Addr().String())
		if err != nil {
			return res, fmt.Errorf("calibrate: %w", err)
		}
		res.Calibration = &load
		res.Rate = max(1, int(load.PerSecond()/2))
		logger.Info("calibrated", slog.Float64("patches/s", load.PerSecond()), slog.Int("rate", res.Rate))
		if _, err := historyCaughtUp(ctx, srv); err != nil {
			return res, err
		}
	}

	if err := mixedResources(ctx, api, cfg, hook.URL(), subject, stream); err != nil {
		return res, err
	}
	pub := newHTTPPublisher(IngestConfig{Devices: cfg.Twins, Window: cfg.Conns * cfg.Batch, Batch: cfg.Batch},
		srv.URL()+"/sources/"+mixedSource+"/messages?api-version="+apiVersion)
	defer pub.close(ctx)

	q := newQueryClients(srv.URL(), cfg)
	defer q.http.CloseIdleConnections()
	logger.Info("querying the idle server", slog.Int("clients", cfg.Clients), slog.Duration("duration", cfg.Idle))
	res.Idle = q.run(ctx, cfg.Idle)

	logger.Info("mixed load", slog.Int("rate", res.Rate), slog.Int("clients", cfg.Clients), slog.Duration("duration", cfg.Duration))
	if err := runMixedLoad(ctx, cfg, srv, api, pub, q, recv, dataDir, logger, &res); err != nil {
		return res, err
	}
	return res, nil
}

// mixedSource names the benchmark's http source and its mapping.
const mixedSource = "bench-mixed"

// mixedResources creates the endpoints, their routes, the source and its mapping, and waits
// until the endpoints deliver and the source runs.
func mixedResources(ctx context.Context, api apiClient, cfg MixedConfig, hookURL, subject, stream string) error {
	puts := []struct {
		path string
		body any
	}{
		{"/endpoints/nats", map[string]any{"endpointType": "nats", "url": cfg.NATS, "subject": subject + ".{twinId}", "stream": stream}},
		{"/endpoints/hook", map[string]any{"endpointType": "webhook", "url": hookURL, "mode": cfg.WebhookMode}},
		{"/eventroutes/to-nats", map[string]any{"endpointName": "nats", "filter": "true"}},
		{"/eventroutes/to-hook", map[string]any{"endpointName": "hook", "filter": "true"}},
		{"/sources/" + mixedSource, map[string]any{"sourceType": "http"}},
		{"/mappings/" + mixedSource, ingestMapping(mixedSource)},
	}
	for _, p := range puts {
		data, err := json.Marshal(p.body)
		if err != nil {
			return fmt.Errorf("encode %s: %w", p.path, err)
		}
		status, err := send(ctx, api.http, http.MethodPut, api.url(p.path), "application/json", data)
		if err != nil {
			return fmt.Errorf("PUT %s: %w", p.path, err)
		}
		if status/100 != 2 {
			return fmt.Errorf("PUT %s: status %d", p.path, status)
		}
	}
	for _, name := range []string{"nats", "hook"} {
		if err := waitDelivering(ctx, api, "/endpoints/"+name, time.Minute); err != nil {
			return err
		}
	}
	return api.waitRunning(ctx, "/sources/"+mixedSource, time.Minute)
}

// endpointStatus is the part of GET /endpoints/{name} the benchmark reads.
type endpointStatus struct {
	Status struct {
		State       string `json:"state"`
		DeadLetters int    `json:"deadLetters"`
		LastError   string `json:"lastError"`
	} `json:"status"`
}

func (c apiClient) endpoint(ctx context.Context, path string) (endpointStatus, error) {
	var ep endpointStatus
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(path), nil)
	if err != nil {
		return ep, err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return ep, fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return ep, fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(&ep); err != nil {
		return ep, fmt.Errorf("GET %s: %w", path, err)
	}
	return ep, nil
}

// waitDelivering polls the endpoint at path until its state is delivering.
func waitDelivering(ctx context.Context, api apiClient, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		ep, err := api.endpoint(ctx, path)
		if err != nil {
			return err
		}
		if ep.Status.State == "delivering" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("endpoint %s not delivering after %v: state %q, last error %q", path, timeout, ep.Status.State, ep.Status.LastError)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// runMixedLoad runs the source's load and the query clients together for cfg.Duration,
// sampling meanwhile, then waits for the events and history, and fills in res.
func runMixedLoad(ctx context.Context, cfg MixedConfig, srv *server.Server, api apiClient, pub publisher, q *queryClients,
	recv *mixedReceiver, dataDir string, logger *slog.Logger, res *MixedResult) error {
	sched := ingestSchedule{duration: cfg.Duration, rate: res.Rate}
	n := sched.capacity()
	recv.nats.reset(n)
	recv.hook.reset(n)

	logs, err := openLogReader(dataDir)
	if err != nil {
		return err
	}
	defer logs.Close()

	sampleCtx, stopSampling := context.WithCancel(ctx)
	defer stopSampling()
	var (
		wg       sync.WaitGroup
		lags     []time.Duration
		samples  []SoakSample
		ingested IngestPhase
		ingErr   error
		base     = time.Now()
	)
	stall := &stallMeter{}
	wg.Go(func() { stall.run(sampleCtx) })
	wg.Go(func() {
		for _, s := range sampleHistory(sampleCtx, srv) {
			lags = append(lags, s.LagTime)
		}
	})
	wg.Go(func() {
		sampler := soakSampler{base: base, srv: srv, logs: logs, dataDir: dataDir, stall: stall}
		samples = sampler.run(sampleCtx, cfg.Sample, logger)
	})
	ingestDone := make(chan struct{})
	go func() {
		defer close(ingestDone)
		ingested, _, ingErr = ingestPhase(ctx, srv, pub, sched)
	}()
	res.Loaded = q.run(ctx, cfg.Duration)
	<-ingestDone
	if ingErr != nil {
		stopSampling()
		wg.Wait()
		return fmt.Errorf("ingest: %w", ingErr)
	}
	res.Ingest = ingested
	logger.Info("waiting for the last events and history")
	drainStart := time.Now()
	for time.Since(drainStart) < drainTimeout && (recv.nats.delivered() < ingested.Committed || recv.hook.delivered() < ingested.Committed) {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
	stopSampling()
	wg.Wait()
	if res.History.Drain, err = historyCaughtUp(ctx, srv); err != nil {
		return err
	}
	// A last sample after the load.
	samples = append(samples, soakSampler{base: base, srv: srv, logs: logs, dataDir: dataDir, stall: stall}.sample(ctx, logger))
	res.Samples = samples
	res.NATS = recv.nats.result(ingested.Committed)
	res.Webhook = recv.hook.result(ingested.Committed)
	slices.Sort(lags)
	res.History.Samples, res.History.Lag = len(lags), summarize(lags)
	return nil
}

// mixedReceiver receives the events of both endpoints.
type mixedReceiver struct {
	nats, hook *arrivals
}

func newMixedReceiver() *mixedReceiver {
	return &mixedReceiver{nats: &arrivals{}, hook: &arrivals{}}
}

// serveWebhook starts the webhook receiver on a loopback port: it answers the CloudEvents
// validation handshake and records each event it is posted, in any CloudEvents mode.
func (m *mixedReceiver) serveWebhook() (*webhookReceiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	srv := &http.Server{
		ReadHeaderTimeout: 10 * time.Second,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == http.MethodOptions {
				w.Header().Set("WebHook-Allowed-Origin", "*")
				w.WriteHeader(http.StatusOK)
				return
			}
			data, err := io.ReadAll(r.Body)
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			if err := m.hook.arrivedHTTP(r.Header, data); err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.WriteHeader(http.StatusOK)
		}),
	}
	go func() { _ = srv.Serve(ln) }()
	return &webhookReceiver{srv: srv, addr: ln.Addr().String()}, nil
}

// webhookReceiver is the running webhook receiver.
type webhookReceiver struct {
	srv  *http.Server
	addr string
}

func (w *webhookReceiver) URL() string  { return "http://" + w.addr + "/events" }
func (w *webhookReceiver) Close() error { return w.srv.Close() }

// arrivals records, per message of the load, the lag of the first event that carried its
// marker, in nanoseconds plus one (0: none yet).
type arrivals struct {
	lag        atomic.Pointer[[]atomic.Int64]
	count      atomic.Int64
	duplicates atomic.Int64
}

// reset makes room for n messages and forgets what arrived before.
func (a *arrivals) reset(n int) {
	lags := make([]atomic.Int64, n)
	a.lag.Store(&lags)
	a.count.Store(0)
	a.duplicates.Store(0)
}

// arrived records an event with the time attribute at and data, now.
func (a *arrivals) arrived(at string, data []byte) {
	now := time.Now()
	lags := a.lag.Load()
	if lags == nil {
		return
	}
	n, ok := markerNumber(data, ingestMarker)
	if !ok || n >= len(*lags) {
		return
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return
	}
	if (*lags)[n].CompareAndSwap(0, int64(max(now.Sub(t), 0))+1) {
		a.count.Add(1)
	} else {
		a.duplicates.Add(1)
	}
}

// arrivedHTTP records the events of a webhook request: one in binary mode (the time in the
// ce-time header, the body its data), one in structured mode, an array in batched mode.
func (a *arrivals) arrivedHTTP(h http.Header, body []byte) error {
	if at := h.Get("ce-time"); at != "" {
		a.arrived(at, body)
		return nil
	}
	type structured struct {
		Time string          `json:"time"`
		Data json.RawMessage `json:"data"`
	}
	if strings.HasPrefix(h.Get("Content-Type"), "application/cloudevents-batch+json") {
		var events []structured
		if err := json.Unmarshal(body, &events); err != nil {
			return err
		}
		for _, e := range events {
			a.arrived(e.Time, e.Data)
		}
		return nil
	}
	var e structured
	if err := json.Unmarshal(body, &e); err != nil {
		return err
	}
	a.arrived(e.Time, e.Data)
	return nil
}

func (a *arrivals) delivered() int { return int(a.count.Load()) }

// result summarises the arrivals of the committed messages.
func (a *arrivals) result(committed int) DeliveryLag {
	var out DeliveryLag
	lags := a.lag.Load()
	if lags == nil {
		return out
	}
	all := make([]time.Duration, 0, a.count.Load())
	for i := range *lags {
		if v := (*lags)[i].Load(); v != 0 {
			all = append(all, time.Duration(v-1))
		}
	}
	slices.Sort(all)
	out.Delivered, out.Missing, out.Duplicates = len(all), max(0, committed-len(all)), int(a.duplicates.Load())
	out.Lag = summarize(all)
	return out
}

// filterProp is the double property the filtered query compares: one the source's mapping
// does not write.
const filterProp = 4 // "p4", which the filtered query's check decodes

// queryKinds names the query clients' kinds, in the order each client asks them.
var queryKinds = []string{"filtered page", "JOIN from $dtId", "3-hop MATCH", "COUNT() by model"}

// queryClients are the benchmark's query clients.
type queryClients struct {
	http     *http.Client
	url      string
	twins    int
	clients  int
	pageSize int
}

func newQueryClients(base string, cfg MixedConfig) *queryClients {
	return &queryClients{http: httpClient(cfg.Clients), url: base + "/query?api-version=" + apiVersion,
		twins: cfg.Twins, clients: cfg.Clients, pageSize: cfg.PageSize}
}

// run runs the clients for d, each asking the kinds in turn, and returns what they measured.
func (q *queryClients) run(ctx context.Context, d time.Duration) QueryRun {
	type clientRun struct {
		hists    []latencyHist
		failed   []int
		firstErr []string
	}
	runs := make([]clientRun, q.clients)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for c := range runs {
		cr := &runs[c]
		cr.hists, cr.failed, cr.firstErr = make([]latencyHist, len(queryKinds)), make([]int, len(queryKinds)), make([]string, len(queryKinds))
		wg.Go(func() {
			for i := c; time.Now().Before(end) && ctx.Err() == nil; i++ {
				kind := i % len(queryKinds)
				t0 := time.Now()
				err := q.ask(ctx, kind)
				lat := time.Since(t0)
				if err != nil {
					cr.failed[kind]++
					if cr.firstErr[kind] == "" {
						cr.firstErr[kind] = err.Error()
					}
					continue
				}
				cr.hists[kind].add(lat)
			}
		})
	}
	wg.Wait()
	out := QueryRun{Elapsed: time.Since(start), Kinds: make([]QueryKindResult, len(queryKinds))}
	for k, name := range queryKinds {
		var h latencyHist
		kr := QueryKindResult{Kind: name}
		for _, cr := range runs {
			h.merge(&cr.hists[k])
			kr.Failed += cr.failed[k]
			if kr.FirstError == "" {
				kr.FirstError = cr.firstErr[k]
			}
		}
		kr.Answered, kr.Latency = h.n, h.summary()
		out.Kinds[k] = kr
	}
	return out
}

// ask sends one query of kind about a random twin and checks its answer.
func (q *queryClients) ask(ctx context.Context, kind int) error {
	i := rand.N(q.twins)
	var (
		body  string
		check func([]byte) error
	)
	switch kind {
	case 0:
		// Twin i's filterProp is (i+4)/8 unless a calibration PATCH set it (the source sets
		// others): more than half the twins are above a bound under twins/16, so the page is
		// full.
		bound := rand.N(max(1, q.twins/16))
		body = fmt.Sprintf("SELECT * FROM DIGITALTWINS T WHERE T.%s > %d", propName(filterProp), bound)
		check = func(data []byte) error {
			// Only the compared property is decoded: the benchmark shares the server's
			// cores, and decoding whole twins would take them from it.
			var page struct {
				Value []struct {
					P4 *float64 `json:"p4"`
				} `json:"value"`
			}
			if err := json.Unmarshal(data, &page); err != nil {
				return err
			}
			if want := min(q.pageSize, q.twins/2); len(page.Value) < want {
				return fmt.Errorf("%d rows, want %d", len(page.Value), want)
			}
			for _, r := range page.Value {
				if r.P4 == nil || *r.P4 <= float64(bound) {
					return fmt.Errorf("a row with %s %v, want above %d", propName(filterProp), r.P4, bound)
				}
			}
			return nil
		}
	case 1:
		body = "SELECT T, R FROM DIGITALTWINS T JOIN R RELATED T.next WHERE T.$dtId = '" + twinID(i) + "'"
		check = checkTargetOf("R", twinID((i+1)%q.twins))
	case 2:
		body = "SELECT D FROM DIGITALTWINS MATCH (A)-[:next]->(B)-[:next]->(C)-[:next]->(D) WHERE A.$dtId = '" + twinID(i) + "'"
		check = checkTargetOf("D", twinID((i+3)%q.twins))
	default:
		body = "SELECT COUNT() FROM DIGITALTWINS WHERE IS_OF_MODEL('" + modelID + "')"
		check = func(data []byte) error {
			var page struct {
				Value []struct {
					Count int `json:"COUNT"`
				} `json:"value"`
			}
			if err := json.Unmarshal(data, &page); err != nil {
				return err
			}
			if len(page.Value) != 1 || page.Value[0].Count != q.twins {
				return fmt.Errorf("counted %+v, want %d", page.Value, q.twins)
			}
			return nil
		}
	}
	data, err := json.Marshal(map[string]string{"query": body})
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, q.url, bytes.NewReader(data))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	if kind == 0 {
		req.Header.Set("max-items-per-page", strconv.Itoa(q.pageSize))
	}
	resp, err := q.http.Do(req)
	if err != nil {
		return err
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %d: %.200s", resp.StatusCode, answer)
	}
	if err := check(answer); err != nil {
		return fmt.Errorf("%s: %w", body, err)
	}
	return nil
}

// checkTargetOf checks an answer of one row whose projection alias is the twin id.
func checkTargetOf(alias, id string) func([]byte) error {
	return func(data []byte) error {
		var page struct {
			Value []map[string]struct {
				ID string `json:"$dtId"`
			} `json:"value"`
		}
		if err := json.Unmarshal(data, &page); err != nil {
			return err
		}
		if len(page.Value) != 1 || page.Value[0][alias].ID != id {
			return fmt.Errorf("answered %+v, want %s the twin %s", page.Value, alias, id)
		}
		return nil
	}
}

// latencyHist counts latencies in buckets 1% wide, from 1µs to about 100s, so that a long
// run's memory does not grow with its requests.
type latencyHist struct {
	counts []uint32
	n      int
	max    time.Duration
}

const (
	histBuckets = 1900
	histGrowth  = 1.01
)

func histBucket(d time.Duration) int {
	if d <= time.Microsecond {
		return 0
	}
	return min(int(math.Log(float64(d)/float64(time.Microsecond))/math.Log(histGrowth))+1, histBuckets-1)
}

// histUpper returns the upper bound of bucket i.
func histUpper(i int) time.Duration {
	return time.Duration(float64(time.Microsecond) * math.Pow(histGrowth, float64(i)))
}

func (h *latencyHist) add(d time.Duration) {
	if h.counts == nil {
		h.counts = make([]uint32, histBuckets)
	}
	h.counts[histBucket(d)]++
	h.n++
	h.max = max(h.max, d)
}

func (h *latencyHist) merge(o *latencyHist) {
	if o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint32, histBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// quantile returns the upper bound of the bucket of the p-th percentile, ranked as
// percentile does, at most the largest value seen.
func (h *latencyHist) quantile(p float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := min(max(int(float64(h.n)*p/100+0.5), 1), h.n)
	seen := 0
	for i, c := range h.counts {
		seen += int(c)
		if seen >= rank {
			return min(histUpper(i), h.max)
		}
	}
	return h.max
}

func (h *latencyHist) summary() Latencies {
	return Latencies{P50: h.quantile(50), P99: h.quantile(99), Max: h.max}
}

// soakSampler takes the soak samples.
type soakSampler struct {
	base    time.Time
	srv     *server.Server
	logs    *logReader
	dataDir string
	stall   *stallMeter
}

// run takes a sample now and every interval until ctx ends, and returns them.
func (s soakSampler) run(ctx context.Context, interval time.Duration, logger *slog.Logger) []SoakSample {
	out := []SoakSample{s.sample(ctx, logger)}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return out
		case <-tick.C:
			out = append(out, s.sample(ctx, logger))
		}
	}
}

// sample takes one sample; what it cannot read it leaves zero, and logs why.
func (s soakSampler) sample(ctx context.Context, logger *slog.Logger) SoakSample {
	smp := SoakSample{At: time.Since(s.base), Goroutines: runtime.NumGoroutine(), Stall: s.stall.take()}
	var errs []error
	var err error
	if smp.RSS, err = vmRSS(os.Getpid()); err != nil {
		errs = append(errs, err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	smp.HeapInuse = ms.HeapInuse
	if fds, err := os.ReadDir("/proc/self/fd"); err == nil {
		smp.FDs = len(fds)
	} else {
		errs = append(errs, err)
	}
	if smp.DBBytes, err = dirSize(s.dataDir); err != nil {
		errs = append(errs, err)
	}
	if err := s.logs.read(ctx, s.srv.Log().Last(), &smp); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		logger.Warn("soak sample incomplete", slog.Any("err", err))
	}
	logger.Info("soak sample", slog.Duration("at", smp.At.Round(time.Second)), slog.Int64("rssMiB", smp.RSS>>20),
		slog.Int("goroutines", smp.Goroutines), slog.Int("fds", smp.FDs), slog.Int64("dataMiB", smp.DBBytes>>20),
		slog.Int64("logRecords", smp.LogRecords), slog.Int64("deadLetters", smp.DeadLetters), slog.Duration("stall", smp.Stall))
	return smp
}

// logReader reads the sizes of the store's change log, dead letters and de-duplication ids
// from its database, read-only, beside the server.
type logReader struct {
	db *sql.DB
}

func openLogReader(dataDir string) (*logReader, error) {
	u := url.URL{Scheme: "file", Path: filepath.Join(dataDir, sqlite.FileName), RawQuery: "mode=ro&_pragma=busy_timeout(5000)"}
	db, err := sql.Open("sqlite", u.String())
	if err != nil {
		return nil, fmt.Errorf("open the store read-only: %w", err)
	}
	db.SetMaxOpenConns(1)
	return &logReader{db: db}, nil
}

func (l *logReader) Close() error { return l.db.Close() }

// read fills in smp's log records (from the first kept to last), dead letters and
// de-duplication ids.
func (l *logReader) read(ctx context.Context, last uint64, smp *SoakSample) error {
	var first sql.NullInt64
	if err := l.db.QueryRowContext(ctx, "SELECT MIN(seq) FROM log").Scan(&first); err != nil {
		return fmt.Errorf("read the log's first record: %w", err)
	}
	if first.Valid && uint64(first.Int64) <= last {
		smp.LogRecords = int64(last) - first.Int64 + 1
	}
	if err := l.db.QueryRowContext(ctx, "SELECT COUNT(*), COALESCE(SUM(LENGTH(event)), 0) FROM dead_letters").Scan(&smp.DeadLetters, &smp.DeadLetterBytes); err != nil {
		return fmt.Errorf("count dead letters: %w", err)
	}
	if err := l.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM source_messages").Scan(&smp.DedupIDs); err != nil {
		return fmt.Errorf("count de-duplication ids: %w", err)
	}
	return nil
}
