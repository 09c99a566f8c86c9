package server

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/config"
)

// TestRouteFeedsOwnSourceRefused checks that a route whose endpoint publishes where a source
// reads is refused whichever of the route, the endpoint and the source comes last, on
// create and on update, with 400 OperationNotAllowed, and that the refusal changes nothing.
// The brokers are unreachable loopback ports: nothing is sent.
func TestRouteFeedsOwnSourceRefused(t *testing.T) {
	s, _ := start(t, Config{}, nil)
	c := apiClient{t, s.URL()}
	refused := func(method, path, body string) {
		t.Helper()
		got := c.do(method, path, body, http.StatusBadRequest)
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if err := json.Unmarshal([]byte(got), &e); err != nil || e.Error.Code != "OperationNotAllowed" ||
			!strings.Contains(e.Error.Message, "would feed") {
			t.Errorf("%s %s = %s, want 400 OperationNotAllowed saying what would feed what", method, path, got)
		}
	}
	endpoint := func(brokers, topic string) string {
		return `{"endpointType":"kafka","brokers":[` + brokers + `],"topic":"` + topic + `"}`
	}
	src := func(topics string) string {
		return `{"sourceType":"kafka","brokers":["localhost:1"],"topics":[` + topics + `]}`
	}
	c.do("PUT", "/endpoints/k", endpoint(`"127.0.0.1:1"`, "events"), http.StatusCreated)
	c.do("PUT", "/sources/s", src(`"events"`), http.StatusCreated) // no route yet: no loop

	// A new route is the last of the three.
	refused("PUT", "/eventroutes/r", `{"endpointName":"k","filter":"true"}`)
	c.do("GET", "/eventroutes/r", "", http.StatusNotFound)

	c.do("PUT", "/sources/s", src(`"other"`), http.StatusOK)
	c.do("PUT", "/eventroutes/r", `{"endpointName":"k","filter":"true"}`, http.StatusNoContent)

	// A source, created or updated, is the last.
	refused("PUT", "/sources/s", src(`"other","events"`))
	if got := c.do("GET", "/sources/s", "", http.StatusOK); strings.Contains(got, `"events"`) {
		t.Errorf("the refused update changed the source: %s", got)
	}
	refused("PUT", "/sources/s2", src(`"events"`))
	c.do("GET", "/sources/s2", "", http.StatusNotFound)

	// An endpoint updated, with a route to it, is the last.
	refused("PUT", "/endpoints/k", endpoint(`"127.0.0.1:1"`, "other"))
	if got := c.do("GET", "/endpoints/k", "", http.StatusOK); !strings.Contains(got, `"topic":"events"`) {
		t.Errorf("the refused update changed the endpoint: %s", got)
	}

	// A route updated to an endpoint that feeds the source.
	c.do("PUT", "/endpoints/k2", endpoint(`"127.0.0.1:1"`, "other"), http.StatusCreated) // no route to it yet
	refused("PUT", "/eventroutes/r", `{"endpointName":"k2","filter":"true"}`)
	if got := c.do("GET", "/eventroutes/r", "", http.StatusOK); !strings.Contains(got, `"endpointName":"k"`) {
		t.Errorf("the refused update changed the route: %s", got)
	}

	// Another broker's topic of the same name is another destination.
	c.do("PUT", "/endpoints/k3", endpoint(`"127.0.0.1:2"`, "other"), http.StatusCreated)
	c.do("PUT", "/eventroutes/r3", `{"endpointName":"k3","filter":"true"}`, http.StatusNoContent)
}

// TestConfigLoopRefused checks that a config file declaring a route that feeds a source does
// not start, and says which.
func TestConfigLoopRefused(t *testing.T) {
	cfg := Config{Config: config.Config{
		Server:    config.Server{Listen: "127.0.0.1:0", DataDir: t.TempDir()},
		Endpoints: map[string]json.RawMessage{"bus": json.RawMessage(`{"endpointType":"mqtt","url":"tcp://127.0.0.1:1","topic":"plant/{twinId}"}`)},
		Routes:    map[string]config.Route{"all": {EndpointName: "bus", Filter: "true"}},
		Sources:   map[string]json.RawMessage{"plant": json.RawMessage(`{"sourceType":"mqtt","url":"mqtt://localhost:1","topics":["plant/+"]}`)},
	}}
	s, err := New(cfg, slog.New(slog.DiscardHandler))
	if err == nil {
		run(t, s)()
		t.Fatal("New succeeded")
	}
	if !strings.Contains(err.Error(), "sources.plant") || !strings.Contains(err.Error(), "the endpoint bus sends where the source plant reads") {
		t.Errorf("New = %v", err)
	}
}
