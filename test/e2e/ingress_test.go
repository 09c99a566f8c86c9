package e2e_test

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/test/process"
)

// pushResults is the answer of POST /sources/{name}/messages.
type pushResults struct {
	Results []struct {
		Status     string `json:"status"`
		Reason     string `json:"reason"`
		DeadLetter string `json:"deadLetter"`
	} `json:"results"`
}

// TestHTTPSourceThroughTheBinary runs `twinflow serve` with an http source declared in its
// config file and one created through the API, with a CEL mapping, pushes messages (one, and
// NDJSON), and checks that the twin changed and the answers, the sources' status, their dead
// letters and /metrics say what became of the messages; after a SIGKILL the sources, the
// dead letters, the twin and the message ids are back.
func TestHTTPSourceThroughTheBinary(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "twinflow.yaml")
	err := os.WriteFile(config, []byte(`
ingress:
  maxMessageBytes: 64
sources:
  plant:
    sourceType: http
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	bin := process.Build(t)
	args := []string{"--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"), "--config", config}
	srv := process.Start(t, bin, args...)
	c := newClient(srv.URL, 4)
	c.must(t, http.MethodPut, "/sources/lab", map[string]any{"sourceType": "http", "maxMessageBytes": 1000}, http.StatusCreated)
	c.must(t, http.MethodPost, "/models", []any{sensorModel}, http.StatusCreated)
	c.must(t, http.MethodPut, "/mappings/sensors", map[string]any{
		"source": "lab", "condition": "has(message.body.value)", "twinId": "message.body.device",
		"patch": map[string]string{"/value": "int(message.body.value)"},
	}, http.StatusCreated)
	c.must(t, http.MethodPut, twinPath("s1"), sensorTwin(1), http.StatusOK)

	push := func(source, contentType, body string) pushResults {
		t.Helper()
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/sources/"+source+"/messages?api-version="+apiVersion, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", contentType)
		resp, err := c.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out pushResults
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("push to %s: %d, %v", source, resp.StatusCode, err)
		}
		return out
	}
	long := `{"device":"t1","padding":"` + strings.Repeat("x", 100) + `"}`
	// Without mappings a message changes nothing; one over the source's limit is a dead letter.
	got := push("plant", "application/x-ndjson", `{"device":"t1"}`+"\n"+long+"\n")
	if len(got.Results) != 2 || got.Results[0].Status != "applied" || got.Results[1].Status != "deadLettered" ||
		!strings.Contains(got.Results[1].Reason, "the limit is 64 bytes") {
		t.Fatalf("push to plant = %+v", got)
	}
	if got := push("lab", "application/json", long); len(got.Results) != 1 || got.Results[0].Status != "applied" {
		t.Fatalf("push to lab = %+v; want its own limit to hold", got)
	}
	reading := `[{"device": "s1", "value": 7, "messageId": "r-1"}]`
	if got := push("lab", "application/json", reading); got.Results[0].Status != "applied" {
		t.Fatalf("a reading = %+v", got)
	}
	var status struct {
		Status struct {
			State        string `json:"state"`
			Received     int    `json:"received"`
			DeadLettered int    `json:"deadLettered"`
			DeadLetters  int    `json:"deadLetters"`
		} `json:"status"`
	}
	if err := json.Unmarshal(c.must(t, http.MethodGet, "/sources/plant", nil, http.StatusOK).body, &status); err != nil {
		t.Fatal(err)
	}
	if status.Status.State != "running" || status.Status.Received != 2 || status.Status.DeadLettered != 1 || status.Status.DeadLetters != 1 {
		t.Errorf("plant's status = %+v", status.Status)
	}
	metrics, err := c.http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(metrics.Body)
	metrics.Body.Close()
	if err != nil || !strings.Contains(string(body), `twinflow_source_dead_lettered_messages_total{source="plant"} 1`) {
		t.Errorf("/metrics lacks plant's dead letter (%v):\n%s", err, body)
	}

	srv.Kill()
	srv = process.Start(t, bin, args...)
	c = newClient(srv.URL, 4)
	var list struct {
		Value []struct {
			Name string `json:"name"`
		} `json:"value"`
	}
	if err := json.Unmarshal(c.must(t, http.MethodGet, "/sources", nil, http.StatusOK).body, &list); err != nil {
		t.Fatal(err)
	}
	if len(list.Value) != 2 || list.Value[0].Name != "lab" || list.Value[1].Name != "plant" {
		t.Errorf("sources after a SIGKILL = %+v; want lab and plant", list.Value)
	}
	var dls struct {
		Value []struct {
			Message struct {
				Body json.RawMessage `json:"body"`
			} `json:"message"`
		} `json:"value"`
	}
	if err := json.Unmarshal(c.must(t, http.MethodGet, "/sources/plant/deadletters", nil, http.StatusOK).body, &dls); err != nil {
		t.Fatal(err)
	}
	if len(dls.Value) != 1 || string(dls.Value[0].Message.Body) != long {
		t.Errorf("plant's dead letters after a SIGKILL = %+v", dls.Value)
	}
	if got := push("plant", "application/json", `{"device":"t1"}`); got.Results[0].Status != "applied" {
		t.Errorf("plant after the restart = %+v", got)
	}
	if got := push("lab", "application/json", `[{"device": "s1", "value": 8, "messageId": "r-1"}]`); got.Results[0].Status != "duplicate" {
		t.Errorf("the reading sent again after the restart = %+v; want a duplicate", got)
	}
	var s1 struct {
		Value int `json:"value"`
	}
	if err := json.Unmarshal(c.must(t, http.MethodGet, twinPath("s1"), nil, http.StatusOK).body, &s1); err != nil || s1.Value != 7 {
		t.Errorf("twin s1 after the restart: value %d, %v; want the reading's 7", s1.Value, err)
	}
}
