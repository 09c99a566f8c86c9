package server

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/detector"
	"github.com/twinflow/twinflow/internal/testenv"
)

const floorModels = `[
	{"@id":"dtmi:test:Thermostat;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
	 "contents":[{"@type":"Property","name":"temp","schema":"double"}]},
	{"@id":"dtmi:test:Floor;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
	 "contents":[{"@type":"Relationship","name":"contains"}]}]`

// floorRun is a synthetic floor of thermostats t-0 … t-(thermostats−1), reporting in turn at
// every step: a shared slow cycle, a small offset each and seeded noise of standard deviation
// sigma; from step drift on, t-0 moves away from the others by slope a step. When gone is
// set, the last thermostat is deleted before step gone[0] and created again before step
// gone[1], reporting nothing in between and 2 more than before from then on.
type floorRun struct {
	thermostats, steps, drift int
	sigma, slope              float64
	gone                      [2]int
}

// values returns the readings: values[i][j] is thermostat j's at step i.
func (f floorRun) values() [][]float64 {
	rng := rand.New(rand.NewPCG(42, 7))
	offsets := make([]float64, f.thermostats)
	for j := range offsets {
		offsets[j] = 0.05 * rng.NormFloat64()
	}
	out := make([][]float64, f.steps)
	for i := range out {
		out[i] = make([]float64, f.thermostats)
		for j := range out[i] {
			v := 21 + 0.1*math.Sin(2*math.Pi*float64(i)/600) + offsets[j] + f.sigma*rng.NormFloat64()
			if j == 0 && i >= f.drift {
				v += f.slope * float64(i-f.drift)
			}
			if j == f.thermostats-1 && f.gone[1] > 0 && i >= f.gone[1] {
				v += 2 // created again, it reads 10σ higher: a new series, not a jump of the old one
			}
			out[i][j] = math.Round(v*1e4) / 1e4
		}
	}
	return out
}

// scoreFloor runs a server with two detectors over the thermostats, declared in its config
// file: "peers", which compares each with its siblings (the default), and "alone", which does
// not. It builds the floor, sends the readings, stopping and starting the server again before
// each of the given steps, and returns the anomaly events once both detectors have scored
// every reading and at least want anomalies have arrived, with the server still running and its
// client.
func scoreFloor(t *testing.T, base Config, f floorRun, want int, restarts ...int) ([]detector.AnomalyData, apiClient) {
	hook := newAnomalyHook(t)
	cfg := detectorConfig(t.TempDir(), hook.URL)
	cfg.Store = base.Store
	const twins = `"twins":"SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL('dtmi:test:Thermostat;1')","properties":["temp"],"warmUp":20`
	cfg.Detectors = map[string]json.RawMessage{
		"peers": json.RawMessage(`{` + twins + `}`),
		"alone": json.RawMessage(`{` + twins + `,"peers":false}`),
	}
	s, stop := start(t, cfg, nil)
	c := apiClient{t, s.URL()}
	feedFloor(&c, f, func(i int) {
		if slices.Contains(restarts, i) {
			// Stopped mid-stream: the detectors may not have scored the latest readings yet.
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			s, stop = start(t, cfg, nil)
			c = apiClient{t, s.URL()}
		}
	})
	waitFor(t, "the detectors to score every reading and their anomalies to arrive", func() bool {
		n := uint64(0)
		for _, name := range []string{"peers", "alone"} {
			st := detectorStatus(t, c, name)
			if st.LagRecords != 0 || st.State != "running" {
				return false
			}
			n += st.Anomalies
		}
		return len(hook.byTime()) >= max(want, int(n))
	})
	return hook.byTime(), c
}

// TestDetectorPeers drifts one of six thermostats of a floor slowly away from the others,
// so slowly that its own model follows it: the detector comparing peers reports it as a peer
// departure before it is 5σ away, while the one that does not compare peers reports nothing of
// it; the clean thermostats raise no peer anomaly (package anomaly's tests bound the rate at
// 0.1% of their points, and measure 0.004%). A server stopped and started twice
// mid-stream raises the same anomalies, and backtests of the drifting and of a clean thermostat
// give the stream's scores.
func TestDetectorPeers(t *testing.T) {
	f := floorRun{thermostats: 6, steps: 500, drift: 80, sigma: 0.2, slope: 0.0025} // 0.0125σ a step
	straight, c := scoreFloor(t, Config{}, f, 0)
	stepOf := func(a detector.AnomalyData) int {
		at, err := time.Parse(time.RFC3339Nano, a.Time)
		if err != nil {
			t.Fatal(err)
		}
		return int(at.Sub(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)) / time.Minute)
	}
	first := -1
	for _, a := range straight {
		switch {
		case a.Detector == "peers" && a.TwinID == "t-0" && first < 0:
			first = stepOf(a)
			if a.Kind != "peer" {
				t.Errorf("the drift is first reported as %+v, want kind peer", a)
			}
		case a.Kind == "peer" && a.TwinID != "t-0":
			t.Errorf("a clean thermostat reported as departing from its peers: %+v", a)
		}
	}
	if limit := f.drift + int(5*f.sigma/f.slope); first < f.drift || first > limit {
		t.Fatalf("the drift (from step %d) first reported at step %d, want by step %d, 5σ away; anomalies %+v", f.drift, first, limit, straight)
	}
	for _, a := range straight {
		if a.Detector == "alone" && a.TwinID == "t-0" && stepOf(a) >= f.drift {
			t.Errorf("without peers the drift is reported too, at step %d (%+v): it is not slow enough for the test", stepOf(a), a)
		}
	}
	t.Logf("the drift reported at step %d, %.1fσ away; %d anomalies in all", first, f.slope*float64(first-f.drift)/f.sigma, len(straight))

	restarted, _ := scoreFloor(t, Config{}, f, len(straight), 150, 330)
	if !slices.Equal(straight, restarted) {
		t.Errorf("after restarts the anomalies differ:\nstraight  %+v\nrestarted %+v", straight, restarted)
	}

	checkPeersBacktest(t, c, straight, map[string]int{"t-0": f.steps + 1, "t-3": f.steps + 1})
}

// TestDetectorPeersOnPostgreSQL scores a floor whose thermostat t-0 drifts away on the
// PostgreSQL store, with history in PostgreSQL, and one of whose thermostats is deleted and
// created again, leaving the others too few peers meanwhile: backtests, which merge the
// siblings' history and deletions with the series', give the stream's scores.
func TestDetectorPeersOnPostgreSQL(t *testing.T) {
	dsn, schema := testenv.PostgreSQLSchema(t, "detector_peers")
	f := floorRun{thermostats: 6, steps: 200, drift: 60, sigma: 0.2, slope: 0.01, gone: [2]int{120, 140}}
	streamed, c := scoreFloor(t, Config{Config: config.Config{Store: config.Store{DSN: dsn, Schema: schema}}}, f, 0)
	if !slices.ContainsFunc(streamed, func(a detector.AnomalyData) bool { return a.Kind == "peer" }) {
		t.Fatalf("no peer anomaly among %+v; the test wants some", streamed)
	}
	// t-5 misses the steps it was gone.
	checkPeersBacktest(t, c, streamed, map[string]int{"t-0": f.steps + 1, "t-5": f.steps + 1 - (f.gone[1] - f.gone[0])})
}

// feedFloor builds the floor of f through *c and sends its readings, calling step(i) before
// step i: step may change *c, to go on with another server.
func feedFloor(c *apiClient, f floorRun, step func(i int)) {
	c.do("POST", "/models", floorModels, http.StatusCreated)
	c.do("PUT", "/digitaltwins/floor-1", `{"$metadata":{"$model":"dtmi:test:Floor;1"}}`, http.StatusOK)
	ids := make([]string, f.thermostats)
	for j := range ids {
		ids[j] = fmt.Sprintf("t-%d", j)
	}
	for _, id := range ids {
		c.do("PUT", "/digitaltwins/"+id, `{"$metadata":{"$model":"dtmi:test:Thermostat;1"},"temp":21}`, http.StatusOK)
		c.do("PUT", "/digitaltwins/floor-1/relationships/"+id, `{"$targetId":"`+id+`","$relationshipName":"contains"}`, http.StatusOK)
	}
	for i, row := range f.values() {
		step(i)
		last := ids[len(ids)-1]
		switch {
		case f.gone[1] == 0:
		case i == f.gone[0]:
			c.do("DELETE", "/digitaltwins/floor-1/relationships/"+last, "", http.StatusNoContent)
			c.do("DELETE", "/digitaltwins/"+last, "", http.StatusNoContent)
		case i == f.gone[1]:
			// Without a value: a point between the twin's creation and its relationship's would
			// be compared with the siblings the graph had when the detector read it.
			c.do("PUT", "/digitaltwins/"+last, `{"$metadata":{"$model":"dtmi:test:Thermostat;1"}}`, http.StatusOK)
			c.do("PUT", "/digitaltwins/floor-1/relationships/"+last, `{"$targetId":"`+last+`","$relationshipName":"contains"}`, http.StatusOK)
		}
		for j, v := range row {
			switch {
			case ids[j] == last && i >= f.gone[0] && i < f.gone[1]:
			case ids[j] == last && i == f.gone[1] && f.gone[1] > 0:
				// The first value of the twin created again.
				c.do("PATCH", "/digitaltwins/"+last, fmt.Sprintf(`[{"op":"add","path":"/temp","value":%v},`+
					`{"op":"add","path":"/$metadata/temp/sourceTime","value":%q}]`, v, time.Date(2026, 1, 1, 0, i, 0, 0, time.UTC).Format(time.RFC3339)),
					http.StatusNoContent)
			default:
				patchReading(*c, ids[j], i, v)
			}
		}
	}
}

// checkPeersBacktest backtests detector "peers" over the given thermostats of the floor that
// scoreFloor scored, once history holds the given number of points of each, and checks that
// the points each raises are the stream's anomalies of that twin, and that from and to bound
// the points' source times without changing their scores.
func checkPeersBacktest(t *testing.T, c apiClient, straight []detector.AnomalyData, points map[string]int) {
	t.Helper()
	for twin, n := range points {
		var streamed []detector.AnomalyData
		for _, a := range straight {
			if a.Detector == "peers" && a.TwinID == twin {
				streamed = append(streamed, a)
			}
		}
		points := backtestSeries(t, c, "peers", twin, n, "")
		var raised []detector.AnomalyData
		for _, p := range points {
			if p.Anomaly {
				raised = append(raised, detector.AnomalyData{TwinID: twin, Property: "temp", Value: p.Value, Score: p.Score,
					Kind: p.Kind, Time: p.Time, Detector: "peers"})
			}
		}
		if !slices.Equal(raised, streamed) {
			t.Errorf("%s: the backtest's anomalies differ from the stream's:\nbacktest %+v\nstream   %+v", twin, raised, streamed)
		}
		// from and to bound the points' source time, and leave their scores as they were.
		from, to := time.Date(2026, 1, 1, 1, 30, 0, 0, time.UTC), time.Date(2026, 1, 1, 2, 20, 0, 0, time.UTC)
		var want []backtestPoint
		for _, p := range points {
			if at, err := time.Parse(time.RFC3339Nano, p.Time); err == nil && !at.Before(from) && at.Before(to) {
				want = append(want, p)
			}
		}
		bounded := backtestSeries(t, c, "peers", twin, len(want), `,"from":"2026-01-01T01:30:00Z","to":"2026-01-01T02:20:00Z"`)
		if len(want) == 0 || !slices.Equal(bounded, want) {
			t.Errorf("%s: the backtest from 01:30 to 02:20 = %+v, want %+v", twin, bounded, want)
		}
	}
}

// backtestSeries backtests the temp of twin with detector name, page by page (7 points a
// page), with the members bounds adds to the request, once history holds n points of it.
func backtestSeries(t *testing.T, c apiClient, name, twin string, n int, bounds string) []backtestPoint {
	t.Helper()
	var points []backtestPoint
	waitFor(t, "history to hold the series", func() bool {
		points = points[:0]
		token := ""
		for {
			tok, _ := json.Marshal(token)
			body := `{"twinId":"` + twin + `","property":"temp","continuationToken":` + string(tok) + bounds + `}`
			var page struct {
				Value             []backtestPoint `json:"value"`
				ContinuationToken *string         `json:"continuationToken"`
			}
			if err := json.Unmarshal([]byte(c.do("POST", "/detectors/"+name+"/backtest", body, http.StatusOK, "max-items-per-page", "7")), &page); err != nil {
				t.Fatal(err)
			}
			if len(page.Value) > 7 {
				t.Fatalf("a page of %d points, want at most 7", len(page.Value))
			}
			points = append(points, page.Value...)
			if page.ContinuationToken == nil {
				return len(points) == n
			}
			token = *page.ContinuationToken
		}
	})
	return points
}
