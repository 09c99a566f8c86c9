package eventroute

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
)

func openStore(t *testing.T) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(sqlite.Config{Dir: t.TempDir(), NoSync: true}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func addEndpoint(t *testing.T, s store.Delivery, name string) {
	t.Helper()
	err := s.UpdateDelivery(context.Background(), func(w store.DeliveryWriter) error {
		return w.PutEndpoint(store.Endpoint{Name: name, Config: json.RawMessage(`{"endpointType":"webhook"}`), Created: time.Now()})
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestTablePut(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	addEndpoint(t, s, "ep")
	rs, err := New(ctx, Config{MaxRoutes: 2}, s)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		route store.Route
		want  error
	}{
		{"bad id", store.Route{ID: "a b", EndpointName: "ep", Filter: "true"}, ErrIDInvalid},
		{"empty id", store.Route{ID: "", EndpointName: "ep", Filter: "true"}, ErrIDInvalid},
		{"bad filter", store.Route{ID: "r", EndpointName: "ep", Filter: "type =="}, ErrFilterInvalid},
		{"missing endpoint", store.Route{ID: "r", EndpointName: "nope", Filter: "true"}, ErrEndpointInvalid},
		{"first", store.Route{ID: "r1", EndpointName: "ep", Filter: "true"}, nil},
		{"second", store.Route{ID: "r2", EndpointName: "ep", Filter: "false"}, nil},
		{"over the limit", store.Route{ID: "r3", EndpointName: "ep", Filter: "true"}, ErrLimitExceeded},
		{"replace at the limit", store.Route{ID: "r2", EndpointName: "ep", Filter: "type = 'x'"}, nil},
	}
	for _, tt := range tests {
		err := rs.Put(ctx, tt.route)
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: Put = %v, want %v", tt.name, err, tt.want)
		}
	}
	got, err := rs.Get(ctx, "r2")
	if err != nil || got.Filter != "type = 'x'" {
		t.Errorf("Get(r2) = %+v, %v", got, err)
	}
	list, err := rs.List(ctx, "", 0)
	if err != nil || len(list) != 2 {
		t.Errorf("List = %+v, %v; want 2 routes", list, err)
	}
}

func TestTableMatcher(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	addEndpoint(t, s, "a")
	addEndpoint(t, s, "b")
	rs, err := New(ctx, Config{}, s)
	if err != nil {
		t.Fatal(err)
	}
	matchA, matchB := rs.Matcher("a"), rs.Matcher("b")
	create := &event.Event{Type: event.TwinCreate}
	telemetry := &event.Event{Type: event.Telemetry}
	if matchA(create) {
		t.Error("matched without routes")
	}
	if err := rs.Put(ctx, store.Route{ID: "r1", EndpointName: "a", Filter: "type = 'Microsoft.DigitalTwins.Twin.Create'"}); err != nil {
		t.Fatal(err)
	}
	if err := rs.Put(ctx, store.Route{ID: "r2", EndpointName: "a", Filter: "type = 'microsoft.iot.telemetry'"}); err != nil {
		t.Fatal(err)
	}
	if !matchA(create) || !matchA(telemetry) || matchB(create) {
		t.Error("routes to a should match create and telemetry, none to b")
	}
	// Moving r1 to b takes it away from a.
	if err := rs.Put(ctx, store.Route{ID: "r1", EndpointName: "b", Filter: "true"}); err != nil {
		t.Fatal(err)
	}
	if matchA(create) || !matchB(create) || !matchA(telemetry) {
		t.Error("after moving r1 to b: a should match only telemetry, b everything")
	}
	if err := rs.Delete(ctx, "r2"); err != nil {
		t.Fatal(err)
	}
	if err := rs.Delete(ctx, "r2"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Delete twice = %v, want store.ErrNotFound", err)
	}
	if matchA(telemetry) {
		t.Error("a still matches after its last route was deleted")
	}
	// A new Table loads what was stored.
	again, err := New(ctx, Config{}, s)
	if err != nil {
		t.Fatal(err)
	}
	if !again.Matcher("b")(telemetry) || again.Matcher("a")(telemetry) {
		t.Error("reloaded routes differ")
	}
}

// TestTableReload has a second Table over the same store stand for another node: the first
// follows its routes with Reload.
func TestTableReload(t *testing.T) {
	ctx := context.Background()
	s := openStore(t)
	addEndpoint(t, s, "ep")
	a, err := New(ctx, Config{}, s)
	if err != nil {
		t.Fatal(err)
	}
	other, err := New(ctx, Config{}, s)
	if err != nil {
		t.Fatal(err)
	}
	e := &event.Event{Type: event.TwinUpdate}
	match := a.Matcher("ep")

	if err := other.Put(ctx, store.Route{ID: "r", EndpointName: "ep", Filter: "true"}); err != nil {
		t.Fatal(err)
	}
	if match(e) {
		t.Fatal("the other table's route is in effect before the reload")
	}
	if err := a.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if !match(e) {
		t.Fatal("the other table's route is not in effect after the reload")
	}

	// A stored filter that does not compile fails the reload; the others stay in effect.
	err = s.UpdateDelivery(ctx, func(w store.DeliveryWriter) error {
		return w.PutRoute(store.Route{ID: "bad", EndpointName: "ep", Filter: "type = "})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(ctx); err == nil || !match(e) {
		t.Errorf("Reload with a bad filter = %v; the good route matches: %v", err, match(e))
	}
	if err := other.Delete(ctx, "bad"); err != nil {
		t.Fatal(err)
	}

	if err := other.Delete(ctx, "r"); err != nil {
		t.Fatal(err)
	}
	if err := a.Reload(ctx); err != nil {
		t.Fatal(err)
	}
	if match(e) {
		t.Error("the deleted route is still in effect after the reload")
	}
}
