package postgres_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/history/historytest"
	"github.com/twinflow/twinflow/internal/history/postgres"
	"github.com/twinflow/twinflow/internal/testenv"
)

// newSchema returns the name of a schema of its own for t, dropped when t ends.
func newSchema(t testing.TB) string {
	_, schema := testenv.PostgreSQLSchema(t, "historytest")
	return schema
}

func open(t testing.TB, dsn, schema string) *postgres.Store {
	t.Helper()
	st, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func TestContract(t *testing.T) {
	dsn := testenv.PostgreSQL(t)
	historytest.Run(t, func(t *testing.T, key string) history.Store {
		// The same key opens the same schema: key is a fresh temporary directory per store.
		sum := sha256.Sum256([]byte(key))
		schema := "historytest_" + hex.EncodeToString(sum[:8])
		testenv.DropPostgreSQLSchema(t, dsn, schema)
		st, err := postgres.Open(context.Background(), postgres.Config{DSN: dsn, Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// TestRollupSteps runs the roll-up tests on a store that rolls up seven raw rows a step.
func TestRollupSteps(t *testing.T) {
	dsn := testenv.PostgreSQL(t)
	historytest.RunRollup(t, func(t *testing.T, key string) history.Store {
		sum := sha256.Sum256([]byte(key))
		schema := "historytest_" + hex.EncodeToString(sum[:8])
		testenv.DropPostgreSQLSchema(t, dsn, schema)
		st, err := postgres.Open(context.Background(), postgres.Config{DSN: dsn, Schema: schema, RollupRows: 7})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

func TestConfig(t *testing.T) {
	dsn := testenv.PostgreSQL(t)
	for _, cfg := range []postgres.Config{
		{},
		{DSN: dsn, Schema: "x; DROP"},
		{DSN: dsn, Tables: history.Tables{Properties: "x; DROP"}},
		{DSN: dsn, Tables: history.Tables{Properties: "P", TwinLifecycle: "P"}},
		{DSN: dsn, Tables: history.Tables{Properties: "P", TwinLifecycle: "P" + history.HourlySuffix}},
		{DSN: dsn, Tables: history.Tables{Properties: "P234567890123456789012345678901234567890123456789012345"}},
	} {
		if st, err := postgres.Open(t.Context(), cfg); err == nil {
			st.Close()
			t.Errorf("Open(%+v) succeeded", cfg)
		}
	}
	schema := newSchema(t)
	st, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn, Schema: schema, Tables: history.Tables{Properties: "Props"}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := st.Stats(t.Context())
	if err != nil || s.Tables[0].Name != "Props" || s.Tables[1].Name != history.DefaultTwinLifecycleTable || s.Bytes <= 0 {
		t.Fatalf("Stats = %+v, %v", s, err)
	}
	// A second store with other table names in the same schema has a cursor of its own.
	other, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn, Schema: schema})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if err := st.Write(t.Context(), &history.Rows{}, 9); err != nil {
		t.Fatal(err)
	}
	if c, err := other.Cursor(t.Context()); err != nil || c != 0 {
		t.Fatalf("the other store's cursor: %d, %v", c, err)
	}
	st.Close()
	if _, err := st.Cursor(t.Context()); err == nil {
		t.Fatal("Cursor after Close succeeded")
	}
}

// TestADTColumns checks that the tables answer plain SQL in ADT's column names.
func TestADTColumns(t *testing.T) {
	dsn := testenv.PostgreSQL(t)
	schema := newSchema(t)
	st := open(t, dsn, schema)
	ts := time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)
	rows := history.Rows{Properties: []history.PropertyEvent{{Seq: 1, TimeStamp: ts, ServiceID: "svc", ID: "t1",
		ModelID: "dtmi:x:T;1", Key: "temp", Value: json.RawMessage(`21.5`), Action: history.ActionUpdate}}}
	if err := st.Write(t.Context(), &rows, 1); err != nil {
		t.Fatal(err)
	}
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	var (
		got   time.Time
		value float64
	)
	err = c.QueryRow(t.Context(), `SELECT "TimeStamp", ("Value")::float8 FROM "`+schema+`"."AdtPropertyEvents"
		WHERE "Id" = 't1' AND "Key" = 'temp' AND "ServiceId" = 'svc' AND "ModelId" = 'dtmi:x:T;1'
		AND "RelationshipId" = '' AND "RelationshipTarget" = '' AND "Action" = 'update' AND "Seq" = 1
		AND "SourceTimeStamp" IS NULL`).Scan(&got, &value)
	if err != nil || !got.Equal(ts) || value != 21.5 {
		t.Fatalf("query by ADT's columns: %v %v, %v", got, value, err)
	}
}

var day0 = time.Date(2024, 3, 10, 0, 0, 0, 0, time.UTC)

// on returns the time h hours into day d after day0.
func on(d, h int) time.Time { return day0.Add(time.Duration(d*24+h) * time.Hour) }

func prop(seq uint64, ts time.Time, id, key, value string) history.PropertyEvent {
	return history.PropertyEvent{Seq: seq, TimeStamp: ts, ServiceID: "svc", ID: id, ModelID: "dtmi:x:T;1", Key: key,
		Value: json.RawMessage(value), Action: history.ActionUpdate}
}

func twin(seq uint64, ts time.Time, id, action string) history.TwinLifecycleEvent {
	return history.TwinLifecycleEvent{Seq: seq, TwinID: id, Action: action, TimeStamp: ts, ServiceID: "svc", ModelID: "dtmi:x:T;1"}
}

// partitionRows returns the number of rows of each partition of table, by day.
func partitionRows(t *testing.T, dsn, schema, table string) map[string]int64 {
	t.Helper()
	c, err := pgx.Connect(t.Context(), dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(context.Background())
	rows, _ := c.Query(t.Context(), `SELECT to_char(lower_bound, 'YYYY-MM-DD'), count
		FROM (SELECT tableoid, count(*) AS count FROM "`+schema+`"."`+table+`" GROUP BY tableoid) r
		JOIN LATERAL (SELECT min("TimeStamp" AT TIME ZONE 'UTC') AS lower_bound FROM "`+schema+`"."`+table+`" x
			WHERE x.tableoid = r.tableoid) b ON true`)
	out := map[string]int64{}
	var (
		d string
		n int64
	)
	if _, err := pgx.ForEachRow(rows, []any{&d, &n}, func() error { out[d] += n; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

func days(t *testing.T, st *postgres.Store) string {
	t.Helper()
	ds, err := st.Partitions(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, d := range ds {
		if d.Before(day0.AddDate(1, 0, 0)) { // leave out the days around now that Open made
			out = append(out, d.Format("01-02"))
		}
	}
	return fmt.Sprint(out)
}

func snapshot(t *testing.T, st history.Store, at time.Time) string {
	t.Helper()
	s, err := history.AsOf(t.Context(), st, at)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(s)
	return string(b)
}

func TestPartitions(t *testing.T) {
	dsn := testenv.PostgreSQL(t)
	schema := newSchema(t)
	st := open(t, dsn, schema)
	ctx := t.Context()
	rows := history.Rows{
		Properties: []history.PropertyEvent{
			prop(1, on(0, 1), "t1", "a", "1"), prop(2, on(0, 2), "t2", "b", "1"),
			prop(3, on(1, 1), "t1", "a", "2"), prop(4, on(1, 2), "t2", "b", "2"),
			prop(5, on(2, 1), "t1", "a", "3"),
		},
		Twins: []history.TwinLifecycleEvent{twin(1, on(0, 1), "t1", history.LifecycleCreate)},
	}
	if err := st.Write(ctx, &rows, 5); err != nil {
		t.Fatal(err)
	}
	if got, want := fmt.Sprint(partitionRows(t, dsn, schema, history.DefaultPropertyTable)),
		"map[2024-03-10:2 2024-03-11:2 2024-03-12:1]"; got != want {
		t.Fatalf("property rows by partition: %s, want %s", got, want)
	}
	if got := days(t, st); got != "[03-10 03-11 03-12 03-13]" {
		t.Fatalf("partitions %s, want the three days and the one after", got)
	}

	// Before day 2: day 0 keeps t1's creation, so its property rows go one by one; day 1
	// keeps the newest values.
	want := snapshot(t, st, on(2, 0))
	n, err := st.Prune(ctx, on(2, 0), 0)
	if err != nil || n != 2 {
		t.Fatalf("Prune before day 2 = %d, %v; want 2 rows", n, err)
	}
	if got := snapshot(t, st, on(2, 0)); got != want {
		t.Fatalf("AsOf after pruning: %s\nwant %s", got, want)
	}
	if got := fmt.Sprint(partitionRows(t, dsn, schema, history.DefaultPropertyTable)); got != "map[2024-03-11:2 2024-03-12:1]" {
		t.Fatalf("property rows by partition after pruning: %s", got)
	}

	// t1 deleted on day 3; before day 4 every row of days 0 to 2 is prunable: all their
	// partitions go, counted as deleted rows, whatever max says; then t1's deletion, whose
	// property rows are gone, is deleted row by row.
	rows = history.Rows{
		Properties: []history.PropertyEvent{prop(6, on(3, 1), "t2", "b", "3")},
		Twins:      []history.TwinLifecycleEvent{twin(7, on(3, 2), "t1", history.LifecycleDelete)},
	}
	if err := st.Write(ctx, &rows, 7); err != nil {
		t.Fatal(err)
	}
	want = snapshot(t, st, on(4, 0))
	n, err = st.Prune(ctx, on(4, 0), 1)
	if err != nil || n != 5 {
		t.Fatalf("Prune before day 4 = %d, %v; want 5 rows (days 0 to 2 and the deletion)", n, err)
	}
	if got := days(t, st); got != "[03-13 03-14]" {
		t.Fatalf("partitions after pruning %s, want days 3 and 4", got)
	}
	if got := snapshot(t, st, on(4, 0)); got != want {
		t.Fatalf("AsOf after pruning: %s\nwant %s", got, want)
	}
	// Writing into a dropped day creates its partition again.
	rows = history.Rows{Properties: []history.PropertyEvent{prop(8, on(0, 5), "t3", "c", "1")}}
	if err := st.Write(ctx, &rows, 8); err != nil {
		t.Fatal(err)
	}
	if got := days(t, st); got != "[03-10 03-11 03-13 03-14]" {
		t.Fatalf("partitions after a late write %s", got)
	}
}

func TestConcurrentOpen(t *testing.T) {
	dsn := testenv.PostgreSQL(t)
	schema := newSchema(t)
	const n = 8
	var wg sync.WaitGroup
	errs := make(chan error, n)
	stores := make(chan *postgres.Store, n)
	for range n {
		wg.Go(func() {
			st, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn, Schema: schema, MaxConns: 2})
			if err != nil {
				errs <- err
				return
			}
			stores <- st
		})
	}
	wg.Wait()
	close(errs)
	close(stores)
	for err := range errs {
		t.Error(err)
	}
	var seq uint64
	for st := range stores {
		defer st.Close()
		seq++
		rows := history.Rows{Properties: []history.PropertyEvent{prop(seq, on(int(seq), 0), "t", "a", "1")}}
		if err := st.Write(t.Context(), &rows, seq); err != nil {
			t.Fatal(err)
		}
	}
	st := open(t, dsn, schema)
	if c, err := st.Cursor(t.Context()); err != nil || c != n {
		t.Fatalf("cursor %d, %v; want %d", c, err, n)
	}
}
