package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/detector"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/testenv"
)

// rebuildDef is a detector over the rooms' temp that raises every point it scores above 0
// (sensitivity 1), so that the anomaly events tell every score but the zeros, with a warm-up
// long enough that a model started afresh mid-series scores points differently.
const rebuildDef = `{"twins":"SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL('dtmi:test:Room;1')","properties":["temp"],` +
	`"sensitivity":1,"warmUp":20}`

// rebuildReading is the i-th reading of a room: a quiet series around base with a few
// points that score high, and a spike at spike.
func rebuildReading(i, spike int, base float64) float64 {
	switch {
	case i == spike:
		return base + 60
	case i%13 == 12:
		return reading(i) - 20 + base + 3
	}
	return reading(i) - 20 + base
}

// minute returns the time of the i-th reading as points carry it.
func minute(i int) string {
	return time.Date(2026, 1, 1, 0, i, 0, 0, time.UTC).Format(time.RFC3339Nano)
}

// beforeMinute returns the time half a minute before the i-th reading.
func beforeMinute(i int) string {
	return time.Date(2026, 1, 1, 0, i, 0, 0, time.UTC).Add(-30 * time.Second).Format(time.RFC3339Nano)
}

// createRoom creates room id with temp v, measured half a minute before the i-th reading.
func createRoom(c apiClient, id string, v float64, i int) {
	c.do("PUT", "/digitaltwins/"+id, fmt.Sprintf(`{"$metadata":{"$model":"dtmi:test:Room;1","temp":{"sourceTime":%q}},"temp":%v}`,
		beforeMinute(i), v), http.StatusOK)
}

// backtestPoint is a point of a backtest answer.
type backtestPoint struct {
	Time    string  `json:"time"`
	Value   float64 `json:"value"`
	Score   float64 `json:"score"`
	Anomaly bool    `json:"anomaly"`
	Kind    string  `json:"kind"`
}

// backtest returns the backtest of twin's temp by detector name, once it holds n points.
func backtest(t *testing.T, c apiClient, name, twin string, n int) []backtestPoint {
	t.Helper()
	var points []backtestPoint
	waitFor(t, fmt.Sprintf("data history to hold %d points of %s", n, twin), func() bool {
		points = points[:0]
		token := ""
		for {
			body, _ := json.Marshal(map[string]string{"twinId": twin, "property": "temp", "continuationToken": token})
			var page struct {
				Value             []backtestPoint `json:"value"`
				ContinuationToken *string         `json:"continuationToken"`
			}
			if err := json.Unmarshal([]byte(c.do("POST", "/detectors/"+name+"/backtest", string(body), http.StatusOK,
				"max-items-per-page", "11")), &page); err != nil {
				t.Fatal(err)
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

// raised returns the anomalies detector name raises for the points of twin at or after
// time from if it gives them the scores the backtest points do.
func raised(points []backtestPoint, name, twin, from string) []detector.AnomalyData {
	var out []detector.AnomalyData
	for _, p := range points {
		if p.Anomaly && p.Time >= from {
			out = append(out, detector.AnomalyData{TwinID: twin, Property: "temp", Value: p.Value, Score: p.Score, Kind: p.Kind,
				Time: p.Time, Detector: name})
		}
	}
	return out
}

// received returns the anomalies of detector name for twin that the hook received, by time.
func (h *anomalyHook) received(name, twin string) []detector.AnomalyData {
	var out []detector.AnomalyData
	for _, d := range h.byTime() {
		if d.Detector == name && d.TwinID == twin {
			out = append(out, d)
		}
	}
	return out
}

// sameScores checks that the anomalies the hook receives for detector name and twin are
// want, scores compared to the bit.
func sameScores(t *testing.T, h *anomalyHook, name, twin string, want []detector.AnomalyData) {
	t.Helper()
	if len(want) < 5 {
		t.Fatalf("the backtest raises %d points of %s; the test wants several", len(want), twin)
	}
	// The events are in the log once the detector scored it; their delivery follows. Those
	// that arrived by the deadline are compared, so a failure shows what differs.
	got := h.received(name, twin)
	for deadline := time.Now().Add(30 * time.Second); len(got) < len(want) && time.Now().Before(deadline); got = h.received(name, twin) {
		time.Sleep(10 * time.Millisecond)
	}
	same := len(got) == len(want)
	for i := 0; same && i < len(got); i++ {
		g, w := got[i], want[i]
		same = math.Float64bits(g.Score) == math.Float64bits(w.Score)
		g.Score, w.Score = 0, 0
		same = same && g == w
	}
	if !same {
		t.Errorf("the streamed anomalies of %s differ from the backtest's:\nstream   %+v\nbacktest %+v", twin, got, want)
	}
}

// waitScored waits until detector name has scored the whole log and counted points points
// since the server started.
func waitScored(t *testing.T, c apiClient, name string, points uint64) {
	t.Helper()
	waitFor(t, fmt.Sprintf("detector %s to score %d points", name, points), func() bool {
		st := detectorStatus(t, c, name)
		return st.State == "running" && st.LagRecords == 0 && st.Points == points
	})
}

// TestDetectorCreatedOverHistory creates a detector over rooms whose temp has a long data
// history, and checks that the points scored after its creation, a spike among them, get to
// the bit the scores a backtest from the series' first point gives them: the models are
// rebuilt from data history, not started afresh.
func TestDetectorCreatedOverHistory(t *testing.T) {
	createdOverHistory(t, Config{})
}

// TestDetectorCreatedOverHistoryOnPostgreSQL is TestDetectorCreatedOverHistory on the
// PostgreSQL store, with history in PostgreSQL.
func TestDetectorCreatedOverHistoryOnPostgreSQL(t *testing.T) {
	dsn, schema := testenv.PostgreSQLSchema(t, "rebuild")
	createdOverHistory(t, Config{Config: config.Config{Store: config.Store{DSN: dsn, Schema: schema}}})
}

// createdOverHistory runs TestDetectorCreatedOverHistory with a server of cfg.
func createdOverHistory(t *testing.T, cfg Config) {
	hook := newAnomalyHook(t)
	routed := detectorConfig(t.TempDir(), hook.URL)
	cfg.Server.DataDir, cfg.Endpoints, cfg.Routes = routed.Server.DataDir, routed.Endpoints, routed.Routes
	s, _ := start(t, cfg, nil)
	c := apiClient{t, s.URL()}
	c.do("POST", "/models", roomModels, http.StatusCreated)
	rooms := []string{"room-1", "room-2"}
	for _, id := range rooms {
		createRoom(c, id, 20, 0)
	}
	const created, n, spike = 60, 90, 84
	for i := range n {
		if i == created {
			c.do("PUT", "/detectors/late", rebuildDef, http.StatusCreated)
		}
		patchReading(c, "room-1", i, rebuildReading(i, spike, 20))
		patchReading(c, "room-2", i, rebuildReading(i, -1, 30))
	}
	waitScored(t, c, "late", 2*(n-created))
	// Each room's model was rebuilt once, from its creation's point and the created
	// readings before the detector.
	if st := detectorStatus(t, c, "late"); st.RebuiltSeries != 2 || st.Rebuilt != 2*(created+1) {
		t.Errorf("status rebuilt %d series from %d points, want 2 from %d", st.RebuiltSeries, st.Rebuilt, 2*(created+1))
	}
	for _, id := range rooms {
		want := raised(backtest(t, c, "late", id, n+1), "late", id, minute(created))
		sameScores(t, hook, "late", id, want)
	}
	if got := hook.received("late", "room-1"); !slices.ContainsFunc(got, func(d detector.AnomalyData) bool {
		return d.Time == minute(spike) && d.Kind == "spike"
	}) {
		t.Errorf("no spike raised at %s among %+v", minute(spike), got)
	}
}

// TestDetectorRebuildsLostState stops a server whose detector scored two rooms, deletes the
// stored state of one and overwrites the other's with bytes that are no state, starts it
// again and checks that the detector goes on with the scores a backtest gives every point:
// both models are rebuilt from data history.
func TestDetectorRebuildsLostState(t *testing.T) {
	hook := newAnomalyHook(t)
	cfg := detectorConfig(t.TempDir(), hook.URL)
	s, stop := start(t, cfg, nil)
	c := apiClient{t, s.URL()}
	c.do("POST", "/models", roomModels, http.StatusCreated)
	c.do("PUT", "/detectors/rooms", rebuildDef, http.StatusCreated)
	rooms := []string{"room-1", "room-2"}
	for _, id := range rooms {
		createRoom(c, id, 20, 0)
	}
	const restart, n, spike = 50, 80, 74
	for i := range restart {
		patchReading(c, "room-1", i, rebuildReading(i, spike, 20))
		patchReading(c, "room-2", i, rebuildReading(i, -1, 30))
	}
	waitScored(t, c, "rooms", 2*(restart+1))
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	var log lockedBuffer
	s, err := New(cfg, slog.New(slog.NewTextHandler(&log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	err = s.store.UpdateDetectors(context.Background(), func(w store.DetectorWriter) error {
		if err := w.DeleteDetectorTwin("rooms", "room-2"); err != nil {
			return err
		}
		return w.PutDetectorState(store.DetectorState{Detector: "rooms", Twin: "room-1", Property: "temp", State: []byte("no state")})
	})
	if err != nil {
		t.Fatal(err)
	}
	run(t, s)
	waitReady(t, s)
	c = apiClient{t, s.URL()}
	for i := restart; i < n; i++ {
		patchReading(c, "room-1", i, rebuildReading(i, spike, 20))
		patchReading(c, "room-2", i, rebuildReading(i, -1, 30))
	}
	waitScored(t, c, "rooms", 2*(n-restart))
	for _, id := range rooms {
		// The creation's value and every reading, scored before the restart or after.
		want := raised(backtest(t, c, "rooms", id, n+1), "rooms", id, "")
		sameScores(t, hook, "rooms", id, want)
	}
	if !strings.Contains(log.String(), "the stored state of a series cannot be read") {
		t.Errorf("no warning of the state that cannot be read in the log:\n%s", log.String())
	}
}

// TestDetectorRecreatedTwinIsNewSeries deletes a room and creates it again with the same id
// at another level, and checks that its new series owes nothing to the old one: the
// backtest scores the new series with a fresh model (its warm-up scores 0, where a model
// of the old level would raise the new one), a detector that streamed throughout raises
// the backtest's scores, and so does one created after the creation, whose model is
// rebuilt from the new series' history alone.
func TestDetectorRecreatedTwinIsNewSeries(t *testing.T) {
	hook := newAnomalyHook(t)
	s, _ := start(t, detectorConfig(t.TempDir(), hook.URL), nil)
	c := apiClient{t, s.URL()}
	c.do("POST", "/models", roomModels, http.StatusCreated)
	c.do("PUT", "/detectors/early", rebuildDef, http.StatusCreated)
	createRoom(c, "room-1", 20, 0)
	const recreated, late, n, spike = 40, 70, 100, 94
	for i := range recreated {
		patchReading(c, "room-1", i, rebuildReading(i, -1, 20))
	}
	c.do("DELETE", "/digitaltwins/room-1", "", http.StatusNoContent)
	createRoom(c, "room-1", 50, recreated)
	for i := recreated; i < n; i++ {
		if i == late {
			c.do("PUT", "/detectors/late", rebuildDef, http.StatusCreated)
		}
		patchReading(c, "room-1", i, rebuildReading(i, spike, 50))
	}
	waitScored(t, c, "late", n-late)
	waitScored(t, c, "early", n+2)

	points := backtest(t, c, "early", "room-1", n+2)
	first := slices.IndexFunc(points, func(p backtestPoint) bool { return p.Time == beforeMinute(recreated) })
	if first != recreated+1 || points[first].Value != 50 {
		t.Fatalf("the backtest does not hold the new creation's value after the old series' %d points: %+v", recreated+1, points)
	}
	for _, p := range points[first : first+20] {
		if p.Score != 0 {
			t.Fatalf("the backtest scores %+v of the new series' warm-up, want 0: %+v", p, points[first:])
		}
	}
	sameScores(t, hook, "early", "room-1", raised(points, "early", "room-1", ""))
	lateWant := raised(backtest(t, c, "late", "room-1", n+2), "late", "room-1", minute(late))
	sameScores(t, hook, "late", "room-1", lateWant)
	if !slices.ContainsFunc(lateWant, func(d detector.AnomalyData) bool { return d.Time == minute(spike) && d.Kind == "spike" }) {
		t.Errorf("no spike raised at %s among %+v", minute(spike), lateWant)
	}
}

// floorDef is a detector over the thermostats of floorModels that compares each with its
// siblings (the default) and raises every point it scores above 0 (sensitivity 1), so that
// the anomaly events tell every score but the zeros.
const floorDef = `{"twins":"SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL('dtmi:test:Thermostat;1')","properties":["temp"],` +
	`"sensitivity":1,"warmUp":20}`

// TestDetectorPeersRebuilt checks that models of a detector comparing peers, rebuilt from
// data history, hold the peer part of their state and that the scorer gets the siblings'
// values it lacks, so that every point gets to the bit the score a backtest gives it. On a
// floor of six thermostats, one of which is deleted and created again, detector "lost"
// scores from the start; the server is stopped, and started again with the states of three
// thermostats deleted and a fourth's overwritten with bytes that are no state. Detector
// "late" is created after that, over the floor's history.
func TestDetectorPeersRebuilt(t *testing.T) {
	hook := newAnomalyHook(t)
	cfg := detectorConfig(t.TempDir(), hook.URL)
	f := floorRun{thermostats: 6, steps: 150, drift: 40, sigma: 0.2, slope: 0.01, gone: [2]int{50, 70}}
	const restart, created = 90, 110
	// reporting returns how many thermostats report at steps [from, to).
	reporting := func(from, to int) uint64 {
		n := uint64(0)
		for i := from; i < to; i++ {
			n += uint64(f.thermostats)
			if i >= f.gone[0] && i < f.gone[1] {
				n--
			}
		}
		return n
	}
	s, stop := start(t, cfg, nil)
	c := apiClient{t, s.URL()}
	feedFloor(&c, f, func(i int) {
		switch i {
		case 0:
			c.do("PUT", "/detectors/lost", floorDef, http.StatusCreated)
		case restart:
			waitScored(t, c, "lost", reporting(0, restart))
			if err := stop(); err != nil {
				t.Fatal(err)
			}
			s, err := New(cfg, slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			err = s.store.UpdateDetectors(context.Background(), func(w store.DetectorWriter) error {
				for _, id := range []string{"t-1", "t-2", "t-3"} {
					if err := w.DeleteDetectorTwin("lost", id); err != nil {
						return err
					}
				}
				return w.PutDetectorState(store.DetectorState{Detector: "lost", Twin: "t-4", Property: "temp", State: []byte("no state")})
			})
			if err != nil {
				t.Fatal(err)
			}
			run(t, s)
			waitReady(t, s)
			c = apiClient{t, s.URL()}
		case created:
			c.do("PUT", "/detectors/late", floorDef, http.StatusCreated)
		}
	})
	waitScored(t, c, "lost", reporting(restart, f.steps))
	waitScored(t, c, "late", reporting(created, f.steps))
	for j := range f.thermostats {
		id := fmt.Sprintf("t-%d", j)
		// The creation's value and every reading it reported.
		n := 1 + int(reporting(0, f.steps)) - (f.thermostats-1)*f.steps
		if j < f.thermostats-1 {
			n = 1 + f.steps
		}
		sameScores(t, hook, "lost", id, raised(backtest(t, c, "lost", id, n), "lost", id, ""))
		sameScores(t, hook, "late", id, raised(backtest(t, c, "late", id, n), "late", id, minute(created)))
	}
}
