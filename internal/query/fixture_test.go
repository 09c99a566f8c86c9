package query

import (
	"context"
	"encoding/json"
	"log/slog"
	"os"
	"regexp"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

// fixtureClock is the time every fixture write happens at.
var fixtureClock = time.Date(2024, 5, 1, 10, 0, 0, 123456700, time.UTC)

// fixture is a building graph in a real SQLite store, written through the twin service, and
// the index built over it.
type fixture struct {
	twins *twins.Service
	store *sqlite.Store
	index *graph.Index
}

// newFixture writes testdata/fixture.json through a graph over a fresh store and builds the
// index. When late is true, the index is built first and the fixture reaches it through the
// change log.
func newFixture(t testing.TB, late bool) *fixture {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(sqlite.Config{Dir: t.TempDir(), NoSync: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	g, err := twins.New(twins.Config{ServiceID: "tf.test", Now: func() time.Time { return fixtureClock }}, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{twins: g, store: st}
	if late {
		f.buildIndex(t)
	}
	raw, err := os.ReadFile("testdata/fixture.json")
	if err != nil {
		t.Fatal(err)
	}
	var fx struct {
		Models json.RawMessage
		Twins  []struct {
			ID   string
			Body json.RawMessage
		}
		Relationships []struct {
			Source, ID string
			Body       json.RawMessage
		}
	}
	if err := json.Unmarshal(raw, &fx); err != nil {
		t.Fatal(err)
	}
	if _, err := g.AddModels(ctx, fx.Models); err != nil {
		t.Fatal(err)
	}
	for _, tw := range fx.Twins {
		if _, err := g.PutTwin(ctx, tw.ID, tw.Body, "", twins.Trace{}); err != nil {
			t.Fatalf("create twin %s: %v", tw.ID, err)
		}
	}
	for _, r := range fx.Relationships {
		if _, err := g.PutRelationship(ctx, r.Source, r.ID, r.Body, "", twins.Trace{}); err != nil {
			t.Fatalf("create relationship %s: %v", r.ID, err)
		}
	}
	if !late {
		f.buildIndex(t)
	}
	return f
}

func (f *fixture) buildIndex(t testing.TB) {
	t.Helper()
	idx, err := graph.New(context.Background(), graph.Config{}, f.store, f.twins.Models, nil)
	if err != nil {
		t.Fatal(err)
	}
	f.index = idx
}

// etags matches the random part of ETags, which golden files cannot hold.
var etags = regexp.MustCompile(`W/\\"[0-9a-f-]{36}\\"`)

func stable(s string) string { return etags.ReplaceAllString(s, `W/\"etag\"`) }
