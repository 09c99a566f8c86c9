package postgres_test

import (
	"testing"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/history/historytest"
	"github.com/twinflow/twinflow/internal/testenv"
)

// BenchmarkAggregate runs historytest.BenchAggregate on the PostgreSQL store. The tables are
// vacuumed after the roll-up, as autovacuum does after bulk inserts, so that Aggregate reads
// covering indexes alone.
func BenchmarkAggregate(b *testing.B) {
	dsn := testenv.PostgreSQL(b)
	schema := newSchema(b)
	st := open(b, dsn, schema)
	historytest.BenchAggregate(b, st, func() {
		c, err := pgx.Connect(b.Context(), dsn)
		if err != nil {
			b.Fatal(err)
		}
		defer c.Close(b.Context())
		for _, table := range []string{history.DefaultPropertyTable, history.Tables{}.WithDefaults().Hourly()} {
			if _, err := c.Exec(b.Context(), `VACUUM ANALYZE "`+schema+`"."`+table+`"`); err != nil {
				b.Fatal(err)
			}
		}
	})
}
