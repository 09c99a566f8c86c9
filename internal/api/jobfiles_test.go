package api

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/twinflow/twinflow/internal/reserve"
)

// TestJobFileUpload uploads an import file with PUT /jobs/files/{name}, imports it by its
// file: URL, and checks the refusals: bad names, bad media types, a body over the limit, and
// a full disk.
func TestJobFileUpload(t *testing.T) {
	space, err := reserve.New(reserve.Config{Dir: t.TempDir(), Size: 4096}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	e, je := newJobsEnv(t, Config{MaxJobFileBytes: 4096, Space: space})
	je.run()
	const ndjson = "application/x-ndjson"
	r := e.must(e.do(http.MethodPut, "/jobs/files/up.ndjson", jobsGraph, "Content-Type", ndjson), http.StatusCreated, "")
	got := decode[struct {
		Name, URI string
		Size      int64
	}](t, r)
	if got.Name != "up.ndjson" || got.URI != "file:up.ndjson" || got.Size != int64(len(jobsGraph)) {
		t.Errorf("upload answered %s", r.body)
	}
	if b, err := os.ReadFile(filepath.Join(je.dir, "up.ndjson")); err != nil || string(b) != jobsGraph {
		t.Fatalf("the uploaded file holds %q (%v)", b, err)
	}
	e.must(e.do(http.MethodPut, "/jobs/imports/up", `{"inputBlobUri": "file:up.ndjson", "outputBlobUri": "file:up.log"}`), http.StatusCreated, "")
	if st := decode[struct{ Status string }](t, e.waitJob("/jobs/imports/up")).Status; st != "succeeded" {
		t.Errorf("import of the uploaded file: %s", st)
	}
	// The job's output log is read back.
	r = e.must(e.do(http.MethodGet, "/jobs/files/up.log", ""), http.StatusOK, "")
	if !strings.Contains(string(r.body), `"logType":"Info"`) || r.header.Get("Content-Type") != "application/x-ndjson" {
		t.Errorf("GET the output log: %s %q", r.body, r.header.Get("Content-Type"))
	}
	e.must(e.do(http.MethodGet, "/jobs/files/none.log", ""), http.StatusNotFound, "NotFound")
	e.must(e.do(http.MethodGet, "/jobs/files/.hidden", ""), http.StatusBadRequest, "ValidationFailed")
	// A second upload replaces the file.
	e.must(e.do(http.MethodPut, "/jobs/files/up.ndjson", "{}\n", "Content-Type", "application/octet-stream"), http.StatusCreated, "")
	if b, _ := os.ReadFile(filepath.Join(je.dir, "up.ndjson")); string(b) != "{}\n" {
		t.Errorf("the replaced file holds %q", b)
	}

	for _, tc := range []struct {
		name, path, body, ctype string
		status                  int
		code                    string
	}{
		{"hidden name", "/jobs/files/.hidden", "x", ndjson, http.StatusBadRequest, "ValidationFailed"},
		{"dot-dot", "/jobs/files/%2E%2E", "x", ndjson, http.StatusBadRequest, "ValidationFailed"},
		{"slash", "/jobs/files/a%2Fb", "x", ndjson, http.StatusBadRequest, "ValidationFailed"},
		{"space", "/jobs/files/a%20b", "x", ndjson, http.StatusBadRequest, "ValidationFailed"},
		{"empty body", "/jobs/files/empty", "", ndjson, http.StatusBadRequest, "ValidationFailed"},
		{"text", "/jobs/files/t.ndjson", "x", "text/plain", http.StatusUnsupportedMediaType, "UnsupportedMediaType"},
		{"too large", "/jobs/files/big", strings.Repeat("x", 4097), ndjson, http.StatusBadRequest, "LimitExceeded"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e.must(e.do(http.MethodPut, tc.path, tc.body, "Content-Type", tc.ctype), tc.status, tc.code)
		})
	}
	entries, err := os.ReadDir(je.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range entries {
		if strings.HasPrefix(de.Name(), ".") || de.Name() == "big" || de.Name() == "empty" {
			t.Errorf("a refused upload left %s in the jobs directory", de.Name())
		}
	}

	// A write elsewhere meets a full disk: the reserve is released, and uploads wait.
	if !space.Exhausted(fmt.Errorf("write: %w", syscall.ENOSPC)) || !space.Full() {
		t.Fatal("the reserve did not take ENOSPC for a full disk")
	}
	e.must(e.do(http.MethodPut, "/jobs/files/later.ndjson", jobsGraph, "Content-Type", ndjson), http.StatusInsufficientStorage, "InsufficientStorage")
	if _, err := os.Stat(filepath.Join(je.dir, "later.ndjson")); err == nil {
		t.Error("an upload refused for a full disk was written")
	}
}
