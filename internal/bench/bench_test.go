package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinflow/twinflow/test/process"
)

func TestPercentile(t *testing.T) {
	ms := func(ns ...int) []time.Duration {
		d := make([]time.Duration, len(ns))
		for i, n := range ns {
			d[i] = time.Duration(n) * time.Millisecond
		}
		return d
	}
	hundred := make([]int, 100)
	for i := range hundred {
		hundred[i] = i + 1
	}
	for _, tt := range []struct {
		name   string
		sorted []time.Duration
		p      float64
		want   time.Duration
	}{
		{"empty", nil, 50, 0},
		{"one", ms(7), 99, 7 * time.Millisecond},
		{"median of four", ms(1, 2, 3, 4), 50, 2 * time.Millisecond},
		{"p99 of 100", ms(hundred...), 99, 99 * time.Millisecond},
		{"p100 is the max", ms(hundred...), 100, 100 * time.Millisecond},
		{"p1 of 100", ms(hundred...), 1, time.Millisecond},
	} {
		if got := percentile(tt.sorted, tt.p); got != tt.want {
			t.Errorf("%s: percentile(%v) = %v, want %v", tt.name, tt.p, got, tt.want)
		}
	}
}

func TestPatchBody(t *testing.T) {
	for k := 1; k <= 3; k++ {
		for n := range 20 {
			body := patchBody(k, n)
			var ops []struct {
				Op    string `json:"op"`
				Path  string `json:"path"`
				Value any    `json:"value"`
			}
			if err := json.Unmarshal(body, &ops); err != nil {
				t.Fatalf("patchBody(%d, %d) = %s: %v", k, n, body, err)
			}
			if len(ops) != k {
				t.Fatalf("patchBody(%d, %d) has %d ops: %s", k, n, len(ops), body)
			}
			seen := map[string]bool{}
			for _, op := range ops {
				if op.Op != "replace" || seen[op.Path] || !strings.HasPrefix(op.Path, "/p") {
					t.Fatalf("patchBody(%d, %d): bad or repeated op %+v in %s", k, n, op, body)
				}
				seen[op.Path] = true
				i, err := strconv.Atoi(op.Path[2:])
				if err != nil || i < 0 || i >= numProperties {
					t.Fatalf("patchBody(%d, %d): path %s names no property", k, n, op.Path)
				}
				want, _ := json.Marshal(propValue(i, n))
				got, _ := json.Marshal(op.Value)
				if !bytes.Equal(got, want) {
					t.Errorf("patchBody(%d, %d): %s = %s, want %s", k, n, op.Path, got, want)
				}
			}
		}
	}
}

// TestPatch runs the PATCH benchmark at a tiny size, with the load generator in a process
// of its own (this test binary, see TestMain): it must acknowledge patches, fail none,
// measure the server's and the load generator's CPU apart and the ceiling, and clean up after
// itself.
// testPatchConfig is a short PATCH benchmark in dir, its load generator this test binary.
func testPatchConfig(dir string) PatchConfig {
	return PatchConfig{
		Dir: dir, Twins: 40, Clients: 4, Duration: 300 * time.Millisecond, CeilingDuration: 200 * time.Millisecond,
		LoadCommand: func(ctx context.Context, args []string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), patchLoadEnv+"="+strings.Join(args, " "))
			return cmd
		},
	}
}

func TestPatch(t *testing.T) {
	dir := t.TempDir()
	res, err := Patch(t.Context(), testPatchConfig(dir), slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Patch: %v", err)
	}
	l := res.Load
	if l.Patches == 0 || l.Failed != 0 {
		t.Errorf("%d patches acknowledged, %d failed; want some and none", l.Patches, l.Failed)
	}
	if l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.Max {
		t.Errorf("latencies p50 %v p99 %v max %v are not ordered", l.P50, l.P99, l.Max)
	}
	if c := res.Ceiling; c.Writes == 0 || c.Batch != 4 || c.Writes != 4*c.Transactions {
		t.Errorf("ceiling wrote %d patches in %d transactions of %d; want whole transactions of 4", c.Writes, c.Transactions, c.Batch)
	}
	var out bytes.Buffer
	if err := res.Table(&out); err != nil {
		t.Fatal(err)
	}
	if st := res.Store; st.Updates < uint64(l.Patches) || st.Transactions == 0 || st.Syncs == 0 {
		t.Errorf("store stats %+v: want at least the %d acknowledged patches, in some transactions and fsyncs", st, l.Patches)
	}
	if _, ok := processCPU(); ok && (res.ServerCPU <= 0 || l.CPU <= 0 || res.CeilingCPU <= 0) {
		t.Errorf("CPU %v in the server, %v in the load generator, %v for the ceiling; want each measured", res.ServerCPU, l.CPU, res.CeilingCPU)
	}
	if !regexp.MustCompile(`(?m)^  HTTP PATCH \(fsync on\) +[0-9]+ patches/s acknowledged`).MatchString(out.String()) {
		t.Errorf("table lacks the summary line scripts read:\n%s", out.String())
	}
	for _, want := range []string{"p50", "updates per commit", "server CPU per patch", "load CPU per patch", "SQLite ceiling", "HTTP / ceiling"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the benchmark left %d entries in %s", len(left), dir)
	}
}

func TestPatchDetector(t *testing.T) {
	cfg := testPatchConfig(t.TempDir())
	cfg.Detector = true
	res, err := Patch(t.Context(), cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Patch: %v", err)
	}
	d := res.Detector
	if d == nil {
		t.Fatal("no run with a detector")
	}
	if d.Load.Patches == 0 || d.Load.Failed != 0 || d.After.Patches == 0 || d.After.Failed != 0 {
		t.Errorf("with the detector %d patches acknowledged, %d failed; after it %d and %d; want some and none",
			d.Load.Patches, d.Load.Failed, d.After.Patches, d.After.Failed)
	}
	// Each patch sets one to three properties, six of the ten numbers the detector watches.
	if d.Points == 0 || d.Points > 3*uint64(d.Load.Patches) {
		t.Errorf("%d points scored of %d patches; want some, at most three a patch", d.Points, d.Load.Patches)
	}
	if want := []string{"p0", "p1", "p4", "p5", "p8", "p9"}; !slices.Equal(d.Properties, want) {
		t.Errorf("watched %v, want %v", d.Properties, want)
	}
	var out bytes.Buffer
	if err := res.Table(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"with a detector", "without, after it", "detector / none", "points scored"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

// patchLoadEnv, when set, makes this test binary the PATCH benchmark's load generator: its
// value holds the arguments of RunPatchLoad.
const patchLoadEnv = "TWINFLOW_BENCH_PATCH_LOAD"

func TestMain(m *testing.M) {
	if args, ok := os.LookupEnv(patchLoadEnv); ok {
		if err := RunPatchLoad(context.Background(), strings.Fields(args), os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestRestart runs the restart benchmark at a tiny size against the real binary.
func TestRestart(t *testing.T) {
	bin := process.Build(t)
	res, err := Restart(t.Context(), RestartConfig{
		Binary: bin, Dir: t.TempDir(), Twins: 500, Batch: 200, Writes: 200,
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Restart: %v", err)
	}
	for _, r := range []StartResult{res.Build, res.Snapshot, res.Replay} {
		if r.Ready <= 0 || r.RSS < 1<<20 {
			t.Errorf("implausible start %+v", r)
		}
	}
	if res.Build.From != "store" || res.Snapshot.From != "snapshot" || res.Replay.From != "snapshot" {
		t.Errorf("the starts made their index from %q, %q, %q; want store, snapshot, snapshot", res.Build.From, res.Snapshot.From, res.Replay.From)
	}
	if res.Relationships != 500 || res.DiskBytes <= 0 || res.Load <= 0 || res.SnapshotBytes <= 0 {
		t.Errorf("implausible result %+v", res)
	}
	var out bytes.Buffer
	if err := res.Table(&out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "(c) start after SIGKILL") {
		t.Errorf("table:\n%s", out.String())
	}
}

// TestPatchClient checks the load generator's HTTP/1.1 client against net/http's server: the
// request it writes, and several responses, with and without a body, read off one
// keep-alive connection.
func TestPatchClient(t *testing.T) {
	var conns atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil || r.Method != http.MethodPatch || r.URL.Query().Get("api-version") != apiVersion ||
			r.Header.Get("Content-Type") != "application/json-patch+json" || string(body) != `[]` {
			t.Errorf("got %s %s %q with body %q (%v)", r.Method, r.URL, r.Header.Get("Content-Type"), body, err)
		}
		if r.URL.Path == "/digitaltwins/missing" {
			http.Error(w, `{"error":{"code":"DigitalTwinNotFound"}}`, http.StatusNotFound)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()

	pc, err := dialPatchClient(t.Context(), srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.conn.Close()
	for _, tc := range []struct {
		id   string
		want int
	}{{"a", http.StatusNoContent}, {"missing", http.StatusNotFound}, {"b", http.StatusNoContent}} {
		status, err := pc.patch(tc.id, []byte(`[]`))
		if err != nil || status != tc.want {
			t.Errorf("patch(%q) = %d, %v; want %d", tc.id, status, err, tc.want)
		}
	}
	if n := conns.Load(); n != 1 {
		t.Errorf("the server saw %d connections, want 1", n)
	}
}
