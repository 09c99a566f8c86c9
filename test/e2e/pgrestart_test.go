package e2e_test

import (
	"net"
	"os"
	"os/exec"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/testenv"
)

// RestartPostgreSQLEnv, set to 1, lets TestClusterSurvivesPostgreSQLRestart restart the
// machine's PostgreSQL. Other packages' tests use the same server, so `make test` runs that
// test on its own, after all the others, with the variable set.
const RestartPostgreSQLEnv = "TWINFLOW_TEST_RESTART_POSTGRESQL"

// TestClusterSurvivesPostgreSQLRestart runs two nodes on one PostgreSQL schema and patches
// twins through both while PostgreSQL itself is restarted (pg_ctlcluster restart, which stops
// the server, dropping every connection, and starts it again): the nodes keep running, take
// writes again once it is back, without a restart, and every write acknowledged before,
// during and after is stored.
func TestClusterSurvivesPostgreSQLRestart(t *testing.T) {
	if os.Getenv(RestartPostgreSQLEnv) != "1" {
		t.Skipf("restarts the machine's PostgreSQL, which other tests use at the same time; `make test` runs it on its own with %s=1", RestartPostgreSQLEnv)
	}
	versions, err := os.ReadDir("/etc/postgresql")
	if err != nil || len(versions) != 1 {
		t.Fatalf("find the PostgreSQL cluster to restart in /etc/postgresql: %v", err)
	}
	dsn, schema := testenv.PostgreSQLSchema(t, "pgrestart")
	s := startDBStorm(t, dsn, schema)
	time.Sleep(time.Second)
	restart := exec.Command("pg_ctlcluster", "--skip-systemctl-redirect", versions[0].Name(), "main", "restart")
	if out, err := restart.CombinedOutput(); err != nil {
		t.Fatalf("restart PostgreSQL: %v: %s", err, out)
	}
	waitUntil(t, time.Minute, "PostgreSQL to listen again", func() bool {
		c, err := net.DialTimeout("tcp", testenv.PostgreSQLAddr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	before, _ := s.counts()
	s.finish()
	writes, unavailable := s.counts()
	t.Logf("%d writes acknowledged (%d when PostgreSQL listened again), %d answered 503", writes, before, unavailable)
}
