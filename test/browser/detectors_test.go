package browser

import (
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"
)

// sensor is a model of a twin with one number to watch.
const sensor = `{"@id": "dtmi:example:Sensor;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
	"contents": [{"@type": "Property", "name": "temp", "schema": "double", "writable": true}]}`

// patchReading sets the temp of the twin id to v, measured at the i-th minute of 2026.
func (b *browser) patchReading(id string, i int, v float64) {
	b.t.Helper()
	at := time.Date(2026, 1, 1, 0, i, 0, 0, time.UTC).Format(time.RFC3339)
	b.api(http.MethodPatch, "/digitaltwins/"+id, []map[string]any{
		{"op": "replace", "path": "/temp", "value": v},
		{"op": "add", "path": "/$metadata/temp/sourceTime", "value": at},
	}, http.StatusNoContent)
}

// scoredPoint is one point of a backtest.
type scoredPoint struct {
	Time    string  `json:"time"`
	Value   float64 `json:"value"`
	Score   float64 `json:"score"`
	Anomaly bool    `json:"anomaly"`
	Kind    string  `json:"kind"`
}

// backtest returns every point of the backtest of twin id's temp with the detector name,
// read by the test itself in pages of size, following the continuation token.
func (b *browser) backtest(name, id string, size int) []scoredPoint {
	b.t.Helper()
	var all []scoredPoint
	body := map[string]string{"twinId": id, "property": "temp"}
	for {
		_, data, _ := b.api(http.MethodPost, "/detectors/"+name+"/backtest", body, http.StatusOK, "max-items-per-page", fmt.Sprint(size))
		var page struct {
			Value             []scoredPoint `json:"value"`
			ContinuationToken *string       `json:"continuationToken"`
		}
		if err := json.Unmarshal(data, &page); err != nil {
			b.t.Fatalf("the backtest's answer: %v: %s", err, data)
		}
		all = append(all, page.Value...)
		if page.ContinuationToken == nil {
			return all
		}
		body["continuationToken"] = *page.ContinuationToken
	}
}

// TestDetectors creates a detector in the Detectors view (a refused definition first, with
// the server's details), watches its status count a spike, backtests the series into a
// chart whose points and anomaly markers are those the API answers, finds the anomaly in
// the twin panel and follows it to its backtest, edits the detector and deletes it.
func TestDetectors(t *testing.T) {
	_, base := serve(t)
	b := newBrowser(t, base)
	b.api(http.MethodPost, "/models", []json.RawMessage{rawJSON(sensor)}, http.StatusCreated)
	b.api(http.MethodPut, "/digitaltwins/s1", rawJSON(`{"$metadata": {"$model": "dtmi:example:Sensor;1", "temp": {"sourceTime": "2025-12-31T23:59:00Z"}}, "temp": 20}`), http.StatusOK)

	b.navigate("#/detectors")
	b.waitJS("the empty list", `document.querySelector('#no-detectors')`)

	t.Log("a refused definition shows the server's error with its details, and creates nothing")
	b.click("#detector-new")
	b.setInput("#detector-name", "sensors")
	b.setInput("#detector-definition", `{"twins": "SELECT * FROM DIGITALTWINS", "properties": [], "sensitivity": 2}`)
	b.click("#detector-save")
	b.waitJS("the refusal", `document.querySelector('#detector-error')?.textContent.includes('InvalidArgument (400)')`)
	refusal := b.text("#detector-error")
	if !strings.Contains(refusal, "properties") || !strings.Contains(refusal, "sensitivity") {
		t.Errorf("the refusal lacks the details of the two problems:\n%s", refusal)
	}
	b.api(http.MethodGet, "/detectors/sensors", nil, http.StatusNotFound)

	t.Log("a valid one is created and listed with its status")
	b.setInput("#detector-definition", `{"twins": "SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL('dtmi:example:Sensor;1')", "properties": ["temp"], "warmUp": 20}`)
	b.click("#detector-save")
	b.waitJS("the save", `document.querySelector('#detector-notice')?.textContent === 'Saved sensors.'`)
	b.waitJS("the listed detector", `document.querySelector('tr[data-detector="sensors"]')?.textContent.includes('running')`)

	t.Log("a quiet series, then a spike: the status counts the points and the anomaly")
	const quiet = 40
	for i := range quiet {
		b.patchReading("s1", i, 20+0.3*math.Sin(float64(i)*1.7)+0.2*math.Cos(float64(i)*0.61))
	}
	b.patchReading("s1", quiet, 80)
	// Name, method, state, twins, points (the patches: the value s1 was created with
	// committed before the detector), anomalies.
	b.waitJS("the status", `(() => { const c = [...document.querySelectorAll('tr[data-detector="sensors"] td')].map(td => td.textContent);
		return c[3] === '1' && c[4] === '41' && c[5] === '1'; })()`)

	t.Log("backtest the series: the chart has the API's points and marks its anomalies")
	const points = quiet + 2 // the value s1 was created with, and every patch
	waitFor(t, "data history to hold every point", func() bool {
		_, body, _ := b.api(http.MethodGet, "/digitaltwins/s1/history?property=temp", nil, http.StatusOK)
		return strings.Count(string(body), `"action"`) == points
	})
	// In pages of 10, so that the test's own reading follows the continuation token too.
	want := b.backtest("sensors", "s1", 10)
	wantAnomalies := 0
	for _, p := range want {
		if p.Anomaly {
			wantAnomalies++
		}
	}
	if len(want) != points || wantAnomalies == 0 || !want[points-1].Anomaly || want[points-1].Kind != "spike" {
		t.Fatalf("the API's backtest: %d points, %d anomalies, the last %+v; want %d points ending with a spike", len(want), wantAnomalies, want[len(want)-1], points)
	}
	b.waitJS("the detector to pick", `document.querySelector('#backtest-detector').value === 'sensors'`)
	b.setInput("#backtest-twin", "s1")
	b.waitJS("the detector's property", `document.querySelector('#backtest-property').value === 'temp'`)
	b.click("#backtest-run")
	b.waitJS("the chart", `document.querySelector('#backtest-chart canvas') && document.querySelector('#backtest-chart').dataset.points`)
	checkChart(b, len(want), wantAnomalies)
	if status := b.text("#backtest-status"); status != fmt.Sprintf("%d points of temp scored, %d anomalies.", points, wantAnomalies) {
		t.Errorf("the backtest's status: %q", status)
	}
	if rows := eval[int](b, `document.querySelectorAll('#backtest-anomalies tbody tr').length`); rows != wantAnomalies {
		t.Errorf("the anomaly table has %d rows, want %d", rows, wantAnomalies)
	}
	spike := eval[string](b, `[...document.querySelectorAll('#backtest-chart .anomaly-marker')].at(-1).title`)
	if !strings.HasPrefix(spike, "spike: 80 at "+want[points-1].Time) {
		t.Errorf("the spike's marker says %q", spike)
	}
	t.Log("a time range without points: an empty chart")
	b.setInput("#backtest-to", "2000-01-01T00:00")
	b.click("#backtest-run")
	b.waitJS("the empty result", `document.querySelector('#backtest-status')?.textContent.startsWith('0 points')`)
	checkChart(b, 0, 0)
	t.Log("a backtest of a property the detector does not score is the server's error")
	b.setInput("#backtest-to", "")
	b.setInput("#backtest-property", "humidity")
	b.click("#backtest-run")
	b.waitJS("the refusal", `document.querySelector('#backtest-error')?.textContent.includes('(400)')`)
	if msg := b.text("#backtest-error"); !strings.Contains(msg, `"humidity" is not one the detector scores`) {
		t.Errorf("the backtest's refusal: %q", msg)
	}
	checkChart(b, 0, 0)

	t.Log("the twin panel lists the anomaly and links to its backtest")
	b.goTo("#/graph")
	b.setInput("#query-text", "SELECT * FROM digitaltwins")
	b.click("#run-query")
	b.clickButton("Table")
	b.clickButton("s1")
	b.waitJS("the twin's anomalies", `document.querySelectorAll('#twin-anomalies li').length === 1`)
	if li := b.text("#twin-anomalies li"); !strings.Contains(li, "spike") || !strings.Contains(li, "temp = 80") || !strings.Contains(li, "sensors") {
		t.Errorf("the twin panel's anomaly: %q", li)
	}
	b.do(`document.querySelector('#twin-anomalies li a').click()`)
	b.waitJS("the backtest form filled in", `document.querySelector('#backtest-twin')?.value === 's1' && document.querySelector('#backtest-property').value === 'temp' && document.querySelector('#backtest-detector').value === 'sensors'`)
	b.click("#backtest-run")
	b.waitJS("the chart", `document.querySelector('#backtest-chart canvas') && document.querySelector('#backtest-chart').dataset.points`)
	checkChart(b, len(want), wantAnomalies)

	t.Log("edit the detector, then delete it")
	b.click(`button[aria-label="Edit sensors"]`)
	b.waitJS("the editor", `document.querySelector('#detector-definition')?.value.includes('"warmUp": 20')`)
	b.setInput("#detector-definition", `{"twins": "SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL('dtmi:example:Sensor;1')", "properties": ["temp"], "warmUp": 20, "sensitivity": 0.9}`)
	b.click("#detector-save")
	b.waitJS("the save", `document.querySelector('#detector-notice')?.textContent === 'Saved sensors.'`)
	var d struct{ Sensitivity float64 }
	if _, body, _ := b.api(http.MethodGet, "/detectors/sensors", nil, http.StatusOK); json.Unmarshal(body, &d) != nil || d.Sensitivity != 0.9 {
		t.Errorf("the detector after the edit: %s", body)
	}
	b.click(`button[aria-label="Delete sensors"]`)
	b.clickButton("Really delete sensors")
	b.waitJS("the detector gone", `document.querySelector('#no-detectors') && document.querySelector('#detectors-status').textContent === 'Deleted sensors.'`)
	b.api(http.MethodGet, "/detectors/sensors", nil, http.StatusNotFound)

	// The refused PUT and backtest are logged by the browser as failed loads.
	b.checkProblems("400")
}

// checkChart fails the test unless the backtest chart drew points points and as many anomaly
// markers as anomalies, each inside the plot.
func checkChart(b *browser, points, anomalies int) {
	b.t.Helper()
	if got := eval[string](b, `document.querySelector('#backtest-chart').dataset.points`); got != fmt.Sprint(points) {
		b.t.Errorf("the chart has %s points, want %d", got, points)
	}
	inside := eval[[]bool](b, `(() => { const over = document.querySelector('#backtest-chart .u-over')?.getBoundingClientRect() || {};
		return [...document.querySelectorAll('#backtest-chart .anomaly-marker')].map(m => { const r = m.getBoundingClientRect();
			const x = r.left + r.width / 2, y = r.top + r.height / 2;
			return r.width > 0 && x >= over.left && x <= over.right && y >= over.top && y <= over.bottom; }); })()`)
	if len(inside) != anomalies || fmt.Sprint(inside) != fmt.Sprint(slices.Repeat([]bool{true}, anomalies)) {
		b.t.Errorf("the chart marks %d anomalies (inside the plot: %v), want %d", len(inside), inside, anomalies)
	}
}
