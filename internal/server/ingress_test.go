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
