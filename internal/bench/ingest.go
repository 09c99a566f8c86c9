package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/server"
	"github.com/twinflow/twinflow/internal/store"
)

// IngestConfig configures the ingest benchmark. Zero fields take the defaults in brackets.
type IngestConfig struct {
	// Dir is where the temporary data directory goes [os.TempDir()].
	Dir string
	// Keep leaves the data directory in place instead of removing it.
	Keep bool
	// Kinds are the source kinds measured, in order: mqtt, kafka, http [all three].
	Kinds []string
	// Devices is the number of devices, each with a twin of its own [1,000].
	Devices int
	// Duration is how long messages are published as fast as they are committed, for each
	// kind, and how long the HTTP PATCH baseline runs [20s].
	Duration time.Duration
	// Rate is the messages per second of the paced run that measures latency [5,000].
	Rate int
	// PacedDuration is how long the paced run publishes [20s].
	PacedDuration time.Duration
	// Window bounds the messages published and not yet committed while publishing as fast as
	// they are committed. It stays below Mosquitto's default max_queued_messages (1,000),
	// beyond which the broker drops the QoS 1 messages of a subscriber that falls behind
	// [500].
	Window int
	// Batch is the number of messages in each NDJSON request of the http kind [50].
	Batch int
	// Clients is the number of keep-alive clients of the HTTP PATCH baseline [64].
	Clients int
	// MQTT is the URL of the MQTT broker [tcp://127.0.0.1:1883]. Kafka is an in-process
	// kfake cluster.
	MQTT string
	// LoadCommand runs the PATCH load generator in a process of its own, as for PatchConfig.
	// It is required.
	LoadCommand func(ctx context.Context, args []string) *exec.Cmd
}

// Ingest kinds.
const (
	IngestMQTT  = "mqtt"
	IngestKafka = "kafka"
	IngestHTTP  = "http"
)

// Defaults of IngestConfig.
const (
	DefaultIngestDuration = 20 * time.Second
	DefaultIngestRate     = 5000
	DefaultIngestMQTT     = "tcp://127.0.0.1:1883"
)

func (c IngestConfig) withDefaults() IngestConfig {
	if c.Dir == "" {
		c.Dir = os.TempDir()
	}
	if len(c.Kinds) == 0 {
		c.Kinds = []string{IngestMQTT, IngestKafka, IngestHTTP}
	}
	if c.Devices <= 0 {
		c.Devices = 1000
	}
	if c.Duration <= 0 {
		c.Duration = DefaultIngestDuration
	}
	if c.Rate <= 0 {
		c.Rate = DefaultIngestRate
	}
	if c.PacedDuration <= 0 {
		c.PacedDuration = DefaultIngestDuration
	}
	if c.Window <= 0 {
		c.Window = 500
	}
	if c.Batch <= 0 {
		c.Batch = 50
	}
	if c.Clients <= 0 {
		c.Clients = 64
	}
	if c.MQTT == "" {
		c.MQTT = DefaultIngestMQTT
	}
	return c
}

// IngestResult is what the ingest benchmark measured.
type IngestResult struct {
	Devices, Rate, Window, Batch int
	// Baseline is what `bench patch`'s load generator measured against the same server and
	// twins, in the same run, before the sources.
	Baseline PatchLoad
	Kinds    []IngestKindResult
}

// IngestKindResult is what one source kind reached.
type IngestKindResult struct {
	Kind string
	// Max is the run publishing as fast as messages are committed (at most Window, or for
	// http Window rounded to whole requests, awaiting commit); Paced the open-loop run at Rate.
	Max, Paced IngestPhase
}

// IngestPhase is one run of messages through a source.
type IngestPhase struct {
	// Sent counts the messages published, Committed those whose twin change was committed
	// and Missing those that were not within drainTimeout of the end. Late counts, in a
	// paced run, the messages published more than lateAfter after their due time.
	Sent, Committed, Missing, Late int
	// Elapsed runs from the first publish to the last commit.
	Elapsed time.Duration
	// Latency runs from each message's publish (for http, the start of the request that
	// carries it) to the commit of its change, when a follower of the change log sees it.
	Latency Latencies
	// CPU is the CPU time this process (server, publishers, change-log follower, and for
	// kafka the kfake broker; not Mosquitto) used meanwhile.
	CPU time.Duration
	// Store is what the store's write path did meanwhile.
	Store store.Stats
}

// PerSecond returns committed messages per second.
func (p IngestPhase) PerSecond() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Committed) / p.Elapsed.Seconds()
}

// Table writes the result as a short table.
func (r IngestResult) Table(w io.Writer) error {
	base := r.Baseline.PerSecond()
	rows := [][2]string{
		{"devices", fmt.Sprintf("%d twins of %d properties; each message patches two of its device's twin through a CEL mapping", r.Devices, numProperties)},
		{"HTTP PATCH baseline", fmt.Sprintf("%.0f patches/s acknowledged (bench patch's load generator, same server and twins: %d in %v, %d failed; p99 %v)",
			base, r.Baseline.Patches, r.Baseline.Elapsed.Round(time.Millisecond), r.Baseline.Failed, r.Baseline.P99.Round(time.Microsecond))},
	}
	for _, k := range r.Kinds {
		ratio := "n/a"
		if base > 0 {
			ratio = fmt.Sprintf("%.1f%% of the HTTP PATCH baseline", 100*k.Max.PerSecond()/base)
		}
		rows = append(rows,
			[2]string{k.Kind + " max", fmt.Sprintf("%.0f messages/s committed, %s (%s)", k.Max.PerSecond(), ratio, k.Max.counts())},
			[2]string{k.Kind + " max latency", k.Max.Latency.String()},
			[2]string{k.Kind + " max group commit", groupCommit(k.Max.Store)},
			[2]string{k.Kind + " max CPU", cpuPer(k.Max.CPU, k.Max.Committed, "messages", "this process: server, publishers, follower"+kfakeNote(k.Kind))},
			[2]string{fmt.Sprintf("%s at %d/s", k.Kind, r.Rate), fmt.Sprintf("%.0f messages/s committed (%s)", k.Paced.PerSecond(), k.Paced.counts())},
			[2]string{fmt.Sprintf("%s at %d/s latency", k.Kind, r.Rate), k.Paced.Latency.String() + "  (publish to commit)"},
		)
	}
	return table(w, rows)
}

func kfakeNote(kind string) string {
	if kind == IngestKafka {
		return ", and the kfake broker"
	}
	return ""
}

func (p IngestPhase) counts() string {
	return fmt.Sprintf("%d of %d sent in %v, %d missing, %d late", p.Committed, p.Sent, p.Elapsed.Round(time.Millisecond), p.Missing, p.Late)
}

// Ingest runs the ingest benchmark. It starts an in-process server over a durable store in a
// fresh data directory with Devices twins of the benchmark model, and measures, in the same
// run:
//
//   - the HTTP PATCH baseline: bench patch's load generator, in a process of its own, against
//     the same twins for Duration;
//   - for each kind, a source of that kind and a mapping that patches a message's device's
//     twin, then messages from every device published as fast as they are committed, up to
//     Window awaiting commit, for Duration; then messages published open-loop at Rate for
//     PacedDuration.
//
// Commits are seen by a follower of the server's change log, which tells each message's
// change by a marker the mapping writes. MQTT messages go through the broker at cfg.MQTT, on
// IoT Hub device-to-cloud topics whose property bag carries the message id; Kafka messages
// through an in-process kfake cluster, keyed by device; http messages in NDJSON requests of
// Batch messages, each with a messageId.
func Ingest(ctx context.Context, cfg IngestConfig, logger *slog.Logger) (res IngestResult, err error) {
	cfg = cfg.withDefaults()
	res = IngestResult{Devices: cfg.Devices, Rate: cfg.Rate, Window: cfg.Window, Batch: cfg.Batch}
	if cfg.LoadCommand == nil {
		return res, errors.New("bench ingest: a load command is required")
	}
	for _, k := range cfg.Kinds {
		if k != IngestMQTT && k != IngestKafka && k != IngestHTTP {
			return res, fmt.Errorf("bench ingest: unknown kind %q (want mqtt, kafka or http)", k)
		}
	}
	dir, err := os.MkdirTemp(cfg.Dir, "twinflow-bench-ingest-")
	if err != nil {
		return res, fmt.Errorf("create bench directory: %w", err)
	}
	if !cfg.Keep {
		defer os.RemoveAll(dir)
	}
	srv, stop, err := serve(ctx, config.Config{Server: config.Server{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "server")}}, logger)
	if err != nil {
		return res, err
	}
	defer stopServer(stop, &err)
	if err := setUpTwins(ctx, srv.URL(), cfg.Devices, logger); err != nil {
		return res, err
	}

	logger.Info("HTTP PATCH baseline", slog.Int("clients", cfg.Clients), slog.Duration("duration", cfg.Duration))
	res.Baseline, err = runLoadProcess(ctx, PatchConfig{Twins: cfg.Devices, Clients: cfg.Clients, Duration: cfg.Duration, LoadCommand: cfg.LoadCommand}, srv.Addr().String())
	if err != nil {
		return res, fmt.Errorf("HTTP PATCH baseline: %w", err)
	}

	api := apiClient{http: httpClient(4), base: srv.URL()}
	defer api.http.CloseIdleConnections()
	for _, kind := range cfg.Kinds {
		kr, err := ingestKind(ctx, cfg, kind, srv, api, logger.With(slog.String("kind", kind)))
		if err != nil {
			return res, fmt.Errorf("%s: %w", kind, err)
		}
		res.Kinds = append(res.Kinds, kr)
	}
	return res, nil
}

// ingestMarker precedes a message's number in the value the mapping writes, so that the
// follower tells its change.
var ingestMarker = []byte(`"ingest-`)

// ingestMapping returns the benchmark mapping of source: the device's twin gets the
// message's number as marker and its temperature.
func ingestMapping(source string) map[string]any {
	return map[string]any{
		"source": source,
		"twinId": "message.body.device",
		"patch": map[string]string{
			"/" + propName(markerProp): `"ingest-" + string(int(message.body.n))`,
			"/" + propName(0):          "message.body.temperature",
		},
	}
}

// ingestBody appends message n's JSON body to dst: its device's twin id, its number and a
// reading; with id, also its messageId.
func ingestBody(dst []byte, n, devices int, id bool) []byte {
	dst = append(dst, `{"device":"`...)
	dst = append(dst, twinID(n%devices)...)
	dst = append(dst, `","n":`...)
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, `,"temperature":`...)
	dst = strconv.AppendFloat(dst, 15+float64(n%200)/10, 'f', 1, 64)
	if id {
		dst = append(dst, `,"messageId":"m`...)
		dst = strconv.AppendInt(dst, int64(n), 10)
		dst = append(dst, '"')
	}
	return append(dst, '}')
}

// publisher sends benchmark messages to one source kind.
type publisher interface {
	// source returns the source's definition for PUT /sources.
	source() map[string]any
	// chunk is the number of messages each send carries.
	chunk() int
	// workers is the number of goroutines that send concurrently.
	workers() int
	// send publishes messages ns (chunk of them, fewer at the end). It may return before the
	// broker has them; errors it learns of later it returns from a later send or from close.
	send(ctx context.Context, worker int, ns []int) error
	// close waits for what was sent and releases the publisher's resources.
	close(ctx context.Context) error
}

// ingestKind creates a source of kind and its mapping, runs the max and paced phases
// through it, and deletes them.
func ingestKind(ctx context.Context, cfg IngestConfig, kind string, srv *server.Server, api apiClient, logger *slog.Logger) (res IngestKindResult, err error) {
	res.Kind = kind
	name := "bench-" + kind
	var pub publisher
	switch kind {
	case IngestMQTT:
		pub, err = newMQTTPublisher(ctx, cfg)
	case IngestKafka:
		pub, err = newKafkaPublisher(ctx, cfg, logger)
	case IngestHTTP:
		pub = newHTTPPublisher(cfg, srv.URL()+"/sources/"+name+"/messages?api-version="+apiVersion)
	}
	if err != nil {
		return res, err
	}
	defer func() {
		if cerr := pub.close(context.WithoutCancel(ctx)); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close publisher: %w", cerr))
		}
	}()
	if err := api.put(ctx, "/sources/"+name, pub.source()); err != nil {
		return res, err
	}
	defer func() {
		if derr := api.remove(context.WithoutCancel(ctx), "/sources/"+name); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	if err := api.put(ctx, "/mappings/"+name, ingestMapping(name)); err != nil {
		return res, err
	}
	defer func() {
		if derr := api.remove(context.WithoutCancel(ctx), "/mappings/"+name); derr != nil {
			err = errors.Join(err, derr)
		}
	}()
	if err := api.waitRunning(ctx, "/sources/"+name, time.Minute); err != nil {
		return res, err
	}
	// Messages are numbered across both phases, so that each marker is new to its twin.
	first := 0
	logger.Info("publishing as fast as committed", slog.Int("window", cfg.Window), slog.Duration("duration", cfg.Duration))
	if res.Max, first, err = ingestPhase(ctx, srv, pub, ingestSchedule{first: first, duration: cfg.Duration, window: cfg.Window}); err != nil {
		return res, err
	}
	logger.Info("publishing at a steady rate", slog.Int("rate", cfg.Rate), slog.Duration("duration", cfg.PacedDuration))
	if res.Paced, _, err = ingestPhase(ctx, srv, pub, ingestSchedule{first: first, duration: cfg.PacedDuration, rate: cfg.Rate}); err != nil {
		return res, err
	}
	return res, nil
}

// ingestSchedule says which messages a phase publishes when: numbers from first on, for
// duration, either as fast as they are committed with up to window awaiting commit, or
// open-loop at rate per second.
type ingestSchedule struct {
	first    int
	duration time.Duration
	window   int
	rate     int
}

// capacity returns how many messages the phase can publish at most.
func (s ingestSchedule) capacity() int {
	if s.rate > 0 {
		return max(1, int(int64(s.rate)*int64(s.duration)/int64(time.Second)))
	}
	// Well above what this store commits on any machine it runs on.
	return max(1, int(s.duration.Seconds()*200_000))
}

// ingestRun is one phase's messages and their times, as durations since base.
type ingestRun struct {
	sched ingestSchedule
	base  time.Time
	// sent[i] is when message first+i was published, written by the worker that sent it;
	// committed[i] when the follower saw its change, 0 until it does.
	sent      []time.Duration
	committed []atomic.Int64
	// window holds a token for each message published and not yet committed, in a run
	// limited by a window; nil otherwise.
	window chan struct{}
	// published is the number of messages handed to workers, written by the scheduler.
	published int
	late      int
}

// ingestPhase publishes one phase's messages through pub and measures them. It returns the
// measurements and the number after the last message it published.
func ingestPhase(ctx context.Context, srv *server.Server, pub publisher, sched ingestSchedule) (IngestPhase, int, error) {
	var phase IngestPhase
	r := &ingestRun{sched: sched, base: time.Now()}
	n := sched.capacity()
	r.sent, r.committed = make([]time.Duration, n), make([]atomic.Int64, n)
	if sched.window > 0 {
		r.window = make(chan struct{}, sched.window)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	log := srv.Log()
	followed := make(chan error, 1)
	followCtx, stopFollowing := context.WithCancel(ctx)
	defer stopFollowing()
	go func() { followed <- r.follow(followCtx, log, log.Last()) }()

	before := srv.StoreStats()
	cpu0, cpuOK := processCPU()
	jobs := make(chan []int)
	var wg sync.WaitGroup
	for w := range pub.workers() {
		wg.Go(func() {
			for ns := range jobs {
				now := time.Since(r.base)
				for _, m := range ns {
					r.sent[m-sched.first] = now
				}
				if err := pub.send(ctx, w, ns); err != nil {
					cancel(err)
					// Drain, so that the scheduler does not wait on a worker gone.
					for range jobs {
					}
					return
				}
			}
		})
	}
	r.schedule(ctx, jobs, pub.chunk())
	close(jobs)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return phase, 0, fmt.Errorf("publish: %w", err)
	}
	if err := r.drain(ctx, drainTimeout); err != nil {
		return phase, 0, err
	}
	if cpu1, ok := processCPU(); ok && cpuOK {
		phase.CPU = cpu1 - cpu0
	}
	phase.Store = statsSince(before, srv.StoreStats())
	stopFollowing()
	if err := <-followed; err != nil {
		return phase, 0, err
	}
	r.fill(&phase)
	return phase, sched.first + r.published, nil
}

// schedule hands messages to the workers in chunks: in a windowed run as fast as the window
// lets, otherwise each chunk at its first message's due time, until the phase's duration has
// passed or ctx ends.
func (r *ingestRun) schedule(ctx context.Context, jobs chan<- []int, chunk int) {
	origin := time.Since(r.base)
	// A windowed run ends after its duration even while the window is full.
	over := time.NewTimer(r.sched.duration)
	defer over.Stop()
	for r.published < len(r.sent) {
		size := min(chunk, len(r.sent)-r.published)
		if r.sched.rate > 0 {
			due := origin + time.Duration(int64(r.published)*int64(time.Second)/int64(r.sched.rate))
			if d := due - time.Since(r.base); d > 0 {
				time.Sleep(d)
			}
			if time.Since(r.base)-due > lateAfter {
				r.late += size
			}
		} else {
			if time.Since(r.base)-origin >= r.sched.duration {
				return
			}
			for range size {
				select {
				case r.window <- struct{}{}:
				case <-over.C:
					return
				case <-ctx.Done():
					return
				}
			}
		}
		ns := make([]int, size)
		for i := range ns {
			ns[i] = r.sched.first + r.published + i
		}
		select {
		case jobs <- ns:
		case <-ctx.Done():
			return
		}
		r.published += size
	}
}

// follow reads the change log after seq until ctx ends, and notes the commit of each
// message of the run whose marker it finds in a Twin.Update.
func (r *ingestRun) follow(ctx context.Context, log store.Log, after uint64) error {
	for {
		recs, err := log.Read(ctx, after, 4096)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("follow the change log: %w", err)
		}
		at := int64(max(time.Since(r.base), 1))
		for _, rec := range recs {
			after = rec.Seq
			if rec.Event.Type != event.TwinUpdate {
				continue
			}
			n, ok := markerNumber(rec.Event.Data, ingestMarker)
			if i := n - r.sched.first; ok && i >= 0 && i < len(r.committed) && r.committed[i].CompareAndSwap(0, at) && r.window != nil {
				<-r.window
			}
		}
	}
}

// drain waits until every published message was committed, or timeout passed.
func (r *ingestRun) drain(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	next := 0 // every message before next was committed
	for {
		for next < r.published && r.committed[next].Load() != 0 {
			next++
		}
		if next == r.published || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// fill puts the phase's measurements into p.
func (r *ingestRun) fill(p *IngestPhase) {
	lat := make([]time.Duration, 0, r.published)
	var first, last time.Duration
	for i := range r.published {
		p.Sent++
		if i == 0 {
			first = r.sent[i]
		}
		at := time.Duration(r.committed[i].Load())
		if at == 0 {
			p.Missing++
			continue
		}
		p.Committed++
		last = max(last, at)
		lat = append(lat, max(0, at-r.sent[i]))
	}
	p.Late = r.late
	p.Elapsed = max(0, last-first)
	slices.Sort(lat)
	p.Latency = summarize(lat)
}

// apiClient makes the benchmark's calls to the server's API.
type apiClient struct {
	http *http.Client
	base string
}

func (c apiClient) url(path string) string { return c.base + path + "?api-version=" + apiVersion }

// put PUTs body as JSON to path, which must answer 200 or 201.
func (c apiClient) put(ctx context.Context, path string, body any) error {
	data, err := json.Marshal(body)
	if err != nil {
		return fmt.Errorf("encode %s: %w", path, err)
	}
	status, err := send(ctx, c.http, http.MethodPut, c.url(path), "application/json", data)
	if err != nil {
		return fmt.Errorf("PUT %s: %w", path, err)
	}
	if status != http.StatusOK && status != http.StatusCreated {
		return fmt.Errorf("PUT %s: status %d", path, status)
	}
	return nil
}

// remove DELETEs path, which must answer 204.
func (c apiClient) remove(ctx context.Context, path string) error {
	return sendOK(ctx, c.http, http.MethodDelete, c.url(path), "", nil, http.StatusNoContent)
}

// get GETs path, which must answer 200, and decodes its JSON body into v.
func (c apiClient) get(ctx context.Context, path string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.url(path), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", path, resp.StatusCode)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		return fmt.Errorf("GET %s: %w", path, err)
	}
	return nil
}

// waitRunning polls the resource at path (a source or a detector) until its status says
// running, or timeout passes.
func (c apiClient) waitRunning(ctx context.Context, path string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		var res struct {
			Status struct {
				State     string `json:"state"`
				LastError string `json:"lastError"`
			} `json:"status"`
		}
		if err := c.get(ctx, path, &res); err != nil {
			return err
		}
		if res.Status.State == "running" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not running after %v: state %q, last error %q", path, timeout, res.Status.State, res.Status.LastError)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// httpPublisher pushes messages to an http source in NDJSON requests.
type httpPublisher struct {
	client  *http.Client
	url     string
	devices int
	batch   int
	conns   int
}

func newHTTPPublisher(cfg IngestConfig, url string) *httpPublisher {
	// Enough requests in flight to fill the window.
	conns := max(1, cfg.Window/cfg.Batch)
	return &httpPublisher{client: httpClient(conns), url: url, devices: cfg.Devices, batch: cfg.Batch, conns: conns}
}

func (p *httpPublisher) source() map[string]any { return map[string]any{"sourceType": "http"} }
func (p *httpPublisher) chunk() int             { return p.batch }
func (p *httpPublisher) workers() int           { return p.conns }

func (p *httpPublisher) send(ctx context.Context, _ int, ns []int) error {
	var body []byte
	for _, n := range ns {
		body = append(ingestBody(body, n, p.devices, true), '\n')
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/x-ndjson")
	resp, err := p.client.Do(req)
	if err != nil {
		return fmt.Errorf("push messages: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("push messages: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("push messages: status %d: %s", resp.StatusCode, data)
	}
	if bytes.Count(data, []byte(`"applied"`)) != len(ns) {
		return fmt.Errorf("push messages: not every message was applied: %s", strings.TrimSpace(string(data)))
	}
	return nil
}

func (p *httpPublisher) close(context.Context) error {
	p.client.CloseIdleConnections()
	return nil
}
