package postgres_test

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/postgres"
)

// waitGenerations waits until s knows of generations at least want, kind by kind, each wait
// woken by GenerationsChanged.
func waitGenerations(t *testing.T, s *postgres.Store, want map[string]uint64) map[string]uint64 {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		changed := s.GenerationsChanged()
		got := s.Generations()
		ok := true
		for k, v := range want {
			if got[k] < v {
				ok = false
			}
		}
		if ok {
			return got
		}
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("generations = %v, still short of %v", got, want)
		}
	}
}

// TestGenerations checks that each write of configuration bumps its kind's generation once
// per commit, on the writing node at once and on another node sharing the schema, which it
// wakes; that a write of anything else bumps none; and that a fresh Store starts from the
// stored generations.
func TestGenerations(t *testing.T) {
	dsn, schema := newSchema(t)
	a := open(t, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 2})
	// b polls rarely: its wake-ups come from the notifications.
	b := open(t, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 2, PollInterval: time.Minute})
	ctx := context.Background()
	zero := map[string]uint64{
		postgres.GenModels: 0, postgres.GenRoutes: 0, postgres.GenEndpoints: 0, postgres.GenSources: 0, postgres.GenMappings: 0,
	}
	if got := a.Generations(); !maps.Equal(got, zero) {
		t.Fatalf("generations of a fresh schema = %v", got)
	}

	steps := []struct {
		name  string
		bumps []string
		do    func() error
	}{
		{"put model", []string{postgres.GenModels}, func() error {
			return a.Update(ctx, func(w store.Writer) error {
				return w.PutModel(store.Model{ID: "dtmi:x:m;1", Definition: json.RawMessage(`{}`), UploadTime: time.Now()})
			})
		}},
		{"put twin", nil, func() error {
			return a.Update(ctx, func(w store.Writer) error {
				return w.PutTwin(store.Twin{ID: "t", ModelID: "dtmi:x:m;1", ETag: "e", Doc: json.RawMessage(`{}`)})
			})
		}},
		{"put endpoint and route", []string{postgres.GenEndpoints, postgres.GenRoutes}, func() error {
			return a.UpdateDelivery(ctx, func(w store.DeliveryWriter) error {
				if err := w.PutEndpoint(store.Endpoint{Name: "e", Config: json.RawMessage(`{}`), Created: time.Now()}); err != nil {
					return err
				}
				return w.PutRoute(store.Route{ID: "r", EndpointName: "e", Filter: "true"})
			})
		}},
		{"move a cursor", nil, func() error {
			return a.UpdateDelivery(ctx, func(w store.DeliveryWriter) error { return w.SetCursor("e", 0) })
		}},
		{"put source and mapping", []string{postgres.GenSources, postgres.GenMappings}, func() error {
			return a.UpdateIngress(ctx, func(w store.IngressWriter) error {
				if err := w.PutSource(store.Source{Name: "s", Config: json.RawMessage(`{}`), Created: time.Now()}); err != nil {
					return err
				}
				return w.PutMapping(store.Mapping{Name: "m", Source: "s", Definition: json.RawMessage(`{}`), Created: time.Now()})
			})
		}},
		{"delete all", []string{postgres.GenRoutes, postgres.GenEndpoints, postgres.GenMappings, postgres.GenSources, postgres.GenModels}, func() error {
			if err := a.UpdateDelivery(ctx, func(w store.DeliveryWriter) error {
				return errors.Join(w.DeleteRoute("r"), w.DeleteEndpoint("e"))
			}); err != nil {
				return err
			}
			if err := a.UpdateIngress(ctx, func(w store.IngressWriter) error {
				return errors.Join(w.DeleteMapping("m"), w.DeleteSource("s"), w.DeleteTwin("t"), w.DeleteModel("dtmi:x:m;1"))
			}); err != nil {
				return err
			}
			return nil
		}},
	}
	want := maps.Clone(zero)
	for _, step := range steps {
		changed := b.GenerationsChanged()
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		for _, k := range step.bumps {
			want[k]++
		}
		if got := a.Generations(); !maps.Equal(got, want) {
			t.Fatalf("after %s, the writing node's generations = %v, want %v", step.name, got, want)
		}
		if len(step.bumps) > 0 {
			select {
			case <-changed:
			case <-time.After(20 * time.Second):
				t.Fatalf("after %s, the other node was not woken", step.name)
			}
		}
		if got := waitGenerations(t, b, want); !maps.Equal(got, want) {
			t.Fatalf("after %s, the other node's generations = %v, want %v", step.name, got, want)
		}
	}

	c := open(t, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 2})
	if got := c.Generations(); !maps.Equal(got, want) {
		t.Errorf("a new Store's generations = %v, want %v", got, want)
	}
}

// TestGenerationsFailedUpdate checks that an Update that fails after writing configuration
// leaves the generations as they were, or bumps them by one at most.
func TestGenerationsFailedUpdate(t *testing.T) {
	dsn, schema := newSchema(t)
	a := open(t, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 2})
	ctx := context.Background()
	before := a.Generations()
	err := a.Update(ctx, func(w store.Writer) error {
		if err := w.PutModel(store.Model{ID: "dtmi:x:m;1", Definition: json.RawMessage(`{}`), UploadTime: time.Now()}); err != nil {
			return err
		}
		return errors.New("no")
	})
	if err == nil {
		t.Fatal("Update succeeded")
	}
	// A failed fn may bump its kind for nothing, but never by more than one.
	if got := a.Generations(); got[postgres.GenModels] > before[postgres.GenModels]+1 {
		t.Errorf("generations after a failed Update = %v", got)
	}
}

// TestGenerationsPolled checks that a Store learns of a change whose notification it missed
// (here, one made without any) by polling.
func TestGenerationsPolled(t *testing.T) {
	dsn, schema := newSchema(t)
	s := open(t, postgres.Config{DSN: dsn, Schema: schema, MaxConns: 2, PollInterval: 20 * time.Millisecond})
	changed := s.GenerationsChanged()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "UPDATE "+schema+".generations SET routes = routes + 1"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	case <-time.After(20 * time.Second):
		t.Fatal("the Store was not woken by the polled change")
	}
	if got := s.Generations(); got[postgres.GenRoutes] != 1 || got[postgres.GenModels] != 0 {
		t.Errorf("generations after the polled change = %v", got)
	}
}
