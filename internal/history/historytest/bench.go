package historytest

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/history"
)

// BenchAggregate measures Aggregate on st: the hourly aggregates of one property of 100
// twins over 7 days at one value a minute (1,008,000 rows), from half an hour after the
// first value to half an hour before the end, so that the first and last hours are cut
// (goal: at most 250 ms). It writes the rows, rolls them up as the history writer does, in
// Rollup steps, then calls settle (when not nil) and times, on every round, the hourly
// averages (as POST /history/query asks when no first or last is wanted) and every
// aggregate. It reports the median time of each and the roll-up's rate.
func BenchAggregate(b *testing.B, st history.Store, settle func()) {
	const nTwins, nDays = 100, 7
	ctx := b.Context()
	ids := make([]string, nTwins)
	for i := range ids {
		ids[i] = fmt.Sprintf("room%03d", i)
	}
	start := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
	end := start.Add(nDays * 24 * time.Hour)
	seq := uint64(0)
	var rows history.Rows
	for m := range nDays * 24 * 60 {
		ts := start.Add(time.Duration(m) * time.Minute)
		for i, id := range ids {
			seq++
			v := strconv.FormatFloat(20+float64((m+i)%100)/10, 'f', -1, 64)
			rows.Properties = append(rows.Properties, history.PropertyEvent{Seq: seq, TimeStamp: ts, ServiceID: "svc",
				ID: id, ModelID: "dtmi:ex:Room;1", Key: "temperature", Value: json.RawMessage(v), Action: history.ActionUpdate})
		}
		if len(rows.Properties) >= 50000 {
			if err := st.Write(ctx, &rows, seq); err != nil {
				b.Fatal(err)
			}
			rows.Reset()
		}
	}
	if err := st.Write(ctx, &rows, seq); err != nil {
		b.Fatal(err)
	}
	t0 := time.Now()
	steps := 1
	for ; ; steps++ {
		done, err := st.Rollup(ctx, end)
		if err != nil {
			b.Fatal(err)
		}
		if done {
			break
		}
	}
	rollup := time.Since(t0)
	if settle != nil {
		settle()
	}

	q := history.Aggregation{IDs: ids, Key: "temperature", From: start.Add(30 * time.Minute), To: end.Add(-30 * time.Minute), Interval: time.Hour}
	avg := q
	avg.NoEdges = true
	var tookAvg, tookAll []time.Duration
	b.ResetTimer()
	for b.Loop() {
		for _, c := range []struct {
			q    history.Aggregation
			took *[]time.Duration
		}{{avg, &tookAvg}, {q, &tookAll}} {
			t0 := time.Now()
			got, err := st.Aggregate(ctx, c.q)
			*c.took = append(*c.took, time.Since(t0))
			if err != nil {
				b.Fatal(err)
			}
			if len(got) != nTwins*nDays*24 || got[0].Count != 30 || got[1].Count != 60 {
				b.Fatalf("%d buckets, the first two %+v", len(got), got[:min(2, len(got))])
			}
		}
	}
	p50 := func(d []time.Duration) float64 {
		slices.Sort(d)
		return float64(d[len(d)/2].Microseconds()) / 1000
	}
	b.ReportMetric(p50(tookAvg), "avg-p50-ms")
	b.ReportMetric(p50(tookAll), "all-p50-ms")
	b.ReportMetric(float64(seq), "rows")
	b.ReportMetric(float64(seq)/rollup.Seconds(), "rollup-rows/s")
	b.ReportMetric(float64(rollup.Milliseconds())/float64(steps), "rollup-ms/step")
}
