package cli

import (
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

// patchReading sets the temperature of the twin id to v, measured at the i-th minute of
// 2026, with a request of the test's own (the many points a detector needs).
func patchReading(t *testing.T, server, id string, i int, v float64) {
	t.Helper()
	at := time.Date(2026, 1, 1, 0, i, 0, 0, time.UTC).Format(time.RFC3339)
	body := fmt.Sprintf(`[{"op":"replace","path":"/temperature","value":%v},{"op":"add","path":"/$metadata/temperature/sourceTime","value":%q}]`, v, at)
	req, err := http.NewRequest(http.MethodPatch, server+"/digitaltwins/"+id+"?api-version=2023-10-31", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json-patch+json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(res.Body)
		t.Fatalf("patch %s: %d %s", id, res.StatusCode, b)
	}
}

// quietReading is the i-th value of a quiet series around 20.
func quietReading(i int) float64 { return 20 + 0.3*float64(i%7-3)/3 + 0.2*float64(i%5-2)/2 }

// TestDetectors applies, lists, shows and deletes a detector, sends a twin a quiet series
// and a spike, and reads the spike's anomaly back with `anomalies` and the whole series'
// scores with `detectors backtest`, through several pages, as JSON, CSV and a table.
func TestDetectors(t *testing.T) {
	c, _ := twinsServer(t)
	c.ok("twins", "create", "room-1", "--model", "dtmi:test:Room;1", "--properties", `{"temperature": 20, "thermostat": {"$metadata": {}}}`)
	dir := t.TempDir()

	// One body named on the command line, with put (apply's other name).
	one := writeFile(t, dir, "rooms.yaml", "twins: SELECT * FROM DIGITALTWINS WHERE IS_OF_MODEL('dtmi:test:Room;1')\nproperties: [temperature]\nwarmUp: 20\n")
	if r := c.ok("detectors", "put", "rooms", "-f", one); r.stdout != "detector rooms applied\n" {
		t.Errorf("detectors put: %v", r)
	}
	// A file of several, as the config file's detectors section: an invalid one is refused
	// with one detail per problem, and stops those after it.
	many := writeFile(t, dir, "detectors.json", `{"a-bad": {"twins": "SELECT * FROM DIGITALTWINS", "properties": [], "sensitivity": 2},
		"z-never": {"twins": "SELECT * FROM DIGITALTWINS", "properties": ["temperature"]}}`)
	c.fails(1, []string{"detectors", "apply", "-f", many}, "detector a-bad: InvalidArgument", "properties", "sensitivity")
	c.fails(1, []string{"detectors", "show", "z-never"}, "DetectorNotFound")

	r := c.ok("detectors", "list", "--output", "table")
	if !regexp.MustCompile(`(?m)^NAME\s+method\s+status\.state\s+status\.twins\s+status\.points\s+status\.anomalies\s+status\.lagRecords\s+status\.lagSeconds$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)^rooms\s+auto\s+running\s+\d+\s+\d+\s+\d+\s+\d+\s+[\d.e-]+\s*$`).MatchString(r.stdout) {
		t.Errorf("detectors list:\n%s", r.stdout)
	}
	if got := jsonLines[struct{ Name string }](t, c.ok("detectors", "list", "--output", "json").stdout); len(got) != 1 || got[0].Name != "rooms" {
		t.Errorf("detectors list as JSON: %+v", got)
	}
	if r = c.ok("detectors", "get", "rooms"); !strings.Contains(r.stdout, `"warmUp": 20`) || !strings.Contains(r.stdout, `"properties": [`) {
		t.Errorf("detectors get: %s", r.stdout)
	}

	// 40 quiet readings, then a spike.
	const quiet = 40
	for i := range quiet {
		patchReading(t, c.server, "room-1", i, quietReading(i))
	}
	patchReading(t, c.server, "room-1", quiet, 80)
	type anomaly struct {
		TimeStamp, Property, Kind, Detector string
		Value, Score                        float64
	}
	var got []anomaly
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = jsonLines[anomaly](t, c.ok("anomalies", "room-1", "--output", "json").stdout); len(got) > 0 {
			break
		}
	}
	spikeTime := time.Date(2026, 1, 1, 0, quiet, 0, 0, time.UTC)
	if len(got) != 1 || got[0].Property != "temperature" || got[0].Value != 80 || got[0].Kind != "spike" ||
		got[0].Detector != "rooms" || got[0].Score < 0.5 || !strings.HasPrefix(got[0].TimeStamp, spikeTime.Format("2006-01-02T15:04:05")) {
		t.Fatalf("anomalies of room-1: %+v, want the spike's", got)
	}
	if r = c.ok("anomalies", "room-1", "--detector", "other"); r.stdout != "" {
		t.Errorf("anomalies of another detector: %s", r.stdout)
	}
	// --from and --to are --since and --until; they bound the point's time.
	if r = c.ok("anomalies", "room-1", "--from", "2026-01-01T00:00:00Z", "--to", spikeTime.Add(-time.Second).Format(time.RFC3339)); r.stdout != "" {
		t.Errorf("anomalies before the spike: %s", r.stdout)
	}
	r = c.ok("anomalies", "room-1", "--since", "2026-01-01T00:00:00Z", "--detector", "rooms", "--output", "csv")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != 2 || lines[0] != "timeStamp,property,value,score,kind,detector" ||
		!strings.HasSuffix(lines[1], ",spike,rooms") || !strings.Contains(lines[1], ",temperature,80,") {
		t.Errorf("anomalies as CSV:\n%s", r.stdout)
	}
	r = c.ok("anomalies", "room-1", "--output", "table")
	if !regexp.MustCompile(`(?m)^TIME\s+PROPERTY\s+VALUE\s+SCORE\s+KIND\s+DETECTOR$`).MatchString(r.stdout) ||
		!regexp.MustCompile(`(?m)\s+temperature\s+80\s+[01]\.\d{4}\s+spike\s+rooms$`).MatchString(r.stdout) {
		t.Errorf("anomalies as a table:\n%s", r.stdout)
	}
	c.fails(2, []string{"anomalies", "room-1", "--since", "soon"}, `--since "soon"`)

	// The backtest reads data history: wait until it holds every point, the value room-1 was
	// created with and the 41 patches.
	const points = quiet + 2
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if rows := jsonLines[struct{ Key string }](t, c.ok("history", "show", "room-1", "temperature", "--since", "1h").stdout); len(rows) == points {
			break
		}
	}
	type scored struct {
		Time    string
		Value   float64
		Score   float64
		Anomaly bool
		Kind    string
	}
	// Pages of 7 points: the command follows the continuation token through all six.
	paged := jsonLines[scored](t, c.ok("detectors", "backtest", "rooms", "--twin", "room-1", "--property", "temperature", "--page-size", "7", "--output", "json").stdout)
	whole := jsonLines[scored](t, c.ok("detectors", "backtest", "rooms", "--twin", "room-1", "--property", "temperature", "--output", "json").stdout)
	if len(paged) != points || fmt.Sprint(paged) != fmt.Sprint(whole) {
		t.Fatalf("backtest: %d points in pages of 7, %d in one, want %d alike:\n%v\n%v", len(paged), len(whole), points, paged, whole)
	}
	var anomalies []scored
	for _, p := range paged {
		if p.Anomaly {
			anomalies = append(anomalies, p)
		}
	}
	// The backtest scores as the detector did: the one anomaly is the spike, with its score.
	if last := paged[points-1]; len(anomalies) != 1 || last != anomalies[0] || last.Value != 80 || last.Kind != "spike" || last.Score != got[0].Score {
		t.Errorf("backtest anomalies %+v, want the last point alone, the spike with the score %v", anomalies, got[0].Score)
	}
	r = c.ok("detectors", "backtest", "rooms", "--twin", "room-1", "--property", "temperature", "--from", "2000-01-01T00:00:00Z", "--output", "csv")
	if lines := strings.Split(strings.TrimSpace(r.stdout), "\n"); len(lines) != points+1 || lines[0] != "time,value,score,anomaly,kind" ||
		!strings.Contains(lines[points], ",80,") || !strings.HasSuffix(lines[points], ",true,spike") {
		t.Errorf("backtest as CSV:\n%s", r.stdout)
	}
	r = c.ok("detectors", "backtest", "rooms", "--twin", "room-1", "--property", "temperature", "--output", "table")
	if !regexp.MustCompile(`(?m)^TIME\s+VALUE\s+SCORE\s+ANOMALY\s+KIND$`).MatchString(r.stdout) ||
		strings.Count(r.stdout, "\n") != points+1 || !regexp.MustCompile(`(?m)\s+80\s+[01]\.\d{4}\s+yes\s+spike$`).MatchString(r.stdout) {
		t.Errorf("backtest as a table:\n%s", r.stdout)
	}
	if r = c.ok("detectors", "backtest", "rooms", "--twin", "room-1", "--property", "temperature", "--until", "2000-01-02T00:00:00Z"); r.stdout != "" {
		t.Errorf("backtest of what committed before 2000: %s", r.stdout)
	}
	// The progress counter goes to stderr, the points to stdout.
	r = c.ok("detectors", "backtest", "rooms", "--twin", "room-1", "--property", "temperature", "--progress", "--output", "json")
	if len(jsonLines[scored](t, r.stdout)) != points || !strings.Contains(r.stderr, "scoring room-1 temperature") {
		t.Errorf("backtest --progress: %v", r)
	}
	c.fails(1, []string{"detectors", "backtest", "nobody", "--twin", "room-1", "--property", "temperature"}, "DetectorNotFound")
	c.fails(2, []string{"detectors", "backtest", "rooms", "--property", "temperature"}, `required flag(s) "twin" not set`)

	c.ok("detectors", "delete", "rooms")
	c.fails(1, []string{"detectors", "get", "rooms"}, "DetectorNotFound")
	c.fails(1, []string{"detectors", "delete", "rooms"}, "DetectorNotFound")
	// The anomalies outlive the detector, in data history.
	if got := jsonLines[anomaly](t, c.ok("anomalies", "room-1").stdout); len(got) != 1 {
		t.Errorf("anomalies after the detector's deletion: %+v", got)
	}
}
