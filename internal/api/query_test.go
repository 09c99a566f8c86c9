package api

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

// newQueryEnv starts a server whose /query answers from a graph index over the same store,
// with the test models loaded.
func newQueryEnv(t *testing.T) *env {
	t.Helper()
	logger := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(sqlite.Config{Dir: t.TempDir(), NoSync: true}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g, err := twins.New(twins.Config{ServiceID: testHost, Now: tickingClock()}, st, logger)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := graph.New(context.Background(), graph.Config{}, st, g.Models, logger)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Index: idx}, g, logger)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(a)
	t.Cleanup(srv.Close)
	e := &env{t: t, srv: srv, store: st}
	e.must(e.do(http.MethodPost, "/models", testModels), http.StatusCreated, "")
	return e
}

type queryPage struct {
	Value             []map[string]any `json:"value"`
	ContinuationToken *string          `json:"continuationToken"`
}

func (e *env) query(body string, headers ...string) (queryPage, response) {
	e.t.Helper()
	r := e.must(e.do(http.MethodPost, "/query", body, headers...), http.StatusOK, "")
	charge, err := strconv.ParseFloat(r.header.Get("query-charge"), 64)
	if err != nil || charge < 1 {
		e.t.Fatalf("query-charge = %q, want a number >= 1", r.header.Get("query-charge"))
	}
	return decode[queryPage](e.t, r), r
}

func queryBody(q string) string {
	b, _ := json.Marshal(map[string]string{"query": q})
	return string(b)
}

// TestQueryReadsOwnWrites checks that a write is visible to the next query as soon as it is
// acknowledged: no waiting, no polling.
func TestQueryReadsOwnWrites(t *testing.T) {
	e := newQueryEnv(t)
	for i := range 20 {
		id := fmt.Sprintf("room%02d", i)
		e.putRoom(id)
		page, _ := e.query(queryBody("SELECT COUNT() FROM DIGITALTWINS"))
		if got := fmt.Sprint(page.Value); got != fmt.Sprintf("[map[COUNT:%d]]", i+1) {
			t.Fatalf("after creating %s: %s", id, got)
		}
		e.must(e.do(http.MethodPatch, "/digitaltwins/"+id, `[{"op":"replace","path":"/counter","value":7}]`), http.StatusNoContent, "")
		page, _ = e.query(queryBody("SELECT T.counter FROM DIGITALTWINS T WHERE T.$dtId = '" + id + "'"))
		if got := fmt.Sprint(page.Value); got != "[map[counter:7]]" {
			t.Fatalf("after patching %s: %s", id, got)
		}
	}
	e.must(e.do(http.MethodDelete, "/digitaltwins/room00", ""), http.StatusNoContent, "")
	page, _ := e.query(queryBody("SELECT * FROM DIGITALTWINS WHERE $dtId = 'room00'"))
	if len(page.Value) != 0 {
		t.Fatalf("deleted twin still found: %v", page.Value)
	}
}

// TestQueryPaging pages through results with max-items-per-page and the opaque token.
func TestQueryPaging(t *testing.T) {
	e := newQueryEnv(t)
	var want []string
	for i := range 7 {
		id := fmt.Sprintf("r%d", i)
		e.putRoom(id)
		want = append(want, id)
	}
	var got []string
	body := queryBody("SELECT T.$dtId FROM DIGITALTWINS T WHERE IS_OF_MODEL(T, 'dtmi:test:Room;1')")
	for pages := 1; ; pages++ {
		page, _ := e.query(body, "max-items-per-page", "3")
		if len(page.Value) > 3 {
			t.Fatalf("page %d has %d rows", pages, len(page.Value))
		}
		for _, row := range page.Value {
			got = append(got, row["$dtId"].(string))
		}
		if page.ContinuationToken == nil {
			if pages != 3 {
				t.Errorf("%d pages, want 3", pages)
			}
			break
		}
		tok, _ := json.Marshal(map[string]string{"continuationToken": *page.ContinuationToken})
		body = string(tok)
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v", got, want)
	}
}

func TestQueryShapes(t *testing.T) {
	e := newQueryEnv(t)
	e.putRoom("a")
	e.putRoom("b")
	e.must(e.do(http.MethodPut, "/digitaltwins/a/relationships/ab", `{"$relationshipName":"next","$targetId":"b","weight":3}`), http.StatusOK, "")

	page, r := e.query(queryBody("SELECT * FROM DIGITALTWINS WHERE $dtId = 'a'"))
	if got := r.header.Get("Content-Type"); got != contentTypeJSON {
		t.Errorf("Content-Type %q", got)
	}
	md, _ := page.Value[0]["$metadata"].(map[string]any)
	if page.Value[0]["$dtId"] != "a" || md["$lastUpdateTime"] == nil || page.ContinuationToken != nil {
		t.Errorf("SELECT *: %s", r.body)
	}
	// Before 2022-05-31, documents leave out $lastUpdateTime, as ADT's do.
	old := e.must(e.do(http.MethodPost, "/query?api-version=2020-10-31", queryBody("SELECT * FROM DIGITALTWINS WHERE $dtId = 'a'")), http.StatusOK, "")
	oldPage := decode[queryPage](t, old)
	if md, _ := oldPage.Value[0]["$metadata"].(map[string]any); md["$lastUpdateTime"] != nil {
		t.Errorf("api-version 2020-10-31 kept $lastUpdateTime: %s", old.body)
	}
	// So do projected twins, and nothing else in the row changes.
	old = e.must(e.do(http.MethodPost, "/query?api-version=2020-10-31",
		queryBody("SELECT T, R, T.$dtId AS id FROM DIGITALTWINS T JOIN U RELATED T.next R WHERE T.$dtId = 'a'")), http.StatusOK, "")
	oldPage = decode[queryPage](t, old)
	tw, _ := oldPage.Value[0]["T"].(map[string]any)
	rel, _ := oldPage.Value[0]["R"].(map[string]any)
	if md, _ := tw["$metadata"].(map[string]any); md == nil || md["$lastUpdateTime"] != nil || tw["$dtId"] != "a" ||
		rel["$relationshipId"] != "ab" || oldPage.Value[0]["id"] != "a" {
		t.Errorf("api-version 2020-10-31, projected twin: %s", old.body)
	}
	newer, _ := e.query(queryBody("SELECT T FROM DIGITALTWINS T WHERE T.$dtId = 'a'"))
	if tw, _ := newer.Value[0]["T"].(map[string]any); tw["$metadata"].(map[string]any)["$lastUpdateTime"] == nil {
		t.Errorf("the current api-version lost $lastUpdateTime of a projected twin: %v", newer.Value)
	}

	for q, want := range map[string]string{
		"SELECT COUNT() FROM DIGITALTWINS": "[map[COUNT:2]]",
		"SELECT A.$dtId AS src, R.weight, B.$dtId AS dst FROM DIGITALTWINS A JOIN B RELATED A.next R WHERE A.$dtId = 'a'": "[map[dst:b src:a weight:3]]",
		"SELECT r.$relationshipId AS id FROM DIGITALTWINS MATCH (x)-[r:next]->(y) WHERE y.$dtId = 'b'":                    "[map[id:ab]]",
		"SELECT $relationshipId, $sourceId FROM RELATIONSHIPS":                                                            "[map[$relationshipId:ab $sourceId:a]]",
	} {
		page, _ := e.query(queryBody(q))
		if got := fmt.Sprint(page.Value); got != want {
			t.Errorf("%s:\n got %s\nwant %s", q, got, want)
		}
	}
}

func TestQueryErrors(t *testing.T) {
	e := newQueryEnv(t)
	r := e.must(e.do(http.MethodPost, "/query", queryBody("foo")), http.StatusBadRequest, "SqlQueryError")
	want := "SQL query parse failed: SQL Parser Error, Line=1, Position=0, Message=missing SELECT at 'foo' See samples in https://aka.ms/adtv2query for the correct syntax."
	if got := decode[errorBody](t, r).Error.Message; got != want {
		t.Errorf("message:\n got %q\nwant %q", got, want)
	}
	e.must(e.do(http.MethodPost, "/query", queryBody("SELECT * FROM DIGITALTWINS T JOIN C RELATED T.x WHERE T.$dtId = 'a'")), http.StatusBadRequest, "SqlQueryError")
	long := "SELECT * FROM DIGITALTWINS WHERE name = '" + strings.Repeat("x", 8000) + "'"
	e.must(e.do(http.MethodPost, "/query", queryBody(long)), http.StatusBadRequest, "SqlQueryError")
	for _, tok := range []string{"garbage!", "e30", "eyJxIjoiZm9vIn0"} { // not base64, {}, {"q":"foo"}
		e.must(e.do(http.MethodPost, "/query", `{"continuationToken":"`+tok+`"}`), http.StatusBadRequest, "BadRequest")
	}
	e.must(e.do(http.MethodPost, "/query", `{}`), http.StatusBadRequest, "BadRequest")
	e.must(e.do(http.MethodPost, "/query", `[1]`), http.StatusBadRequest, "BadRequest")
	e.must(e.do(http.MethodPost, "/query", queryBody("SELECT * FROM DIGITALTWINS"), "max-items-per-page", "0"), http.StatusBadRequest, "InvalidArgument")
	e.must(e.do(http.MethodGet, "/query", ""), http.StatusMethodNotAllowed, "MethodNotAllowed")
}
