package history

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

var update = flag.Bool("update", false, "rewrite the golden files")

// goldenInput is a testdata/*.json file: options, rows recorded before, and log records
// with the state each left when known.
type goldenInput struct {
	Options struct {
		ServiceID       string `json:"serviceId"`
		RecordRemovals  bool   `json:"recordRemovals"`
		RecordTelemetry bool   `json:"recordTelemetry"`
	} `json:"options"`
	Prior   []PropertyEvent `json:"prior"`
	Records []struct {
		Seq          uint64          `json:"seq"`
		Event        event.Event     `json:"event"`
		Known        bool            `json:"known"`
		Twin         json.RawMessage `json:"twin"`
		Relationship json.RawMessage `json:"relationship"`
	} `json:"records"`
}

// TestDeriveGolden derives the rows of every record of each testdata/*.json file, in order,
// with the rows derived before (then the file's prior rows) as the recorded values, and
// compares them with testdata/<name>.golden.
func TestDeriveGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.json"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) {
			raw, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			var in goldenInput
			dec := json.NewDecoder(bytes.NewReader(raw))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&in); err != nil {
				t.Fatalf("decode %s: %v", file, err)
			}
			before := &Rows{Properties: in.Prior}
			var all Rows
			prior := Overlay(&all, Overlay(before, nil))
			// Telemetry rows take the clock's time: a fixed one keeps the files stable.
			clock := func() time.Time { return time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC) }
			opts := Options{ServiceID: in.Options.ServiceID, RecordRemovals: in.Options.RecordRemovals,
				RecordTelemetry: in.Options.RecordTelemetry, Now: clock}
			var b strings.Builder
			for _, r := range in.Records {
				ch := store.Change{Record: event.Record{Seq: r.Seq, Event: r.Event}, Known: r.Known}
				if len(r.Twin) > 0 && string(r.Twin) != "null" {
					ch.Twin = &store.Twin{ID: r.Event.Subject, Doc: r.Twin}
				}
				if len(r.Relationship) > 0 && string(r.Relationship) != "null" {
					var rel struct {
						Target string `json:"$targetId"`
					}
					if err := json.Unmarshal(r.Relationship, &rel); err != nil {
						t.Fatal(err)
					}
					ch.Relationship = &store.Relationship{TargetID: rel.Target, Doc: r.Relationship}
				}
				fmt.Fprintf(&b, "# %d %s %s known=%v\n", r.Seq, r.Event.Type, r.Event.Subject, r.Known)
				var rows Rows
				if err := Derive(ch, opts, prior, &rows); err != nil {
					fmt.Fprintf(&b, "error: %v\n", err)
				}
				writeRows(t, &b, &rows)
				all.Properties = append(all.Properties, rows.Properties...)
			}
			golden := strings.TrimSuffix(file, ".json") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatal(err)
			}
			if string(want) != b.String() {
				t.Errorf("%s differs; run go test -update and review the diff.\ngot:\n%s", golden, b.String())
			}
		})
	}
}

// writeRows writes each row as one JSON line, lifecycle rows first.
func writeRows(t *testing.T, b *strings.Builder, rows *Rows) {
	t.Helper()
	line := func(table string, v any) {
		j, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(b, "%s %s\n", table, j)
	}
	for _, r := range rows.Twins {
		line("twin", r)
	}
	for _, r := range rows.Relationships {
		line("rel", r)
	}
	for _, r := range rows.Properties {
		line("prop", r)
	}
	for _, r := range rows.Telemetry {
		line("telemetry", r)
	}
}

func TestDeriveTable(t *testing.T) {
	ts := "2024-05-01T10:00:00.1234567Z"
	patch := func(p string) json.RawMessage {
		return json.RawMessage(`{"modelId":"dtmi:x:Room;1","patch":` + p + `}`)
	}
	ev := func(typ, subject string, data json.RawMessage) store.Change {
		return store.Change{Record: event.Record{Seq: 7, Event: event.Event{
			Type: typ, Subject: subject, Time: ts, Source: "host.example", Data: data,
		}}}
	}
	known := func(ch store.Change, doc string) store.Change {
		ch.Known, ch.Twin = true, &store.Twin{ID: ch.Event.Subject, Doc: json.RawMessage(doc)}
		return ch
	}
	cases := []struct {
		name     string
		ch       store.Change
		removals bool
		prior    Prior
		want     []string // Key=Value/Action per property row
		wantErr  error
	}{
		{
			name: "top-level replace without state",
			ch:   ev(event.TwinUpdate, "t1", patch(`[{"op":"replace","path":"/temp","value":21.5}]`)),
			want: []string{"temp=21.5/update"},
		},
		{
			name: "sub-property from state",
			ch: known(ev(event.TwinUpdate, "t1", patch(`[{"op":"replace","path":"/pos/x","value":2}]`)),
				`{"$dtId":"t1","pos":{"x":2,"y":1},"$metadata":{"$model":"dtmi:x:Room;1"}}`),
			want: []string{`pos={"x":2,"y":1}/update`},
		},
		{
			name: "sub-property from recorded value",
			ch:   ev(event.TwinUpdate, "t1", patch(`[{"op":"replace","path":"/pos/x","value":2}]`)),
			prior: func(id, rel, key string) (PropertyEvent, bool, error) {
				return PropertyEvent{Key: key, Value: json.RawMessage(`{"x":1,"y":1}`), Action: ActionUpdate}, true, nil
			},
			want: []string{`pos={"x":2,"y":1}/update`},
		},
		{
			name:    "sub-property of an unknown value",
			ch:      ev(event.TwinUpdate, "t1", patch(`[{"op":"replace","path":"/pos/x","value":2}]`)),
			wantErr: ErrUnknownValue,
		},
		{
			name: "removal off",
			ch:   ev(event.TwinUpdate, "t1", patch(`[{"op":"remove","path":"/temp"},{"op":"add","path":"/hum","value":40}]`)),
			want: []string{"hum=40/update"},
		},
		{
			name:     "removal on",
			ch:       ev(event.TwinUpdate, "t1", patch(`[{"op":"remove","path":"/temp"}]`)),
			removals: true,
			want:     []string{"temp=null/delete"},
		},
		{
			name: "model change alone",
			ch:   ev(event.TwinUpdate, "t1", patch(`[{"op":"replace","path":"/$metadata/$model","value":"dtmi:x:Room;2"}]`)),
		},
		{
			name: "telemetry",
			ch:   ev(event.Telemetry, "t1", json.RawMessage(`{"temp":1}`)),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var rows Rows
			err := Derive(c.ch, Options{RecordRemovals: c.removals}, c.prior, &rows)
			if !errors.Is(err, c.wantErr) || (err != nil) != (c.wantErr != nil) {
				t.Fatalf("Derive: %v, want %v", err, c.wantErr)
			}
			var got []string
			for _, r := range rows.Properties {
				got = append(got, fmt.Sprintf("%s=%s/%s", r.Key, r.Value, r.Action))
				if r.Seq != 7 || r.ServiceID != "host.example" || r.ID != "t1" || r.ModelID != "dtmi:x:Room;1" {
					t.Errorf("row %+v: wrong seq, service, id or model", r)
				}
				if want, _ := time.Parse(time.RFC3339Nano, ts); !r.TimeStamp.Equal(want) {
					t.Errorf("TimeStamp %v, want %v", r.TimeStamp, want)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(c.want) {
				t.Errorf("rows %q, want %q", got, c.want)
			}
		})
	}
}

func TestContinuationRoundTrip(t *testing.T) {
	r := PropertyEvent{TimeStamp: time.Unix(1700000000, 123456700), Seq: 42, Key: "a:b"}
	p, err := ParseContinuation(Continuation(r))
	if err != nil || p.TimeStamp != r.TimeStamp.UnixNano() || p.Seq != 42 || p.Key != "a:b" {
		t.Fatalf("ParseContinuation = %+v, %v", p, err)
	}
	if _, err := ParseContinuation("!!"); !errors.Is(err, ErrBadContinuation) {
		t.Fatalf("bad token: %v", err)
	}
}

// TestOverlay checks that an Overlay finds the newest row of a property among rows that grow
// between lookups, tells twin and relationship properties apart, and asks next otherwise.
func TestOverlay(t *testing.T) {
	var rows Rows
	add := func(seq uint64, id, relID, key, value string) {
		rows.Properties = append(rows.Properties, PropertyEvent{Seq: seq, ID: id, RelationshipID: relID, Key: key, Value: json.RawMessage(value)})
	}
	asked := 0
	prior := Overlay(&rows, func(id, relID, key string) (PropertyEvent, bool, error) {
		asked++
		return PropertyEvent{Seq: 0, ID: id, Key: key, Value: json.RawMessage(`"stored"`)}, true, nil
	})
	lookup := func(id, relID, key, want string) {
		t.Helper()
		r, ok, err := prior(id, relID, key)
		if err != nil || !ok || string(r.Value) != want {
			t.Errorf("prior(%q, %q, %q) = %s, %v, %v; want %s", id, relID, key, r.Value, ok, err, want)
		}
	}
	add(1, "a", "", "x", "1")
	lookup("a", "", "x", "1")
	add(2, "a", "r", "x", "2")
	add(3, "a", "", "x", "3")
	lookup("a", "", "x", "3")
	lookup("a", "r", "x", "2")
	if asked != 0 {
		t.Errorf("next was asked %d times for rows in the batch", asked)
	}
	lookup("b", "", "x", `"stored"`)
	if asked != 1 {
		t.Errorf("next was asked %d times; want once", asked)
	}
}

// TestDeriveAnomaly derives the anomaly row of a detector's event, and refuses an event whose
// data it cannot read.
func TestDeriveAnomaly(t *testing.T) {
	ch := store.Change{Record: event.Record{Seq: 9, Event: event.Event{
		Type: event.Anomaly, Subject: "t1", Time: "2024-05-01T10:00:01Z", Source: "host.example/detectors/rooms",
		Data: json.RawMessage(`{"twinId":"t1","property":"temp","value":41.5,"score":0.8,"kind":"spike",` +
			`"time":"2024-05-01T10:00:00.25Z","detector":"rooms"}`),
	}}}
	var rows Rows
	if err := Derive(ch, Options{}, nil, &rows); err != nil {
		t.Fatal(err)
	}
	want := AnomalyEvent{Seq: 9, TimeStamp: time.Date(2024, 5, 1, 10, 0, 0, 250e6, time.UTC), ServiceID: "host.example",
		ID: "t1", Key: "temp", Value: 41.5, Score: 0.8, Kind: "spike", Detector: "rooms"}
	if len(rows.Anomalies) != 1 || rows.Anomalies[0] != want || rows.Len() != 1 {
		t.Errorf("rows %+v, want the anomaly %+v alone", rows, want)
	}
	ch.Event.Data = json.RawMessage(`{"time":"yesterday"}`)
	if err := Derive(ch, Options{}, nil, &rows); err == nil || len(rows.Anomalies) != 1 {
		t.Errorf("Derive of an unreadable anomaly = %v, %d rows; want an error and no row", err, len(rows.Anomalies))
	}
}
