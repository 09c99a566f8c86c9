package sqlite

import (
	"context"
	"database/sql"
	"path/filepath"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/storetest"
)

func TestIngressContract(t *testing.T) {
	storetest.RunIngress(t, func(t *testing.T) storetest.IngressStore {
		return open(t, Config{Dir: t.TempDir(), NoSync: true})
	})
}

// TestMigrateFromVersion3 opens a database of schema version 3 holding log records: they
// come back with depth 0, and ingress state works.
func TestMigrateFromVersion3(t *testing.T) {
	dir := t.TempDir()
	db, err := sql.Open("sqlite", filepath.Join(dir, FileName))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range migrations[:3] {
		if _, err := db.Exec(m); err != nil {
			t.Fatal(err)
		}
	}
	ev := `{"id":"e1","source":"s","specversion":"1.0","type":"Microsoft.DigitalTwins.Twin.Create"}`
	for _, q := range []string{
		"INSERT INTO meta (key, value) VALUES ('" + schemaVersionKey + "', 3)",
		"INSERT INTO log (seq, event) VALUES (1, '" + ev + "')",
	} {
		if _, err := db.Exec(q); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	s := open(t, Config{Dir: dir, NoSync: true})
	defer s.Close()
	recs, err := s.Log().Read(context.Background(), 0, 10)
	if err != nil || len(recs) != 1 || recs[0].Event.ID != "e1" || recs[0].Event.Depth != 0 {
		t.Fatalf("log after migration = %+v, %v; want e1 at depth 0", recs, err)
	}
	err = s.UpdateIngress(context.Background(), func(w store.IngressWriter) error {
		return w.PutSource(store.Source{Name: "a", Config: []byte(`{}`), Created: time.Now()})
	})
	if err != nil {
		t.Fatalf("PutSource after migration: %v", err)
	}
}
