package postgres_test

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/lease"
	"github.com/twinflow/twinflow/internal/lease/leasetest"
	"github.com/twinflow/twinflow/internal/lease/postgres"
	"github.com/twinflow/twinflow/internal/testenv"
)

// opener is a leasetest.Opener of tables in the database at dsn: each test's key is a schema
// of its own, dropped when the test ends.
func opener(dsn string) leasetest.Opener {
	var mu sync.Mutex
	schemas := map[[2]string]string{}
	return func(t testing.TB, key string) lease.Table {
		t.Helper()
		mu.Lock()
		k := [2]string{t.Name(), key}
		schema, ok := schemas[k]
		if !ok {
			schema = fmt.Sprintf("leasetest_%d_%d", time.Now().UnixNano(), len(schemas))
			schemas[k] = schema
			testenv.DropPostgreSQLSchema(t, dsn, schema)
		}
		mu.Unlock()
		tb, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn, Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(tb.Close)
		return tb
	}
}

func TestTable(t *testing.T) { leasetest.Run(t, opener(testenv.PostgreSQL(t))) }

func TestKeeper(t *testing.T) { leasetest.RunKeeper(t, opener(testenv.PostgreSQL(t))) }

func BenchmarkTable(b *testing.B) { leasetest.Bench(b, opener(testenv.PostgreSQL(b))) }

func TestOpenConfig(t *testing.T) {
	for _, cfg := range []postgres.Config{
		{},
		{DSN: "postgres://127.0.0.1:1/x", Schema: `a"b`},
		{DSN: "postgres://127.0.0.1:1/x", Schema: strings.Repeat("s", 64)},
		{DSN: "not a dsn ="},
	} {
		if tb, err := postgres.Open(t.Context(), cfg); err == nil {
			tb.Close()
			t.Errorf("Open(%+v) succeeded, want an error", cfg)
		}
	}
}

// TestOpenConcurrent opens one schema from many pools at once, as nodes starting together
// do: every Open succeeds and they all share the table.
func TestOpenConcurrent(t *testing.T) {
	dsn := testenv.PostgreSQL(t)
	schema := fmt.Sprintf("leasetest_%d", time.Now().UnixNano())
	testenv.DropPostgreSQLSchema(t, dsn, schema)
	tables := make([]*postgres.Table, 8)
	var wg sync.WaitGroup
	for i := range tables {
		wg.Go(func() {
			tb, err := postgres.Open(t.Context(), postgres.Config{DSN: dsn, Schema: schema})
			if err != nil {
				t.Error(err)
				return
			}
			t.Cleanup(tb.Close)
			tables[i] = tb
		})
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	g, err := tables[0].Acquire(t.Context(), "n", "node-a", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables[1:] {
		if _, err := tb.Acquire(t.Context(), "n", "node-b", time.Minute); !errors.Is(err, lease.ErrHeld) {
			t.Fatalf("Acquire through another pool = %v, want ErrHeld", err)
		}
	}
	if err := tables[7].Release(t.Context(), g); err != nil {
		t.Fatal(err)
	}
}
