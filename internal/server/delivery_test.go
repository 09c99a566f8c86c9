package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/endpoint"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

func TestLoadConfigFile(t *testing.T) {
	write := func(body string) string {
		path := filepath.Join(t.TempDir(), "twinflow.yaml")
		if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	file, err := LoadConfigFile(write(`
delivery:
  maxRoutes: 10
  retention: 48h
endpoints:
  hook:
    endpointType: webhook
    url: http://127.0.0.1:9/x
    headers: {X-Team: twins}
    delivery: {ttl: 1h, maxAttempts: 5}
  grid:
    properties:
      endpointType: EventGrid
      TopicEndpoint: https://contoso.westus2-1.eventgrid.azure.net/api/events
      accessKey1: key-one
routes:
  all:
    endpointName: hook
    filter: "true"
jobs:
  dir: /srv/jobs
  allowedHosts: [blobs.example.net, "10.0.0.1:8443"]
`))
	if err != nil {
		t.Fatal(err)
	}
	cfg := file.Delivery
	if file.Jobs.Dir != "/srv/jobs" || !slices.Equal(file.Jobs.AllowedHosts, []string{"blobs.example.net", "10.0.0.1:8443"}) {
		t.Errorf("jobs %+v", file.Jobs)
	}
	if cfg.MaxRoutes != 10 || cfg.Retention != 48*time.Hour || cfg.Routes["all"] != (RouteConfig{EndpointName: "hook", Filter: "true"}) {
		t.Errorf("config %+v", cfg)
	}
	var def map[string]any
	if err := json.Unmarshal(cfg.Endpoints["hook"], &def); err != nil {
		t.Fatal(err)
	}
	if def["endpointType"] != "webhook" || def["delivery"].(map[string]any)["maxAttempts"] != 5.0 {
		t.Errorf("endpoint hook = %s", cfg.Endpoints["hook"])
	}
	if def, err := endpoint.Parse(cfg.Endpoints["grid"], Kinds()); err != nil || def.Type != endpoint.EventGridType {
		t.Errorf("endpoint grid %s: %+v, %v", cfg.Endpoints["grid"], def, err)
	}
	if _, err := LoadConfigFile(write("")); err != nil {
		t.Errorf("empty file: %v", err)
	}
	for _, bad := range []struct{ body, want string }{
		{"delivery:\n  maxRoute: 1\n", "maxRoute"},
		{"routes:\n  r:\n    filter: 'true'\n", "routes.r.endpointName: required"},
		{"nonsense: [", "config file"},
		{"jobs:\n  allowedHosts: [\"https://x\"]\n", "jobs.allowedHosts[0]"},
		{"jobs:\n  allowed: [x]\n", "allowed"},
	} {
		if _, err := LoadConfigFile(write(bad.body)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want one mentioning %q", bad.body, err, bad.want)
		}
	}
}

// TestDeliveryEndToEnd runs a server whose config file declares a webhook endpoint and a
// route: creating a twin through the API reaches the webhook, and /metrics counts it.
func TestDeliveryEndToEnd(t *testing.T) {
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
	dc := &DeliveryConfig{
		Endpoints: map[string]json.RawMessage{"hook": json.RawMessage(`{"endpointType":"webhook","url":"` + hook.URL + `"}`)},
		Routes:    map[string]RouteConfig{"creates": {EndpointName: "hook", Filter: "type = 'Microsoft.DigitalTwins.Twin.Create'"}},
	}
	s, _ := start(t, Config{Delivery: dc}, nil)
	base := s.URL()
	do := func(method, path, body string, want int) {
		t.Helper()
		req, err := http.NewRequest(method, base+path+"?api-version=2023-10-31", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Fatalf("%s %s = %d, want %d", method, path, resp.StatusCode, want)
		}
	}
	do("POST", "/models", `[{"@id":"dtmi:example:Room;1","@type":"Interface","@context":"dtmi:dtdl:context;2",
		"contents":[{"@type":"Property","name":"temperature","schema":"double"}]}]`, http.StatusCreated)
	do("PUT", "/digitaltwins/room-1", `{"$metadata":{"$model":"dtmi:example:Room;1"},"temperature":21}`, http.StatusOK)
	do("PATCH", "/digitaltwins/room-1", `[{"op":"replace","path":"/temperature","value":22}]`, http.StatusNoContent)
	do("PUT", "/digitaltwins/room-2", `{"$metadata":{"$model":"dtmi:example:Room;1"}}`, http.StatusOK)

	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook got %d events, want 2", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	var subjects []string
	for _, e := range got {
		if e.Type != event.TwinCreate || e.Source != s.ServiceID() {
			t.Errorf("event %+v: want a Twin.Create from %s", e, s.ServiceID())
		}
		subjects = append(subjects, e.Subject)
	}
	mu.Unlock()
	if !slices.Equal(subjects, []string{"room-1", "room-2"}) {
		t.Errorf("subjects %v, want room-1 room-2 (the update is not routed)", subjects)
	}
	// The relay counts a delivery once the webhook has answered, after the webhook saw it.
	for {
		code, body := get(t, http.DefaultClient, base+"/metrics")
		if code == http.StatusOK && strings.Contains(body, `twinflow_endpoint_delivered_events_total{endpoint="hook"} 2`) &&
			strings.Contains(body, `twinflow_endpoint_lag_events{endpoint="hook"}`) &&
			strings.Contains(body, `twinflow_endpoint_lag_seconds{endpoint="hook"}`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics = %d:\n%s", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestKinds checks that each endpoint type this build offers reads a minimal definition and
// reports a bad one by field.
func TestKinds(t *testing.T) {
	valid := map[string]string{
		"webhook": `{"endpointType":"webhook","url":"http://127.0.0.1:9/hook"}`,
		"kafka":   `{"endpointType":"kafka","brokers":["127.0.0.1:9092"],"topic":"twins"}`,
		"nats":    `{"endpointType":"nats","url":"nats://127.0.0.1:4222"}`,
		"amqp":    `{"endpointType":"amqp","url":"amqp://guest:guest@127.0.0.1:5672/","exchange":"twins"}`,
		"mqtt":    `{"endpointType":"mqtt","url":"tcp://127.0.0.1:1883","topic":"twins/{twinId}"}`,
		"EventGrid": `{"endpointType":"EventGrid","TopicEndpoint":"https://t.westus2-1.eventgrid.azure.net/api/events",
			"accessKey1":"k1"}`,
		"EventHub": `{"endpointType":"EventHub",
			"connectionStringPrimaryKey":"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=k;EntityPath=twins"}`,
		"ServiceBus": `{"endpointType":"ServiceBus",
			"primaryConnectionString":"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=send;SharedAccessKey=k;EntityPath=twins"}`,
	}
	kinds := Kinds()
	if len(kinds) != len(valid) {
		t.Errorf("%d kinds, want %d", len(kinds), len(valid))
	}
	for kind, def := range valid {
		if _, err := endpoint.Parse(json.RawMessage(def), kinds); err != nil {
			t.Errorf("%s: %v", kind, err)
		}
		bad := strings.Replace(def, `"endpointType"`, `"unknownSetting":1,"endpointType"`, 1)
		if _, err := endpoint.Parse(json.RawMessage(bad), kinds); err == nil || !strings.Contains(err.Error(), "unknownSetting") {
			t.Errorf("%s with an unknown setting: %v", kind, err)
		}
	}
}

// TestPrunerWaitsForTheIndex checks that the change log pruner keeps what the graph index has
// not applied, however short the retention: nothing while the index is being built, then
// everything but the newest record once it caught up.
func TestPrunerWaitsForTheIndex(t *testing.T) {
	s, err := New(Config{Listen: "127.0.0.1:0", DataDir: t.TempDir(), Delivery: &DeliveryConfig{Retention: time.Nanosecond}},
		slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 3 {
		err := s.store.Update(ctx, func(w store.Writer) error {
			return w.Emit(event.Event{ID: fmt.Sprint("e", i), Source: "test", SpecVersion: event.SpecVersion,
				Type: event.Telemetry, Subject: "t", DataContentType: "application/json", Data: []byte(`{}`)})
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	// The log dates records to the millisecond: let the retention pass for all of them.
	for committed := time.Now().UnixMilli(); time.Now().UnixMilli() <= committed; {
		runtime.Gosched()
	}
	if n, err := s.delivery.pruner.Prune(ctx); err != nil || n != 0 {
		t.Errorf("Prune before the index is built = %d, %v; want nothing pruned", n, err)
	}
	run(t, s)
	waitReady(t, s)
	if n, err := s.delivery.pruner.Prune(ctx); err != nil || n != 2 {
		t.Errorf("Prune once the index applied the log = %d, %v; want the 2 records before the newest", n, err)
	}
}
