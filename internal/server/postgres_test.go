package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/testenv"
)

// TestPostgreSQLStore runs the server on the PostgreSQL store: what one server wrote, a
// second one on the same database (and another data directory) reads; while the database
// cannot be reached, writes answer 503 with Retry-After and queries keep answering from the
// index, and the server keeps running (the index, the job runner and data history wait for
// the database); once it is back, writes succeed again without a restart.
func TestPostgreSQLStore(t *testing.T) {
	dsn, schema := testenv.PostgreSQLSchema(t, "store_api")
	db := testenv.NewProxy(t, testenv.PostgreSQLAddr)
	cfg := Config{Config: config.Config{
		Store: config.Store{DSN: strings.Replace(dsn, testenv.PostgreSQLAddr, db.Addr(), 1), Schema: schema},
	}}

	s, stop := start(t, cfg, nil)
	c := restClient{t: t, base: s.URL()}
	c.do(http.MethodPost, "/models", `[{"@id":"dtmi:twinflow:test:P;1","@type":"Interface","@context":"dtmi:dtdl:context;3",`+
		`"contents":[{"@type":"Property","name":"n","schema":"integer","writable":true}]}]`, http.StatusCreated)
	c.do(http.MethodPut, "/digitaltwins/a", `{"$metadata":{"$model":"dtmi:twinflow:test:P;1"},"n":1}`, http.StatusOK)
	c.do(http.MethodPatch, "/digitaltwins/a", `[{"op":"replace","path":"/n","value":2}]`, http.StatusNoContent)
	if err := stop(); err != nil {
		t.Fatalf("stop the first server: %v", err)
	}

	// A second server, with a data directory of its own, finds the model and the twin.
	s, _ = start(t, cfg, nil)
	c = restClient{t: t, base: s.URL()}
	var tw struct{ N int }
	if err := json.Unmarshal(c.do(http.MethodGet, "/digitaltwins/a", nil, http.StatusOK), &tw); err != nil || tw.N != 2 {
		t.Fatalf("twin a on the second server: n = %d, %v; want 2", tw.N, err)
	}
	count := func() string {
		return string(c.do(http.MethodPost, "/query", map[string]any{"query": "SELECT COUNT() FROM DIGITALTWINS WHERE n = 2"}, http.StatusOK))
	}
	if got := count(); !strings.Contains(got, `"COUNT":1`) {
		t.Fatalf("query on the second server = %s; want a count of 1", got)
	}

	// The database goes away: writes are 503 with Retry-After, queries answer from the index.
	db.Cut()
	req, _ := http.NewRequest(http.MethodPatch, s.URL()+"/digitaltwins/a?api-version=2023-10-31",
		strings.NewReader(`[{"op":"replace","path":"/n","value":3}]`))
	req.Header.Set("Content-Type", "application/json-patch+json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "ServiceUnavailable") {
		t.Errorf("PATCH without the database = %d (Retry-After %q) %s; want 503 ServiceUnavailable with Retry-After",
			resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if got := count(); !strings.Contains(got, `"COUNT":1`) {
		t.Errorf("query without the database = %s; want the count of 1 from the index", got)
	}

	// It comes back: writes succeed again, without a restart.
	db.Restore()
	deadline := time.Now().Add(20 * time.Second)
	for {
		req, _ := http.NewRequest(http.MethodPatch, s.URL()+"/digitaltwins/a?api-version=2023-10-31",
			strings.NewReader(`[{"op":"replace","path":"/n","value":4}]`))
		req.Header.Set("Content-Type", "application/json-patch+json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusNoContent {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("PATCH after the database came back = %d, still failing after 20 s", resp.StatusCode)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err := json.Unmarshal(c.do(http.MethodGet, "/digitaltwins/a", nil, http.StatusOK), &tw); err != nil || tw.N != 4 {
		t.Errorf("twin a after the database came back: n = %d, %v; want 4", tw.N, err)
	}
}

// TestIfMatchAcrossNodes has two nodes of one PostgreSQL store patch one twin with the same
// If-Match at the same moment, round after round: exactly one of them wins each round, the
// other answers 412, and the twin holds the winner's value.
func TestIfMatchAcrossNodes(t *testing.T) {
	dsn, schema := testenv.PostgreSQLSchema(t, "ifmatch")
	cfg := Config{Config: config.Config{
		Store:   config.Store{DSN: dsn, Schema: schema},
		History: config.History{Mode: config.HistoryOff},
	}}
	a, _ := start(t, cfg, nil)
	ca := restClient{t: t, base: a.URL()}
	ca.do(http.MethodPost, "/models", `[{"@id":"dtmi:twinflow:test:M;1","@type":"Interface","@context":"dtmi:dtdl:context;3",`+
		`"contents":[{"@type":"Property","name":"n","schema":"integer","writable":true}]}]`, http.StatusCreated)
	ca.do(http.MethodPut, "/digitaltwins/m", `{"$metadata":{"$model":"dtmi:twinflow:test:M;1"},"n":0}`, http.StatusOK)
	b, _ := start(t, cfg, nil)
	nodes := []string{a.URL(), b.URL()}

	for round := range 20 {
		var tw struct {
			ETag string `json:"$etag"`
		}
		if err := json.Unmarshal(ca.do(http.MethodGet, "/digitaltwins/m", nil, http.StatusOK), &tw); err != nil {
			t.Fatal(err)
		}
		codes := make([]int, len(nodes))
		var wg sync.WaitGroup
		for i, base := range nodes {
			wg.Go(func() {
				req, _ := http.NewRequest(http.MethodPatch, base+"/digitaltwins/m?api-version=2023-10-31",
					strings.NewReader(fmt.Sprintf(`[{"op":"replace","path":"/n","value":%d}]`, 100*round+i)))
				req.Header.Set("Content-Type", "application/json-patch+json")
				req.Header.Set("If-Match", tw.ETag)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				codes[i] = resp.StatusCode
			})
		}
		wg.Wait()
		winner := slices.Index(codes, http.StatusNoContent)
		if winner < 0 || codes[1-winner] != http.StatusPreconditionFailed {
			t.Fatalf("round %d: the two nodes answered %v; want one 204 and one 412", round, codes)
		}
		var got struct{ N int }
		if err := json.Unmarshal(ca.do(http.MethodGet, "/digitaltwins/m", nil, http.StatusOK), &got); err != nil || got.N != 100*round+winner {
			t.Fatalf("round %d: n = %d, %v; want the winner's %d", round, got.N, err, 100*round+winner)
		}
	}
}

// TestModelUploadAcrossNodes has two nodes of one PostgreSQL store add the same model at the
// same moment, round after round: one answers 201, the other 409 ModelIdAlreadyExists.
func TestModelUploadAcrossNodes(t *testing.T) {
	dsn, schema := testenv.PostgreSQLSchema(t, "models")
	cfg := Config{Config: config.Config{
		Store:   config.Store{DSN: dsn, Schema: schema},
		History: config.History{Mode: config.HistoryOff},
	}}
	a, _ := start(t, cfg, nil)
	b, _ := start(t, cfg, nil)
	nodes := []string{a.URL(), b.URL()}
	for round := range 10 {
		model := fmt.Sprintf(`[{"@id":"dtmi:twinflow:test:Race%d;1","@type":"Interface","@context":"dtmi:dtdl:context;3"}]`, round)
		codes := make([]int, len(nodes))
		var wg sync.WaitGroup
		for i, base := range nodes {
			wg.Go(func() {
				resp, err := http.Post(base+"/models?api-version=2023-10-31", "application/json", strings.NewReader(model))
				if err != nil {
					t.Error(err)
					return
				}
				resp.Body.Close()
				codes[i] = resp.StatusCode
			})
		}
		wg.Wait()
		slices.Sort(codes)
		if !slices.Equal(codes, []int{http.StatusCreated, http.StatusConflict}) {
			t.Fatalf("round %d: the two nodes answered %v; want one 201 and one 409", round, codes)
		}
	}
}
