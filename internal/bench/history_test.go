package bench

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestHistory runs the data history benchmark at a tiny size: every figure must be measured,
// every query checked against the history written, and the benchmark must clean up after
// itself.
func TestHistory(t *testing.T) {
	dir := t.TempDir()
	res, err := History(t.Context(), HistoryConfig{
		Dir: dir, Twins: 20, Clients: 4, Duration: 500 * time.Millisecond, WriterRecords: 300,
		QueryTwins: 5, QueryDays: 1, Queries: 3, AsOfTwins: 200,
		LoadCommand: func(ctx context.Context, args []string) *exec.Cmd {
			cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
			cmd.Env = append(os.Environ(), patchLoadEnv+"="+strings.Join(args, " "))
			return cmd
		},
	}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("History: %v", err)
	}
	for name, l := range map[string]PatchLoad{"off": res.Off, "on": res.On} {
		if l.Patches == 0 || l.Failed != 0 {
			t.Errorf("PATCH load with history %s: %d acknowledged, %d failed; want some and none", name, l.Patches, l.Failed)
		}
	}
	if res.Lag.Samples == 0 || res.Lag.Rows == 0 {
		t.Errorf("lag: %d samples, %d rows written under load; want some", res.Lag.Samples, res.Lag.Rows)
	}
	if res.Writer.Records != 300 || res.Writer.Rows == 0 || res.Ceiling.Rows != int(res.Writer.Rows) || res.Ceiling.Transactions == 0 {
		t.Errorf("writer %+v, ceiling %+v; want 300 records, and the same rows in both", res.Writer, res.Ceiling)
	}
	if res.QueryRows != 5*24*60 || res.AsOfRelationships != 20 {
		t.Errorf("%d sensor rows, %d relationships; want %d and 20", res.QueryRows, res.AsOfRelationships, 5*24*60)
	}
	if res.Rollup.Rows < res.QueryRows || res.Rollup.Elapsed <= 0 || res.Rollup.To.IsZero() {
		t.Errorf("roll-up %+v; want the sensors' rows and more rolled up", res.Rollup)
	}
	for name, l := range map[string]Latencies{"history query": res.Query, "history query, all": res.QueryAll, "asOf count": res.AsOfCount, "asOf selective": res.AsOfSelective} {
		if l.P50 <= 0 || l.P50 > l.P99 || l.P99 > l.Max {
			t.Errorf("%s: latencies %+v are not ordered", name, l)
		}
	}
	var out bytes.Buffer
	if err := res.Table(&out); err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`(?m)^  PATCH, history on +[0-9]+ patches/s`).MatchString(out.String()) {
		t.Errorf("table lacks the line scripts read:\n%s", out.String())
	}
	for _, want := range []string{"history cost", "history lag (seconds)", "lag 0 after the load", "writer / ceiling", "history roll-up", "POST /history/query", "POST /history/query, all", "asOf COUNT()", "asOf selective"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("the benchmark left %d entries in %s", len(left), dir)
	}
}
