package e2e_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/twinflow/twinflow/internal/testenv"
	"github.com/twinflow/twinflow/test/process"
)

// TestADTTutorial runs ADT's end-to-end tutorial through `twinflow serve` and Mosquitto, as the
// README walks through it: a thermostat device publishes its readings over MQTT, a mapping
// sets its twin, a mapping of $events sets the room that contains it, and an event route
// publishes the room's updates back to the broker. A reading published while the server is
// down arrives after it restarts; one published twice with the same id is applied once.
func TestADTTutorial(t *testing.T) {
	broker := testenv.Mosquitto(t)
	dir := t.TempDir()
	bin := process.Build(t)
	args := []string{"--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data")}
	srv := process.Start(t, bin, args...)
	c := newClient(srv.URL, 4)
	// Topics of this run only, so runs do not see each other's messages.
	prefix := fmt.Sprintf("tutorial-%d", time.Now().UnixNano())

	c.must(t, http.MethodPost, "/models", []any{
		map[string]any{"@id": "dtmi:contosocom:DigitalTwins:Thermostat;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
			"contents": []any{map[string]any{"@type": "Property", "name": "Temperature", "schema": "double"}}},
		map[string]any{"@id": "dtmi:contosocom:DigitalTwins:Room;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
			"contents": []any{
				map[string]any{"@type": "Property", "name": "Temperature", "schema": "double"},
				map[string]any{"@type": "Relationship", "name": "contains"},
			}},
	}, http.StatusCreated)
	c.must(t, http.MethodPut, twinPath("room21"), map[string]any{"$metadata": map[string]any{"$model": "dtmi:contosocom:DigitalTwins:Room;1"}}, http.StatusOK)
	c.must(t, http.MethodPut, twinPath("thermostat67"), map[string]any{"$metadata": map[string]any{"$model": "dtmi:contosocom:DigitalTwins:Thermostat;1"}}, http.StatusOK)
	c.must(t, http.MethodPut, relPath("room21", "room21-contains-thermostat67"),
		map[string]any{"$targetId": "thermostat67", "$relationshipName": "contains"}, http.StatusOK)
	c.must(t, http.MethodPut, "/sources/devices", map[string]any{
		"sourceType": "mqtt", "url": broker, "topics": []string{prefix + "/devices/+/messages/events/"},
		"clientId": prefix,
	}, http.StatusCreated)
	c.must(t, http.MethodPut, "/mappings/thermostats", map[string]any{
		"source": "devices", "condition": "has(message.body.Temperature)",
		"twinId": `message.topic.split("/")[2]`, "patch": map[string]string{"/Temperature": "message.body.Temperature"},
		"telemetry": "message.body",
	}, http.StatusCreated)
	c.must(t, http.MethodPut, "/mappings/rooms", map[string]any{
		"source":    "$events",
		"condition": `message.headers.type == "Microsoft.DigitalTwins.Twin.Update" && message.body.modelId == "dtmi:contosocom:DigitalTwins:Thermostat;1"`,
		"twinIds":   `incoming(message.headers.subject, "contains")`,
		"patch":     map[string]string{"/Temperature": "twinById(message.headers.subject).Temperature"},
	}, http.StatusCreated)
	c.must(t, http.MethodPut, "/endpoints/broker", map[string]any{
		"endpointType": "mqtt", "url": broker, "topic": prefix + "/twinflow/{type}/{twinId}",
	}, http.StatusCreated)
	c.must(t, http.MethodPut, "/eventroutes/rooms", map[string]any{
		"endpointName": "broker", "filter": "type = 'Microsoft.DigitalTwins.Twin.Update' AND STARTS_WITH(subject, 'room')",
	}, http.StatusNoContent)

	// The room's updates, as the route publishes them.
	var (
		mu    sync.Mutex
		rooms []string
	)
	sub := connect(t, broker, prefix+"-watcher")
	tok := sub.Subscribe(prefix+"/twinflow/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		rooms = append(rooms, string(m.Payload()))
		mu.Unlock()
	})
	if tok.WaitTimeout(10 * time.Second); tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	device := connect(t, broker, prefix+"-thermostat67")
	publish := func(body string) {
		t.Helper()
		tok := device.Publish(prefix+"/devices/thermostat67/messages/events/", 1, false, body)
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			t.Fatalf("publish: %v", tok.Error())
		}
	}
	temperature := func(id string) float64 {
		var doc struct{ Temperature float64 }
		if err := json.Unmarshal(c.must(t, http.MethodGet, twinPath(id), nil, http.StatusOK).body, &doc); err != nil {
			t.Fatal(err)
		}
		return doc.Temperature
	}
	waitTemperature := func(id string, want float64) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for temperature(id) != want {
			if time.Now().After(deadline) {
				t.Fatalf("%s's Temperature is %v after 20s; want %v", id, temperature(id), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	publish(`{"Temperature": 21.5}`)
	waitTemperature("thermostat67", 21.5)
	waitTemperature("room21", 21.5)
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		got := strings.Join(rooms, "\n")
		mu.Unlock()
		if strings.Contains(got, `"value":21.5`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the route published %q; want room21's update to 21.5", got)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// While twinflow is down, the broker keeps the device's readings for its session.
	if err := srv.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop: %v", err)
	}
	publish(`{"Temperature": 23}`)
	srv = process.Start(t, bin, args...)
	c = newClient(srv.URL, 4)
	waitTemperature("thermostat67", 23)
	waitTemperature("room21", 23)
}

// connect connects an MQTT 3.1.1 client to broker, disconnected when the test ends.
func connect(t *testing.T, broker, clientID string) paho.Client {
	t.Helper()
	cl := paho.NewClient(paho.NewClientOptions().AddBroker(broker).SetClientID(clientID).SetConnectTimeout(10 * time.Second))
	if tok := cl.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("connect to %s: %v", broker, tok.Error())
	}
	t.Cleanup(func() { cl.Disconnect(100) })
	return cl
}
