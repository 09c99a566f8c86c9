package browser

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/test/process"
)

// Figures of the explorer's load, for the README:
//
//	go test -run '^$' -bench Explorer -benchtime 1x ./test/browser
//
// The server holds 10,000 twins, loaded by an import job: 2,000 of dtmi:bench:Node;1 with
// 2,000 relationships among them, and 8,000 others. BenchmarkExplorer reports, in ms from
// the navigation's start, the first contentful paint of the page and the time the
// application has rendered, then the time from pressing Run query until the 2,000 twins and
// 2,000 relationships of a query are drawn (the page's own timing, data-draw-ms, and the
// test's wall clock). The figures are reported, never asserted.
func BenchmarkExplorer(b *testing.B) {
	bin := process.Build(b)
	dataDir := b.TempDir()
	jobs := filepath.Join(dataDir, "jobs")
	if err := os.MkdirAll(jobs, 0o755); err != nil {
		b.Fatal(err)
	}
	writeImport(b, filepath.Join(jobs, "bench.ndjson"), 2000, 8000)
	p := process.Start(b, bin, "--listen", "127.0.0.1:0", "--data-dir", dataDir)

	start := time.Now()
	put, err := http.NewRequest(http.MethodPut, p.URL+"/jobs/imports/bench?api-version="+apiVersion,
		strings.NewReader(`{"inputBlobUri": "file:bench.ndjson", "outputBlobUri": "file:bench.log"}`))
	if err != nil {
		b.Fatal(err)
	}
	put.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(put)
	if err != nil || res.StatusCode >= 300 {
		b.Fatalf("start the import: %v %v", err, res)
	}
	res.Body.Close()
	for {
		res, err := http.Get(p.URL + "/jobs/imports/bench?api-version=" + apiVersion)
		if err != nil {
			b.Fatal(err)
		}
		var job struct {
			Status string `json:"status"`
		}
		_ = json.NewDecoder(res.Body).Decode(&job)
		res.Body.Close()
		if job.Status == "succeeded" {
			break
		}
		if job.Status == "failed" || time.Since(start) > 5*time.Minute {
			b.Fatalf("the import job is %q", job.Status)
		}
		time.Sleep(200 * time.Millisecond)
	}
	b.Logf("imported 10,000 twins and 2,000 relationships in %v", time.Since(start).Round(time.Millisecond))

	for i := 0; i < b.N; i++ {
		br := newBrowser(b, p.URL)
		br.navigate("#/graph")
		br.waitJS("the paint timings", `performance.getEntriesByName('first-contentful-paint').length > 0 && performance.getEntriesByName('twinflow-app-rendered').length > 0`)
		fcp := eval[float64](br, `performance.getEntriesByName('first-contentful-paint')[0].startTime`)
		app := eval[float64](br, `performance.getEntriesByName('twinflow-app-rendered')[0].startTime`)

		br.setInput("#query-text", "SELECT * FROM digitaltwins WHERE IS_OF_MODEL('dtmi:bench:Node;1')")
		clicked := time.Now()
		br.click("#run-query")
		br.waitJS("the graph", `document.querySelector('#graph').dataset.nodes === '2000' && document.querySelector('#graph').dataset.edges === '2000' && document.querySelector('#graph').dataset.drawMs`)
		wall := time.Since(clicked)
		draw := eval[string](br, `document.querySelector("#graph").dataset.drawMs`)
		b.Logf("page timings: %s", eval[string](br, `JSON.stringify(document.querySelector("#graph").dataset)`))
		var drawMs float64
		fmt.Sscan(draw, &drawMs)
		b.ReportMetric(fcp, "fcp-ms")
		b.ReportMetric(app, "app-rendered-ms")
		b.ReportMetric(drawMs, "query-draw-ms")
		b.Logf("first contentful paint %.0f ms, application rendered %.0f ms; 2,000 twins and 2,000 relationships queried and drawn in %.0f ms (page), %v (wall clock, polled every 50 ms)",
			fcp, app, drawMs, wall.Round(time.Millisecond))
		br.checkProblems()
	}
}

// writeImport writes an import file of nodes twins of dtmi:bench:Node;1, each with one
// relationship to another of them, and others twins of dtmi:bench:Other;1.
func writeImport(b *testing.B, path string, nodes, others int) {
	f, err := os.Create(path)
	if err != nil {
		b.Fatal(err)
	}
	w := bufio.NewWriter(f)
	line := func(v any) {
		data, err := json.Marshal(v)
		if err != nil {
			b.Fatal(err)
		}
		w.Write(data)
		w.WriteByte('\n')
	}
	line(map[string]string{"Section": "Header"})
	line(map[string]string{"fileVersion": "1.0.0", "author": "twinflow", "organization": "twinflow"})
	line(map[string]string{"Section": "Models"})
	line(map[string]any{"@id": "dtmi:bench:Node;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3", "contents": []any{
		map[string]any{"@type": "Property", "name": "value", "schema": "double"},
		map[string]any{"@type": "Relationship", "name": "next", "target": "dtmi:bench:Node;1"},
	}})
	line(map[string]any{"@id": "dtmi:bench:Other;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3", "contents": []any{
		map[string]any{"@type": "Property", "name": "value", "schema": "double"},
	}})
	line(map[string]string{"Section": "Twins"})
	for i := range nodes {
		line(map[string]any{"$dtId": fmt.Sprintf("node-%d", i), "$metadata": map[string]string{"$model": "dtmi:bench:Node;1"}, "value": i})
	}
	for i := range others {
		line(map[string]any{"$dtId": fmt.Sprintf("other-%d", i), "$metadata": map[string]string{"$model": "dtmi:bench:Other;1"}, "value": i})
	}
	line(map[string]string{"Section": "Relationships"})
	for i := range nodes {
		target := (i*7 + 1) % nodes
		line(map[string]any{"$dtId": fmt.Sprintf("node-%d", i), "$relationshipId": fmt.Sprintf("next-%d", i),
			"$targetId": fmt.Sprintf("node-%d", target), "$relationshipName": "next"})
	}
	if err := w.Flush(); err != nil {
		b.Fatal(err)
	}
	if err := f.Close(); err != nil {
		b.Fatal(err)
	}
}
