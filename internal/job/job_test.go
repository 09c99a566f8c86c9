package job

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twin"
	"github.com/twinflow/twinflow/internal/twins"
)

// env is a store, twin service, graph index and job runner over a temporary data directory,
// with the runner running until the test ends (or stop is called).
type env struct {
	t     *testing.T
	dir   string // the jobs directory
	data  string
	st    *sqlite.Store
	svc   *twins.Service
	index *graph.Index
	r     *Runner
	cfg   Config
	stop  func()
	// space, when set, is the data directory's disk reserve, which the store heeds.
	space sqlite.Space
}

func newEnv(t *testing.T, cfg Config) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), data: t.TempDir(), cfg: cfg}
	e.open()
	return e
}

// errorCode is the output log's error code in these tests: the kind's name.
func errorCode(err error) (string, string) {
	var te *twin.Error
	if errors.As(err, &te) {
		return te.Kind.String(), te.Message
	}
	return "Internal", err.Error()
}

// open opens the store and starts the runner.
func (e *env) open() {
	t := e.t
	logger := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(sqlite.Config{Dir: e.data, NoSync: true, Space: e.space}, logger)
	if err != nil {
		t.Fatal(err)
	}
	e.st = st
	if e.svc, err = twins.New(twins.Config{ServiceID: "jobs.test"}, st, logger); err != nil {
		t.Fatal(err)
	}
	if e.index, err = graph.New(t.Context(), graph.Config{}, st, e.svc.Models, logger); err != nil {
		t.Fatal(err)
	}
	cfg := e.cfg
	if cfg.Dir == "" {
		cfg.Dir = e.dir
	}
	cfg.SpoolDir = filepath.Join(e.data, "spool")
	cfg.ErrorCode = errorCode
	if e.r, err = New(cfg, st, e.svc, IndexGraph(e.index), logger); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		if err := e.r.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	wg.Go(func() { _ = e.index.Run(ctx) })
	stopped := false
	e.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		wg.Wait()
		if err := st.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	}
	t.Cleanup(e.stop)
}

// restart stops the runner and the store and opens them again on the same directories.
func (e *env) restart() {
	e.stop()
	e.open()
}

// file writes content to name in the jobs directory and returns its file: URL.
func (e *env) file(name string, content []byte) string {
	e.t.Helper()
	if err := os.WriteFile(filepath.Join(e.dir, name), content, 0o644); err != nil {
		e.t.Fatal(err)
	}
	return "file:" + name
}

// wait polls job kind/id until it finished, and returns it.
func (e *env) wait(kind Kind, id string) Job {
	e.t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		j, err := e.r.Get(context.Background(), kind, id)
		if err != nil {
			e.t.Fatalf("Get %s %s: %v", kind, id, err)
		}
		if j.Status.Finished() {
			return j
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("job %s %s did not finish: %+v", kind, id, j)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// logLines reads the output log at the file URL out and returns each line as
// "<logType> <section> <status or lineNumber code>".
func (e *env) logLines(out string) []string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, strings.TrimPrefix(out, "file:")))
	if err != nil {
		e.t.Fatal(err)
	}
	return describeLog(e.t, b)
}

func describeLog(t *testing.T, b []byte) []string {
	t.Helper()
	var out []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var l logLine
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("log line %q: %v", sc.Text(), err)
		}
		if l.JobType != "Import" || l.JobID == "" || len(l.Timestamp) != len("2022-12-30T19:50:34.5540455Z") {
			t.Errorf("log line %s", sc.Text())
		}
		d := l.Details
		desc := l.LogType + " " + d.Section
		if d.Status != "" {
			desc += " " + d.Status
		} else {
			desc += fmt.Sprintf(" %d %s", d.LineNumber, d.Code)
		}
		out = append(out, strings.Join(strings.Fields(desc), " "))
	}
	return out
}

// counts returns the number of events of each type in the change log.
func (e *env) counts() map[string]int {
	e.t.Helper()
	counts := map[string]int{}
	var after uint64
	for after < e.st.Log().Last() {
		recs, err := e.st.Log().Read(context.Background(), after, 10_000)
		if err != nil {
			e.t.Fatal(err)
		}
		for _, r := range recs {
			counts[r.Event.Type]++
			after = r.Seq
		}
	}
	return counts
}

// graphCounts returns the twins and relationships the graph index holds.
func (e *env) graphCounts() (twinCount, relCount int) {
	e.t.Helper()
	err := e.index.Read(context.Background(), func(r *graph.Reader) error {
		twinCount, relCount = r.TwinCount(), r.RelCount()
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
	return twinCount, relCount
}

const (
	roomModel   = `{"@id":"dtmi:ex:Room;1","@type":"Interface","@context":"dtmi:dtdl:context;3","contents":[{"@type":"Property","name":"temp","schema":"double"},{"@type":"Relationship","name":"next","target":"dtmi:ex:Room;1","properties":[{"@type":"Property","name":"w","schema":"integer"}]}]}`
	floorModel  = `{"@id":"dtmi:ex:Floor;1","@type":"Interface","@context":"dtmi:dtdl:context;3","contents":[{"@type":"Relationship","name":"has","target":"dtmi:ex:Room;1"}]}`
	fileHeader  = `{"Section": "Header"}` + "\n" + `{"fileVersion": "1.0.0", "author": "test", "organization": "twinflow"}` + "\n"
	modelsLine  = `{"Section": "Models"}` + "\n"
	twinsLine   = `{"Section": "Twins"}` + "\n"
	relsLine    = `{"Section": "Relationships"}` + "\n"
	traceParent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
)

// importFile returns an import file of the two models, n rooms and a floor, the floor
// related to each room and each room to the next.
func importFile(n int) []byte {
	var b strings.Builder
	b.WriteString(fileHeader + modelsLine + floorModel + "\n" + roomModel + "\n" + twinsLine)
	b.WriteString(`{"$dtId":"floor","$metadata":{"$model":"dtmi:ex:Floor;1"}}` + "\n")
	for i := range n {
		fmt.Fprintf(&b, `{"$dtId":"room-%d","$metadata":{"$model":"dtmi:ex:Room;1"},"temp":%d.5}`+"\n", i, i)
	}
	b.WriteString(relsLine)
	for i := range n {
		fmt.Fprintf(&b, `{"$dtId":"floor","$relationshipId":"has-%d","$targetId":"room-%d","$relationshipName":"has"}`+"\n", i, i)
		if i+1 < n {
			fmt.Fprintf(&b, `{"$dtId":"room-%d","$relationshipId":"next","$targetId":"room-%d","$relationshipName":"next","w":%d}`+"\n", i, i+1, i)
		}
	}
	return []byte(b.String())
}

func TestImport(t *testing.T) {
	e := newEnv(t, Config{})
	const n = 500
	in := e.file("graph.ndjson", importFile(n))
	j, err := e.r.CreateImport(t.Context(), "imp", in, "file:out.ndjson", traceParent)
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != StatusNotStarted || j.Created.IsZero() || !j.Purge.After(j.Created) {
		t.Fatalf("new job %+v", j)
	}
	j = e.wait(KindImport, "imp")
	if j.Status != StatusSucceeded || j.Error != nil || j.Finished.IsZero() {
		t.Fatalf("job %+v", j)
	}
	want := Progress{Section: SectionRelationships, Models: 2, Twins: n + 1, Relationships: 2*n - 1}
	if j.Progress != want {
		t.Errorf("progress %+v, want %+v", j.Progress, want)
	}
	if got := e.logLines("file:out.ndjson"); !slices.Equal(got, []string{
		"Info Started", "Info Models Started", "Info Models Succeeded", "Info Twins Started", "Info Twins Succeeded",
		"Info Relationships Started", "Info Relationships Succeeded", "Info Succeeded",
	}) {
		t.Errorf("output log %q", got)
	}
	counts := e.counts()
	if counts[event.TwinCreate] != n+1 || counts[event.RelationshipCreate] != 2*n-1 || len(counts) != 2 {
		t.Errorf("events %v", counts)
	}
	if tc, rc := e.graphCounts(); tc != n+1 || rc != 2*n-1 {
		t.Errorf("graph index holds %d twins and %d relationships", tc, rc)
	}
	// The events carry the job's trace.
	recs, err := e.st.Log().Read(t.Context(), 0, 1)
	if err != nil || recs[0].Event.TraceParent != traceParent {
		t.Errorf("first event %+v, %v", recs, err)
	}

	// Running the same import again changes nothing and emits nothing.
	last := e.st.Log().Last()
	if _, err := e.r.CreateImport(t.Context(), "again", in, "file:out2.ndjson", ""); err != nil {
		t.Fatal(err)
	}
	if j := e.wait(KindImport, "again"); j.Status != StatusSucceeded || j.Progress.Twins != n+1 || j.Progress.Models != 0 {
		t.Fatalf("second job %+v", j)
	}
	if got := e.st.Log().Last(); got != last {
		t.Errorf("the second import emitted %d events", got-last)
	}
}

func TestImportGzipAndSpool(t *testing.T) {
	e := newEnv(t, Config{})
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	zw.Write(importFile(50))
	zw.Close()
	in := e.file("graph.ndjson.gz", zb.Bytes())
	if _, err := e.r.CreateImport(t.Context(), "gz", in, "file:logs/out.ndjson", ""); err == nil {
		t.Fatal("an output in a missing directory was accepted")
	}
	if err := os.Mkdir(filepath.Join(e.dir, "logs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.CreateImport(t.Context(), "gz", "file://"+filepath.Join(e.r.Dir(), "graph.ndjson.gz"), "file:logs/out.ndjson", ""); err != nil {
		t.Fatal(err)
	}
	if j := e.wait(KindImport, "gz"); j.Status != StatusSucceeded || j.Progress.Twins != 51 || j.Progress.Relationships != 99 {
		t.Fatalf("job %+v", j)
	}
}

func TestImportFailures(t *testing.T) {
	e := newEnv(t, Config{})
	src := fileHeader + modelsLine + roomModel + "\n" + twinsLine +
		`{"$dtId":"r1","$metadata":{"$model":"dtmi:ex:Room;1"},"temp":1}` + "\n" + // line 6
		`{"$dtId":"r2","$metadata":{"$model":"dtmi:ex:Room;1"},"temp":2}` + "\n" + // 7
		`{"$dtId":"bad","$metadata":{"$model":"dtmi:ex:Room;1"},"temp":"warm"}` + "\n" + // 8: bad twin
		`{"$dtId":"r3","$metadata":{"$model":"dtmi:ex:Room;1"}}` + "\n" + // 9: checked, not written
		`{"$dtId":"x","$metadata":{"$model":"dtmi:ex:Nope;1"}}` + "\n" + // 10: unknown model
		`{"$dtId":` + "\n" + // 11: malformed
		relsLine +
		`{"$dtId":"r1","$relationshipId":"a","$targetId":"r3","$relationshipName":"next"}` + "\n" + // 13: fine (r3 checked)
		`{"$dtId":"r1","$relationshipId":"b","$targetId":"gone","$relationshipName":"next"}` + "\n" + // 14: no target
		`{"$dtId":"r1","$relationshipId":"c","$targetId":"r2","$relationshipName":"nope"}` + "\n" // 15: no such relationship
	in := e.file("bad.ndjson", []byte(src))
	if _, err := e.r.CreateImport(t.Context(), "bad", in, "file:out.ndjson", ""); err != nil {
		t.Fatal(err)
	}
	j := e.wait(KindImport, "bad")
	if j.Status != StatusFailed || j.Error == nil || j.Error.Kind != "ValidationFailed" || j.Progress.FailedLines != 5 {
		t.Fatalf("job %+v (error %+v)", j, j.Error)
	}
	// Everything before the first failing line was imported, nothing after.
	if j.Progress.Twins != 2 || j.Progress.Models != 1 || j.Progress.Relationships != 0 {
		t.Errorf("progress %+v", j.Progress)
	}
	if tc, _ := e.graphCounts(); tc != 2 {
		t.Errorf("%d twins imported", tc)
	}
	want := []string{
		"Info Started", "Info Models Started", "Info Models Succeeded", "Info Twins Started",
		"Error Twins 8 ValidationFailed", "Error Twins 10 ValidationFailed", "Error Twins 11 InvalidArgument", "Info Twins Failed",
		"Info Relationships Started", "Error Relationships 14 TargetTwinNotFound", "Error Relationships 15 InvalidRelationship",
		"Info Relationships Failed", "Info Failed",
	}
	if got := e.logLines("file:out.ndjson"); !slices.Equal(got, want) {
		t.Errorf("output log\n  %s\nwant\n  %s", strings.Join(got, "\n  "), strings.Join(want, "\n  "))
	}
}

func TestImportStructureErrors(t *testing.T) {
	for _, tc := range []struct {
		name, src string
		want      []string
	}{
		{"no header", twinsLine, []string{"Info Started", "Error 1 ValidationFailed", "Info Failed"}},
		{"wrong version", `{"Section": "Header"}` + "\n" + `{"fileVersion": "2.0"}` + "\n",
			[]string{"Info Started", "Error Header 2 ValidationFailed", "Info Failed"}},
		{"sections out of order", fileHeader + twinsLine + modelsLine,
			[]string{"Info Started", "Error 4 ValidationFailed", "Info Failed"}},
		{"a model that does not parse", fileHeader + modelsLine + `{"@id":"dtmi:ex:A;1","@type":"Interface","@context":"dtmi:dtdl:context;3","contents":[{"@type":"Property","name":"x","schema":"nope"}]}` + "\n",
			[]string{"Info Started", "Info Models Started", "Error Models 4 DTDLParserError", "Info Models Failed", "Info Failed"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, Config{})
			in := e.file("in.ndjson", []byte(tc.src))
			if _, err := e.r.CreateImport(t.Context(), "j", in, "file:out.ndjson", ""); err != nil {
				t.Fatal(err)
			}
			if j := e.wait(KindImport, "j"); j.Status != StatusFailed {
				t.Fatalf("job %+v", j)
			}
			if got := e.logLines("file:out.ndjson"); !slices.Equal(got, tc.want) {
				t.Errorf("output log %q, want %q", got, tc.want)
			}
		})
	}
}

func TestImportRequests(t *testing.T) {
	e := newEnv(t, Config{AllowedHosts: []string{"blobs.example.net"}})
	in := e.file("in.ndjson", importFile(1))
	outside := t.TempDir()
	if err := os.WriteFile(filepath.Join(outside, "secret.ndjson"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(outside, "secret.ndjson"), filepath.Join(e.dir, "link.ndjson")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(outside, filepath.Join(e.dir, "linkdir")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, id, in, out string
		kind              twin.Kind
	}{
		{"outside the jobs directory", "j", "file:../x.ndjson", "file:out.ndjson", twin.KindValidationFailed},
		{"absolute path outside", "j", "file://" + filepath.Join(outside, "secret.ndjson"), "file:out.ndjson", twin.KindValidationFailed},
		{"a symbolic link out", "j", "file:link.ndjson", "file:out.ndjson", twin.KindValidationFailed},
		{"an output through a symbolic link out", "j", in, "file:linkdir/out.ndjson", twin.KindValidationFailed},
		{"a missing input", "j", "file:missing.ndjson", "file:out.ndjson", twin.KindValidationFailed},
		{"a host not allowed", "j", "https://evil.example.net/in.ndjson", "file:out.ndjson", twin.KindValidationFailed},
		{"http", "j", "http://blobs.example.net/in.ndjson", "file:out.ndjson", twin.KindValidationFailed},
		{"another scheme", "j", "ftp://blobs.example.net/in.ndjson", "file:out.ndjson", twin.KindValidationFailed},
		{"the output is the input", "j", in, in, twin.KindValidationFailed},
		{"no id", "", in, "file:out.ndjson", twin.KindValidationFailed},
	} {
		_, err := e.r.CreateImport(t.Context(), tc.id, tc.in, tc.out, "")
		var te *twin.Error
		if !errors.As(err, &te) || te.Kind != tc.kind {
			t.Errorf("%s: error %v, want %v", tc.name, err, tc.kind)
		}
	}
	big := e.file("big.ndjson", importFile(5000))
	if _, err := e.r.CreateImport(t.Context(), "ok", big, "file:out.ndjson", ""); err != nil {
		t.Fatal(err)
	}
	// One job at a time; the id stays taken until the job is deleted, which only a finished
	// job can be.
	_, err := e.r.CreateImport(t.Context(), "second", in, "file:out2.ndjson", "")
	var te *twin.Error
	if !errors.As(err, &te) || te.Kind != twin.KindJobLimitReached {
		t.Errorf("a second job while one runs: %v", err)
	}
	if err := e.r.DeleteImport(t.Context(), "ok"); !errors.As(err, &te) || te.Kind != twin.KindValidationFailed {
		t.Errorf("deleting a running job: %v", err)
	}
	if _, err := e.r.CancelImport(t.Context(), "ok"); err != nil {
		t.Fatal(err)
	}
	e.wait(KindImport, "ok")
	_, err = e.r.CreateImport(t.Context(), "ok", in, "file:out.ndjson", "")
	if !errors.As(err, &te) || te.Kind != twin.KindValidationFailed {
		t.Errorf("an id in use: %v", err)
	}
	if err := e.r.DeleteImport(t.Context(), "ok"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.r.Get(t.Context(), KindImport, "ok"); !errors.As(err, &te) || te.Kind != twin.KindImportJobNotFound {
		t.Errorf("Get of a deleted job: %v", err)
	}
	if err := e.r.DeleteImport(t.Context(), "ok"); !errors.As(err, &te) || te.Kind != twin.KindImportJobNotFound {
		t.Errorf("DeleteImport of a deleted job: %v", err)
	}
	if _, err := e.r.CancelImport(t.Context(), "nope"); !errors.As(err, &te) || te.Kind != twin.KindImportJobNotFound {
		t.Errorf("CancelImport of a missing job: %v", err)
	}
}

func TestImportHTTPS(t *testing.T) {
	src := importFile(20)
	var (
		mu       sync.Mutex
		uploaded []byte
		blobType string
	)
	upload := func() ([]byte, string) {
		mu.Lock()
		defer mu.Unlock()
		return uploaded, blobType
	}
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodGet && r.URL.Path == "/c/in.ndjson":
			w.Write(src)
		case r.Method == http.MethodPut && r.URL.Path == "/c/out.ndjson":
			b := new(bytes.Buffer)
			b.ReadFrom(r.Body)
			mu.Lock()
			uploaded, blobType = b.Bytes(), r.Header.Get("x-ms-blob-type")
			mu.Unlock()
			w.WriteHeader(http.StatusCreated)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	host := strings.TrimPrefix(srv.URL, "https://")
	e := newEnv(t, Config{AllowedHosts: []string{host}, HTTPClient: srv.Client()})
	if _, err := e.r.CreateImport(t.Context(), "web", srv.URL+"/c/in.ndjson?sv=x&sig=y", srv.URL+"/c/out.ndjson", ""); err != nil {
		t.Fatal(err)
	}
	if j := e.wait(KindImport, "web"); j.Status != StatusSucceeded || j.Progress.Twins != 21 {
		t.Fatalf("job %+v", j)
	}
	log, typ := upload()
	if typ != "BlockBlob" {
		t.Errorf("x-ms-blob-type %q", typ)
	}
	if got := describeLog(t, log); len(got) != 8 || got[7] != "Info Succeeded" {
		t.Errorf("uploaded log %q", got)
	}

	// An input the server does not have fails the job, with the reason in the log.
	if _, err := e.r.CreateImport(t.Context(), "missing", srv.URL+"/c/missing.ndjson", srv.URL+"/c/out.ndjson", ""); err != nil {
		t.Fatal(err)
	}
	j := e.wait(KindImport, "missing")
	if j.Status != StatusFailed || j.Error == nil || j.Error.Kind != "BadRequest" {
		t.Fatalf("job %+v", j)
	}
	log, _ = upload()
	if got := describeLog(t, log); !slices.Equal(got, []string{"Info Started", "Info Failed"}) {
		t.Errorf("uploaded log %q", got)
	}
}

func TestImportCancel(t *testing.T) {
	e := newEnv(t, Config{ChunkTime: time.Millisecond})
	in := e.file("big.ndjson", importFile(5000))
	if _, err := e.r.CreateImport(t.Context(), "c", in, "file:out.ndjson", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		j, err := e.r.Get(t.Context(), KindImport, "c")
		return err == nil && j.Progress.Twins > 0
	})
	j, err := e.r.CancelImport(t.Context(), "c")
	if err != nil || (j.Status != StatusCancelling && j.Status != StatusCancelled) {
		t.Fatalf("CancelImport = %+v, %v", j, err)
	}
	j = e.wait(KindImport, "c")
	if j.Status != StatusCancelled || j.Progress.Twins >= 5001 {
		t.Fatalf("job %+v", j)
	}
	if tc, _ := e.graphCounts(); tc != j.Progress.Twins {
		t.Errorf("graph holds %d twins, the job says it imported %d", tc, j.Progress.Twins)
	}
	var te *twin.Error
	if _, err := e.r.CancelImport(t.Context(), "c"); !errors.As(err, &te) || te.Kind != twin.KindValidationFailed {
		t.Errorf("cancelling a cancelled job: %v", err)
	}
	if got := e.logLines("file:out.ndjson"); got[len(got)-1] != "Info Cancelled" {
		t.Errorf("output log ends %q", got[len(got)-1])
	}
}

// TestImportResumes stops the runner and the store in the middle of an import, opens them
// again, and checks that the import goes on where it stopped: every twin and relationship
// once, one Create event each, and an output log with each line once.
func TestImportResumes(t *testing.T) {
	e := newEnv(t, Config{ChunkTime: time.Millisecond})
	const n = 3000
	in := e.file("big.ndjson", importFile(n))
	if _, err := e.r.CreateImport(t.Context(), "r", in, "file:out.ndjson", ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool {
		j, err := e.r.Get(t.Context(), KindImport, "r")
		return err == nil && j.Progress.Twins > 100
	})
	e.restart()
	j := e.wait(KindImport, "r")
	if j.Status != StatusSucceeded || j.Progress.Twins != n+1 || j.Progress.Relationships != 2*n-1 {
		t.Fatalf("job %+v", j)
	}
	counts := e.counts()
	if counts[event.TwinCreate] != n+1 || counts[event.RelationshipCreate] != 2*n-1 || len(counts) != 2 {
		t.Errorf("events %v", counts)
	}
	if tc, rc := e.graphCounts(); tc != n+1 || rc != 2*n-1 {
		t.Errorf("graph index holds %d twins and %d relationships", tc, rc)
	}
	if got := e.logLines("file:out.ndjson"); !slices.Equal(got, []string{
		"Info Started", "Info Models Started", "Info Models Succeeded", "Info Twins Started", "Info Twins Succeeded",
		"Info Relationships Started", "Info Relationships Succeeded", "Info Succeeded",
	}) {
		t.Errorf("output log %q", got)
	}
}

func TestDeleteJob(t *testing.T) {
	e := newEnv(t, Config{ChunkTime: time.Millisecond})
	in := e.file("g.ndjson", importFile(500))
	if _, err := e.r.CreateImport(t.Context(), "i", in, "file:out.ndjson", ""); err != nil {
		t.Fatal(err)
	}
	e.wait(KindImport, "i")
	var te *twin.Error
	for _, timeout := range []time.Duration{time.Minute, 25 * time.Hour} {
		if _, err := e.r.CreateDelete(t.Context(), "d", timeout, ""); !errors.As(err, &te) || te.Kind != twin.KindValidationFailed {
			t.Errorf("timeout %v: %v", timeout, err)
		}
	}
	j, err := e.r.CreateDelete(t.Context(), "d", 0, traceParent)
	if err != nil || j.Status != StatusNotStarted || j.Timeout != DefaultDeleteTimeout {
		t.Fatalf("CreateDelete = %+v, %v", j, err)
	}
	if _, err := e.r.CreateDelete(t.Context(), "d", 0, ""); !errors.As(err, &te) || te.Kind != twin.KindValidationFailed {
		t.Errorf("an operation id in use: %v", err)
	}
	j = e.wait(KindDelete, "d")
	if j.Status != StatusSucceeded || j.Progress.Twins != 501 || j.Progress.Relationships != 999 || j.Progress.Models != 2 {
		t.Fatalf("job %+v", j)
	}
	if tc, rc := e.graphCounts(); tc != 0 || rc != 0 {
		t.Errorf("graph index holds %d twins and %d relationships", tc, rc)
	}
	if e.svc.Models().Len() != 0 {
		t.Error("models left")
	}
	counts := e.counts()
	if counts[event.TwinDelete] != 501 || counts[event.RelationshipDelete] != 999 {
		t.Errorf("events %v", counts)
	}
	// Jobs are not deleted by a delete job.
	if _, err := e.r.Get(t.Context(), KindImport, "i"); err != nil {
		t.Errorf("the import job is gone: %v", err)
	}
	jobs, next, err := e.r.List(t.Context(), KindDelete, "", 10)
	if err != nil || len(jobs) != 1 || next != "" {
		t.Errorf("List = %v, %q, %v", jobs, next, err)
	}
}

// TestJobsPurge checks that finished jobs are forgotten once their purge time passed.
func TestJobsPurge(t *testing.T) {
	now := time.Now()
	var mu sync.Mutex
	clock := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return now
	}
	e := newEnv(t, Config{Now: clock})
	in := e.file("g.ndjson", importFile(1))
	if _, err := e.r.CreateImport(t.Context(), "old", in, "file:out.ndjson", ""); err != nil {
		t.Fatal(err)
	}
	e.wait(KindImport, "old")
	mu.Lock()
	now = now.Add(31 * 24 * time.Hour)
	mu.Unlock()
	e.restart() // purges at the start
	var te *twin.Error
	waitFor(t, func() bool {
		_, err := e.r.Get(t.Context(), KindImport, "old")
		return errors.As(err, &te) && te.Kind == twin.KindImportJobNotFound
	})
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 30s")
		}
		time.Sleep(time.Millisecond)
	}
}
