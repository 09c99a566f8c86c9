package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/endpoint"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/outbox"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/testenv"
)

// within retries cond until it holds, failing t when it does not within five seconds, and
// returns how long it took. Nodes follow each other's configuration within a second; five
// leave room for a slow machine.
func within(t *testing.T, what string, cond func() bool) time.Duration {
	t.Helper()
	start := time.Now()
	for !cond() {
		if time.Since(start) > 5*time.Second {
			t.Fatalf("%s: still not so after 5 s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
	return time.Since(start)
}

// status sends a request and returns its status code and body, without failing on either.
func (c restClient) status(method, path, body string) (int, string) {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path+"?api-version=2023-10-31", strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	answer, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read the answer to %s %s: %v", method, path, err)
	}
	return resp.StatusCode, string(answer)
}

// TestFollowAcrossNodes runs two servers on one PostgreSQL schema: the configuration one of
// them changes (models, endpoints, routes, sources and mappings) takes effect on the other.
func TestFollowAcrossNodes(t *testing.T) {
	dsn, schema := testenv.PostgreSQLSchema(t, "follow")
	cfg := Config{Config: config.Config{
		Store:   config.Store{DSN: dsn, Schema: schema},
		History: config.History{Mode: config.HistoryOff},
	}}
	a, _ := start(t, cfg, nil)
	b, _ := start(t, cfg, nil)
	ca, cb := restClient{t: t, base: a.URL()}, restClient{t: t, base: b.URL()}
	ctx := context.Background()

	// A model uploaded on a serves twins on b.
	ca.do(http.MethodPost, "/models", `[{"@id":"dtmi:twinflow:test:F;1","@type":"Interface","@context":"dtmi:dtdl:context;3",`+
		`"contents":[{"@type":"Property","name":"n","schema":"integer","writable":true}]}]`, http.StatusCreated)
	took := within(t, "b creates a twin of a's model", func() bool {
		code, _ := cb.status(http.MethodPut, "/digitaltwins/x", `{"$metadata":{"$model":"dtmi:twinflow:test:F;1"},"n":1}`)
		return code == http.StatusOK
	})
	t.Logf("b took %v to follow a's model", took)

	// An endpoint and a route made on a deliver b's changes.
	var (
		mu  sync.Mutex
		got []event.Event
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.Header().Set("WebHook-Allowed-Origin", "*")
			return
		}
		var e event.Event
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, e)
		mu.Unlock()
	}))
	defer hook.Close()
	received := func(typ, subject string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, e := range got {
			if e.Type == typ && e.Subject == subject {
				return true
			}
		}
		return false
	}
	ca.do(http.MethodPut, "/endpoints/hook", `{"endpointType":"webhook","url":"`+hook.URL+`"}`, http.StatusCreated)
	ca.do(http.MethodPut, "/eventroutes/all", `{"endpointName":"hook","filter":"true"}`, http.StatusNoContent)
	update := &event.Event{Type: event.TwinUpdate}
	// b runs a's endpoint: its relay delivers, or stands by while a holds the relay's lease.
	within(t, "b runs a's endpoint", func() bool {
		st, err := b.delivery.endpoints.Status(ctx, "hook")
		return err == nil && (st.State == outbox.StateDelivering || st.State == endpoint.StateStandby && st.Owner != "")
	})
	within(t, "b routes by a's route", func() bool { return b.delivery.routes.Matcher("hook")(update) })
	cb.do(http.MethodPatch, "/digitaltwins/x", `[{"op":"replace","path":"/n","value":2}]`, http.StatusNoContent)
	within(t, "the webhook gets b's update", func() bool { return received(event.TwinUpdate, "x") })

	// A route deleted on a no longer routes on b: with only a route of creates left, b's
	// update of y is not delivered, while its creation of z, committed after it, is.
	ca.do(http.MethodDelete, "/eventroutes/all", nil, http.StatusNoContent)
	ca.do(http.MethodPut, "/eventroutes/creates", `{"endpointName":"hook","filter":"type = 'Microsoft.DigitalTwins.Twin.Create'"}`, http.StatusNoContent)
	create := &event.Event{Type: event.TwinCreate}
	within(t, "b follows a's route changes", func() bool {
		m := b.delivery.routes.Matcher("hook")
		return !m(update) && m(create)
	})
	cb.do(http.MethodPut, "/digitaltwins/y", `{"$metadata":{"$model":"dtmi:twinflow:test:F;1"},"n":1}`, http.StatusOK)
	cb.do(http.MethodPatch, "/digitaltwins/y", `[{"op":"replace","path":"/n","value":2}]`, http.StatusNoContent)
	cb.do(http.MethodPut, "/digitaltwins/z", `{"$metadata":{"$model":"dtmi:twinflow:test:F;1"},"n":1}`, http.StatusOK)
	within(t, "the webhook gets the creation of z", func() bool { return received(event.TwinCreate, "z") })
	if received(event.TwinUpdate, "y") {
		t.Error("the update of y was delivered by a deleted route")
	}

	// A source and a mapping put on a apply b's pushes.
	ca.do(http.MethodPut, "/sources/plant", `{"sourceType":"http"}`, http.StatusCreated)
	ca.do(http.MethodPut, "/mappings/plant", `{"source":"plant","twinId":"message.body.device","patch":{"/n":"message.body.n"}}`, http.StatusCreated)
	if list := string(cb.do(http.MethodGet, "/sources", nil, http.StatusOK)); !strings.Contains(list, `"plant"`) {
		t.Fatalf("sources on b = %s", list)
	}
	within(t, "b applies a push to a's source with a's mapping", func() bool {
		code, _ := cb.status(http.MethodPost, "/sources/plant/messages", `{"device":"x","n":7}`)
		if code != http.StatusOK {
			return false
		}
		var tw struct{ N int }
		return json.Unmarshal(cb.do(http.MethodGet, "/digitaltwins/x", nil, http.StatusOK), &tw) == nil && tw.N == 7
	})

}

// watcher is a configWatcher whose generations the test moves.
type watcher struct {
	mu      sync.Mutex
	gens    map[string]uint64
	changed chan struct{}
}

func (w *watcher) Generations() map[string]uint64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	return maps.Clone(w.gens)
}

func (w *watcher) GenerationsChanged() <-chan struct{} {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.changed
}

func (w *watcher) bump(kind string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.gens[kind]++
	close(w.changed)
	w.changed = make(chan struct{})
}

// TestFollowerReloads checks which reloads the follower runs as generations move: only those
// that depend on a moved one, again after a failure to reach the store, and not again after
// another failure.
func TestFollowerReloads(t *testing.T) {
	w := &watcher{gens: map[string]uint64{"a": 0, "b": 0}, changed: make(chan struct{})}
	calls := make(chan string, 16)
	var failA, failB error
	var mu sync.Mutex
	fn := func(name string, fail *error) func(context.Context) error {
		return func(context.Context) error {
			mu.Lock()
			err := *fail
			*fail = nil
			mu.Unlock()
			calls <- name
			return err
		}
	}
	f := &follower{watch: w, logger: slog.New(slog.DiscardHandler), reloads: []*reload{
		{what: "a", kinds: []string{"a"}, fn: fn("a", &failA), seen: map[string]uint64{"a": 0}},
		{what: "ab", kinds: []string{"a", "b"}, fn: fn("ab", &failB), seen: map[string]uint64{"a": 0, "b": 0}},
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}()
	next := func() string {
		t.Helper()
		select {
		case c := <-calls:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no reload")
			return ""
		}
	}
	quiet := func() {
		t.Helper()
		select {
		case c := <-calls:
			t.Fatalf("unexpected reload %s", c)
		case <-time.After(50 * time.Millisecond):
		}
	}

	quiet() // nothing moved since the start
	w.bump("b")
	if got := next(); got != "ab" {
		t.Fatalf("after b moved, reloaded %s", got)
	}
	quiet()
	w.bump("a")
	if got := next() + " " + next(); got != "a ab" {
		t.Fatalf("after a moved, reloaded %s", got)
	}

	// An unreachable store is tried again without a change; another failure is not.
	mu.Lock()
	failA = fmt.Errorf("read: %w", store.ErrUnavailable)
	failB = errors.New("bad definition")
	mu.Unlock()
	w.bump("a")
	if got := next() + " " + next(); got != "a ab" {
		t.Fatalf("after a moved again, reloaded %s", got)
	}
	if got := next(); got != "a" {
		t.Fatalf("retried %s, want a", got)
	}
	quiet()
}
