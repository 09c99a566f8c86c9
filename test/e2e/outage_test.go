package e2e_test

import (
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/testenv"
)

// TestClusterSurvivesDatabaseOutage runs two nodes on one PostgreSQL schema, reached through
// a proxy, and patches twins through both while the database goes away for two seconds (every
// connection dropped, new ones refused) and comes back: the nodes keep running, answer writes
// 503 meanwhile, take writes again without a restart, and every acknowledged write is stored.
func TestClusterSurvivesDatabaseOutage(t *testing.T) {
	dsn, schema := testenv.PostgreSQLSchema(t, "outage")
	db := testenv.NewProxy(t, testenv.PostgreSQLAddr)
	s := startDBStorm(t, strings.Replace(dsn, testenv.PostgreSQLAddr, db.Addr(), 1), schema)
	time.Sleep(time.Second)
	db.Cut()
	time.Sleep(2 * time.Second)
	db.Restore()
	before, _ := s.counts()
	s.finish()
	writes, unavailable := s.counts()
	if unavailable == 0 {
		t.Error("no write was answered 503 with Retry-After while the database was away")
	}
	t.Logf("%d writes acknowledged (%d before the database came back), %d answered 503", writes, before, unavailable)
}
