package history_test

import (
	"context"
	"crypto/rand"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/history/postgres"
	"github.com/twinflow/twinflow/internal/testenv"
)

// BenchmarkWriterPostgreSQL measures the history writer's rows per second into the
// PostgreSQL store against a ceiling: a raw COPY of the same rows, derived beforehand, into
// the same store's tables, one transaction per batch of the writer's size. Both figures are
// reported in one run, with their ratio.
func BenchmarkWriterPostgreSQL(b *testing.B) {
	dsn := testenv.PostgreSQL(b)
	log, batches := benchLog(b)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { conn.Close(context.Background()) })
	openStore := func() (*postgres.Store, string) {
		schema := "historybench_" + rand.Text()[:16]
		b.Cleanup(func() {
			if _, err := conn.Exec(context.Background(), `DROP SCHEMA IF EXISTS "`+schema+`" CASCADE`); err != nil {
				b.Error(err)
			}
		})
		h, err := postgres.Open(ctx, postgres.Config{DSN: dsn, Schema: schema})
		if err != nil {
			b.Fatal(err)
		}
		return h, schema
	}
	var writerRate, ceilingRate float64
	for b.Loop() {
		h, _ := openStore()
		start := time.Now()
		s := runUntilCaughtUp(b, log, h)
		writerRate = float64(s.Rows) / time.Since(start).Seconds()
		h.Close()

		h, schema := openStore()
		h.Close()
		start = time.Now()
		n := 0
		for i := range batches {
			n += rawCopy(b, conn, schema, &batches[i].Rows, batches[i].Through)
		}
		ceilingRate = float64(n) / time.Since(start).Seconds()
	}
	b.ReportMetric(writerRate, "writer-rows/s")
	b.ReportMetric(ceilingRate, "ceiling-rows/s")
	b.ReportMetric(writerRate/ceilingRate, "ratio")
}

// rawCopy copies rows (the benchmark's log has no relationship rows) into the store's tables in schema and sets its cursor, in one
// transaction, and returns the number of rows.
func rawCopy(b *testing.B, conn *pgx.Conn, schema string, rows *history.Rows, through uint64) int {
	ctx := context.Background()
	err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
		props := make([][]any, 0, len(rows.Properties))
		for _, r := range rows.Properties {
			var num any
			if f, err := strconv.ParseFloat(string(r.Value), 64); err == nil {
				num = f
			}
			var src any
			if !r.SourceTimeStamp.IsZero() {
				src = r.SourceTimeStamp
			}
			props = append(props, []any{r.TimeStamp, src, r.ServiceID, r.ID, r.ModelID, r.Key, []byte(r.Value), num,
				r.RelationshipID, r.RelationshipTarget, r.Action, int64(r.Seq)})
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{schema, history.DefaultPropertyTable}, []string{"TimeStamp",
			"SourceTimeStamp", "ServiceId", "Id", "ModelId", "Key", "Value", "Num", "RelationshipId", "RelationshipTarget",
			"Action", "Seq"}, pgx.CopyFromRows(props)); err != nil {
			return err
		}
		twins := make([][]any, 0, len(rows.Twins))
		for _, r := range rows.Twins {
			twins = append(twins, []any{r.TwinID, r.Action, r.TimeStamp, r.ServiceID, r.ModelID, int64(r.Seq)})
		}
		if _, err := tx.CopyFrom(ctx, pgx.Identifier{schema, history.DefaultTwinLifecycleTable}, []string{"TwinId",
			"Action", "TimeStamp", "ServiceId", "ModelId", "Seq"}, pgx.CopyFromRows(twins)); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `UPDATE "`+schema+`".history_cursor SET seq = $1`, int64(through))
		return err
	})
	if err != nil {
		b.Fatal(err)
	}
	return len(rows.Properties) + len(rows.Twins)
}
