package bench

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/testenv"
)

// TestIngestBody checks that a message body carries what the benchmark mapping reads and
// that markerNumber finds the number in the value the mapping makes of it.
func TestIngestBody(t *testing.T) {
	for _, tc := range []struct {
		n  int
		id bool
	}{{0, false}, {1234, true}, {98_765_432, false}} {
		got := string(ingestBody(nil, tc.n, 1000, tc.id))
		want := `{"device":"` + twinID(tc.n%1000) + `","n":` + strconv.Itoa(tc.n) + `,"temperature":`
		if !strings.HasPrefix(got, want) || strings.Contains(got, "messageId") != tc.id {
			t.Errorf("ingestBody(%d, id %v) = %s", tc.n, tc.id, got)
		}
		value := `[{"op":"add","path":"/p2","value":"ingest-` + strconv.Itoa(tc.n) + `"}]`
		if n, ok := markerNumber([]byte(value), ingestMarker); !ok || n != tc.n {
			t.Errorf("markerNumber(%s) = %d, %v; want %d", value, n, ok, tc.n)
		}
	}
}

// TestIngest runs the ingest benchmark at a tiny size through every kind, against the
// machine's Mosquitto (a prerequisite, see testenv.Mosquitto): every message published must
// be committed, in both phases, and the benchmark must clean up after itself.
func TestIngest(t *testing.T) {
	broker := testenv.Mosquitto(t)
	dir := t.TempDir()
	res, err := Ingest(t.Context(), IngestConfig{
		Dir: dir, Devices: 20, Duration: 300 * time.Millisecond, PacedDuration: 200 * time.Millisecond, Rate: 500,
		Window: 40, Batch: 10, Clients: 4, MQTT: broker,
		LoadCommand: func(ctx context.Context, args []string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), patchLoadEnv+"="+strings.Join(args, " "))
			return cmd
		},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("Ingest: %v", err)
	}
	if res.Baseline.Patches == 0 || res.Baseline.Failed != 0 {
		t.Errorf("baseline: %d patches acknowledged, %d failed; want some and none", res.Baseline.Patches, res.Baseline.Failed)
	}
	if len(res.Kinds) != 3 {
		t.Fatalf("measured %d kinds; want 3", len(res.Kinds))
	}
	for _, k := range res.Kinds {
		for name, p := range map[string]IngestPhase{"max": k.Max, "paced": k.Paced} {
			if p.Sent == 0 || p.Committed != p.Sent || p.Missing != 0 {
				t.Errorf("%s %s: %d sent, %d committed, %d missing; want every one sent committed", k.Kind, name, p.Sent, p.Committed, p.Missing)
			}
			if l := p.Latency; l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.Max {
				t.Errorf("%s %s: latencies %+v are not ordered", k.Kind, name, l)
			}
		}
		if k.Paced.Sent != 100 {
			t.Errorf("%s paced: %d sent; want 500/s for 200ms", k.Kind, k.Paced.Sent)
		}
	}
	var out bytes.Buffer
	if err := res.Table(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"HTTP PATCH baseline", "mqtt max", "of the HTTP PATCH baseline", "kafka at 500/s latency", "http max group commit"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the benchmark left %d entries in %s", len(left), dir)
	}
}
