package server

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/testenv"
)

// BenchmarkCrossNodeVisibility measures how long a write acknowledged by one node takes to
// be visible to a query on another node of the same PostgreSQL store: each iteration PATCHes
// a twin on node A and polls node B with a query for the new value, every 2 ms, until it
// answers. It reports the p50, p99 and largest latency, and, for comparison, the same on
// node A itself (where the query index is brought up to the write before the query runs).
//
//	CI=1 go test -run '^$' -bench CrossNodeVisibility -benchtime 200x ./internal/server/
func BenchmarkCrossNodeVisibility(b *testing.B) {
	dsn, schema := testenv.PostgreSQLSchema(b, "visibility")
	cfg := Config{Config: config.Config{
		Store:   config.Store{DSN: dsn, Schema: schema},
		History: config.History{Mode: config.HistoryOff},
	}}
	sa, _ := start(b, cfg, nil)
	a := restClient{t: b, base: sa.URL()}
	a.do(http.MethodPost, "/models", `[{"@id":"dtmi:twinflow:bench:V;1","@type":"Interface","@context":"dtmi:dtdl:context;3",`+
		`"contents":[{"@type":"Property","name":"n","schema":"integer","writable":true}]}]`, http.StatusCreated)
	a.do(http.MethodPut, "/digitaltwins/v", `{"$metadata":{"$model":"dtmi:twinflow:bench:V;1"},"n":0}`, http.StatusOK)
	// B starts after the model exists, and loads it.
	sb, _ := start(b, cfg, nil)
	nodeB := restClient{t: b, base: sb.URL()}

	measure := func(at restClient, n int) time.Duration {
		a.do(http.MethodPatch, "/digitaltwins/v", fmt.Sprintf(`[{"op":"replace","path":"/n","value":%d}]`, n), http.StatusNoContent)
		start := time.Now()
		q := fmt.Sprintf(`{"query":"SELECT COUNT() FROM DIGITALTWINS WHERE $dtId = 'v' AND n = %d"}`, n)
		for !strings.Contains(string(at.do(http.MethodPost, "/query", q, http.StatusOK)), `"COUNT":1`) {
			if time.Since(start) > 30*time.Second {
				b.Fatalf("the write of n = %d is not visible on %s after 30 s", n, at.base)
			}
			time.Sleep(2 * time.Millisecond)
		}
		return time.Since(start)
	}
	var cross, local []time.Duration
	b.ResetTimer()
	for i := range b.N {
		cross = append(cross, measure(nodeB, 2*i+1))
		local = append(local, measure(a, 2*i+2))
	}
	b.StopTimer()
	report := func(lat []time.Duration, unit string) {
		slices.Sort(lat)
		b.ReportMetric(float64(lat[len(lat)/2].Microseconds())/1000, unit+"-p50-ms")
		b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds())/1000, unit+"-p99-ms")
		b.ReportMetric(float64(lat[len(lat)-1].Microseconds())/1000, unit+"-max-ms")
	}
	report(cross, "cross")
	report(local, "local")
}
