package sqlite

import (
	"database/sql"
	"path/filepath"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/store/storetest"
)

func TestDeliveryContract(t *testing.T) {
	storetest.RunDelivery(t, func(t *testing.T) storetest.DeliveryStore {
		return open(t, Config{Dir: t.TempDir(), NoSync: true})
	})
}

// TestPruneLogBoundsUseThePrimaryKey checks that finding what PruneLog may delete looks the
// log's ends up rather than scanning it: the scan held the writer for half a second once the
// log held a million records.
func TestPruneLogBoundsUseThePrimaryKey(t *testing.T) {
	dir := t.TempDir()
	s := open(t, Config{Dir: dir, NoSync: true})
	t.Cleanup(func() { _ = s.Close() })
	db, err := sql.Open("sqlite", writerDSN(filepath.Join(dir, FileName)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	rows, err := db.Query("EXPLAIN QUERY PLAN "+pruneLogBounds, 1, 0, 1)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var plan []string
	for rows.Next() {
		var id, parent, unused int
		var detail string
		if err := rows.Scan(&id, &parent, &unused, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, step := range plan {
		if strings.HasPrefix(step, "SCAN log") {
			t.Fatalf("the plan scans the log:\n%s", strings.Join(plan, "\n"))
		}
	}
}
