package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/tracecontext"
	"github.com/twinflow/twinflow/internal/twins"
)

// Models shared by the tests below.
const testModels = `[
  {"@id": "dtmi:test:Thermostat;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2",
   "contents": [{"@type": "Property", "name": "setPoint", "schema": "double", "writable": true}]},
  {"@id": "dtmi:test:Room;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2",
   "contents": [{"@type": "Property", "name": "counter", "schema": "integer", "writable": true},
                {"@type": "Property", "name": "note", "schema": "string", "writable": true},
                {"@type": "Component", "name": "thermostat", "schema": "dtmi:test:Thermostat;1"},
                {"@type": "Relationship", "name": "next",
                 "properties": [{"@type": "Property", "name": "weight", "schema": "integer", "writable": true}]}]}
]`

const roomBody = `{"$metadata": {"$model": "dtmi:test:Room;1"}, "counter": 0, "thermostat": {"$metadata": {}}}`

// newTestEnv starts a server with the test models loaded.
func newTestEnv(t testing.TB, cfg Config) *env {
	t.Helper()
	e := newEnv(t, cfg)
	e.must(e.do(http.MethodPost, "/models", testModels), http.StatusCreated, "")
	return e
}

func (e *env) putRoom(id string) string {
	e.t.Helper()
	r := e.must(e.do(http.MethodPut, "/digitaltwins/"+url.PathEscape(id), roomBody), http.StatusOK, "")
	return r.header.Get("ETag")
}

func TestOversizeBodies(t *testing.T) {
	e := newTestEnv(t, Config{MaxModelBodyBytes: 4 << 10})
	e.putRoom("r1")

	big := fmt.Sprintf(`{"$metadata": {"$model": "dtmi:test:Room;1"}, "note": %q, "thermostat": {"$metadata": {}}}`, strings.Repeat("x", DefaultMaxBodyBytes))
	e.must(e.do(http.MethodPut, "/digitaltwins/big", big), http.StatusBadRequest, "LimitExceeded")
	e.must(e.do(http.MethodGet, "/digitaltwins/big", ""), http.StatusNotFound, "DigitalTwinNotFound")

	bigPatch := fmt.Sprintf(`[{"op": "add", "path": "/note", "value": %q}]`, strings.Repeat("x", DefaultMaxBodyBytes))
	e.must(e.do(http.MethodPatch, "/digitaltwins/r1", bigPatch), http.StatusBadRequest, "LimitExceeded")

	// Just under the limit is read, and then judged by the twin service, not by size.
	justUnder := fmt.Sprintf(`[{"op": "add", "path": "/note", "value": %q}]`, strings.Repeat("y", 1000))
	e.must(e.do(http.MethodPatch, "/digitaltwins/r1", justUnder), http.StatusNoContent, "")

	bigModel := fmt.Sprintf(`[{"@id": "dtmi:test:Big;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2", "description": %q}]`, strings.Repeat("z", 4<<10))
	e.must(e.do(http.MethodPost, "/models", bigModel), http.StatusBadRequest, "LimitExceeded")
}

func TestModelUploadsHaveTheirOwnLimit(t *testing.T) {
	e := newEnv(t, Config{})
	// A 40 KB model batch is over the 32 KB request limit but well within the model limit.
	var models []string
	for i := range 80 {
		models = append(models, fmt.Sprintf(`{"@id": "dtmi:test:M%d;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2", "description": %q}`, i, strings.Repeat("d", 500)))
	}
	body := "[" + strings.Join(models, ",") + "]"
	if len(body) <= DefaultMaxBodyBytes {
		t.Fatalf("batch is %d bytes, want more than %d", len(body), DefaultMaxBodyBytes)
	}
	r := e.must(e.do(http.MethodPost, "/models", body), http.StatusCreated, "")
	if got := decode[[]map[string]any](t, r); len(got) != 80 {
		t.Errorf("uploaded %d models, want 80", len(got))
	}
}

func TestTooManyModelsInOneCall(t *testing.T) {
	e := newEnv(t, Config{})
	models := make([]string, 251)
	for i := range models {
		models[i] = fmt.Sprintf(`{"@id": "dtmi:test:M%d;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"}`, i)
	}
	e.must(e.do(http.MethodPost, "/models", "["+strings.Join(models, ",")+"]"), http.StatusBadRequest, "LimitExceeded")
	e.must(e.do(http.MethodPost, "/models", "["+strings.Join(models[:250], ",")+"]"), http.StatusCreated, "")
}

func TestHead(t *testing.T) {
	e := newTestEnv(t, Config{})
	etag := e.putRoom("t")
	r := e.must(e.do(http.MethodHead, "/digitaltwins/t", ""), http.StatusOK, "")
	if len(r.body) != 0 || r.header.Get("ETag") != etag {
		t.Errorf("HEAD: body %q, ETag %q; want no body and ETag %s", r.body, r.header.Get("ETag"), etag)
	}
}

func TestPercentEncodedIDs(t *testing.T) {
	e := newTestEnv(t, Config{})
	ids := []string{
		"plain", "with space", "a/b", "a%2Fb literal", "ünïcödé-€", "Case", "case", "q?x=1&y", "hash#tag",
		"a//b", "trailing/", "+plus", "semi;colon", "..x", "x..",
	}
	etags := map[string]string{}
	for _, id := range ids {
		etags[id] = e.putRoom(id)
	}
	for _, id := range ids {
		r := e.must(e.do(http.MethodGet, "/digitaltwins/"+url.PathEscape(id), ""), http.StatusOK, "")
		doc := decode[map[string]any](t, r)
		if doc["$dtId"] != id {
			t.Errorf("GET %q returned $dtId %v", id, doc["$dtId"])
		}
		if got := r.header.Get("ETag"); got != etags[id] {
			t.Errorf("GET %q ETag = %s, want %s", id, got, etags[id])
		}
	}

	// Relationships between them keep both ids intact, and the incoming link is a usable path.
	body := `{"$targetId": "a/b", "$relationshipName": "next"}`
	e.must(e.do(http.MethodPut, "/digitaltwins/"+url.PathEscape("with space")+"/relationships/"+url.PathEscape("r/1 ü"), body), http.StatusOK, "")
	r := e.must(e.do(http.MethodGet, "/digitaltwins/a%2Fb/incomingrelationships", ""), http.StatusOK, "")
	in := decode[page[incomingJSON]](t, r)
	if len(in.Value) != 1 {
		t.Fatalf("incoming relationships of a/b = %s, want one", r.body)
	}
	got := in.Value[0]
	if got.SourceID != "with space" || got.RelationshipID != "r/1 ü" || got.RelationshipName != "next" {
		t.Errorf("incoming relationship = %+v", got)
	}
	r = e.must(e.do(http.MethodGet, got.RelationshipLink+"?api-version=2023-10-31", ""), http.StatusOK, "")
	rel := decode[map[string]any](t, r)
	if rel["$relationshipId"] != "r/1 ü" || rel["$sourceId"] != "with space" || rel["$targetId"] != "a/b" {
		t.Errorf("GET %s = %s", got.RelationshipLink, r.body)
	}
}

func TestConditionalRequests(t *testing.T) {
	ops := []conditionalOp{
		{"patch twin", http.MethodPatch, "/digitaltwins/t", `[{"op": "replace", "path": "/counter", "value": 1}]`, http.StatusNoContent},
		{"patch component", http.MethodPatch, "/digitaltwins/t/components/thermostat", `[{"op": "add", "path": "/setPoint", "value": 1}]`, http.StatusNoContent},
		{"delete twin", http.MethodDelete, "/digitaltwins/v", "", http.StatusNoContent},
		{"patch relationship", http.MethodPatch, "/digitaltwins/t/relationships/r", `[{"op": "add", "path": "/weight", "value": 1}]`, http.StatusNoContent},
		{"delete relationship", http.MethodDelete, "/digitaltwins/t/relationships/r", "", http.StatusNoContent},
	}
	conds := []struct {
		name    string
		ifMatch func(current string) string
		status  int
		code    string
	}{
		{"none", func(string) string { return "" }, 0, ""},
		{"star", func(string) string { return "*" }, 0, ""},
		{"current", func(c string) string { return c }, 0, ""},
		{"current in a list", func(c string) string { return `W/"00000000-0000-0000-0000-000000000000", ` + c }, 0, ""},
		{"stale", func(string) string { return `W/"00000000-0000-0000-0000-000000000000"` }, http.StatusPreconditionFailed, "PreconditionFailed"},
		{"malformed", func(string) string { return "XXX" }, http.StatusBadRequest, "InvalidArgument"},
	}
	for _, o := range ops {
		for _, c := range conds {
			t.Run(o.name+"/"+c.name, func(t *testing.T) {
				e := newTestEnv(t, Config{})
				e.putRoom("t")
				e.putRoom("u")
				e.putRoom("v")
				e.must(e.do(http.MethodPut, "/digitaltwins/t/relationships/r", `{"$targetId": "u", "$relationshipName": "next"}`), http.StatusOK, "")
				current := e.do(http.MethodGet, o.getPath(), "").header.Get("ETag")
				if current == "" {
					t.Fatalf("GET %s has no ETag", o.getPath())
				}
				r := e.do(o.method, o.path, o.body, "If-Match", c.ifMatch(current))
				if c.status != 0 {
					e.must(r, c.status, c.code)
					if after := e.do(http.MethodGet, o.getPath(), "").header.Get("ETag"); after != current {
						t.Errorf("a refused %s changed the ETag from %s to %s", o.name, current, after)
					}
					return
				}
				e.must(r, o.ok, "")
				if o.method == http.MethodPatch {
					etag := r.header.Get("ETag")
					if etag == "" || etag == current {
						t.Errorf("PATCH ETag = %q, want a new one (was %s)", etag, current)
					}
					if after := e.do(http.MethodGet, o.getPath(), "").header.Get("ETag"); after != etag {
						t.Errorf("GET after PATCH has ETag %s, PATCH answered %s", after, etag)
					}
				}
			})
		}
	}
}

// conditionalOp is an operation that honours If-Match.
type conditionalOp struct {
	name   string
	method string
	path   string
	body   string
	ok     int // the success status
}

// getPath is the path whose ETag guards o: the twin for component operations.
func (o conditionalOp) getPath() string {
	return strings.TrimSuffix(o.path, "/components/thermostat")
}

func TestIfNoneMatch(t *testing.T) {
	e := newTestEnv(t, Config{})
	e.must(e.do(http.MethodPut, "/digitaltwins/t", roomBody, "If-None-Match", "*"), http.StatusOK, "")
	e.must(e.do(http.MethodPut, "/digitaltwins/t", roomBody, "If-None-Match", "*"), http.StatusPreconditionFailed, "PreconditionFailed")
	e.must(e.do(http.MethodPut, "/digitaltwins/t", roomBody), http.StatusOK, "")
	e.putRoom("u")
	rel := `{"$targetId": "u", "$relationshipName": "next"}`
	e.must(e.do(http.MethodPut, "/digitaltwins/t/relationships/r", rel, "If-None-Match", "*"), http.StatusOK, "")
	r := e.must(e.do(http.MethodPut, "/digitaltwins/t/relationships/r", rel, "If-None-Match", "*"), http.StatusPreconditionFailed, "PreconditionFailed")
	want := "If-None-Match: * header was specified but a relationship with the id r was found. Please specify a different relationship id."
	if b := decode[errorBody](t, r); b.Error.Message != want {
		t.Errorf("message = %q, want %q", b.Error.Message, want)
	}
}

// TestConcurrentPatches has 50 clients increment one counter over HTTP with If-Match, retrying
// on 412: every ETag must be won by exactly one client and no increment may be lost.
func TestConcurrentPatches(t *testing.T) {
	const clients = 50
	e := newTestEnv(t, Config{})
	first := e.putRoom("hot")

	var (
		mu      sync.Mutex
		winners = map[string]int{} // If-Match ETag → successful patches made with it
		wg      sync.WaitGroup
		errs    = make(chan error, clients)
	)
	for range clients {
		wg.Go(func() {
			for attempt := 0; ; attempt++ {
				if attempt == 1000 {
					errs <- fmt.Errorf("no success after %d attempts", attempt)
					return
				}
				r, err := e.try(http.MethodGet, "/digitaltwins/hot", "")
				if err != nil || r.status != http.StatusOK {
					errs <- fmt.Errorf("GET: %v %d %s", err, r.status, r.body)
					return
				}
				var doc struct{ Counter int }
				if err := json.Unmarshal(r.body, &doc); err != nil {
					errs <- err
					return
				}
				etag := r.header.Get("ETag")
				patch := fmt.Sprintf(`[{"op": "replace", "path": "/counter", "value": %d}]`, doc.Counter+1)
				p, err := e.try(http.MethodPatch, "/digitaltwins/hot", patch, "If-Match", etag)
				if err != nil {
					errs <- err
					return
				}
				switch p.status {
				case http.StatusNoContent:
					mu.Lock()
					winners[etag]++
					mu.Unlock()
					return
				case http.StatusPreconditionFailed:
					continue
				default:
					errs <- fmt.Errorf("PATCH: %d %s", p.status, p.body)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if len(winners) != clients {
		t.Errorf("%d distinct ETags won, want %d", len(winners), clients)
	}
	for etag, n := range winners {
		if n != 1 {
			t.Errorf("ETag %s won %d times, want once", etag, n)
		}
	}
	if winners[first] != 1 {
		t.Errorf("the twin's first ETag %s won %d times, want once", first, winners[first])
	}
	r := e.must(e.do(http.MethodGet, "/digitaltwins/hot", ""), http.StatusOK, "")
	if doc := decode[map[string]any](t, r); fmt.Sprint(doc["counter"]) != fmt.Sprint(clients) {
		t.Errorf("counter = %v after %d increments", doc["counter"], clients)
	}
}

func TestPagingFollowsNextLinks(t *testing.T) {
	e := newEnv(t, Config{ModelPageSize: 7, RelationshipPageSize: 3})
	var models []string
	for i := range 20 {
		models = append(models, fmt.Sprintf(`{"@id": "dtmi:test:M%02d;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2", "contents": [{"@type": "Relationship", "name": "next"}]}`, i))
	}
	e.must(e.do(http.MethodPost, "/models", "["+strings.Join(models, ",")+"]"), http.StatusCreated, "")

	// Models: the default page size, then one chosen by the header; both cover every model once.
	for _, header := range []string{"", "6", "100"} {
		var ids []string
		var pages int
		target := "/models"
		for target != "" {
			r := e.must(e.do(http.MethodGet, target, "", "max-items-per-page", header), http.StatusOK, "")
			p := decode[page[modelJSON]](t, r)
			pages++
			for _, m := range p.Value {
				ids = append(ids, m.ID)
			}
			target = ""
			if p.NextLink != nil {
				if !strings.HasPrefix(*p.NextLink, "http://"+testHost+"/models?") || !strings.Contains(*p.NextLink, "api-version=2023-10-31") {
					t.Errorf("nextLink = %s, want an absolute URL with api-version", *p.NextLink)
				}
				target = e.local(*p.NextLink)
			}
		}
		if len(ids) != 20 || !sortedUnique(ids) {
			t.Errorf("max-items-per-page %q: paged through %d ids %v, want the 20 models once each", header, len(ids), ids)
		}
		if want := map[string]int{"": 3, "6": 4, "100": 3}[header]; pages != want {
			t.Errorf("max-items-per-page %q: %d pages, want %d", header, pages, want)
		}
	}

	// Relationships, outgoing and incoming, with the configured page size.
	e.must(e.do(http.MethodPut, "/digitaltwins/hub", `{"$metadata": {"$model": "dtmi:test:M00;1"}}`), http.StatusOK, "")
	for i := range 10 {
		id := fmt.Sprintf("spoke%02d", i)
		e.must(e.do(http.MethodPut, "/digitaltwins/"+id, `{"$metadata": {"$model": "dtmi:test:M00;1"}}`), http.StatusOK, "")
		e.must(e.do(http.MethodPut, "/digitaltwins/hub/relationships/out"+id, `{"$targetId": "`+id+`", "$relationshipName": "next"}`), http.StatusOK, "")
		e.must(e.do(http.MethodPut, "/digitaltwins/"+id+"/relationships/in", `{"$targetId": "hub", "$relationshipName": "next"}`), http.StatusOK, "")
	}
	for _, list := range []string{"/digitaltwins/hub/relationships", "/digitaltwins/hub/incomingrelationships"} {
		var ids []string
		pages := 0
		target := list
		for target != "" {
			r := e.must(e.do(http.MethodGet, target, ""), http.StatusOK, "")
			p := decode[page[map[string]any]](t, r)
			pages++
			if len(p.Value) > 3 {
				t.Errorf("%s: page of %d, want at most 3", list, len(p.Value))
			}
			for _, rel := range p.Value {
				ids = append(ids, fmt.Sprint(rel["$sourceId"], "/", rel["$relationshipId"]))
			}
			target = ""
			if p.NextLink != nil {
				target = e.local(*p.NextLink)
			}
		}
		if len(ids) != 10 || !sortedUnique(ids) || pages != 4 {
			t.Errorf("%s: %d pages of %v, want 10 relationships once each in 4 pages", list, pages, ids)
		}
	}
}

func sortedUnique(s []string) bool {
	for i := 1; i < len(s); i++ {
		if s[i-1] >= s[i] {
			return false
		}
	}
	return true
}

func TestNextLinkScheme(t *testing.T) {
	e := newEnv(t, Config{ModelPageSize: 1})
	e.must(e.do(http.MethodPost, "/models", `[{"@id": "dtmi:test:A;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"}, {"@id": "dtmi:test:B;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"}]`), http.StatusCreated, "")
	r := e.must(e.do(http.MethodGet, "/models?api-version=2022-05-31&includeModelDefinition=true", "", "X-Forwarded-Proto", "https"), http.StatusOK, "")
	p := decode[page[modelJSON]](t, r)
	if p.NextLink == nil {
		t.Fatalf("no nextLink in %s", r.body)
	}
	u, err := url.Parse(*p.NextLink)
	if err != nil {
		t.Fatal(err)
	}
	q := u.Query()
	if u.Scheme != "https" || u.Host != testHost || q.Get("api-version") != "2022-05-31" || q.Get("includeModelDefinition") != "true" || q.Get(continuationParam) == "" {
		t.Errorf("nextLink = %s", *p.NextLink)
	}
}

func TestForgedContinuationCannotExceedPageSize(t *testing.T) {
	e := newEnv(t, Config{ModelPageSize: 2})
	e.must(e.do(http.MethodPost, "/models", `[
		{"@id": "dtmi:test:A;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"},
		{"@id": "dtmi:test:B;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"},
		{"@id": "dtmi:test:C;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"},
		{"@id": "dtmi:test:D;1", "@type": "Interface", "@context": "dtmi:dtdl:context;2"}]`), http.StatusCreated, "")
	tok := base64.RawURLEncoding.EncodeToString([]byte(`{"a":"dtmi:test:A;1","n":1000}`))
	r := e.must(e.do(http.MethodGet, "/models?api-version=2023-10-31&continuationToken="+tok, ""), http.StatusOK, "")
	if p := decode[page[modelJSON]](t, r); len(p.Value) != 2 || p.Value[0].ID != "dtmi:test:B;1" || p.NextLink == nil {
		t.Errorf("page after a forged token = %s, want B and C and a nextLink", r.body)
	}
}

// TestSDKQuirks sends what the official JavaScript SDK sends: api-version 2022-05-31 and an
// empty Cookie header.
func TestSDKQuirks(t *testing.T) {
	e := newTestEnv(t, Config{})
	e.putRoom("t")
	req, err := http.NewRequest(http.MethodGet, e.srv.URL+"/digitaltwins/t?api-version=2022-05-31", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header["Cookie"] = []string{""}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != contentTypeJSON {
		t.Errorf("GET with an empty Cookie: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
}

// TestTraceContext checks W3C Trace Context: every response names, in traceresponse, a
// child span of the request's traceparent (same trace and flags, new span id) or a new trace
// when the traceparent is missing or malformed; the events the request causes carry that span
// and the request's tracestate when it is well formed; telemetry keeps the client's
// Message-Id as its event id.
func TestTraceContext(t *testing.T) {
	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-00" // not sampled
	caller, _ := tracecontext.ParseParent(parent)
	e := newTestEnv(t, Config{})
	span := func(r response) tracecontext.Span {
		t.Helper()
		sp, ok := tracecontext.ParseParent(r.header.Get("traceresponse"))
		if !ok {
			t.Fatalf("traceresponse %q is not a traceparent", r.header.Get("traceresponse"))
		}
		return sp
	}
	child := func(r response) string {
		t.Helper()
		sp := span(r)
		if sp.TraceID != caller.TraceID || sp.Flags != caller.Flags || sp.SpanID == caller.SpanID {
			t.Errorf("traceresponse %s is not a child span of %s", sp, parent)
		}
		return sp.String()
	}
	root := func(r response) string {
		t.Helper()
		sp := span(r)
		if sp.TraceID == caller.TraceID || sp.Flags != 0x01 {
			t.Errorf("traceresponse %s is not a new sampled trace", sp)
		}
		return sp.String()
	}

	created := child(e.must(e.do(http.MethodPut, "/digitaltwins/t", roomBody,
		"traceparent", parent, "tracestate", " rojo=00f067aa0ba902b7 , congo=t61rcWkgMzE"), http.StatusOK, ""))
	patched := root(e.must(e.do(http.MethodPatch, "/digitaltwins/t", `[{"op": "replace", "path": "/counter", "value": 2}]`,
		"traceparent", "garbage", "tracestate", "rojo=00f067aa0ba902b7"), http.StatusNoContent, ""))
	sent := child(e.must(e.do(http.MethodPost, "/digitaltwins/t/telemetry", `{"x": 1}`,
		"traceparent", parent, "tracestate", "Not A Key=1", "Message-Id", "m1"), http.StatusNoContent, ""))
	root(e.must(e.do(http.MethodGet, "/digitaltwins/t", ""), http.StatusOK, ""))
	// Errors, unknown paths and other methods answer in a span too.
	child(e.must(e.do(http.MethodGet, "/digitaltwins/nope", "", "traceparent", parent), http.StatusNotFound, "DigitalTwinNotFound"))
	child(e.must(e.do(http.MethodGet, "/nothing", "", "traceparent", parent), http.StatusNotFound, "NotFound"))
	child(e.must(e.do(http.MethodPost, "/digitaltwins/t", "{}", "traceparent", parent), http.StatusMethodNotAllowed, "MethodNotAllowed"))

	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	recs, err := e.store.Log().Read(ctx, 0, 100)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string][2]string{
		event.TwinCreate: {created, "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"},
		event.TwinUpdate: {patched, ""},
		event.Telemetry:  {sent, ""},
	}
	if len(recs) != len(want) {
		t.Fatalf("%d events, want %d", len(recs), len(want))
	}
	for _, r := range recs {
		if got := [2]string{r.Event.TraceParent, r.Event.TraceState}; got != want[r.Event.Type] {
			t.Errorf("%s carries traceparent %q, tracestate %q; want %q", r.Event.Type, got[0], got[1], want[r.Event.Type])
		}
		if r.Event.Type == event.Telemetry && r.Event.ID != "m1" {
			t.Errorf("telemetry event id = %q, want the Message-Id m1", r.Event.ID)
		}
	}
}

// TestStartTrace checks the header forms a request's trace context can arrive in.
func TestStartTrace(t *testing.T) {
	const parent = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
	r := httptest.NewRequest(http.MethodGet, "/digitaltwins/t", nil)
	r.Header.Add("traceparent", parent)
	r.Header.Add("tracestate", "rojo=00f067aa0ba902b7")
	r.Header.Add("tracestate", "congo=t61rcWkgMzE")
	tr := startTrace(r)
	if tr.State != "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE" || tr.Parent[:36] != parent[:36] || tr.Parent == parent {
		t.Errorf("trace of two tracestate lines = %+v", tr)
	}
	r.Header.Add("traceparent", parent) // two traceparents: the specification's invalid case
	if tr := startTrace(r); tr.State != "" || tr.Parent[3:35] == parent[3:35] {
		t.Errorf("trace of two traceparents = %+v, want a new trace without state", tr)
	}
	if tr := trace(httptest.NewRequest(http.MethodGet, "/", nil)); tr != (twins.Trace{}) {
		t.Errorf("trace of a request ServeHTTP did not see = %+v, want none", tr)
	}
}

func TestResponseHeaders(t *testing.T) {
	e := newTestEnv(t, Config{})
	r := e.must(e.do(http.MethodPut, "/digitaltwins/t", roomBody), http.StatusOK, "")
	if ct := r.header.Get("Content-Type"); ct != contentTypeJSON {
		t.Errorf("PUT Content-Type = %q", ct)
	}
	doc := decode[map[string]any](t, r)
	if doc["$etag"] != r.header.Get("ETag") || !strings.HasPrefix(r.header.Get("ETag"), `W/"`) {
		t.Errorf("PUT $etag %v and ETag header %s disagree", doc["$etag"], r.header.Get("ETag"))
	}
	r = e.must(e.do(http.MethodDelete, "/digitaltwins/t", ""), http.StatusNoContent, "")
	if len(r.body) != 0 {
		t.Errorf("DELETE body = %q, want none", r.body)
	}
	r = e.must(e.do(http.MethodDelete, "/digitaltwins/t", ""), http.StatusNotFound, "DigitalTwinNotFound")
	if ct := r.header.Get("Content-Type"); ct != contentTypeJSON {
		t.Errorf("error Content-Type = %q", ct)
	}
	r = e.must(e.do(http.MethodGet, "/models/dtmi:test:Room;1", "", "traceparent", "x"), http.StatusOK, "")
	if r.header.Get("ETag") != "" {
		t.Errorf("model GET has an ETag %s; ADT models have none", r.header.Get("ETag"))
	}
	r = e.must(e.do(http.MethodDelete, "/digitaltwins/t", "", "If-Match", "*"), http.StatusNotFound, "DigitalTwinNotFound")
	r = e.must(e.do(http.MethodPatch, "/models", "[]"), http.StatusMethodNotAllowed, "MethodNotAllowed")
	if allow := r.header.Get("Allow"); allow != "POST, GET, HEAD" {
		t.Errorf("Allow = %q", allow)
	}
}
