package detector

import (
	"encoding/json"
	"strconv"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/anomaly"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// BenchmarkStreamPoint measures what streaming costs per point beside the model itself: the
// point taken from a Twin.Update as the log hands it over (with the state it left), and the
// score. BenchmarkModelScore is the model alone.
func BenchmarkStreamPoint(b *testing.B) {
	benchmarkStreamPoint(b, (*extractor).points)
}

// BenchmarkStreamPointDerived is BenchmarkStreamPoint with the points taken from the rows
// history.Derive makes of each change, which points equals and streaming did before.
func BenchmarkStreamPointDerived(b *testing.B) {
	benchmarkStreamPoint(b, (*extractor).derivedPoints)
}

func benchmarkStreamPoint(b *testing.B, points func(*extractor, *store.Change, []watchedPoint) ([]watchedPoint, error)) {
	def, err := Parse([]byte(`{"twins":"SELECT * FROM DIGITALTWINS","properties":["temp"]}`))
	if err != nil {
		b.Fatal(err)
	}
	det := def.newDetector()
	changes := make([]store.Change, 1024)
	for i := range changes {
		v := strconv.FormatFloat(20+float64(i%7)*0.1, 'f', -1, 64)
		changes[i] = store.Change{
			Record: event.Record{Seq: uint64(i + 1), Event: event.Event{
				Type: event.TwinUpdate, Subject: "room-1", Source: "host", Time: time.Unix(int64(i)*60, 0).UTC().Format(time.RFC3339Nano),
				Data: json.RawMessage(`{"modelId":"dtmi:x:Room;1","patch":[{"op":"replace","path":"/temp","value":` + v + `}]}`),
			}},
			Known: true,
			Twin: &store.Twin{ID: "room-1", Doc: json.RawMessage(`{"$dtId":"room-1","$etag":"W/\"x\"","temp":` + v +
				`,"$metadata":{"$model":"dtmi:x:Room;1","temp":{"lastUpdateTime":"2026-01-01T00:00:00Z"}}}`)},
		}
	}
	x := extractor{properties: def.Properties}
	var pts []watchedPoint
	i := 0
	for b.Loop() {
		pts, err = points(&x, &changes[i%len(changes)], pts[:0])
		if err != nil || len(pts) != 1 {
			b.Fatal(pts, err)
		}
		score(det, pts[0].point)
		i++
	}
}

func BenchmarkModelScore(b *testing.B) {
	det, err := anomaly.New(anomaly.Config{})
	if err != nil {
		b.Fatal(err)
	}
	i := 0
	for b.Loop() {
		det.Score(time.Unix(int64(i)*60, 0).UTC(), 20+float64(i%7)*0.1)
		i++
	}
}
