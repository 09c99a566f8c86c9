package api

import (
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

// BenchmarkGetTwin measures a twin read over HTTP: routing, api-version check, the graph's
// read from SQLite and the response.
func BenchmarkGetTwin(b *testing.B) {
	e := newTestEnv(b, Config{})
	e.putRoom("t")
	for b.Loop() {
		if r := e.do(http.MethodGet, "/digitaltwins/t", ""); r.status != http.StatusOK {
			b.Fatalf("GET: %d %s", r.status, r.body)
		}
	}
}

// BenchmarkGetTwinOldVersion is BenchmarkGetTwin at an api-version whose documents are
// rewritten without sourceTime and $lastUpdateTime.
func BenchmarkGetTwinOldVersion(b *testing.B) {
	e := newTestEnv(b, Config{})
	e.putRoom("t")
	for b.Loop() {
		if r := e.do(http.MethodGet, "/digitaltwins/t?api-version=2020-10-31", ""); r.status != http.StatusOK {
			b.Fatalf("GET: %d %s", r.status, r.body)
		}
	}
}

// BenchmarkPatchTwin measures a durable twin patch over HTTP, one client at a time.
func BenchmarkPatchTwin(b *testing.B) {
	e := newTestEnv(b, Config{})
	e.putRoom("t")
	i := 0
	for b.Loop() {
		i++
		patch := fmt.Sprintf(`[{"op": "replace", "path": "/counter", "value": %d}]`, i)
		if r := e.do(http.MethodPatch, "/digitaltwins/t", patch); r.status != http.StatusNoContent {
			b.Fatalf("PATCH: %d %s", r.status, r.body)
		}
	}
}

// BenchmarkPatchTwinsParallel measures durable patches over HTTP from concurrent clients, each
// on its own twin, so the store can group their commits.
func BenchmarkPatchTwinsParallel(b *testing.B) {
	e := newTestEnv(b, Config{})
	const twins = 64
	for i := range twins {
		e.putRoom(fmt.Sprintf("t%d", i))
	}
	var clients atomic.Int64
	b.SetParallelism(16) // 16 clients per CPU
	b.RunParallel(func(pb *testing.PB) {
		id := fmt.Sprintf("/digitaltwins/t%d", clients.Add(1)%twins)
		n := 0
		for pb.Next() {
			n++
			patch := fmt.Sprintf(`[{"op": "replace", "path": "/counter", "value": %d}]`, n)
			r, err := e.try(http.MethodPatch, id, patch)
			if err != nil || r.status != http.StatusNoContent {
				b.Errorf("PATCH: %v %d %s", err, r.status, r.body)
				return
			}
		}
	})
}

// deviceModel is a model of ten writable properties of the four primitive schemas, the shape
// `twinflow bench patch` drives.
const deviceModel = `[{"@id": "dtmi:bench:Device;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2",
  "contents": [
    {"@type": "Property", "name": "p0", "schema": "double", "writable": true},
    {"@type": "Property", "name": "p1", "schema": "integer", "writable": true},
    {"@type": "Property", "name": "p2", "schema": "string", "writable": true},
    {"@type": "Property", "name": "p3", "schema": "boolean", "writable": true},
    {"@type": "Property", "name": "p4", "schema": "double", "writable": true},
    {"@type": "Property", "name": "p5", "schema": "integer", "writable": true},
    {"@type": "Property", "name": "p6", "schema": "string", "writable": true},
    {"@type": "Property", "name": "p7", "schema": "boolean", "writable": true},
    {"@type": "Property", "name": "p8", "schema": "double", "writable": true},
    {"@type": "Property", "name": "p9", "schema": "integer", "writable": true}]}]`

const deviceBody = `{"$metadata": {"$model": "dtmi:bench:Device;1"}, "p0": 1.5, "p1": 7, "p2": "v7",
  "p3": true, "p4": 2.25, "p5": 9, "p6": "v9", "p7": false, "p8": 0.125, "p9": 11}`

// BenchmarkPatchTwinHandler measures the CPU and allocations of one PATCH in the API's handler
// (request checks, the twin service's patch and the 204 answer) against a store that does not fsync,
// so the work outside the store's commit dominates. Requests go to the handler directly,
// without a network server.
func BenchmarkPatchTwinHandler(b *testing.B) {
	logger := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(sqlite.Config{Dir: b.TempDir(), NoSync: true}, logger)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	g, err := twins.New(twins.Config{ServiceID: testHost}, st, logger)
	if err != nil {
		b.Fatal(err)
	}
	a, err := New(Config{}, g, logger)
	if err != nil {
		b.Fatal(err)
	}
	serve := func(method, target, contentType, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(method, target, strings.NewReader(body))
		r.Header.Set("Content-Type", contentType)
		w := httptest.NewRecorder()
		a.ServeHTTP(w, r)
		return w
	}
	if w := serve(http.MethodPost, "/models?api-version=2023-10-31", "application/json", deviceModel); w.Code != http.StatusCreated {
		b.Fatalf("add model: %d %s", w.Code, w.Body)
	}
	const twins = 64
	for i := range twins {
		if w := serve(http.MethodPut, fmt.Sprintf("/digitaltwins/d%d?api-version=2023-10-31", i), "application/json", deviceBody); w.Code != http.StatusOK {
			b.Fatalf("put twin: %d %s", w.Code, w.Body)
		}
	}
	patches := make([]string, 256)
	for i := range patches {
		patches[i] = fmt.Sprintf(`[{"op":"replace","path":"/p%d","value":%d},{"op":"replace","path":"/p%d","value":"v%d"}]`,
			[...]int{1, 5, 9}[i%3], i, [...]int{2, 6}[i%2], i)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		target := "/digitaltwins/d" + strconv.Itoa(i%twins) + "?api-version=2023-10-31"
		if w := serve(http.MethodPatch, target, "application/json-patch+json", patches[i%len(patches)]); w.Code != http.StatusNoContent {
			b.Fatalf("PATCH: %d %s", w.Code, w.Body)
		}
	}
}

// BenchmarkOntologyUpload measures uploading the 3,200-Interface ontology of
// TestLargeOntologyUpload (QuantitativeTypes, Annotation and Overriding throughout) with
// POST /models, 250 models per call, into an empty durable store over HTTP. Its floor,
// measured in the same run, is the DTDL work the upload cannot avoid: parsing and resolving
// the same batches in process, each against the models of the batches before it
// ("parse-batches"); "parse-all" resolves the whole ontology at once, as a restart does.
func BenchmarkOntologyUpload(b *testing.B) {
	const n, batch = 3200, 250
	docs := ontology(n)
	b.Run("http", func(b *testing.B) {
		for b.Loop() {
			b.StopTimer()
			e := newEnv(b, Config{})
			b.StartTimer()
			uploadOntology(b, e, docs, batch)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n/1e3, "µs/model")
	})
	b.Run("parse-batches", func(b *testing.B) {
		raw := make([][]byte, n)
		for i, d := range docs {
			raw[i] = []byte(d)
		}
		for b.Loop() {
			var set *dtdl.ModelSet
			for start := 0; start < n; start += batch {
				var err error
				if set, err = dtdl.Parse(raw[start:min(start+batch, n)], set, dtdl.Options{}); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n/1e3, "µs/model")
	})
	b.Run("parse-all", func(b *testing.B) {
		raw := make([][]byte, n)
		for i, d := range docs {
			raw[i] = []byte(d)
		}
		for b.Loop() {
			if _, err := dtdl.Parse(raw, nil, dtdl.Options{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n/1e3, "µs/model")
	})
}
