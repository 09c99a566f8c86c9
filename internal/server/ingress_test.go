package server

import (
	"context"
	"encoding/json"
	"errors"
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
	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/source"
)

// tutorialMapping is the tests' mapping language: "device" maps a thermostat's reading
// {"device": id, "temp": n} onto its twin, creating it; "propagate" sets the temperature of
// room-<id> when thermostat <id> reports one.
type tutorialMapping struct {
	Source string `json:"source"`
	Rule   string `json:"rule"`
}

func compileTutorial(raw json.RawMessage) (source.Compiled, error) {
	var m tutorialMapping
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, err
	}
	if m.Rule != "device" && m.Rule != "propagate" {
		return nil, fmt.Errorf("rule: %q is not device or propagate", m.Rule)
	}
	return m, nil
}

// Map implements ingress.Mapper.
func (m tutorialMapping) Map(_ context.Context, msg ingress.Message, _ ingress.TwinReader) ([]ingress.Change, error) {
	if m.Rule == "device" {
		var r struct {
			Device string   `json:"device"`
			Temp   *float64 `json:"temp"`
		}
		if err := json.Unmarshal(msg.Body, &r); err != nil || r.Device == "" || r.Temp == nil {
			return nil, errors.New("not a reading")
		}
		patch := fmt.Sprintf(`[{"op":"add","path":"/temperature","value":%v}]`, *r.Temp)
		return []ingress.Change{{TwinID: r.Device, CreateModel: "dtmi:example:Thermostat;1", Patch: []byte(patch)}}, nil
	}
	subject := msg.Headers["subject"]
	if msg.Headers["type"] != event.TwinUpdate || strings.HasPrefix(subject, "room-") {
		return nil, nil
	}
	var data struct {
		Patch []struct {
			Path  string          `json:"path"`
			Value json.RawMessage `json:"value"`
		} `json:"patch"`
	}
	if err := json.Unmarshal(msg.Body, &data); err != nil {
		return nil, err
	}
	for _, op := range data.Patch {
		if op.Path == "/temperature" {
			patch := fmt.Sprintf(`[{"op":"add","path":"/temperature","value":%s}]`, op.Value)
			return []ingress.Change{{TwinID: "room-" + subject, Patch: []byte(patch)}}, nil
		}
	}
	return nil, nil
}

// DryRun implements source.Compiled.
func (m tutorialMapping) DryRun(ctx context.Context, msg ingress.Message, twins ingress.TwinReader) (any, error) {
	return m.Map(ctx, msg, twins)
}

// apiClient calls a server's API and checks the status.
type apiClient struct {
	t    *testing.T
	base string
}

func (c apiClient) do(method, path, body string, want int, header ...string) string {
	c.t.Helper()
	req, err := http.NewRequest(method, c.base+path+"?api-version=2023-10-31", strings.NewReader(body))
	if err != nil {
		c.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		c.t.Fatalf("%s %s = %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	return string(b)
}

// TestIngressEndToEnd runs the tutorial's flow through a real server: a thermostat's readings
// pushed to an http source set its twin, propagation sets its room's, and an event route
// delivers the room's update, carrying the reading's trace, to a webhook. After a restart the
// source and mappings are back and a message id is still remembered.
func TestIngressEndToEnd(t *testing.T) {
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
	dir := t.TempDir()
	cfg := Config{MappingCompiler: compileTutorial, Config: config.Config{
		Server:    config.Server{DataDir: dir},
		Endpoints: map[string]json.RawMessage{"hook": json.RawMessage(`{"endpointType":"webhook","url":"` + hook.URL + `"}`)},
		Routes:    map[string]config.Route{"rooms": {EndpointName: "hook", Filter: "type = 'Microsoft.DigitalTwins.Twin.Update' AND STARTS_WITH(subject, 'room-')"}},
	}}
	s, stop := start(t, cfg, nil)
	c := apiClient{t, s.URL()}
	c.do("POST", "/models", `[
		{"@id":"dtmi:example:Thermostat;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
		 "contents":[{"@type":"Property","name":"temperature","schema":"double","writable":true}]},
		{"@id":"dtmi:example:Room;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
		 "contents":[{"@type":"Property","name":"temperature","schema":"double","writable":true}]}]`, http.StatusCreated)
	c.do("PUT", "/digitaltwins/room-t1", `{"$metadata":{"$model":"dtmi:example:Room;1"}}`, http.StatusOK)
	c.do("PUT", "/sources/plant", `{"sourceType":"http"}`, http.StatusCreated)
	c.do("PUT", "/mappings/device", `{"source":"plant","rule":"device"}`, http.StatusCreated)
	c.do("PUT", "/mappings/rooms", `{"source":"$events","rule":"propagate"}`, http.StatusCreated)
	c.do("PUT", "/mappings/broken", `{"source":"plant","rule":"nope"}`, http.StatusBadRequest)

	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	body := c.do("POST", "/sources/plant/messages", `{"device":"t1","temp":21.5}`, http.StatusOK, "Message-Id", "r-1", "traceparent", tp)
	if !strings.Contains(body, `"status":"applied"`) {
		t.Fatalf("push = %s", body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the room's update did not reach the webhook")
		}
		time.Sleep(10 * time.Millisecond)
	}
	mu.Lock()
	room := got[0]
	mu.Unlock()
	if room.Subject != "room-t1" || room.TraceParent != tp || !strings.Contains(string(room.Data), `"value":21.5`) {
		t.Errorf("the webhook got %+v; want room-t1's update with the reading's trace", room)
	}
	for {
		code, metrics := get(t, http.DefaultClient, s.URL()+"/metrics")
		if code == http.StatusOK && strings.Contains(metrics, `twinflow_source_applied_messages_total{source="plant"} 1`) &&
			strings.Contains(metrics, `twinflow_source_applied_messages_total{source="$events"}`) &&
			strings.Contains(metrics, `twinflow_mapping_changes_total{mapping="rooms"} 1`) &&
			strings.Contains(metrics, `twinflow_source_lag_messages{source="$events"}`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics = %d:\n%s", code, metrics)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}

	s, _ = start(t, cfg, nil)
	c = apiClient{t, s.URL()}
	body = c.do("POST", "/sources/plant/messages", `{"device":"t1","temp":99}`, http.StatusOK, "Message-Id", "r-1")
	if !strings.Contains(body, `"status":"duplicate"`) {
		t.Errorf("push of a known id after a restart = %s", body)
	}
	c.do("POST", "/sources/plant/messages", `{"device":"t1","temp":22}`, http.StatusOK)
	for {
		room := c.do("GET", "/digitaltwins/room-t1", "", http.StatusOK)
		if strings.Contains(room, `"temperature":22`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the room after a restart: %s", room)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestTutorialWithMappingRules runs ADT's end-to-end tutorial through a real server with the
// mapping rules it builds in (package mapping): a thermostat's readings pushed to an http
// source set its twin, a mapping of $events sets the temperature of every twin that contains
// it (incoming), and the room's update carries the reading's trace. A mapping that does not
// compile is refused with the expression's problem.
func TestTutorialWithMappingRules(t *testing.T) {
	s, _ := start(t, Config{}, nil)
	c := apiClient{t, s.URL()}
	c.do("POST", "/models", `[
		{"@id":"dtmi:contosocom:DigitalTwins:Thermostat;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
		 "contents":[{"@type":"Property","name":"Temperature","schema":"double"}]},
		{"@id":"dtmi:contosocom:DigitalTwins:Room;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
		 "contents":[{"@type":"Property","name":"Temperature","schema":"double"},
		             {"@type":"Relationship","name":"contains"}]}]`, http.StatusCreated)
	c.do("PUT", "/digitaltwins/room21", `{"$metadata":{"$model":"dtmi:contosocom:DigitalTwins:Room;1"}}`, http.StatusOK)
	c.do("PUT", "/digitaltwins/thermostat67", `{"$metadata":{"$model":"dtmi:contosocom:DigitalTwins:Thermostat;1"}}`, http.StatusOK)
	c.do("PUT", "/digitaltwins/room21/relationships/r1", `{"$targetId":"thermostat67","$relationshipName":"contains"}`, http.StatusOK)
	c.do("PUT", "/sources/devices", `{"sourceType":"http"}`, http.StatusCreated)
	body := c.do("PUT", "/mappings/broken", `{"source":"devices","twinId":"message.body.device +","patch":{"/Temperature":"1.0"}}`, http.StatusBadRequest)
	if !strings.Contains(body, "twinId") || !strings.Contains(body, "Syntax error") {
		t.Errorf("a mapping that does not compile: %s", body)
	}
	c.do("PUT", "/mappings/thermostats", `{"source":"devices","twinId":"message.body.device",
		"patch":{"/Temperature":"message.body.Temperature"}}`, http.StatusCreated)
	c.do("PUT", "/mappings/rooms", `{"source":"$events",
		"condition":"message.headers.type == 'Microsoft.DigitalTwins.Twin.Update' && message.body.modelId == 'dtmi:contosocom:DigitalTwins:Thermostat;1'",
		"twinIds":"incoming(message.headers.subject, 'contains')",
		"patch":{"/Temperature":"twinById(message.headers.subject).Temperature"}}`, http.StatusCreated)
	body = c.do("POST", "/mappings/thermostats/test", `{"message":{"body":{"device":"thermostat67","Temperature":19.5}}}`, http.StatusOK)
	if !strings.Contains(body, `"twinId":"thermostat67"`) || !strings.Contains(body, `19.5`) {
		t.Errorf("dry run = %s", body)
	}

	const tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	body = c.do("POST", "/sources/devices/messages", `{"device":"thermostat67","Temperature":21.5}`, http.StatusOK, "traceparent", tp)
	if !strings.Contains(body, `"status":"applied","changes":1`) {
		t.Fatalf("push = %s", body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		room := c.do("GET", "/digitaltwins/room21", "", http.StatusOK)
		if strings.Contains(room, `"Temperature":21.5`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the room did not follow its thermostat: %s", room)
		}
		time.Sleep(10 * time.Millisecond)
	}
	body = c.do("POST", "/sources/devices/messages", `{"device":"thermostat99","Temperature":20}`, http.StatusOK)
	if !strings.Contains(body, `"status":"deadLettered"`) || !strings.Contains(body, "thermostat99") {
		t.Errorf("a message for a missing twin = %s", body)
	}
}
