package api

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/endpoint"
	"github.com/twinflow/twinflow/internal/eventroute"
	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/job"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twin"
	"github.com/twinflow/twinflow/internal/twins"
)

// FuzzAPI sends arbitrary requests, as net/http would parse them off the wire, through Guard
// to an API with every group of routes (models, twins, relationships, queries, event routes,
// endpoints, jobs, sources and mappings) over one real store. Whatever the request, the answer
// is never a redirect nor a 500, every error carries ADT's body with its code in
// x-ms-error-code, and a request is only served when every segment of its path could be an
// id. The seeds are the requests of the testdata/*.http transcripts and the malformed paths,
// ids and media types the hardening tests send.
//
// Run it with go test -run '^$' -fuzz FuzzAPI -fuzztime 30s ./internal/api.
func FuzzAPI(f *testing.F) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.http"))
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		src, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		reqs, err := parseTranscript(string(src))
		if err != nil {
			f.Fatalf("%s: %v", file, err)
		}
		for _, r := range reqs {
			target := r.target
			if !strings.Contains(target, "?") {
				target += "?api-version=2023-10-31"
			}
			ct := "application/json"
			if r.method == http.MethodPatch {
				ct = "application/json-patch+json"
			}
			for _, h := range r.header {
				if strings.EqualFold(h[0], "Content-Type") {
					ct = h[1]
				}
			}
			f.Add(r.method, target, ct, []byte(r.body))
		}
	}
	for _, s := range []struct{ method, target, ct, body string }{
		{"GET", "/digitaltwins/a/../b?api-version=2023-10-31", "", ""},
		{"GET", "//models?api-version=2023-10-31", "", ""},
		{"PUT", "/digitaltwins/%2E%2E?api-version=2023-10-31", "application/json", roomBody},
		{"PUT", "/digitaltwins/a%00b?api-version=2023-10-31", "application/json", roomBody},
		{"PUT", "/digitaltwins/r1/relationships/a%2F..%2Fb?api-version=2023-10-31", "application/json", `{"$targetId": "r1", "$relationshipName": "next"}`},
		{"GET", "/models/%FF?api-version=2023-10-31", "", ""},
		{"PUT", "/eventroutes/%2E?api-version=2023-10-31", "application/json", `{"endpointName": "e", "filter": "true"}`},
		{"GET", "/digitaltwins/r1/relationships?api-version=2023-10-31&relationshipName=%zz", "", ""},
		{"POST", "/query?api-version=2023-10-31", "application/x-www-form-urlencoded", `{"query": "SELECT * FROM DIGITALTWINS"}`},
		{"PATCH", "/digitaltwins/r1?api-version=2023-10-31", "application/json-patch+json; charset=latin1", `[]`},
		{"POST", "/sources/lab/messages?api-version=2023-10-31", "application/x-ndjson", "{\"a\": 1}\n"},
	} {
		f.Add(s.method, s.target, s.ct, []byte(s.body))
	}

	h := fuzzAPI(f)
	f.Fuzz(func(t *testing.T, method, target, contentType string, body []byte) {
		raw := fmt.Sprintf("%s %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\n", method, target, testHost, len(body))
		if contentType != "" {
			raw += "Content-Type: " + contentType + "\r\n"
		}
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw + "\r\n" + string(body))))
		if err != nil {
			return // net/http answers it before any handler
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)

		status := w.Code
		if status >= 300 && status < 400 || status == http.StatusInternalServerError {
			t.Fatalf("%s %q as %q answered %d %s", method, target, contentType, status, w.Body)
		}
		if status >= 400 {
			var e errorBody
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error.Code == "" ||
				w.Header().Get("x-ms-error-code") != e.Error.Code || w.Header().Get("Content-Type") != contentTypeJSON {
				t.Fatalf("%s %q answered %d without ADT's error body: %s %q", method, target, status, w.Header(), w.Body)
			}
			return
		}
		for seg := range strings.SplitSeq(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/") {
			id, err := url.PathUnescape(seg)
			if err != nil || twin.CheckID(twin.KindInvalidArgument, "path", id) != nil {
				t.Fatalf("%s %q answered %d, though its path segment %q is no id", method, target, status, seg)
			}
		}
	})
}

// fuzzAPI returns the handler FuzzAPI sends its requests to: Guard in front of an API with
// every group of routes, over a store without fsync, with the test models, a room r1 and an
// http source lab.
func fuzzAPI(f *testing.F) http.Handler {
	logger := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(sqlite.Config{Dir: f.TempDir(), NoSync: true}, logger)
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	svc, err := twins.New(twins.Config{ServiceID: testHost}, st, logger)
	if err != nil {
		f.Fatal(err)
	}
	idx, err := graph.New(context.Background(), graph.Config{}, st, svc.Models, logger)
	if err != nil {
		f.Fatal(err)
	}
	routes, err := eventroute.New(context.Background(), eventroute.Config{}, st)
	if err != nil {
		f.Fatal(err)
	}
	// No endpoint kinds: nothing the fuzzer sends may reach out to the network.
	endpoints, err := endpoint.New(endpoint.Config{}, map[string]endpoint.Kind{}, st, routes, nil, logger)
	if err != nil {
		f.Fatal(err)
	}
	jobs, err := job.New(job.Config{Dir: f.TempDir(), SpoolDir: f.TempDir(), ErrorCode: ErrorCode}, st, svc, job.IndexGraph(idx), logger)
	if err != nil {
		f.Fatal(err)
	}
	a, err := New(Config{
		Index:    idx,
		Delivery: &Delivery{Routes: routes, Endpoints: endpoints},
		Jobs:     jobs,
		Ingress:  &Ingress{Sources: runSources(f, st, svc, logger)},
	}, svc, logger)
	if err != nil {
		f.Fatal(err)
	}
	h := Guard(GuardConfig{MaxHeaderBytes: 64 << 10}, a)
	for _, s := range []struct{ method, path, body string }{
		{http.MethodPost, "/models", testModels},
		{http.MethodPut, "/digitaltwins/r1", roomBody},
		{http.MethodPut, "/sources/lab", `{"sourceType": "http"}`},
	} {
		r := httptest.NewRequest(s.method, s.path+"?api-version=2023-10-31", strings.NewReader(s.body))
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code >= 300 {
			f.Fatalf("%s %s: %d %s", s.method, s.path, w.Code, w.Body)
		}
	}
	return h
}
