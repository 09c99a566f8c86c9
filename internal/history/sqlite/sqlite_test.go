package sqlite_test

import (
	"testing"

	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/history/historytest"
	"github.com/twinflow/twinflow/internal/history/sqlite"
)

func TestContract(t *testing.T) {
	historytest.Run(t, func(t *testing.T, dir string) history.Store {
		st, err := sqlite.Open(sqlite.Config{Dir: dir})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

func TestTableNames(t *testing.T) {
	if _, err := sqlite.Open(sqlite.Config{Dir: t.TempDir(), Tables: history.Tables{Properties: "x; DROP"}}); err == nil {
		t.Fatal("a table name that is not an identifier was accepted")
	}
	st, err := sqlite.Open(sqlite.Config{Dir: t.TempDir(), Tables: history.Tables{Properties: "Props"}})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	s, err := st.Stats(t.Context())
	if err != nil || s.Tables[0].Name != "Props" || s.Tables[1].Name != history.DefaultTwinLifecycleTable {
		t.Fatalf("Stats = %+v, %v", s, err)
	}
}

// TestRollupSteps runs the roll-up tests on a store that rolls up seven raw rows a step.
func TestRollupSteps(t *testing.T) {
	historytest.RunRollup(t, func(t *testing.T, dir string) history.Store {
		st, err := sqlite.Open(sqlite.Config{Dir: dir, RollupRows: 7, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}

// TestCheckpoints runs the checkpoint tests on a store whose checkpoints are due every ten
// property rows.
func TestCheckpoints(t *testing.T) {
	historytest.RunCheckpoint(t, func(t *testing.T, dir string) history.Store {
		st, err := sqlite.Open(sqlite.Config{Dir: dir, CheckpointRows: 10, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		return st
	})
}
