package server

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/detector"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/testenv"
)

// anomalyHook is a webhook endpoint that keeps the anomaly events it receives, once per id.
type anomalyHook struct {
	*httptest.Server
	mu     sync.Mutex
	events map[string]detector.AnomalyData
}

func newAnomalyHook(t *testing.T) *anomalyHook {
	h := &anomalyHook{events: map[string]detector.AnomalyData{}}
	h.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.Header().Set("WebHook-Allowed-Origin", "*")
			return
		}
		var e event.Event
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		var d detector.AnomalyData
		if e.Type != detector.AnomalyType || json.Unmarshal(e.Data, &d) != nil {
			http.Error(w, "not an anomaly event: "+e.Type, http.StatusBadRequest)
			return
		}
		h.mu.Lock()
		h.events[e.ID] = d
		h.mu.Unlock()
	}))
	t.Cleanup(h.Close)
	return h
}

// byTime returns the anomalies received, ordered by their points' time.
func (h *anomalyHook) byTime() []detector.AnomalyData {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []detector.AnomalyData
	for _, d := range h.events {
		out = append(out, d)
	}
	slices.SortFunc(out, func(a, b detector.AnomalyData) int {
		return cmp.Or(strings.Compare(a.Time, b.Time), strings.Compare(a.Detector, b.Detector),
			strings.Compare(a.TwinID, b.TwinID), strings.Compare(a.Property, b.Property))
	})
	return out
}

// detectorConfig is a server configuration with a webhook endpoint that the anomaly events
// are routed to.
func detectorConfig(dir, hook string) Config {
	return Config{Config: config.Config{
		Server:    config.Server{DataDir: dir},
		Endpoints: map[string]json.RawMessage{"hook": json.RawMessage(`{"endpointType":"webhook","url":"` + hook + `"}`)},
		Routes:    map[string]config.Route{"anomalies": {EndpointName: "hook", Filter: "type = 'Twinflow.Anomaly'"}},
	}}
}

const roomModels = `[
	{"@id":"dtmi:test:Room;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
	 "contents":[{"@type":"Property","name":"temp","schema":"double"}]},
	{"@id":"dtmi:test:Pump;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
	 "contents":[{"@type":"Property","name":"temp","schema":"double"}]}]`

// reading is the i-th value of a quiet series around 20.
func reading(i int) float64 { return 20 + 0.3*math.Sin(float64(i)*1.7) + 0.2*math.Cos(float64(i)*0.61) }

// patchReading sets twin id's temp to v, measured at the i-th minute of 2026.
func patchReading(c apiClient, id string, i int, v float64) {
	at := time.Date(2026, 1, 1, 0, i, 0, 0, time.UTC).Format(time.RFC3339)
	c.do("PATCH", "/digitaltwins/"+id, fmt.Sprintf(`[{"op":"replace","path":"/temp","value":%v},`+
		`{"op":"add","path":"/$metadata/temp/sourceTime","value":%q}]`, v, at), http.StatusNoContent)
}

// detectorStatus returns the status of detector name.
func detectorStatus(t *testing.T, c apiClient, name string) (st struct {
	State      string `json:"state"`
	Twins      int    `json:"twins"`
	Points     uint64 `json:"points"`
	Anomalies  uint64 `json:"anomalies"`
	LagRecords int64  `json:"lagRecords"`
	// RebuiltSeries and Rebuilt count the models rebuilt from data history and the points
	// replayed to rebuild them.
	RebuiltSeries uint64 `json:"rebuiltSeries"`
	Rebuilt       uint64 `json:"rebuilt"`
}) {
	t.Helper()
	var d struct {
		Status json.RawMessage `json:"status"`
	}
	if err := json.Unmarshal([]byte(c.do("GET", "/detectors/"+name, "", http.StatusOK)), &d); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(d.Status, &st); err != nil {
		t.Fatal(err)
	}
	return st
}

// TestDetectorRaisesAnomalyThroughRoute creates a detector over the rooms of a real server,
// sends one room a quiet series and then a spike, and checks that the spike's anomaly event
// reaches a webhook through an event route, with its data, that a twin the query does not
// select is not scored, and that the status and metrics count the points.
func TestDetectorRaisesAnomalyThroughRoute(t *testing.T) {
	hook := newAnomalyHook(t)
	cfg := detectorConfig(t.TempDir(), hook.URL)
	s, stop := start(t, cfg, nil)
	c := apiClient{t, s.URL()}
	c.do("POST", "/models", roomModels, http.StatusCreated)
	c.do("PUT", "/digitaltwins/room-1", `{"$metadata":{"$model":"dtmi:test:Room;1"},"temp":20}`, http.StatusOK)
	c.do("PUT", "/digitaltwins/pump-1", `{"$metadata":{"$model":"dtmi:test:Pump;1"},"temp":20}`, http.StatusOK)

	def := `{"twins":"SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL('dtmi:test:Room;1')","properties":["temp"],"warmUp":20}`
	c.do("PUT", "/detectors/rooms", def, http.StatusCreated)
	c.do("PUT", "/detectors/rooms", def, http.StatusOK)

	const quiet = 40
	for i := range quiet {
		patchReading(c, "room-1", i, reading(i))
		patchReading(c, "pump-1", i, reading(i))
	}
	patchReading(c, "pump-1", quiet, 80)
	patchReading(c, "room-1", quiet, 80)
	waitFor(t, "the spike's anomaly at the webhook", func() bool { return len(hook.byTime()) > 0 })
	got := hook.byTime()
	want := detector.AnomalyData{TwinID: "room-1", Property: "temp", Value: 80, Kind: "spike", Detector: "rooms",
		Time: time.Date(2026, 1, 1, 0, quiet, 0, 0, time.UTC).Format(time.RFC3339Nano)}
	if len(got) != 1 || got[0].Score < 0.5 {
		t.Fatalf("anomalies %+v, want one of the spike with a score of at least 0.5", got)
	}
	got[0].Score = 0
	if got[0] != want {
		t.Errorf("anomaly %+v, want %+v", got[0], want)
	}

	// Data history keeps the anomaly too.
	var rows struct {
		Value []struct {
			TimeStamp string  `json:"timeStamp"`
			Property  string  `json:"property"`
			Value     float64 `json:"value"`
			Kind      string  `json:"kind"`
			Detector  string  `json:"detector"`
		} `json:"value"`
	}
	waitFor(t, "the anomaly in data history", func() bool {
		if err := json.Unmarshal([]byte(c.do("GET", "/digitaltwins/room-1/anomalies", "", http.StatusOK)), &rows); err != nil {
			t.Fatal(err)
		}
		return len(rows.Value) > 0
	})
	if r := rows.Value; len(r) != 1 || r[0].Property != "temp" || r[0].Value != 80 || r[0].Kind != "spike" || r[0].Detector != "rooms" ||
		r[0].TimeStamp != "2026-01-01T00:40:00.0000000Z" {
		t.Errorf("anomaly history %+v, want the spike at 00:40", r)
	}
	if body := c.do("GET", "/digitaltwins/pump-1/anomalies", "", http.StatusOK); !strings.Contains(body, `"value":[]`) {
		t.Errorf("anomaly history of a twin not watched = %s", body)
	}

	waitFor(t, "the status to count every point", func() bool { return detectorStatus(t, c, "rooms").Points == quiet+1 })
	if st := detectorStatus(t, c, "rooms"); st.State != "running" || st.Twins != 1 || st.Anomalies != 1 {
		t.Errorf("status %+v, want running over 1 twin with 1 anomaly", st)
	}
	list := c.do("GET", "/detectors", "", http.StatusOK)
	if !strings.Contains(list, `"name":"rooms"`) || !strings.Contains(list, `"nextLink":null`) {
		t.Errorf("GET /detectors = %s", list)
	}
	_, metrics := get(t, http.DefaultClient, s.URL()+"/metrics")
	for _, m := range []string{
		fmt.Sprintf(`twinflow_detector_points_total{detector="rooms"} %d`, quiet+1),
		`twinflow_detector_anomalies_total{detector="rooms",kind="spike"} 1`,
		`twinflow_detector_twins{detector="rooms"} 1`,
	} {
		if !strings.Contains(metrics, m) {
			t.Errorf("/metrics lacks %s", m)
		}
	}
	// What the detector learned is checkpointed at a clean stop, and what it learned of a
	// twin goes with the twin.
	restart := func() {
		t.Helper()
		waitFor(t, "the detector to score every record", func() bool { return detectorStatus(t, c, "rooms").LagRecords == 0 })
		if err := stop(); err != nil {
			t.Fatal(err)
		}
		s, stop = start(t, cfg, nil)
		c = apiClient{t, s.URL()}
	}
	states := func() int {
		var n int
		err := s.store.ViewDetectors(context.Background(), func(r store.DetectorReader) error {
			st, err := r.DetectorStates("rooms")
			n = len(st)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		return n
	}
	restart()
	if n := states(); n != 1 {
		t.Fatalf("the detector keeps %d states, want room-1's", n)
	}
	c.do("DELETE", "/digitaltwins/room-1", "", http.StatusNoContent)
	restart()
	if n := states(); n != 0 {
		t.Fatalf("the detector keeps %d states of a deleted twin", n)
	}

	c.do("DELETE", "/detectors/rooms", "", http.StatusNoContent)
	c.do("GET", "/detectors/rooms", "", http.StatusNotFound)
	c.do("DELETE", "/detectors/rooms", "", http.StatusNotFound)
}

// scoreSeries runs a server of cfg, to which it adds a detector declared in the config that
// raises every point it scores above 0 (sensitivity 1) and a webhook that anomalies are
// routed to, sends it n readings of one room, stopping and starting the server again after
// each of the given counts, and returns the anomaly events once the detector has scored every
// reading and at least want anomalies have arrived, with the server still running and its
// client.
func scoreSeries(t *testing.T, cfg Config, n, want int, restarts ...int) ([]detector.AnomalyData, apiClient) {
	hook := newAnomalyHook(t)
	routed := detectorConfig(t.TempDir(), hook.URL)
	cfg.Server.DataDir, cfg.Endpoints, cfg.Routes = routed.Server.DataDir, routed.Endpoints, routed.Routes
	cfg.Detectors = map[string]json.RawMessage{"every": json.RawMessage(
		`{"twins":"SELECT R FROM DIGITALTWINS R WHERE IS_OF_MODEL('dtmi:test:Room;1')","properties":["temp"],"sensitivity":1,"warmUp":5}`)}
	s, stop := start(t, cfg, nil)
	c := apiClient{t, s.URL()}
	c.do("POST", "/models", roomModels, http.StatusCreated)
	c.do("PUT", "/digitaltwins/room-1", `{"$metadata":{"$model":"dtmi:test:Room;1"},"temp":20}`, http.StatusOK)
	for i := range n {
		if slices.Contains(restarts, i) {
			// Stopped mid-stream: the detector may not have scored the latest readings yet.
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			s, stop = start(t, cfg, nil)
			c = apiClient{t, s.URL()}
		}
		v := reading(i)
		if i%13 == 12 {
			v += 3 // a few points that score high
		}
		patchReading(c, "room-1", i, v)
	}
	// The status counts the anomalies raised since the last start: without restarts, all.
	waitFor(t, "the detector to score every reading and its anomalies to arrive", func() bool {
		st := detectorStatus(t, c, "every")
		return st.LagRecords == 0 && st.State == "running" && len(hook.byTime()) >= max(want, int(st.Anomalies))
	})
	return hook.byTime(), c
}

// TestDetectorRestartChangesNoScore compares the anomalies of a series scored by a server that
// runs throughout with those of one stopped and started twice mid-stream, and checks that a
// backtest over data history, paged, gives the same scores.
func TestDetectorRestartChangesNoScore(t *testing.T) {
	const n = 60
	straight, c := scoreSeries(t, Config{}, n, 0)
	if len(straight) < n/4 {
		t.Fatalf("%d anomalies of %d points; the test wants many points raised", len(straight), n)
	}
	restarted, _ := scoreSeries(t, Config{}, n, len(straight), 20, 41)
	if !slices.Equal(straight, restarted) {
		t.Errorf("after restarts the anomalies differ:\nstraight  %+v\nrestarted %+v", straight, restarted)
	}
	checkBacktest(t, c, n, straight)

	// from and to bound the points' source times: all of them are before 2100.
	if body := c.do("POST", "/detectors/every/backtest", `{"twinId":"room-1","property":"temp","from":"2100-01-01T00:00:00Z"}`,
		http.StatusOK); !strings.Contains(body, `"value":[]`) || !strings.Contains(body, `"continuationToken":null`) {
		t.Errorf("a backtest from 2100 = %s, want no points", body)
	}
	for _, bad := range []string{
		`{"twinId":"room-1","property":"temp","from":"2026-01-02T00:00:00Z","to":"2026-01-01T00:00:00Z"}`,
		`{"twinId":"room-1","property":"humidity"}`,
		`{"property":"temp"}`,
		`{"twinId":"room-1","property":"temp","from":"yesterday"}`,
		`{"twinId":"room-1","property":"temp","continuationToken":"nope"}`,
	} {
		c.do("POST", "/detectors/every/backtest", bad, http.StatusBadRequest)
	}
	c.do("POST", "/detectors/none/backtest", `{"twinId":"room-1","property":"temp"}`, http.StatusNotFound)
}

// TestDetectorOnPostgreSQL scores a series on the PostgreSQL store, with history in
// PostgreSQL, whose times are microseconds: a backtest still gives the stream's scores.
func TestDetectorOnPostgreSQL(t *testing.T) {
	dsn, schema := testenv.PostgreSQLSchema(t, "detector")
	const n = 30
	streamed, c := scoreSeries(t, Config{Config: config.Config{Store: config.Store{DSN: dsn, Schema: schema}}}, n, 0)
	if len(streamed) < n/4 {
		t.Fatalf("%d anomalies of %d points; the test wants many points raised", len(streamed), n)
	}
	checkBacktest(t, c, n, streamed)
}

// checkBacktest backtests the n readings (and the value it was created with) of the room
// that scoreSeries scored, page by page once history holds all of them, and checks that the
// points it raises are the stream's anomalies.
func checkBacktest(t *testing.T, c apiClient, n int, streamed []detector.AnomalyData) {
	t.Helper()
	type scored struct {
		Time    string  `json:"time"`
		Value   float64 `json:"value"`
		Score   float64 `json:"score"`
		Anomaly bool    `json:"anomaly"`
		Kind    string  `json:"kind"`
	}
	var points []scored
	waitFor(t, "history to hold the series", func() bool {
		points = points[:0]
		token := ""
		for {
			body, _ := json.Marshal(map[string]string{"twinId": "room-1", "property": "temp", "continuationToken": token})
			var page struct {
				Value             []scored `json:"value"`
				ContinuationToken *string  `json:"continuationToken"`
			}
			if err := json.Unmarshal([]byte(c.do("POST", "/detectors/every/backtest", string(body), http.StatusOK, "max-items-per-page", "7")), &page); err != nil {
				t.Fatal(err)
			}
			if len(page.Value) > 7 {
				t.Fatalf("a page of %d points, want at most 7", len(page.Value))
			}
			points = append(points, page.Value...)
			if page.ContinuationToken == nil {
				return len(points) == n+1 // the value the room was created with, and the readings
			}
			token = *page.ContinuationToken
		}
	})
	var raised []detector.AnomalyData
	for _, p := range points {
		if p.Anomaly {
			raised = append(raised, detector.AnomalyData{TwinID: "room-1", Property: "temp", Value: p.Value, Score: p.Score,
				Kind: p.Kind, Time: p.Time, Detector: "every"})
		}
	}
	if !slices.Equal(raised, streamed) {
		t.Errorf("the backtest's anomalies differ from the stream's:\nbacktest %+v\nstream   %+v", raised, streamed)
	}
}
