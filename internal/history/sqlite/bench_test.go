package sqlite_test

import (
	"testing"

	"github.com/twinflow/twinflow/internal/history/historytest"
	"github.com/twinflow/twinflow/internal/history/sqlite"
)

// BenchmarkAggregate runs historytest.BenchAggregate on the SQLite store, with the
// production durability (synchronous commits).
func BenchmarkAggregate(b *testing.B) {
	st, err := sqlite.Open(sqlite.Config{Dir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	historytest.BenchAggregate(b, st, nil)
}
