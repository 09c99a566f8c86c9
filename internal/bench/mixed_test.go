package bench

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/testenv"
)

func TestGrowth(t *testing.T) {
	for _, tt := range []struct {
		name   string
		values []float64
		want   string
	}{
		{"none", nil, "too few samples"},
		{"two", []float64{1, 100}, "too few samples"},
		{"flat", []float64{5, 5, 5, 5, 5, 5}, "steady"},
		{"warm-up only", []float64{1, 50, 100, 100, 101, 99}, "steady"},
		{"within tolerance", []float64{100, 100, 100, 105, 100, 109}, "steady"},
		{"linear", []float64{10, 20, 30, 40, 50, 60}, "grows"},
		{"jump at the end", []float64{100, 100, 100, 100, 100, 130}, "grows"},
		{"small counts", []float64{0, 0, 1, 1, 1, 2}, "steady"},
		{"three", []float64{1, 10, 20}, "grows"},
	} {
		if got := Growth(tt.values); got != tt.want {
			t.Errorf("%s: Growth(%v) = %q, want %q", tt.name, tt.values, got, tt.want)
		}
	}
}

func TestLatencyHist(t *testing.T) {
	var h latencyHist
	if got := h.summary(); got != (Latencies{}) {
		t.Errorf("empty summary = %+v, want zero", got)
	}
	sorted := make([]time.Duration, 1000)
	for i := range sorted {
		sorted[i] = time.Duration(i+1) * 37 * time.Microsecond
		h.add(sorted[i])
	}
	var merged latencyHist
	merged.merge(&h)
	for _, p := range []float64{1, 50, 99, 100} {
		exact := percentile(sorted, p)
		got := merged.quantile(p)
		if got < exact || float64(got) > float64(exact)*histGrowth {
			t.Errorf("quantile(%v) = %v, want within 1%% above %v", p, got, exact)
		}
	}
	if merged.max != sorted[len(sorted)-1] || merged.n != len(sorted) {
		t.Errorf("max %v of %d, want %v of %d", merged.max, merged.n, sorted[len(sorted)-1], len(sorted))
	}
	if b := histBucket(time.Hour); b != histBuckets-1 {
		t.Errorf("an hour falls in bucket %d, want the last, %d", b, histBuckets-1)
	}
}

func TestArrivalsHTTP(t *testing.T) {
	var a arrivals
	a.reset(10)
	at := time.Now().UTC().Format(time.RFC3339Nano)
	binary := http.Header{"Ce-Time": {at}}
	if err := a.arrivedHTTP(binary, []byte(`{"patch":[{"value":"ingest-1"}]}`)); err != nil {
		t.Fatal(err)
	}
	structured := http.Header{"Content-Type": {"application/cloudevents+json; charset=UTF-8"}}
	if err := a.arrivedHTTP(structured, []byte(`{"time":"`+at+`","data":{"patch":[{"value":"ingest-2"}]}}`)); err != nil {
		t.Fatal(err)
	}
	batched := http.Header{"Content-Type": {"application/cloudevents-batch+json; charset=UTF-8"}}
	body := `[{"time":"` + at + `","data":{"patch":[{"value":"ingest-3"}]}},{"time":"` + at + `","data":{"patch":[{"value":"ingest-1"}]}}]`
	if err := a.arrivedHTTP(batched, []byte(body)); err != nil {
		t.Fatal(err)
	}
	if err := a.arrivedHTTP(structured, []byte(`not json`)); err == nil {
		t.Error("a body that is not JSON was accepted")
	}
	got := a.result(4)
	if got.Delivered != 3 || got.Missing != 1 || got.Duplicates != 1 {
		t.Errorf("result = %+v, want 3 delivered, 1 missing, 1 duplicate", got)
	}
}

// TestMixed runs the mixed benchmark at a tiny size against the machine's NATS server (a
// prerequisite, see testenv.NATS): every committed message's event must reach both
// endpoints, every query must be answered right, idle and under load, and the soak samples
// must be there.
func TestMixed(t *testing.T) {
	natsURL := testenv.NATS(t)
	dir := t.TempDir()
	res, err := Mixed(t.Context(), MixedConfig{
		Dir: dir, Twins: 50, Calibration: 300 * time.Millisecond, CalibrationClients: 4, Clients: 2,
		Idle: 300 * time.Millisecond, Duration: 1500 * time.Millisecond, Sample: 400 * time.Millisecond,
		Batch: 5, Conns: 2, NATS: natsURL,
		LoadCommand: func(ctx context.Context, args []string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), patchLoadEnv+"="+strings.Join(args, " "))
			return cmd
		},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Mixed: %v", err)
	}
	if res.Calibration == nil || res.Calibration.Patches == 0 || res.Rate != max(1, int(res.Calibration.PerSecond()/2)) {
		t.Errorf("calibration %+v and rate %d: want patches and half their rate", res.Calibration, res.Rate)
	}
	in := res.Ingest
	if in.Sent == 0 || in.Committed != in.Sent || in.Missing != 0 {
		t.Errorf("ingest: %d sent, %d committed, %d missing; want all committed", in.Sent, in.Committed, in.Missing)
	}
	for name, d := range map[string]DeliveryLag{"nats": res.NATS, "webhook": res.Webhook} {
		if d.Delivered != in.Committed || d.Missing != 0 {
			t.Errorf("%s: %d delivered, %d missing; want every one of %d", name, d.Delivered, d.Missing, in.Committed)
		}
		if d.Lag.P50 > d.Lag.P99 || d.Lag.P99 > d.Lag.Max {
			t.Errorf("%s: lag %+v not ordered", name, d.Lag)
		}
	}
	if res.History.Samples == 0 {
		t.Error("no history lag samples")
	}
	for phase, run := range map[string]QueryRun{"idle": res.Idle, "loaded": res.Loaded} {
		if len(run.Kinds) != len(queryKinds) {
			t.Fatalf("%s: %d query kinds, want %d", phase, len(run.Kinds), len(queryKinds))
		}
		for _, k := range run.Kinds {
			if k.Answered == 0 || k.Failed != 0 {
				t.Errorf("%s %s: %d answered, %d failed (%s); want answers and no failure", phase, k.Kind, k.Answered, k.Failed, k.FirstError)
			}
		}
	}
	if len(res.Samples) < 3 {
		t.Fatalf("%d soak samples, want at least 3", len(res.Samples))
	}
	for _, s := range res.Samples {
		if s.RSS <= 0 || s.HeapInuse == 0 || s.Goroutines <= 0 || s.FDs <= 0 || s.DBBytes <= 0 {
			t.Errorf("sample %+v lacks a resource", s)
		}
	}
	if last := res.Samples[len(res.Samples)-1]; last.LogRecords < int64(in.Committed) || last.DedupIDs != int64(in.Committed) || last.DeadLetters != 0 {
		t.Errorf("last sample %+v: want at least %d log records, as many dedup ids, no dead letters", last, in.Committed)
	}
	var out bytes.Buffer
	if err := res.Table(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"ingest latency", "NATS JetStream", "webhook (batched)", "history lag", "3-hop MATCH loaded",
		"goal: query p99 < 10ms", "soak: a sample every", "dead letters       steady", "stall"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the benchmark left %d entries in %s", len(left), dir)
	}
}
