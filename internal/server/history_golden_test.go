package server

import (
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	historysqlite "github.com/twinflow/twinflow/internal/history/sqlite"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestHistoryRowsGolden makes twin, component and relationship changes through the API (with
// and without sourceTime, removals included) and compares every row the history tables hold
// afterwards, in log order, with testdata/history_rows.golden. Processing times vary from run
// to run: the file shows them as t<Seq>, after the test checked they follow the log's order.
func TestHistoryRowsGolden(t *testing.T) {
	dir := t.TempDir()
	s, stop := start(t, Config{Config: config.Config{Server: config.Server{DataDir: dir, ServiceID: "adt.example"},
		History: config.History{Telemetry: true}}}, nil)
	c := restClient{t: t, base: s.URL()}
	c.do(http.MethodPost, "/models", `[
{"@id":"dtmi:twinflow:test:Thermostat;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
 "contents":[{"@type":"Property","name":"setPoint","schema":"double","writable":true}]},
{"@id":"dtmi:twinflow:test:Room;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
 "contents":[{"@type":"Property","name":"n","schema":"integer","writable":true},
  {"@type":"Property","name":"label","schema":"string","writable":true},
  {"@type":"Property","name":"pos","writable":true,"schema":{"@type":"Object","fields":[{"name":"x","schema":"integer"},{"name":"y","schema":"integer"}]}},
  {"@type":"Component","name":"thermo","schema":"dtmi:twinflow:test:Thermostat;1"},
  {"@type":"Relationship","name":"feeds","properties":[{"@type":"Property","name":"weight","schema":"integer","writable":true}]}]}]`,
		http.StatusCreated)
	c.do(http.MethodPut, "/digitaltwins/a", `{"$metadata":{"$model":"dtmi:twinflow:test:Room;1","n":{"sourceTime":"2026-01-01T00:00:00Z"}},`+
		`"n":1,"label":"first","pos":{"x":1,"y":2},"thermo":{"$metadata":{},"setPoint":19.5}}`, http.StatusOK)
	c.do(http.MethodPatch, "/digitaltwins/a", `[{"op":"replace","path":"/n","value":2},`+
		`{"op":"add","path":"/$metadata/n/sourceTime","value":"2026-01-01T00:01:00Z"}]`, http.StatusNoContent)
	c.do(http.MethodPatch, "/digitaltwins/a", `[{"op":"replace","path":"/pos/x","value":5},{"op":"remove","path":"/label"}]`, http.StatusNoContent)
	c.do(http.MethodPatch, "/digitaltwins/a/components/thermo", `[{"op":"replace","path":"/setPoint","value":21}]`, http.StatusNoContent)
	c.do(http.MethodPut, "/digitaltwins/b", `{"$metadata":{"$model":"dtmi:twinflow:test:Room;1"},"thermo":{"$metadata":{}}}`, http.StatusOK)
	c.do(http.MethodPut, "/digitaltwins/a/relationships/r1", `{"$targetId":"b","$relationshipName":"feeds","weight":5}`, http.StatusOK)
	c.do(http.MethodPatch, "/digitaltwins/a/relationships/r1", `[{"op":"replace","path":"/weight","value":6}]`, http.StatusNoContent)
	c.do(http.MethodPost, "/digitaltwins/a/telemetry", `{"temp":20.5}`, http.StatusNoContent, "Message-Id", "m-1")
	c.do(http.MethodPost, "/digitaltwins/a/components/thermo/telemetry", `{"setPoint":21}`, http.StatusNoContent,
		"Message-Id", "m-2", "Telemetry-Source-Time", "2026-01-01T00:02:00Z")
	c.do(http.MethodDelete, "/digitaltwins/a/relationships/r1", nil, http.StatusNoContent)
	c.do(http.MethodDelete, "/digitaltwins/b", nil, http.StatusNoContent)
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st struct {
			LagEvents uint64 `json:"lagEvents"`
			Cursor    uint64 `json:"cursor"`
		}
		if err := json.Unmarshal(c.do(http.MethodGet, "/history/status", nil, http.StatusOK), &st); err != nil {
			t.Fatal(err)
		}
		if st.LagEvents == 0 && st.Cursor > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history lags after 10s: %+v", st)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	db, err := sql.Open("sqlite", filepath.Join(dir, historysqlite.FileName))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var out strings.Builder
	times := make(map[int64]int64) // Seq → TimeStamp, to check they follow the log
	dump := func(table, query string) {
		t.Helper()
		fmt.Fprintf(&out, "# %s\n", table)
		rows, err := db.Query(query)
		if err != nil {
			t.Fatalf("read %s: %v", table, err)
		}
		defer rows.Close()
		cols, _ := rows.Columns()
		for rows.Next() {
			vals := make([]any, len(cols))
			ptrs := make([]any, len(cols))
			for i := range vals {
				ptrs[i] = &vals[i]
			}
			if err := rows.Scan(ptrs...); err != nil {
				t.Fatal(err)
			}
			var seq, ts int64
			var fields []string
			for i, col := range cols {
				switch col {
				case "Seq":
					seq = vals[i].(int64)
				case "TimeStamp":
					ts = vals[i].(int64)
					continue
				}
				fields = append(fields, fmt.Sprintf("%s=%v", col, vals[i]))
			}
			// Telemetry rows take the time history recorded them, not their event's.
			if table != "AdtTelemetryEvents" {
				if prev, ok := times[seq]; ok && prev != ts {
					t.Errorf("rows of record %d have TimeStamps %d and %d", seq, prev, ts)
				}
				times[seq] = ts
			}
			fmt.Fprintf(&out, "TimeStamp=t%d %s\n", seq, strings.Join(fields, " "))
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
	}
	dump("AdtPropertyEvents", `SELECT TimeStamp, SourceTimeStamp, ServiceId, Id, ModelId, Key, Value, RelationshipId, RelationshipTarget, Action, Seq
		FROM AdtPropertyEvents ORDER BY Seq, Key`)
	dump("AdtTwinLifeCycleEvents", `SELECT TwinId, Action, TimeStamp, ServiceId, ModelId, Seq FROM AdtTwinLifeCycleEvents ORDER BY Seq`)
	dump("AdtRelationshipLifeCycleEvents", `SELECT RelationshipId, Name, Action, TimeStamp, ServiceId, Source, Target, Seq
		FROM AdtRelationshipLifeCycleEvents ORDER BY Seq`)
	dump("AdtTelemetryEvents", `SELECT TimeStamp, SourceTimeStamp, ServiceId, Id, Component, ModelId, MessageId, Value, Seq
		FROM AdtTelemetryEvents ORDER BY Seq`)
	var last int64
	for seq := range int64(len(times) * 4) {
		if ts, ok := times[seq]; ok {
			if ts < last {
				t.Errorf("record %d's TimeStamp is before the one of an earlier record", seq)
			}
			last = ts
		}
	}

	golden := filepath.Join("testdata", "history_rows.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if out.String() != string(want) {
		t.Errorf("history rows differ from %s (run with -update to accept):\n%s", golden, out.String())
	}
}
