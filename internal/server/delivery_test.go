package server

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/endpoint"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

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
	s, _ := start(t, Config{Config: config.Config{
		Endpoints: map[string]json.RawMessage{"hook": json.RawMessage(`{"endpointType":"webhook","url":"` + hook.URL + `"}`)},
		Routes:    map[string]config.Route{"creates": {EndpointName: "hook", Filter: "type = 'Microsoft.DigitalTwins.Twin.Create'"}},
	}}, nil)
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
// everything but the newest record once it caught up. Data history, another consumer the
// pruner waits for, is off: whether its writer has caught up by then is a matter of timing.
func TestPrunerWaitsForTheIndex(t *testing.T) {
	s, err := New(Config{Config: config.Config{
		Server:   config.Server{Listen: "127.0.0.1:0", DataDir: t.TempDir()},
		Delivery: config.Delivery{Retention: time.Nanosecond},
		History:  config.History{Mode: config.HistoryOff},
	}},
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
