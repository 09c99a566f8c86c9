package api

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/job"
)

// jobsEnv is what newJobsEnv adds to an env: the job runner, its jobs directory, and run,
// which runs the jobs until the test ends.
type jobsEnv struct {
	runner *job.Runner
	dir    string
	run    func()
}

// jobsGraph is the import file the jobs tests import: a model, two twins and a relationship.
const jobsGraph = `{"Section": "Header"}
{"fileVersion": "1.0.0", "author": "test", "organization": "twinflow"}
{"Section": "Models"}
{"@id": "dtmi:example:Room;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3", "contents": [{"@type": "Property", "name": "temperature", "schema": "double"}, {"@type": "Relationship", "name": "near"}]}
{"Section": "Twins"}
{"$dtId": "room-1", "$metadata": {"$model": "dtmi:example:Room;1"}, "temperature": 20.5}
{"$dtId": "room-2", "$metadata": {"$model": "dtmi:example:Room;1"}}
{"Section": "Relationships"}
{"$dtId": "room-1", "$relationshipId": "r", "$targetId": "room-2", "$relationshipName": "near"}
`

// newJobsEnv is newEnv with a job runner over a jobs directory holding graph.ndjson
// (jobsGraph) and bad.ndjson (a twin of a model that does not exist). The runner does not run
// its jobs until run is called. Transcripts show the jobs directory as {{jobsDir}}.
func newJobsEnv(t *testing.T, cfg Config) (*env, *jobsEnv) {
	t.Helper()
	logger := testLogger(t)
	st, svc := openService(t, logger)
	dir := t.TempDir()
	for name, content := range map[string]string{
		"graph.ndjson": jobsGraph,
		"bad.ndjson": `{"Section": "Header"}` + "\n" + `{"fileVersion": "1.0.0"}` + "\n" + `{"Section": "Twins"}` + "\n" +
			`{"$dtId": "x", "$metadata": {"$model": "dtmi:example:Nope;1"}}` + "\n",
	} {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	idx, err := graph.New(t.Context(), graph.Config{}, st, svc.Models, logger)
	if err != nil {
		t.Fatal(err)
	}
	runner, err := job.New(job.Config{Dir: dir, SpoolDir: t.TempDir(), ErrorCode: ErrorCode, Now: tickingClock()},
		st, svc, job.IndexGraph(idx), logger)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Jobs, cfg.Index = runner, idx
	e := serve(t, cfg, st, svc, logger)
	e.redact = map[string]string{runner.Dir(): "{{jobsDir}}"}
	je := &jobsEnv{runner: runner, dir: dir}
	je.run = func() {
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Go(func() {
			if err := runner.Run(ctx); err != nil {
				t.Errorf("run jobs: %v", err)
			}
		})
		t.Cleanup(func() {
			cancel()
			wg.Wait()
		})
	}
	return e, je
}

// waitJob polls a job's path until its status is final and returns the last response.
func (e *env) waitJob(path string) response {
	e.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := e.must(e.do(http.MethodGet, path, ""), http.StatusOK, "")
		st := decode[struct{ Status string }](e.t, r).Status
		if st == "succeeded" || st == "failed" || st == "cancelled" {
			return r
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%s still %s", path, st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestJobsRun runs jobs through the API: an import that succeeds, one that fails, and a
// delete job, checking ADT's shapes of finished jobs.
func TestJobsRun(t *testing.T) {
	e, je := newJobsEnv(t, Config{})
	je.run()
	e.must(e.do(http.MethodPut, "/jobs/imports/good", `{"inputBlobUri": "file:graph.ndjson", "outputBlobUri": "file:good.log"}`), http.StatusCreated, "")
	r := e.waitJob("/jobs/imports/good")
	j := decode[map[string]any](t, r)
	for _, k := range []string{"id", "inputBlobUri", "outputBlobUri", "createdDateTime", "lastActionDateTime", "finishedDateTime", "purgeDateTime", "status", "progress"} {
		if _, ok := j[k]; !ok {
			t.Errorf("finished import job lacks %s: %s", k, r.body)
		}
	}
	if j["status"] != "succeeded" || j["error"] != nil {
		t.Errorf("job %s", r.body)
	}
	if !strings.HasSuffix(j["finishedDateTime"].(string), "+00:00") {
		t.Errorf("finishedDateTime %v", j["finishedDateTime"])
	}
	// The imported graph answers queries at once.
	q := e.must(e.do(http.MethodPost, "/query", `{"query": "SELECT COUNT() FROM DIGITALTWINS"}`), http.StatusOK, "")
	if !strings.Contains(string(q.body), `"COUNT":2`) {
		t.Errorf("query after the import: %s", q.body)
	}
	e.must(e.do(http.MethodGet, "/digitaltwins/room-1/relationships/r", ""), http.StatusOK, "")

	e.must(e.do(http.MethodPut, "/jobs/imports/bad", `{"inputBlobUri": "file:bad.ndjson", "outputBlobUri": "file:bad.log"}`), http.StatusCreated, "")
	r = e.waitJob("/jobs/imports/bad")
	bad := decode[struct {
		Status string
		Error  struct{ Code, Message string }
	}](t, r)
	if bad.Status != "failed" || bad.Error.Code != "ValidationFailed" || !strings.Contains(bad.Error.Message, "file:bad.log") {
		t.Errorf("failed job %s", r.body)
	}
	log, err := os.ReadFile(filepath.Join(je.dir, "bad.log"))
	if err != nil || !strings.Contains(string(log), `"logType":"Error","details":{"section":"Twins","lineNumber":4,"code":"ValidationFailed","message":"Invalid twin specified: dtmi:example:Nope;1 or one of its dependencies does not exist."}`) {
		t.Errorf("output log %s (%v)", log, err)
	}

	// Two finished jobs, listed one a page.
	r = e.must(e.do(http.MethodGet, "/jobs/imports", "", "max-items-per-page", "1"), http.StatusOK, "")
	first := decode[page[struct{ ID string }]](t, r)
	if len(first.Value) != 1 || first.Value[0].ID != "bad" || first.NextLink == nil {
		t.Fatalf("first page %s", r.body)
	}
	r = e.must(e.do(http.MethodGet, e.local(*first.NextLink), ""), http.StatusOK, "")
	second := decode[page[struct{ ID string }]](t, r)
	if len(second.Value) != 1 || second.Value[0].ID != "good" || second.NextLink != nil {
		t.Fatalf("second page %s", r.body)
	}

	r = e.must(e.do(http.MethodPost, "/jobs/deletions?api-version=2023-10-31&timeoutInMinutes=60", "", "operation-id", "wipe"), http.StatusAccepted, "")
	if got := r.header.Get("Operation-Location"); got != "http://"+testHost+"/jobs/deletions/wipe?api-version=2023-10-31" {
		t.Errorf("Operation-Location %q", got)
	}
	r = e.waitJob("/jobs/deletions/wipe")
	if d := decode[struct{ Status string }](t, r); d.Status != "succeeded" {
		t.Errorf("delete job %s", r.body)
	}
	e.must(e.do(http.MethodGet, "/digitaltwins/room-1", ""), http.StatusNotFound, "DigitalTwinNotFound")
	e.must(e.do(http.MethodGet, "/models/dtmi:example:Room;1", ""), http.StatusNotFound, "ModelNotFound")
	// A delete job without an operation-id gets one.
	r = e.must(e.do(http.MethodPost, "/jobs/deletions", ""), http.StatusAccepted, "")
	id := r.header.Get("Operation-Id")
	if !uuidPattern.MatchString(id) || decode[struct{ ID string }](t, r).ID != id {
		t.Errorf("generated operation id %q, body %s", id, r.body)
	}
}
