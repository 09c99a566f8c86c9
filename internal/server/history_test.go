package server

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/testenv"
)

// restClient sends requests to a server's API and checks their status.
type restClient struct {
	t    testing.TB
	base string
}

// do sends body (JSON unless a string) to path and returns the answer's body, failing the
// test unless the status is want. path may carry a query string; api-version is added.
func (c restClient) do(method, path string, body any, want int, header ...string) []byte {
	c.t.Helper()
	var r io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		r = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		r = strings.NewReader(string(raw))
	}
	u := path
	if !strings.HasPrefix(u, "http") {
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		u = c.base + path + sep + "api-version=2023-10-31"
	}
	req, err := http.NewRequest(method, u, r)
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s = %d %s; want %d", method, path, resp.StatusCode, out, want)
	}
	return out
}

// historyPage is a page of GET .../history.
type historyPage struct {
	Value []struct {
		Key             string          `json:"key"`
		TimeStamp       string          `json:"timeStamp"`
		SourceTimeStamp *string         `json:"sourceTimeStamp"`
		Value           json.RawMessage `json:"value"`
		Action          string          `json:"action"`
	} `json:"value"`
	NextLink *string `json:"nextLink"`
}

// values returns the page's values as compact JSON texts.
func (p historyPage) values() []string {
	var out []string
	for _, v := range p.Value {
		out = append(out, string(v.Value))
	}
	return out
}

// TestHistoryThroughTheAPI writes a scripted timeline of twin and relationship changes
// through the API and reads it back through every history path: the changes of a property
// (after its twin is gone, too, and page by page), a relationship's, bucketed aggregates
// over the twins a query selects, queries of the graph as it stood at several moments, and
// the status; bad input is refused with a 400 that says why. It runs on the embedded store
// and on PostgreSQL.
func TestHistoryThroughTheAPI(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) { testHistoryThroughTheAPI(t, config.History{}) })
	t.Run("postgres", func(t *testing.T) {
		dsn, schema := testenv.PostgreSQLSchema(t, "history_api")
		testHistoryThroughTheAPI(t, config.History{DSN: dsn, Schema: schema})
	})
}

func testHistoryThroughTheAPI(t *testing.T, hc config.History) {
	s, _ := start(t, Config{Config: config.Config{History: hc}}, nil)
	c := restClient{t: t, base: s.URL()}
	c.do(http.MethodPost, "/models", `[{"@id":"dtmi:twinflow:test:H;1","@type":"Interface","@context":"dtmi:dtdl:context;3",`+
		`"contents":[{"@type":"Property","name":"n","schema":"integer","writable":true},`+
		`{"@type":"Relationship","name":"feeds","properties":[{"@type":"Property","name":"weight","schema":"integer","writable":true}]}]}]`, http.StatusCreated)
	twin := func(n int) string { return fmt.Sprintf(`{"$metadata":{"$model":"dtmi:twinflow:test:H;1"},"n":%d}`, n) }
	patch := func(n int) string { return fmt.Sprintf(`[{"op":"replace","path":"/n","value":%d}]`, n) }
	// moment separates two steps of the timeline and returns a time between them.
	moment := func() time.Time {
		time.Sleep(5 * time.Millisecond)
		at := time.Now()
		time.Sleep(5 * time.Millisecond)
		return at
	}

	before := moment()
	c.do(http.MethodPut, "/digitaltwins/a", twin(1), http.StatusOK)
	afterCreate := moment()
	c.do(http.MethodPatch, "/digitaltwins/a", patch(2), http.StatusNoContent)
	c.do(http.MethodPut, "/digitaltwins/b", twin(7), http.StatusOK)
	c.do(http.MethodPut, "/digitaltwins/a/relationships/r1", `{"$targetId":"b","$relationshipName":"feeds","weight":5}`, http.StatusOK)
	linked := moment()
	c.do(http.MethodPatch, "/digitaltwins/a", patch(3), http.StatusNoContent)
	c.do(http.MethodDelete, "/digitaltwins/a/relationships/r1", nil, http.StatusNoContent)
	c.do(http.MethodDelete, "/digitaltwins/b", nil, http.StatusNoContent)
	after := moment()

	// The writer follows the log: wait until it has caught up.
	caughtUp := func() {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			var st struct {
				LagEvents uint64           `json:"lagEvents"`
				Cursor    uint64           `json:"cursor"`
				Tables    map[string]int64 `json:"tables"`
				Owner     string           `json:"owner"`
			}
			if err := json.Unmarshal(c.do(http.MethodGet, "/history/status", nil, http.StatusOK), &st); err != nil {
				t.Fatal(err)
			}
			if st.LagEvents == 0 && st.Cursor > 0 {
				if st.Tables["AdtTwinLifeCycleEvents"] != 3 || st.Tables["AdtRelationshipLifeCycleEvents"] != 2 {
					t.Errorf("status tables = %v; want 3 twin and 2 relationship lifecycle rows", st.Tables)
				}
				// History in PostgreSQL is written by the node holding its lease, this one;
				// history in the data directory by every node for itself.
				want := ""
				if hc.DSN != "" {
					want = s.ServiceID()
				}
				if st.Owner != want {
					t.Errorf("status owner = %q; want %q", st.Owner, want)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("history lags after 10s: %+v", st)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	caughtUp()
	// The embedded store keeps checkpoints for asOf, and the writer reports how far they go
	// once its first pass is done; PostgreSQL keeps none.
	checkpointed := func() string {
		var st struct {
			CheckpointedTo string `json:"checkpointedTo"`
		}
		if err := json.Unmarshal(c.do(http.MethodGet, "/history/status", nil, http.StatusOK), &st); err != nil {
			t.Fatal(err)
		}
		return st.CheckpointedTo
	}
	for deadline := time.Now().Add(10 * time.Second); hc.DSN == "" && checkpointed() == ""; time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no checkpointedTo in /history/status after 10s")
		}
	}
	if got := checkpointed(); hc.DSN != "" && got != "" {
		t.Errorf("checkpointedTo %q with history in PostgreSQL", got)
	}

	_, metrics := get(t, http.DefaultClient, s.URL()+"/metrics")
	for _, m := range []string{"twinflow_history_rows_written_total", "twinflow_history_lag_events 0", "twinflow_history_write_seconds_count"} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}

	read := func(path string, header ...string) historyPage {
		t.Helper()
		var p historyPage
		if err := json.Unmarshal(c.do(http.MethodGet, path, nil, http.StatusOK, header...), &p); err != nil {
			t.Fatal(err)
		}
		return p
	}
	got := read("/digitaltwins/a/history?property=n")
	if !slices.Equal(got.values(), []string{"1", "2", "3"}) || got.NextLink != nil {
		t.Errorf("a's history of n = %v, next %v; want 1, 2, 3 on one page", got.values(), got.NextLink)
	}
	for _, v := range got.Value {
		if v.Key != "n" || v.Action != "update" || v.SourceTimeStamp != nil || v.TimeStamp == "" {
			t.Errorf("row %+v; want key n, action update, a timeStamp and no sourceTimeStamp", v)
		}
	}
	// Page by page.
	first := read("/digitaltwins/a/history?property=n", "max-items-per-page", "2")
	if len(first.Value) != 2 || first.NextLink == nil {
		t.Fatalf("first page = %v, next %v; want 2 rows and a nextLink", first.values(), first.NextLink)
	}
	if next := read(*first.NextLink); !slices.Equal(next.values(), []string{"3"}) || next.NextLink != nil {
		t.Errorf("second page = %v, next %v; want 3 alone", next.values(), next.NextLink)
	}
	// A time range.
	q := url.Values{"property": {"n"}, "from": {afterCreate.Format(time.RFC3339Nano)}, "to": {linked.Format(time.RFC3339Nano)}}
	if got := read("/digitaltwins/a/history?" + q.Encode()); !slices.Equal(got.values(), []string{"2"}) {
		t.Errorf("a's n between its creation and the link = %v; want 2", got.values())
	}
	// History outlives the twin and the relationship; unknown ones have none.
	if got := read("/digitaltwins/b/history"); !slices.Equal(got.values(), []string{"7"}) {
		t.Errorf("deleted b's history = %v; want 7", got.values())
	}
	if got := read("/digitaltwins/a/relationships/r1/history?property=weight"); !slices.Equal(got.values(), []string{"5"}) {
		t.Errorf("r1's history = %v; want 5", got.values())
	}
	if got := read("/digitaltwins/nobody/history?property=n"); len(got.Value) != 0 {
		t.Errorf("an unknown twin's history = %v; want none", got.values())
	}

	// The lifecycle of a twin and of the relationships it is the source of, in order.
	type lifecyclePage struct {
		Value []struct {
			Kind, Action, TimeStamp, ModelID, RelationshipID, RelationshipName, TargetID string
		} `json:"value"`
		NextLink *string `json:"nextLink"`
	}
	lifecycle := func(path string, header ...string) (rows []string, next *string) {
		t.Helper()
		var p lifecyclePage
		if err := json.Unmarshal(c.do(http.MethodGet, path, nil, http.StatusOK, header...), &p); err != nil {
			t.Fatal(err)
		}
		for _, v := range p.Value {
			if _, err := time.Parse(time.RFC3339Nano, v.TimeStamp); err != nil {
				t.Errorf("%s: row %+v has no RFC 3339 timeStamp", path, v)
			}
			rows = append(rows, v.Kind+" "+v.Action+" "+v.ModelID+v.RelationshipID+" "+v.RelationshipName+" "+v.TargetID)
		}
		return rows, p.NextLink
	}
	aLife := []string{"twin Create dtmi:twinflow:test:H;1  ", "relationship Create r1 feeds b", "relationship Delete r1 feeds b"}
	if got, next := lifecycle("/digitaltwins/a/lifecycle"); !slices.Equal(got, aLife) || next != nil {
		t.Errorf("a's lifecycle = %q, next %v; want %q on one page", got, next, aLife)
	}
	if got, _ := lifecycle("/digitaltwins/b/lifecycle"); !slices.Equal(got, []string{"twin Create dtmi:twinflow:test:H;1  ", "twin Delete dtmi:twinflow:test:H;1  "}) {
		t.Errorf("deleted b's lifecycle = %q; want its creation and deletion", got)
	}
	got1, next := lifecycle("/digitaltwins/a/lifecycle", "max-items-per-page", "2")
	if !slices.Equal(got1, aLife[:2]) || next == nil {
		t.Fatalf("a's lifecycle, first page of 2 = %q, next %v", got1, next)
	}
	if got2, next := lifecycle(*next); !slices.Equal(got2, aLife[2:]) || next != nil {
		t.Errorf("a's lifecycle, second page = %q, next %v; want %q alone", got2, next, aLife[2:])
	}
	q = url.Values{"from": {afterCreate.Format(time.RFC3339Nano)}, "to": {linked.Format(time.RFC3339Nano)}}
	if got, _ := lifecycle("/digitaltwins/a/lifecycle?" + q.Encode()); !slices.Equal(got, aLife[1:2]) {
		t.Errorf("a's lifecycle between its creation and the link = %q; want the link", got)
	}
	if got, _ := lifecycle("/digitaltwins/nobody/lifecycle"); len(got) != 0 {
		t.Errorf("an unknown twin's lifecycle = %q; want none", got)
	}

	// Aggregates over the twins a query selects.
	var agg struct {
		Value []struct {
			ID     string           `json:"id"`
			Series []map[string]any `json:"series"`
		} `json:"value"`
	}
	body := map[string]any{
		"query": "SELECT T FROM DIGITALTWINS T WHERE T.$dtId = 'a'", "property": "n",
		"from": before.Add(-time.Minute).Format(time.RFC3339Nano), "to": after.Add(time.Hour).Format(time.RFC3339Nano),
		// Buckets are aligned from the epoch, as bin() aligns them: one of 10,000 days holds
		// every change (its boundaries are in 2024 and 2052).
		"interval": "P10000D", "aggregates": []string{"avg", "min", "max", "count", "first", "last"},
	}
	if err := json.Unmarshal(c.do(http.MethodPost, "/history/query", body, http.StatusOK), &agg); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"avg": 2.0, "min": 1.0, "max": 3.0, "count": 3.0, "first": 1.0, "last": 3.0}
	if len(agg.Value) != 1 || agg.Value[0].ID != "a" || len(agg.Value[0].Series) != 1 {
		t.Fatalf("history query = %+v; want one bucket of twin a", agg.Value)
	}
	for k, v := range want {
		if agg.Value[0].Series[0][k] != v {
			t.Errorf("bucket %s = %v; want %v (bucket %v)", k, agg.Value[0].Series[0][k], v, agg.Value[0].Series[0])
		}
	}
	// Asking for one edge alone still finds it.
	body["aggregates"] = []string{"last"}
	var last struct {
		Value []struct {
			Series []map[string]any `json:"series"`
		} `json:"value"`
	}
	if err := json.Unmarshal(c.do(http.MethodPost, "/history/query", body, http.StatusOK), &last); err != nil {
		t.Fatal(err)
	}
	if len(last.Value) != 1 || len(last.Value[0].Series) != 1 || last.Value[0].Series[0]["last"] != 3.0 {
		t.Errorf("history query of last = %+v; want one bucket with last 3", last.Value)
	}

	// The graph as it stood.
	asOf := func(at time.Time, query string) []json.RawMessage {
		t.Helper()
		var page struct {
			Value []json.RawMessage `json:"value"`
		}
		raw := c.do(http.MethodPost, "/query", map[string]any{"query": query, "asOf": at.Format(time.RFC3339Nano)}, http.StatusOK)
		if err := json.Unmarshal(raw, &page); err != nil {
			t.Fatal(err)
		}
		return page.Value
	}
	ids := func(rows []json.RawMessage) []string {
		var out []string
		for _, r := range rows {
			var doc struct {
				ID string `json:"$dtId"`
				N  int    `json:"n"`
			}
			if err := json.Unmarshal(r, &doc); err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprintf("%s=%d", doc.ID, doc.N))
		}
		slices.Sort(out)
		return out
	}
	for _, tt := range []struct {
		name  string
		at    time.Time
		twins []string
		fed   int
	}{
		{"before", before, nil, 0},
		{"after the creation", afterCreate, []string{"a=1"}, 0},
		{"linked", linked, []string{"a=2", "b=7"}, 1},
		{"after", after, []string{"a=3"}, 0},
	} {
		if got := ids(asOf(tt.at, "SELECT * FROM DIGITALTWINS")); !slices.Equal(got, tt.twins) {
			t.Errorf("%s: twins %v; want %v", tt.name, got, tt.twins)
		}
		if got := asOf(tt.at, "SELECT B FROM DIGITALTWINS A JOIN B RELATED A.feeds WHERE A.$dtId = 'a'"); len(got) != tt.fed {
			t.Errorf("%s: a feeds %d twins; want %d", tt.name, len(got), tt.fed)
		}
	}

	// A query of the past keeps its graph for the next pages until history changes that
	// past: a patch now changes the graph of an hour ahead.
	ahead := time.Now().Add(time.Hour)
	for range 2 {
		if got := ids(asOf(ahead, "SELECT * FROM DIGITALTWINS")); !slices.Equal(got, []string{"a=3"}) {
			t.Errorf("an hour ahead: twins %v; want a=3", got)
		}
	}
	c.do(http.MethodPatch, "/digitaltwins/a", patch(4), http.StatusNoContent)
	caughtUp()
	if got := ids(asOf(ahead, "SELECT * FROM DIGITALTWINS")); !slices.Equal(got, []string{"a=4"}) {
		t.Errorf("an hour ahead, after a patch: twins %v; want a=4", got)
	}

	// Bad input.
	for _, tt := range []struct {
		method, path string
		body         any
		want         string
	}{
		{http.MethodGet, "/digitaltwins/a/history?from=yesterday", nil, "RFC 3339"},
		{http.MethodGet, "/digitaltwins/a/history?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", nil, "must be before"},
		{http.MethodGet, "/digitaltwins/a/lifecycle?to=tomorrow", nil, "RFC 3339"},
		{http.MethodGet, "/digitaltwins/a/lifecycle?from=2026-01-02T00:00:00Z&to=2026-01-01T00:00:00Z", nil, "must be before"},
		{http.MethodGet, "/digitaltwins/a/lifecycle?continuationToken=bm9wZQ", nil, "continuation token"},
		{http.MethodPost, "/history/query", map[string]any{"query": "SELECT T FROM DIGITALTWINS T", "property": "n",
			"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "interval": "P1M"}, "interval"},
		{http.MethodPost, "/history/query", map[string]any{"query": "SELECT T FROM DIGITALTWINS T", "property": "n",
			"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "interval": "PT1H", "aggregates": []string{"median"}}, "Unknown aggregate"},
		{http.MethodPost, "/history/query", map[string]any{"query": "SELECT COUNT() FROM DIGITALTWINS", "property": "n",
			"from": "2026-01-01T00:00:00Z", "to": "2026-01-02T00:00:00Z", "interval": "PT1H"}, "one projection"},
		{http.MethodPost, "/query", map[string]any{"query": "SELECT * FROM DIGITALTWINS", "asOf": "then"}, "RFC 3339"},
		{http.MethodPost, "/query", map[string]any{"query": "SELECT * FROM DIGITALTWINS", "asOf": "2001-01-01T00:00:00Z"}, "retention"},
	} {
		if got := string(c.do(tt.method, tt.path, tt.body, http.StatusBadRequest)); !strings.Contains(got, tt.want) {
			t.Errorf("%s %s = %s; want a reason saying %q", tt.method, tt.path, got, tt.want)
		}
	}
}

// TestHistoryOff checks that -history off leaves the history paths out and refuses asOf.
func TestHistoryOff(t *testing.T) {
	s, _ := start(t, Config{Config: config.Config{History: config.History{Mode: config.HistoryOff}}}, nil)
	c := restClient{t: t, base: s.URL()}
	c.do(http.MethodGet, "/history/status", nil, http.StatusNotFound)
	got := string(c.do(http.MethodPost, "/query", map[string]any{"query": "SELECT * FROM DIGITALTWINS", "asOf": "2026-01-01T00:00:00Z"}, http.StatusBadRequest))
	if !strings.Contains(got, "history") {
		t.Errorf("asOf with history off = %s; want a reason naming history", got)
	}
}
