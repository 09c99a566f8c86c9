package endpoint

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/connector/webhook"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/eventroute"
	"github.com/twinflow/twinflow/internal/outbox"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

var kinds = map[string]Kind{"webhook": KindOf(webhook.NewSink, webhook.Handshake)}

func TestParse(t *testing.T) {
	tests := []struct {
		name, body string
		want       []string // substrings of the error; none means valid
	}{
		{"webhook needs only a url", `{"endpointType":"webhook","url":"http://127.0.0.1:1/hook"}`, nil},
		{"with delivery", `{"endpointType":"webhook","url":"http://h/x","delivery":{"ttl":"1h","maxAttempts":3}}`, nil},
		{"not an object", `[1]`, []string{"JSON object"}},
		{"no type", `{"url":"http://h/x"}`, []string{"endpointType: required"}},
		{"empty type", `{"endpointType":"","url":"http://h/x"}`, []string{"endpointType: required"}},
		{"unknown type", `{"endpointType":"eventhub"}`, []string{`"eventhub" is not one of webhook`}},
		{"unknown field", `{"endpointType":"webhook","url":"http://h/x","nope":1}`, []string{"nope"}},
		{"bad settings", `{"endpointType":"webhook","url":"ftp://h","mode":"x"}`, []string{"url:", "mode:"}},
		{"bad delivery", `{"endpointType":"webhook","url":"http://h/x","delivery":{"ttl":"-1h","maxAttempts":-1}}`,
			[]string{"delivery.ttl", "delivery.maxAttempts"}},
		{"unknown delivery field", `{"endpointType":"webhook","url":"http://h/x","delivery":{"retries":1}}`, []string{"delivery:"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(json.RawMessage(tt.body), kinds)
			if len(tt.want) == 0 {
				if err != nil {
					t.Fatalf("Parse: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Parse = %v, want ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestRedactedHidesSecrets(t *testing.T) {
	def, err := Parse(json.RawMessage(`{"endpointType":"webhook","url":"http://h/x","secret":"s3cret",
		"headers":{"Authorization":"Bearer abc"},"delivery":{"ttl":"1h0m0s"}}`), kinds)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(def.Redacted())
	if err != nil {
		t.Fatal(err)
	}
	if s := string(b); strings.Contains(s, "s3cret") || strings.Contains(s, "abc") ||
		!strings.Contains(s, `"endpointType":"webhook"`) || !strings.Contains(s, `"ttl":"1h0m0s"`) {
		t.Errorf("redacted definition %s", s)
	}
}

// hook is a webhook destination: it answers the validation handshake and records the ids
// of the events posted in structured mode, answering status() to each.
type hook struct {
	mu     sync.Mutex
	ids    []string
	status atomic.Int32
}

func (h *hook) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodOptions {
		w.Header().Set("WebHook-Allowed-Origin", r.Header.Get("WebHook-Request-Origin"))
		return
	}
	var e event.Event
	if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	if code := int(h.status.Load()); code != 0 && code != http.StatusOK {
		w.WriteHeader(code)
		return
	}
	h.mu.Lock()
	h.ids = append(h.ids, e.ID)
	h.mu.Unlock()
}

func (h *hook) received() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.ids)
}

type fixture struct {
	st     *sqlite.Store
	routes *eventroute.Table
	reg    *Registry
}

func newFixture(t *testing.T, cfg Config) *fixture {
	t.Helper()
	return newFixtureOf(t, cfg, kinds)
}

// newFixtureOf is newFixture with the endpoint types kinds.
func newFixtureOf(t *testing.T, cfg Config, kinds map[string]Kind) *fixture {
	t.Helper()
	st, err := sqlite.Open(sqlite.Config{Dir: t.TempDir(), NoSync: true}, discard)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := eventroute.New(context.Background(), eventroute.Config{}, st)
	if err != nil {
		t.Fatal(err)
	}
	reg, err := New(cfg, kinds, st, routes, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
		st.Close()
	})
	return &fixture{st: st, routes: routes, reg: reg}
}

func (f *fixture) emit(t *testing.T, ids ...string) {
	t.Helper()
	err := f.st.Update(context.Background(), func(w store.Writer) error {
		for _, id := range ids {
			if err := w.Emit(event.Event{ID: id, Source: "test", SpecVersion: "1.0", Type: event.TwinCreate,
				DataContentType: "application/json", Data: json.RawMessage(`{}`)}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRegistryDeliversThroughWebhook(t *testing.T) {
	ctx := context.Background()
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	f := newFixture(t, Config{MaxEndpoints: 2})

	def := json.RawMessage(`{"endpointType":"webhook","url":"` + srv.URL + `","secret":"k",
		"delivery":{"minBackoff":"1ms","maxBackoff":"5ms"}}`)
	created, err := f.reg.Put(ctx, "hook", def)
	if err != nil || !created {
		t.Fatalf("Put = %v, %v; want created", created, err)
	}
	if created, err := f.reg.Put(ctx, "hook", def); err != nil || created {
		t.Fatalf("Put again = %v, %v; want replaced", created, err)
	}
	if err := f.routes.Put(ctx, store.Route{ID: "all", EndpointName: "hook", Filter: "true"}); err != nil {
		t.Fatal(err)
	}
	f.emit(t, "a", "b", "c")
	eventually(t, "the webhook gets a b c", func() bool { return len(h.received()) == 3 })
	if got := h.received(); !slices.Equal(got, []string{"a", "b", "c"}) {
		t.Errorf("webhook got %v", got)
	}

	// A 400 is permanent: dead-lettered, then redriven once the destination accepts it.
	h.status.Store(http.StatusBadRequest)
	f.emit(t, "d")
	var dls []store.DeadLetter
	eventually(t, "d is dead-lettered", func() bool {
		dls, err = f.reg.DeadLetters(ctx, "hook", 0, 0)
		return err == nil && len(dls) == 1
	})
	if dls[0].Event.ID != "d" || !strings.Contains(dls[0].Reason, "400") {
		t.Errorf("dead letter %+v", dls[0])
	}
	st, err := f.reg.Status(ctx, "hook")
	if err != nil || st.DeadLetters != 1 || st.LastError == "" {
		t.Errorf("Status = %+v, %v; want one dead letter and the last error", st, err)
	}
	h.status.Store(http.StatusOK)
	if err := f.reg.Redrive(ctx, "hook", dls[0].ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "d is redriven", func() bool { return len(h.received()) == 4 })
	eventually(t, "the dead letter is gone", func() bool {
		dls, err := f.reg.DeadLetters(ctx, "hook", 0, 0)
		return err == nil && len(dls) == 0
	})

	// Replay from the second record.
	if err := f.reg.Replay(ctx, "hook", 2); err != nil {
		t.Fatal(err)
	}
	eventually(t, "b c d are delivered again", func() bool { return len(h.received()) == 7 })
	if got := h.received(); !slices.Equal(got[4:], []string{"b", "c", "d"}) {
		t.Errorf("replay delivered %v, want b c d", got[4:])
	}

	// The endpoint cannot go while a route sends to it.
	if err := f.reg.Delete(ctx, "hook"); !errors.Is(err, ErrInUse) {
		t.Errorf("Delete with a route = %v, want ErrInUse", err)
	}
	if err := f.routes.Delete(ctx, "all"); err != nil {
		t.Fatal(err)
	}
	if err := f.reg.Delete(ctx, "hook"); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.Get(ctx, "hook"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Get after Delete = %v, want not found", err)
	}
}

func TestRegistryChecks(t *testing.T) {
	ctx := context.Background()
	h := &hook{}
	srv := httptest.NewServer(h)
	defer srv.Close()
	refusing := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden)
	}))
	defer refusing.Close()
	f := newFixture(t, Config{MaxEndpoints: 1})
	hookDef := func(url string) json.RawMessage {
		return json.RawMessage(`{"endpointType":"webhook","url":"` + url + `"}`)
	}
	if _, err := f.reg.Put(ctx, "bad name", hookDef(srv.URL)); !errors.Is(err, ErrNameInvalid) {
		t.Errorf("bad name: %v", err)
	}
	if _, err := f.reg.Put(ctx, "x", json.RawMessage(`{"endpointType":"webhook"}`)); !errors.Is(err, ErrInvalid) {
		t.Errorf("no url: %v", err)
	}
	if _, err := f.reg.Put(ctx, "refused", hookDef(refusing.URL)); !errors.Is(err, ErrValidationFailed) {
		t.Errorf("refused handshake: %v", err)
	}
	if _, err := f.reg.Put(ctx, "one", hookDef(srv.URL)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.reg.Put(ctx, "two", hookDef(srv.URL)); !errors.Is(err, ErrLimitExceeded) {
		t.Errorf("over the limit: %v", err)
	}
	list, err := f.reg.List(ctx)
	if err != nil || len(list) != 1 || list[0].Name != "one" || list[0].Definition.Type != "webhook" {
		t.Errorf("List = %+v, %v", list, err)
	}
	eventually(t, "the relay of one runs", func() bool {
		st, err := f.reg.Status(ctx, "one")
		return err == nil && st.State == outbox.StateDelivering
	})
	if _, err := f.reg.Status(ctx, "nope"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("Status of a missing endpoint = %v", err)
	}
}

// TestRegistryExpiresEvents sends to a webhook that answers 503 until the events' TTL has
// passed: they are dead-lettered as expired, and the endpoint's status says why.
func TestRegistryExpiresEvents(t *testing.T) {
	ctx := context.Background()
	h := &hook{}
	h.status.Store(http.StatusServiceUnavailable)
	srv := httptest.NewServer(h)
	defer srv.Close()
	f := newFixture(t, Config{})
	def := json.RawMessage(`{"endpointType":"webhook","url":"` + srv.URL + `",
		"delivery":{"ttl":"300ms","minBackoff":"10ms","maxBackoff":"50ms"}}`)
	if _, err := f.reg.Put(ctx, "hook", def); err != nil {
		t.Fatal(err)
	}
	if err := f.routes.Put(ctx, store.Route{ID: "all", EndpointName: "hook", Filter: "true"}); err != nil {
		t.Fatal(err)
	}
	f.emit(t, "a")
	var dls []store.DeadLetter
	eventually(t, "a expires", func() bool {
		var err error
		dls, err = f.reg.DeadLetters(ctx, "hook", 0, 0)
		return err == nil && len(dls) == 1
	})
	if !strings.HasPrefix(dls[0].Reason, "expired") || dls[0].Attempts < 2 {
		t.Errorf("dead letter %+v: want expired after several attempts", dls[0])
	}
	st, err := f.reg.Status(ctx, "hook")
	if err != nil || !strings.Contains(st.LastError, "503") {
		t.Errorf("Status = %+v, %v; want the 503 as the last error", st, err)
	}
	if len(h.received()) != 0 {
		t.Errorf("the webhook accepted %v", h.received())
	}
}

// TestRegistryReload has a second registry over the same store, whose Run does not run,
// stand for another node: the first follows its endpoints with Reload.
func TestRegistryReload(t *testing.T) {
	ctx := context.Background()
	h1, h2 := &hook{}, &hook{}
	srv1, srv2 := httptest.NewServer(h1), httptest.NewServer(h2)
	defer srv1.Close()
	defer srv2.Close()
	f := newFixture(t, Config{})
	other, err := New(Config{}, kinds, f.st, f.routes, nil, discard)
	if err != nil {
		t.Fatal(err)
	}
	relay := func() *running {
		f.reg.mu.Lock()
		defer f.reg.mu.Unlock()
		return f.reg.running["hook"]
	}
	reload := func() {
		t.Helper()
		if err := f.reg.Reload(ctx); err != nil {
			t.Fatalf("Reload: %v", err)
		}
	}
	def := func(url string) json.RawMessage {
		return json.RawMessage(`{"endpointType":"webhook","url":"` + url + `","delivery":{"minBackoff":"1ms","maxBackoff":"5ms"}}`)
	}

	eventually(t, "Run has loaded the stored endpoints", func() bool {
		f.reg.mu.Lock()
		defer f.reg.mu.Unlock()
		return f.reg.ctx != nil
	})
	if _, err := other.Put(ctx, "hook", def(srv1.URL)); err != nil {
		t.Fatal(err)
	}
	if err := f.routes.Put(ctx, store.Route{ID: "all", EndpointName: "hook", Filter: "true"}); err != nil {
		t.Fatal(err)
	}
	if relay() != nil {
		t.Fatal("a relay runs before the reload")
	}
	reload()
	eventually(t, "the relay starts after its handshake", func() bool { return relay() != nil })
	f.emit(t, "a")
	eventually(t, "the first webhook gets a", func() bool { return slices.Equal(h1.received(), []string{"a"}) })

	// Unchanged, the relay is left alone; this registry's own Put is no change either.
	first := relay()
	reload()
	if relay() != first {
		t.Error("a reload of an unchanged endpoint restarted its relay")
	}
	if _, err := f.reg.Put(ctx, "hook", def(srv1.URL+"/own")); err != nil {
		t.Fatal(err)
	}
	own := relay()
	reload()
	if relay() != own || own == first {
		t.Error("a reload after the registry's own Put restarted the relay")
	}

	// Changed elsewhere, it restarts with the new definition.
	if _, err := other.Put(ctx, "hook", def(srv2.URL)); err != nil {
		t.Fatal(err)
	}
	reload()
	eventually(t, "the relay starts again", func() bool { r := relay(); return r != nil && r != own })
	f.emit(t, "b")
	eventually(t, "the second webhook gets b", func() bool { return slices.Equal(h2.received(), []string{"b"}) })

	// Deleted elsewhere, it stops.
	if err := f.routes.Delete(ctx, "all"); err != nil {
		t.Fatal(err)
	}
	if err := other.Delete(ctx, "hook"); err != nil {
		t.Fatal(err)
	}
	reload()
	if relay() != nil {
		t.Error("the deleted endpoint's relay still runs after the reload")
	}
}
