package detector

import (
	"encoding/json"
	"time"

	"github.com/twinflow/twinflow/internal/anomaly"
	"github.com/twinflow/twinflow/internal/history"
)

// point is one value of a series: a property row of a twin that holds a number.
type point struct {
	Time  time.Time
	Value float64
}

// pointOf returns the point of a property row, and false for a row that is none: a
// relationship's property, a removal, or a value that is not a JSON number. Backtests take
// their points from the rows history.Derive made of the change log (history keeps them);
// streaming takes exactly the points pointOf takes from those rows (see extractor.points),
// so that both score the same points.
//
// A point's time is the row's SourceTimeStamp (the property's $metadata sourceTime) when it
// has one, else its TimeStamp (when the change committed), in UTC and to the microsecond,
// the precision of the PostgreSQL history store.
func pointOf(row *history.PropertyEvent) (point, bool) {
	if row.RelationshipID != "" || row.Action != history.ActionUpdate || len(row.Value) == 0 {
		return point{}, false
	}
	if c := row.Value[0]; c != '-' && (c < '0' || c > '9') {
		return point{}, false
	}
	var v float64
	if err := json.Unmarshal(row.Value, &v); err != nil {
		return point{}, false
	}
	t := row.SourceTimeStamp
	if t.IsZero() {
		t = row.TimeStamp
	}
	return point{Time: t.UTC().Truncate(time.Microsecond), Value: v}, true
}

// score scores p with det, comparing it with the values of its peers (none when the
// detector does not compare peers): the one step streaming and backtests share.
func score(det *anomaly.Detector, p point, peers ...float64) anomaly.Result {
	return det.ScoreAmong(p.Time, p.Value, peers)
}
