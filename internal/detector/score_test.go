package detector

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/anomaly"
	"github.com/twinflow/twinflow/internal/history"
)

func TestPointOf(t *testing.T) {
	commit := time.Date(2026, 1, 2, 3, 4, 5, 123456789, time.UTC)
	source := time.Date(2026, 1, 1, 0, 0, 0, 0, time.FixedZone("x", 3600))
	row := func(value string, mod func(*history.PropertyEvent)) history.PropertyEvent {
		r := history.PropertyEvent{ID: "t", Key: "temp", Value: json.RawMessage(value), TimeStamp: commit, Action: history.ActionUpdate}
		if mod != nil {
			mod(&r)
		}
		return r
	}
	for _, tc := range []struct {
		name string
		row  history.PropertyEvent
		want point
		ok   bool
	}{
		{"commit time, to the microsecond", row("21.5", nil), point{commit.Truncate(time.Microsecond), 21.5}, true},
		{"source time, in UTC", row("-3", func(r *history.PropertyEvent) { r.SourceTimeStamp = source }), point{source.UTC(), -3}, true},
		{"a string", row(`"21"`, nil), point{}, false},
		{"an object", row(`{"a":1}`, nil), point{}, false},
		{"null", row(`null`, nil), point{}, false},
		{"a removal", row("1", func(r *history.PropertyEvent) { r.Action = history.ActionDelete }), point{}, false},
		{"a relationship's", row("1", func(r *history.PropertyEvent) { r.RelationshipID = "r" }), point{}, false},
	} {
		p, ok := pointOf(&tc.row)
		if ok != tc.ok || !p.Time.Equal(tc.want.Time) || p.Time.Location() != time.UTC && ok || p.Value != tc.want.Value {
			t.Errorf("%s: pointOf = %+v, %v; want %+v, %v", tc.name, p, ok, tc.want, tc.ok)
		}
	}
}

func TestParseDefaults(t *testing.T) {
	d, err := Parse([]byte(`{"twins":"SELECT * FROM DIGITALTWINS","properties":["a","b"]}`))
	if err != nil {
		t.Fatal(err)
	}
	if d.Method != anomaly.MethodAuto || d.Sensitivity != anomaly.DefaultSensitivity || d.WarmUp != DefaultWarmUp ||
		!d.watches("b") || d.watches("c") {
		t.Errorf("Parse = %+v, want the defaults", d)
	}
}

// TestParsePeers checks that peers are compared by default for method auto alone, and that a
// definition can say otherwise.
func TestParsePeers(t *testing.T) {
	for _, tc := range []struct {
		members string
		peers   bool
	}{
		{``, true},
		{`,"method":"residual"`, false},
		{`,"method":"change"`, false},
		{`,"peers":false`, false},
		{`,"method":"change","peers":true`, true},
	} {
		d, err := Parse([]byte(`{"twins":"SELECT * FROM DIGITALTWINS","properties":["a"]` + tc.members + `}`))
		if err != nil {
			t.Fatal(err)
		}
		if d.Peers != tc.peers {
			t.Errorf("%s: peers %v, want %v", tc.members, d.Peers, tc.peers)
		}
	}
}
