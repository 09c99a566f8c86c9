package postgres_test

import (
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/testenv"
)

// BenchmarkAggregate measures the hourly aggregates of one property of 100 twins over 7 days
// at one value a minute (1,008,000 rows), and reports the median time of one Aggregate
// (goal: at most 250 ms). The table is vacuumed first, as autovacuum does after bulk inserts,
// so that Aggregate reads the covering index alone.
func BenchmarkAggregate(b *testing.B) {
	const nTwins, nDays = 100, 7
	dsn := testenv.PostgreSQL(b)
	schema := newSchema(b, dsn)
	st := open(b, dsn, schema)
	ctx := b.Context()
	ids := make([]string, nTwins)
	for i := range ids {
		ids[i] = fmt.Sprintf("room%03d", i)
	}
	start := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC)
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
	c, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	if _, err := c.Exec(ctx, `VACUUM ANALYZE "`+schema+`"."`+history.DefaultPropertyTable+`"`); err != nil {
		b.Fatal(err)
	}
	c.Close(ctx)

	// Hourly averages (as POST /history/query asks when no first or last is wanted), and
	// every aggregate, each timed on every round.
	q := history.Aggregation{IDs: ids, Key: "temperature", From: start, To: start.Add(nDays * 24 * time.Hour), Interval: time.Hour}
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
			if len(got) != nTwins*nDays*24 || got[0].Count != 60 {
				b.Fatalf("%d buckets, the first %+v", len(got), got[0])
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
}
