package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	natsgo "github.com/nats-io/nats.go"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// DeliveryConfig configures the delivery latency benchmark. Zero fields take the defaults in
// brackets.
type DeliveryConfig struct {
	// Dir is where the temporary data directory goes [os.TempDir()].
	Dir string
	// Keep leaves the data directory in place instead of removing it.
	Keep bool
	// Twins is the number of twins patched at random [10,000].
	Twins int
	// Rate is the number of patches sent per second, whether or not earlier ones were
	// answered (an open loop) [5,000].
	Rate int
	// Duration is how long patches are sent [20s].
	Duration time.Duration
	// Conns is the number of keep-alive connections patches are sent on, each carrying one
	// request at a time; it bounds the patches in flight [128].
	Conns int
	// NATS is the URL of the NATS JetStream server the events go to [nats://127.0.0.1:4222].
	// Each run creates a stream of its own there and deletes it afterwards.
	NATS string
}

// Defaults of DeliveryConfig.
const (
	DefaultDeliveryRate     = 5000
	DefaultDeliveryDuration = 20 * time.Second
	DefaultDeliveryConns    = 128
	DefaultDeliveryNATS     = "nats://127.0.0.1:4222"
)

func (c DeliveryConfig) withDefaults() DeliveryConfig {
	if c.Dir == "" {
		c.Dir = os.TempDir()
	}
	if c.Twins <= 0 {
		c.Twins = 10_000
	}
	if c.Rate <= 0 {
		c.Rate = DefaultDeliveryRate
	}
	if c.Duration <= 0 {
		c.Duration = DefaultDeliveryDuration
	}
	if c.Conns <= 0 {
		c.Conns = DefaultDeliveryConns
	}
	if c.NATS == "" {
		c.NATS = DefaultDeliveryNATS
	}
	return c
}

// patches returns the number of patches a run sends: Rate per second for Duration, at least
// one.
func (c DeliveryConfig) patches() int {
	return max(1, int(int64(c.Rate)*int64(c.Duration)/int64(time.Second)))
}

// due returns when patch n is to be sent, counted from the start of the load.
func (c DeliveryConfig) due(n int) time.Duration {
	return time.Duration(int64(n) * int64(time.Second) / int64(c.Rate))
}

// lateAfter is how long after its due time a patch may be handed to a connection before it
// counts as late: the sender sleeps between patches, and on a busy machine wakes that much
// after its time.
const lateAfter = 5 * time.Millisecond

// drainTimeout bounds the wait, after the last acknowledgement, for the events still on their
// way; events that have not arrived by then count as missing.
const drainTimeout = 30 * time.Second

// Latencies summarises a set of durations.
type Latencies struct {
	P50, P99, Max time.Duration
}

// summarize returns the percentiles of sorted durations.
func summarize(sorted []time.Duration) Latencies {
	if len(sorted) == 0 {
		return Latencies{}
	}
	return Latencies{P50: percentile(sorted, 50), P99: percentile(sorted, 99), Max: sorted[len(sorted)-1]}
}

func (l Latencies) String() string {
	return fmt.Sprintf("p50 %v  p99 %v  max %v", l.P50.Round(10*time.Microsecond), l.P99.Round(10*time.Microsecond), l.Max.Round(10*time.Microsecond))
}

// DeliveryResult is what the delivery latency benchmark measured.
type DeliveryResult struct {
	Twins, Rate, Conns int
	// Elapsed is the time from the first patch's due time to the last acknowledgement.
	Elapsed time.Duration
	// Sent counts the patches sent; Patches those acknowledged with 204 and Failed those
	// answered otherwise. Late counts the patches handed to a connection more than lateAfter
	// after their due time, because every connection was busy or the sender woke late.
	Sent, Patches, Failed, Late int
	// Delivered counts the acknowledged patches whose events reached the subscriber, Missing
	// those whose events did not arrive within drainTimeout of the last acknowledgement.
	Delivered, Missing int
	// Ack is the latency of the PATCH requests, from writing the request to reading the
	// whole response.
	Ack Latencies
	// Delivery is the latency of the events, from their PATCH's acknowledgement (the response
	// read) to their arrival at a subscriber of the stream's subjects on the broker; an event
	// that arrives before its acknowledgement counts as 0.
	Delivery Latencies
	// CPU is the CPU time, user and system, this process (server, load generator and
	// subscriber, but not the broker) used while the patches were sent.
	CPU time.Duration
	// Store is what the store's write path did meanwhile: the patches and the relay's
	// cursor updates.
	Store store.Stats
}

// PatchesPerSecond returns acknowledged patches per second.
func (r DeliveryResult) PatchesPerSecond() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Patches) / r.Elapsed.Seconds()
}

// Table writes the result as a short table.
func (r DeliveryResult) Table(w io.Writer) error {
	return table(w, [][2]string{
		{"load", fmt.Sprintf("%d patches/s offered, open loop, to %d twins of %d properties over %d keep-alive connections", r.Rate, r.Twins, numProperties, r.Conns)},
		{"HTTP PATCH (fsync on)", fmt.Sprintf("%.0f patches/s acknowledged (%d of %d sent in %v, %d failed, %d late)", r.PatchesPerSecond(), r.Patches, r.Sent, r.Elapsed.Round(time.Millisecond), r.Failed, r.Late)},
		{"PATCH latency", r.Ack.String()},
		{"events at the broker", fmt.Sprintf("%d delivered, %d missing", r.Delivered, r.Missing)},
		{"ack to broker latency", r.Delivery.String()},
		{"group commit", groupCommit(r.Store)},
		{"CPU per patch", cpuPerPatch(r.CPU, r.Patches, "server, load generator and subscriber; not the broker")},
	})
}

// Delivery runs the delivery latency benchmark: an in-process server over a durable store in a
// fresh data directory, with a NATS JetStream endpoint on a stream of its own and a route for
// every twin update; Twins twins of the benchmark model; and an open-loop load of Rate PATCHes
// per second for Duration over Conns keep-alive connections. A subscriber of the stream's
// subjects timestamps each event's arrival. It reports how long after its acknowledgement each
// patch's event reached the broker.
func Delivery(ctx context.Context, cfg DeliveryConfig, logger *slog.Logger) (res DeliveryResult, err error) {
	cfg = cfg.withDefaults()
	res = DeliveryResult{Twins: cfg.Twins, Rate: cfg.Rate, Conns: cfg.Conns}
	dir, err := os.MkdirTemp(cfg.Dir, "twinflow-bench-delivery-")
	if err != nil {
		return res, fmt.Errorf("create bench directory: %w", err)
	}
	if !cfg.Keep {
		defer os.RemoveAll(dir)
	}

	run := newDeliveryRun(cfg)
	ns, err := openNATSStream(ctx, cfg.NATS, "twinflow bench subscriber", "twinflowbench", func(m *natsgo.Msg) { run.arrived(m.Data) })
	if err != nil {
		return res, err
	}
	defer func() { err = errors.Join(err, ns.close(ctx)) }()
	subject, stream := ns.subject, ns.name

	endpointDef, err := json.Marshal(map[string]any{
		"endpointType": "nats", "url": cfg.NATS, "subject": subject + ".{twinId}", "stream": stream,
	})
	if err != nil {
		return res, fmt.Errorf("encode endpoint: %w", err)
	}
	srv, stop, err := serve(ctx, config.Config{
		Server:    config.Server{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "server")},
		Endpoints: map[string]json.RawMessage{"bench": endpointDef},
		Routes:    map[string]config.Route{"updates": {EndpointName: "bench", Filter: "type = '" + event.TwinUpdate + "'"}},
	}, logger)
	if err != nil {
		return res, err
	}
	defer stopServer(stop, &err)
	if err := setUpTwins(ctx, srv.URL(), cfg.Twins, logger); err != nil {
		return res, err
	}

	logger.Info("patching", slog.Int("rate", cfg.Rate), slog.Int("conns", cfg.Conns), slog.Duration("duration", cfg.Duration))
	before := srv.StoreStats()
	cpu0, cpuOK := processCPU()
	if err := run.load(ctx, srv.Addr().String()); err != nil {
		return res, err
	}
	if cpu1, ok := processCPU(); ok && cpuOK {
		res.CPU = cpu1 - cpu0
	}
	res.Store = statsSince(before, srv.StoreStats())
	logger.Info("waiting for the last events")
	if err := run.drain(ctx, drainTimeout); err != nil {
		return res, err
	}
	run.fill(&res)
	return res, nil
}

// markerProp is the property whose value in each patch names the patch, so that its event
// can be told apart: the string markerPrefix followed by the patch's number.
const (
	markerProp   = 2
	markerPrefix = "delivery-"
)

// markerQuoted is what precedes a patch's number in its event's data.
var markerQuoted = []byte(`"` + markerPrefix)

// deliveryRun is one run's load and its measurements. Times are durations since base, on the
// monotonic clock.
type deliveryRun struct {
	cfg  DeliveryConfig
	base time.Time
	// origin is when the load started; patch n is due at origin+cfg.due(n). Only the sender
	// uses it.
	origin time.Duration
	// extras are the ops patches carry beside the marker, encoded once; patch n takes
	// extras[n%len(extras)].
	extras [][]byte

	// sent[n], ackLat[n] and acked[n] are written by the connection that sent patch n:
	// when it was written (0 until it is), how long its answer took, and when the answer was
	// read (0 when it was not a 204).
	sent, ackLat, acked []time.Duration
	// received[n] is when patch n's event first reached the subscriber, 0 until it does.
	received []atomic.Int64
	// late is written by the sender only.
	late int
}

func newDeliveryRun(cfg DeliveryConfig) *deliveryRun {
	n := cfg.patches()
	r := &deliveryRun{
		cfg: cfg, base: time.Now(),
		sent: make([]time.Duration, n), ackLat: make([]time.Duration, n), acked: make([]time.Duration, n),
		received: make([]atomic.Int64, n),
		extras:   make([][]byte, bodiesPerClient),
	}
	others := make([]int, 0, numProperties-1)
	for p := range numProperties {
		if p != markerProp {
			others = append(others, p)
		}
	}
	for i := range r.extras {
		var b []byte
		rand.Shuffle(len(others), func(a, b int) { others[a], others[b] = others[b], others[a] })
		for _, p := range others[:rand.N(3)] {
			b = appendReplace(append(b, ','), p, i)
		}
		r.extras[i] = b
	}
	return r
}

// body appends patch n's JSON Patch to dst: the marker op, then up to two others.
func (r *deliveryRun) body(dst []byte, n int) []byte {
	dst = append(dst, `[{"op":"replace","path":"/`...)
	dst = append(dst, propName(markerProp)...)
	dst = append(dst, `","value":"`+markerPrefix...)
	dst = strconv.AppendInt(dst, int64(n), 10)
	dst = append(dst, `"}`...)
	dst = append(dst, r.extras[n%len(r.extras)]...)
	return append(dst, ']')
}

// markerNumber returns the number that follows marker in data up to the next double quote,
// false if data carries no marker.
func markerNumber(data, marker []byte) (int, bool) {
	i := bytes.Index(data, marker)
	if i < 0 {
		return 0, false
	}
	rest := data[i+len(marker):]
	end := bytes.IndexByte(rest, '"')
	if end <= 0 {
		return 0, false
	}
	n, err := strconv.Atoi(string(rest[:end]))
	return n, err == nil && n >= 0
}

// arrived records the arrival of an event with data.
func (r *deliveryRun) arrived(data []byte) {
	at := int64(time.Since(r.base))
	if n, ok := markerNumber(data, markerQuoted); ok && n < len(r.received) {
		r.received[n].CompareAndSwap(0, max(at, 1))
	}
}

// load sends the patches to the server at addr, patch n cfg.due(n) after the load starts, each
// on the next free connection, and returns once every patch was answered. A transport error ends it with
// that error.
func (r *deliveryRun) load(ctx context.Context, addr string) error {
	ids := make([]string, r.cfg.Twins)
	for i := range ids {
		ids[i] = twinID(i)
	}
	conns := make([]*patchClient, r.cfg.Conns)
	for i := range conns {
		pc, err := dialPatchClient(ctx, addr)
		if err != nil {
			for _, pc := range conns[:i] {
				pc.conn.Close()
			}
			return err
		}
		conns[i] = pc
	}
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	// Ending ctx closes the connections, which ends every request in flight.
	stop := context.AfterFunc(ctx, func() {
		for _, pc := range conns {
			pc.conn.Close()
		}
	})
	defer stop()

	// jobs is unbuffered: handing a patch over succeeds only while a connection is free.
	jobs := make(chan int)
	var wg sync.WaitGroup
	for _, pc := range conns {
		wg.Go(func() {
			defer pc.conn.Close()
			var body []byte
			for n := range jobs {
				body = r.body(body[:0], n)
				t0 := time.Since(r.base)
				status, err := pc.patch(ids[rand.N(len(ids))], body)
				t1 := time.Since(r.base)
				if err != nil {
					cancel(fmt.Errorf("PATCH %d: %w", n, err))
					return
				}
				r.sent[n], r.ackLat[n] = t0, t1-t0
				if status == http.StatusNoContent {
					r.acked[n] = t1
				}
			}
		})
	}
	r.send(ctx, jobs)
	close(jobs)
	wg.Wait()
	return context.Cause(ctx)
}

// send hands the patches to the connections on schedule until all are sent or ctx ends.
func (r *deliveryRun) send(ctx context.Context, jobs chan<- int) {
	r.origin = time.Since(r.base)
	for n := range len(r.sent) {
		due := r.origin + r.cfg.due(n)
		if d := due - time.Since(r.base); d > 0 {
			time.Sleep(d)
		}
		select {
		case jobs <- n:
		default:
			select {
			case jobs <- n:
			case <-ctx.Done():
				return
			}
		}
		if time.Since(r.base)-due > lateAfter {
			r.late++
		}
	}
}

// drain waits until every acknowledged patch's event arrived, or timeout passed.
func (r *deliveryRun) drain(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	next := 0 // every patch before next has arrived or was not acknowledged
	for {
		for next < len(r.acked) && (r.acked[next] == 0 || r.received[next].Load() != 0) {
			next++
		}
		if next == len(r.acked) || time.Now().After(deadline) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// fill puts the run's measurements into res.
func (r *deliveryRun) fill(res *DeliveryResult) {
	ack := make([]time.Duration, 0, len(r.acked))
	lat := make([]time.Duration, 0, len(r.acked))
	var last time.Duration
	for n, at := range r.acked {
		if r.sent[n] == 0 {
			continue
		}
		res.Sent++
		if at == 0 {
			res.Failed++
			continue
		}
		res.Patches++
		last = max(last, at)
		ack = append(ack, r.ackLat[n])
		got := time.Duration(r.received[n].Load())
		if got == 0 {
			res.Missing++
			continue
		}
		res.Delivered++
		lat = append(lat, max(0, got-at))
	}
	res.Late = r.late
	res.Elapsed = max(0, last-r.origin)
	slices.Sort(ack)
	slices.Sort(lat)
	res.Ack, res.Delivery = summarize(ack), summarize(lat)
}
