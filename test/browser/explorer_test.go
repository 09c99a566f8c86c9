package browser

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// models is a folder of DTDL files whose names sort before the interfaces they depend on;
// room.json starts with a UTF-8 byte order mark.
var models = map[string]string{
	"building.json": `[{"@id": "dtmi:example:Building;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
		"extends": "dtmi:example:Space;1",
		"contents": [{"@type": "Relationship", "name": "hasFloor", "target": "dtmi:example:Floor;1"}]}]`,
	"floor.json": `{"@id": "dtmi:example:Floor;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
		"extends": "dtmi:example:Space;1",
		"contents": [{"@type": "Relationship", "name": "contains", "target": "dtmi:example:Room;1"}]}`,
	"room.json": "\ufeff" + `{"@id": "dtmi:example:Room;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
		"extends": "dtmi:example:Space;1",
		"contents": [{"@type": "Property", "name": "Temperature", "schema": "double", "writable": true},
			{"@type": "Telemetry", "name": "humidity", "schema": "double"},
			{"@type": "Component", "name": "thermostat", "schema": "dtmi:example:Thermostat;1"}]}`,
	"space.json": `{"@id": "dtmi:example:Space;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
		"contents": [{"@type": "Property", "name": "name", "schema": "string", "writable": true}]}`,
	"spare.json": `{"@id": "dtmi:example:Spare;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3"}`,
	"thermostat.json": `{"@id": "dtmi:example:Thermostat;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
		"contents": [{"@type": "Property", "name": "setpoint", "schema": "double", "writable": true}]}`,
}

// writeFolder writes files into a new directory and returns the directory and the files'
// paths.
func writeFolder(t *testing.T, files map[string]string) (string, []string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "models")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	var paths []string
	for name, text := range files {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		paths = append(paths, p)
	}
	return dir, paths
}

// hook is a webhook destination that refuses events for good (400) until accept is set.
type hook struct {
	mu       sync.Mutex
	accept   bool
	received []string // the subjects of the events it accepted
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodOptions {
		w.Header().Set("WebHook-Allowed-Origin", "*")
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.accept {
		http.Error(w, "refused", http.StatusBadRequest)
		return
	}
	var e struct {
		Subject string `json:"subject"`
	}
	_ = json.NewDecoder(r.Body).Decode(&e)
	h.received = append(h.received, e.Subject)
}

func (h *hook) got() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]string(nil), h.received...)
}

// TestExplorer walks through the explorer as a user would, each step checked against the
// page and the API: upload a folder of models, create twins and relationships, query them as
// a graph, edit a property, meet a conflict, chart its history, see the graph as of a past
// time and redrive a dead letter.
func TestExplorer(t *testing.T) {
	_, base := serve(t)
	b := newBrowser(t, base)

	t.Log("upload a folder of models, out of dependency order")
	b.navigate("#/models")
	// A directory input takes the directory, whose files the browser lists.
	dir, _ := writeFolder(t, models)
	b.run("choose the folder", setFiles("#model-folder", []string{dir}))
	b.waitJS("the upload report", `document.querySelector('#upload-report')?.textContent.includes('Uploaded 6 models')`)
	b.waitJS("the model count", `document.querySelector('#model-count').textContent === '6'`)
	b.waitJS("the tree by extends", `[...document.querySelectorAll('.tree ul .tree-item small')].some(x => x.textContent === 'dtmi:example:Room;1')`)

	t.Log("decommission a model, then delete it")
	b.do(`[...document.querySelectorAll('.tree-item')].find(x => x.querySelector('small').textContent === 'dtmi:example:Spare;1').click()`)
	b.clickButton("Decommission")
	b.waitJS("the decommissioned model", `[...document.querySelectorAll('.tree-item.decommissioned small')].some(x => x.textContent.startsWith('dtmi:example:Spare;1'))`)
	b.clickButton("Delete")
	b.clickButton("Really delete dtmi:example:Spare;1")
	b.waitJS("the model gone", `document.querySelector('#model-count').textContent === '5'`)

	t.Log("an invalid model is refused with the server's message, naming the model and its file")
	bad := map[string]string{"lamp.json": `{"@id": "dtmi:example:Lamp;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
		"contents": [{"@type": "Property", "name": "level", "schema": "percentage"}]}`}
	_, files := writeFolder(t, bad)
	b.run("choose the bad file", setFiles("#model-files", files))
	b.waitJS("the error report", `document.querySelector('#upload-report.error')?.textContent.includes('lamp.json')`)
	report := b.text("#upload-report")
	if !strings.Contains(report, "dtmi:example:Lamp;1") || !strings.Contains(report, "(400)") {
		t.Errorf("the upload report does not name the model and the server's error:\n%s", report)
	}

	t.Log("create twins")
	b.goTo("#/graph")
	b.clickButton("New twin")
	for _, tw := range []struct{ id, model, props string }{
		{"building1", "dtmi:example:Building;1", `{"name": "HQ"}`},
		{"floor1", "dtmi:example:Floor;1", `{}`},
		{"room1", "dtmi:example:Room;1", `{"name": "R1", "Temperature": 20, "thermostat": {"$metadata": {}, "setpoint": 21}}`},
	} {
		b.waitJS("the model list", `document.querySelectorAll('#twin-model option').length === 5`)
		b.setInput("#twin-id", tw.id)
		b.setInput("#twin-model", tw.model)
		b.setInput("#twin-props", tw.props)
		b.click("#create-twin")
		b.waitJS("the twin "+tw.id, fmt.Sprintf(`document.querySelector('#create-twin-status')?.textContent === 'Created %s.'`, tw.id))
	}
	b.api(http.MethodGet, "/digitaltwins/room1", nil, http.StatusOK)
	time.Sleep(1100 * time.Millisecond)
	beforeRelationships := time.Now().UTC()
	time.Sleep(1100 * time.Millisecond)

	t.Log("query the twins: three nodes, no edges yet")
	b.setInput("#query-text", "SELECT * FROM digitaltwins")
	b.click("#run-query")
	b.waitJS("the graph", `document.querySelector('#graph').dataset.nodes === '3' && document.querySelector('#graph').dataset.edges === '0'`)

	t.Log("create relationships from the twin panel")
	for _, r := range []struct{ source, name, target string }{
		{"building1", "hasFloor", "floor1"}, {"floor1", "contains", "room1"},
	} {
		b.clickButton("Table")
		b.clickButton(r.source)
		b.waitJS("the panel of "+r.source, fmt.Sprintf(`document.querySelector('#twin-title')?.textContent === %q && document.querySelector('#rel-name option')`, r.source))
		b.setInput("#rel-name", r.name)
		b.setInput("#rel-target", r.target)
		b.click("#create-rel")
		b.waitJS("the relationship", fmt.Sprintf(`[...document.querySelectorAll('.rels li')].some(li => li.textContent.includes(%q))`, r.target))
	}
	b.clickButton("Graph")
	b.click("#run-query")
	b.waitJS("the graph with edges", `document.querySelector('#graph').dataset.nodes === '3' && document.querySelector('#graph').dataset.edges === '2'`)
	b.clickButton("Table")
	if rows := eval[int](b, `document.querySelectorAll('#rel-table tbody tr').length`); rows != 2 {
		t.Errorf("the relationship table has %d rows, want 2", rows)
	}

	t.Log("filter by model: the rooms hidden")
	b.clickButton("Graph")
	b.do(`[...document.querySelectorAll('.legend-item')].find(l => l.textContent.startsWith('dtmi:example:Room;1')).querySelector('input').click()`)
	b.waitJS("two nodes shown", `document.querySelector('#graph').dataset.visibleNodes === '2'`)

	t.Log("expand a twin's neighbours: its relationships and incoming relationships")
	b.setInput("#query-text", "SELECT * FROM digitaltwins WHERE $dtId = 'floor1'")
	b.click("#run-query")
	b.waitJS("one node", `document.querySelector('#graph').dataset.nodes === '1' && document.querySelector('#graph').dataset.edges === '0'`)
	b.clickButton("Table")
	b.clickButton("floor1")
	b.clickButton("Expand neighbours")
	b.waitJS("the neighbours", `document.querySelector('#graph').dataset.nodes === '3' && document.querySelector('#graph').dataset.edges === '2'`)
	b.setInput("#query-text", "SELECT * FROM digitaltwins")

	t.Log("edit a property in place")
	b.clickButton("Table")
	b.clickButton("room1")
	b.waitJS("the panel of room1", `document.querySelector('#prop-Temperature')?.value === '20'`)
	b.setInput("#prop-Temperature", "22.5")
	b.click(`button[aria-label="Save Temperature"]`)
	b.waitJS("the save", `document.querySelector('.twin-panel [role=status]')?.textContent === 'Saved /Temperature.'`)
	var room map[string]any
	_, body, _ := b.api(http.MethodGet, "/digitaltwins/room1", nil, http.StatusOK)
	if err := json.Unmarshal(body, &room); err != nil || room["Temperature"] != 22.5 {
		t.Fatalf("room1 after the edit: %s", body)
	}
	b.setInput("#prop-thermostat-setpoint", "19")
	b.click(`button[aria-label="Save setpoint"]`)
	b.waitJS("the component save", `document.querySelector('.twin-panel [role=status]')?.textContent === 'Saved /thermostat/setpoint.'`)

	t.Log("another client changes the twin: the next edit is a 412 conflict, then reload")
	b.api(http.MethodPatch, "/digitaltwins/room1", []map[string]any{{"op": "replace", "path": "/Temperature", "value": 30}}, http.StatusNoContent)
	b.setInput("#prop-Temperature", "23")
	b.click(`button[aria-label="Save Temperature"]`)
	b.waitJS("the conflict", `document.querySelector('#conflict')?.textContent.includes('412')`)
	b.clickButton("Reload the twin")
	b.waitJS("the reloaded value", `document.querySelector('#prop-Temperature')?.value === '30' && !document.querySelector('#conflict')`)

	t.Log("chart the property's history")
	for v := 31; v <= 35; v++ {
		b.api(http.MethodPatch, "/digitaltwins/room1", []map[string]any{{"op": "replace", "path": "/Temperature", "value": v}}, http.StatusNoContent)
	}
	// 20 at creation, 22.5 from the page, 30 from the other client, then 31 to 35.
	const wantPoints = 8
	waitFor(t, "history to record every value", func() bool {
		_, body, _ := b.api(http.MethodGet, "/digitaltwins/room1/history?property=Temperature", nil, http.StatusOK)
		var page struct{ Value []json.RawMessage }
		return json.Unmarshal(body, &page) == nil && len(page.Value) == wantPoints
	})
	b.goTo("#/history")
	b.setInput("#history-twins", "room1")
	b.waitJS("the numeric properties offered", `[...document.querySelectorAll('#numeric-properties option')].map(o => o.value).join() === 'Temperature'`)
	b.setInput("#history-property", "Temperature")
	b.click("#history-show")
	b.waitJS("the chart", `document.querySelector('#history-chart canvas') && document.querySelector('#history-chart').dataset.points`)
	if points := eval[string](b, `document.querySelector('#history-chart').dataset.points`); points != fmt.Sprint(wantPoints) {
		t.Errorf("the chart has %s points, want %d", points, wantPoints)
	}
	b.waitJS("the timeline", `document.querySelectorAll('#timeline li').length >= 2`)
	if first := eval[string](b, `document.querySelector('#timeline li').textContent`); !strings.Contains(first, "twin created (dtmi:example:Room;1)") || !strings.Contains(first, "Temperature = 20") {
		t.Errorf("the timeline starts with %q, want room1's creation with Temperature = 20", first)
	}
	b.setInput("#history-twins", "floor1")
	b.click("#history-show")
	b.waitJS("floor1's timeline with its relationship's creation",
		`document.querySelector('section[aria-label="Timeline of floor1"] #timeline')?.textContent.includes('relationship contains → room1')`)

	t.Log("the graph as of before the relationships")
	b.goTo("#/graph")
	b.setInput("#as-of", beforeRelationships.Format("2006-01-02T15:04:05"))
	b.click("#run-query")
	b.waitJS("the graph of the past", `document.querySelector('#query-status').textContent.includes('as of') && document.querySelector('#graph').dataset.nodes === '3' && document.querySelector('#graph').dataset.edges === '0'`)
	b.setInput("#as-of", "")

	t.Log("a dead letter from a webhook that refuses events, redriven once it accepts them")
	h := &hook{}
	dest := httptest.NewServer(h)
	defer dest.Close()
	b.api(http.MethodPut, "/endpoints/hook", map[string]any{"endpointType": "webhook", "url": dest.URL}, http.StatusCreated)
	b.api(http.MethodPut, "/eventroutes/updates", map[string]any{"endpointName": "hook", "filter": "type = 'Microsoft.DigitalTwins.Twin.Update'"}, http.StatusNoContent)
	b.api(http.MethodPatch, "/digitaltwins/room1", []map[string]any{{"op": "replace", "path": "/Temperature", "value": 40}}, http.StatusNoContent)
	waitFor(t, "the dead letter", func() bool {
		_, body, _ := b.api(http.MethodGet, "/endpoints/hook/deadletters", nil, http.StatusOK)
		var page struct{ Value []json.RawMessage }
		return json.Unmarshal(body, &page) == nil && len(page.Value) == 1
	})
	h.mu.Lock()
	h.accept = true
	h.mu.Unlock()
	b.goTo("#/flows")
	b.waitJS("the endpoint's status", `document.querySelector('tr[data-endpoint=hook]')?.textContent.includes('webhook')`)
	b.run("open the dead letters", clickQuery(`tr[data-endpoint=hook] button`))
	b.waitJS("the dead letter", `document.querySelectorAll('#deadletter-table tbody tr').length === 1`)
	b.clickButton("Redrive")
	b.waitJS("the redrive", `document.querySelector('#deadletter-status')?.textContent.startsWith('Redriven') && document.querySelector('#no-deadletters')`)
	waitFor(t, "the redriven event at the webhook", func() bool { return len(h.got()) == 1 })
	if got := h.got(); got[0] != "room1" {
		t.Errorf("the webhook got events about %v, want room1", got)
	}

	t.Log("delete a relationship, then a twin")
	b.goTo("#/graph")
	b.clickButton("Table")
	b.clickButton("building1")
	b.waitJS("the panel of building1", `document.querySelector('#twin-title')?.textContent === 'building1' && document.querySelectorAll('.rels li').length === 1`)
	b.click(`button[aria-label="Delete relationship building1-hasFloor-floor1"]`)
	b.waitJS("the relationship gone", `document.querySelectorAll('.rels li').length === 0`)
	b.api(http.MethodGet, "/digitaltwins/building1/relationships/building1-hasFloor-floor1", nil, http.StatusNotFound)
	b.clickButton("Delete twin")
	b.clickButton("Really delete building1 and its relationships")
	b.waitJS("the panel closed", `!document.querySelector('.twin-panel')`)
	b.api(http.MethodGet, "/digitaltwins/building1", nil, http.StatusNotFound)

	// The refused upload and the conflict are failed loads the browser logs; nothing else
	// may be, and no CSP violation.
	b.checkProblems("status of 400", "status of 412")
}

// TestLiveTail shows a change event in the live tail (GET /events) as it happens.
func TestLiveTail(t *testing.T) {
	_, base := serve(t)
	b := newBrowser(t, base)
	b.api(http.MethodPost, "/models", []json.RawMessage{json.RawMessage(models["space.json"])}, http.StatusCreated)
	b.api(http.MethodPut, "/digitaltwins/floor1", map[string]any{"$metadata": map[string]string{"$model": "dtmi:example:Space;1"}}, http.StatusOK)
	b.navigate("#/flows")
	b.click("#tail-start")
	b.waitJS("the tail to start", `document.querySelector('#tail-state').textContent === 'live'`)
	b.api(http.MethodPatch, "/digitaltwins/floor1", []map[string]any{{"op": "add", "path": "/name", "value": "First"}}, http.StatusNoContent)
	b.waitJS("the event in the tail", `[...document.querySelectorAll('#tail-events li')].some(li => li.textContent.includes('Microsoft.DigitalTwins.Twin.Update') && li.textContent.includes('floor1'))`)
	b.click("#tail-stop")

	b.checkProblems()
}

// waitFor polls cond for up to 30 seconds, failing t with what if it never holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not after 30 s", what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// rawJSON is text sent as JSON as it is.
func rawJSON(s string) json.RawMessage { return json.RawMessage(s) }
