package e2e_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/test/process"
)

// importFile returns an import file of the sensor model and n sensors, each feeding the next.
func importFile(t *testing.T, n int) []byte {
	t.Helper()
	model, err := json.Marshal(sensorModel)
	if err != nil {
		t.Fatal(err)
	}
	var b bytes.Buffer
	b.WriteString(`{"Section": "Header"}` + "\n" + `{"fileVersion": "1.0.0", "author": "e2e", "organization": "twinflow"}` + "\n")
	b.WriteString(`{"Section": "Models"}` + "\n")
	b.Write(model)
	b.WriteString("\n" + `{"Section": "Twins"}` + "\n")
	for i := range n {
		fmt.Fprintf(&b, `{"$dtId":"s%d","$metadata":{"$model":"dtmi:twinflow:e2e:Sensor;1"},"value":%d,"label":"sensor %d"}`+"\n", i, i, i)
	}
	b.WriteString(`{"Section": "Relationships"}` + "\n")
	for i := range n - 1 {
		fmt.Fprintf(&b, `{"$dtId":"s%d","$relationshipId":"next","$targetId":"s%d","$relationshipName":"feeds","weight":%d}`+"\n", i, i+1, i)
	}
	return b.Bytes()
}

// jobState is the part of a job the tests look at.
type jobState struct {
	ID       string `json:"id"`
	Status   string `json:"status"`
	Progress struct {
		Section       string `json:"section"`
		Models        int    `json:"models"`
		Twins         int    `json:"twins"`
		Relationships int    `json:"relationships"`
		FailedLines   int    `json:"failedLines"`
	} `json:"progress"`
	Error *struct{ Code, Message string } `json:"error"`
}

func getJob(t *testing.T, c *client, path string) jobState {
	t.Helper()
	var j jobState
	if err := json.Unmarshal(c.must(t, http.MethodGet, path, nil, http.StatusOK).body, &j); err != nil {
		t.Fatal(err)
	}
	return j
}

// waitJob polls a job until it finished, and returns it.
func waitJob(t *testing.T, c *client, path string) jobState {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		j := getJob(t, c, path)
		if j.Status == "succeeded" || j.Status == "failed" || j.Status == "cancelled" {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s still %s: %+v", path, j.Status, j)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestImportSurvivesKill imports through the binary and kills it with SIGKILL while twins are
// being imported. After the restart the job goes on where it stopped: it succeeds, every twin
// and relationship is there exactly once (with one Create event each), queries see them, the
// output log lists each step once, and a delete job then removes it all.
func TestImportSurvivesKill(t *testing.T) {
	bin := process.Build(t)
	dataDir, jobsDir := filepath.Join(t.TempDir(), "data"), filepath.Join(t.TempDir(), "jobs")
	if err := os.MkdirAll(jobsDir, 0o755); err != nil {
		t.Fatal(err)
	}
	const n = 40_000
	if err := os.WriteFile(filepath.Join(jobsDir, "sensors.ndjson"), importFile(t, n), 0o644); err != nil {
		t.Fatal(err)
	}
	start := func() (*process.Process, *client) {
		p := process.StartEnv(t, bin, []string{"TWINFLOW_JOBS_DIR=" + jobsDir}, "--listen", "127.0.0.1:0", "--data-dir", dataDir)
		return p, newClient(p.URL, 2)
	}
	srv, c := start()
	c.must(t, http.MethodPut, "/jobs/imports/sensors",
		map[string]string{"inputBlobUri": "file:sensors.ndjson", "outputBlobUri": "file:sensors.log"}, http.StatusCreated)

	// Kill it once some twins, but not all, are in.
	var at jobState
	deadline := time.Now().Add(time.Minute)
	for {
		at = getJob(t, c, "/jobs/imports/sensors")
		if at.Progress.Twins > 0 || at.Status == "succeeded" || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	srv.Kill()
	if at.Progress.Twins == 0 || at.Progress.Twins >= n || at.Progress.Section != "Twins" {
		t.Fatalf("killed at %+v; want it inside the Twins section", at)
	}
	t.Logf("killed with %d twins imported", at.Progress.Twins)

	srv, c = start()
	j := waitJob(t, c, "/jobs/imports/sensors")
	if j.Status != "succeeded" || j.Progress.Models != 1 || j.Progress.Twins != n || j.Progress.Relationships != n-1 {
		t.Fatalf("after the restart the job is %+v", j)
	}
	counts := query[map[string]int](t, c, "SELECT COUNT() FROM DIGITALTWINS")
	rels := query[map[string]int](t, c, "SELECT COUNT() FROM RELATIONSHIPS")
	if counts[0]["COUNT"] != n || rels[0]["COUNT"] != n-1 {
		t.Errorf("queries count %v twins and %v relationships", counts, rels)
	}
	var last relDoc
	if err := json.Unmarshal(c.must(t, http.MethodGet, relPath(fmt.Sprint("s", n-2), "next"), nil, http.StatusOK).body, &last); err != nil || last.Weight != n-2 {
		t.Errorf("last relationship %+v, %v", last, err)
	}
	log, err := os.ReadFile(filepath.Join(jobsDir, "sensors.log"))
	if err != nil {
		t.Fatal(err)
	}
	if got := logSteps(t, log); !slices.Equal(got, []string{
		"Started", "Models Started", "Models Succeeded", "Twins Started", "Twins Succeeded",
		"Relationships Started", "Relationships Succeeded", "Succeeded",
	}) {
		t.Errorf("output log steps %q", got)
	}

	// A failing import: nothing after the bad line, every bad line in the log.
	bad := `{"Section": "Header"}` + "\n" + `{"fileVersion": "1.0.0"}` + "\n" + `{"Section": "Twins"}` + "\n" +
		`{"$dtId":"ok","$metadata":{"$model":"dtmi:twinflow:e2e:Sensor;1"}}` + "\n" +
		`{"$dtId":"x","$metadata":{"$model":"dtmi:twinflow:e2e:Missing;1"}}` + "\n" +
		`{"$dtId":"y","$metadata":{"$model":"dtmi:twinflow:e2e:Sensor;1"},"value":"NaN"}` + "\n"
	if err := os.WriteFile(filepath.Join(jobsDir, "bad.ndjson"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	c.must(t, http.MethodPut, "/jobs/imports/bad",
		map[string]string{"inputBlobUri": "file:bad.ndjson", "outputBlobUri": "file:bad.log"}, http.StatusCreated)
	if j := waitJob(t, c, "/jobs/imports/bad"); j.Status != "failed" || j.Error == nil || j.Error.Code != "ValidationFailed" || j.Progress.FailedLines != 2 {
		t.Errorf("failing import %+v", j)
	}
	c.must(t, http.MethodGet, twinPath("ok"), nil, http.StatusOK)
	badLog, _ := os.ReadFile(filepath.Join(jobsDir, "bad.log"))
	for _, want := range []string{`"lineNumber":5,"code":"ValidationFailed"`, `"lineNumber":6,"code":"ValidationFailed"`} {
		if !bytes.Contains(badLog, []byte(want)) {
			t.Errorf("output log lacks %s:\n%s", want, badLog)
		}
	}

	// A delete job removes every model, twin and relationship.
	if resp, err := c.do(t.Context(), http.MethodPost, "/jobs/deletions", nil, "operation-id", "wipe"); err != nil || resp.status != http.StatusAccepted {
		t.Fatalf("POST /jobs/deletions: %+v, %v", resp, err)
	}
	if j := waitJob(t, c, "/jobs/deletions/wipe"); j.Status != "succeeded" || j.Progress.Twins != n+1 || j.Progress.Relationships != n-1 {
		t.Errorf("delete job %+v", j)
	}
	if counts := query[map[string]int](t, c, "SELECT COUNT() FROM DIGITALTWINS"); counts[0]["COUNT"] != 0 {
		t.Errorf("twins left: %v", counts)
	}
	c.must(t, http.MethodGet, "/models/dtmi:twinflow:e2e:Sensor;1", nil, http.StatusNotFound)
	if err := srv.Stop(30 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}

	// Every twin and relationship was created once and deleted once: the crash duplicated
	// nothing.
	events := readLog(t, dataDir)
	for i := range n {
		id := fmt.Sprint("s", i)
		if events[eventKey{"Microsoft.DigitalTwins.Twin.Create", id}] != 1 || events[eventKey{"Microsoft.DigitalTwins.Twin.Delete", id}] != 1 {
			t.Fatalf("twin %s: %d creates, %d deletes", id, events[eventKey{"Microsoft.DigitalTwins.Twin.Create", id}],
				events[eventKey{"Microsoft.DigitalTwins.Twin.Delete", id}])
		}
		if i < n-1 {
			sub := id + "/relationships/next"
			if events[eventKey{"Microsoft.DigitalTwins.Relationship.Create", sub}] != 1 {
				t.Fatalf("relationship %s: %d creates", sub, events[eventKey{"Microsoft.DigitalTwins.Relationship.Create", sub}])
			}
		}
	}
}

// logSteps returns the Info lines of an output log as "<section> <status>".
func logSteps(t *testing.T, log []byte) []string {
	t.Helper()
	var steps []string
	sc := bufio.NewScanner(bytes.NewReader(log))
	for sc.Scan() {
		var l struct {
			LogType string `json:"logType"`
			Details struct{ Section, Status string }
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatalf("output log line %q: %v", sc.Text(), err)
		}
		if l.LogType == "Info" {
			steps = append(steps, strings.TrimSpace(l.Details.Section+" "+l.Details.Status))
		}
	}
	return steps
}
