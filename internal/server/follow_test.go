package server

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/outbox"
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
	dsn := testenv.PostgreSQL(t)
	schema := fmt.Sprintf("follow_%d", time.Now().UnixNano())
	t.Cleanup(func() { dropSchema(t, dsn, schema) })
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
	within(t, "b's relay of a's endpoint delivers", func() bool {
		st, err := b.delivery.endpoints.Status(ctx, "hook")
		return err == nil && st.State == outbox.StateDelivering
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
