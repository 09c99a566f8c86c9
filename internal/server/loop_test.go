package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/testenv"
)

// roomModel is a model with a temperature, for the loop tests.
const roomModel = `[{"@id":"dtmi:example:Room;1","@type":"Interface","@context":"dtmi:dtdl:context;3",
	"contents":[{"@type":"Property","name":"temperature","schema":"double"}]}]`

// logEvents returns the events of s's change log of type typ, in order.
func logEvents(t *testing.T, s *Server, typ string) []event.Event {
	t.Helper()
	recs, err := s.Log().Read(context.Background(), 0, 100_000)
	if err != nil {
		t.Fatal(err)
	}
	var out []event.Event
	for _, r := range recs {
		if r.Event.Type == typ {
			out = append(out, r.Event)
		}
	}
	return out
}

// deadLettersOf returns the dead letters of endpoint name, as the API lists them.
func deadLettersOf(c apiClient, name string) []struct {
	Reason string      `json:"reason"`
	Event  event.Event `json:"event"`
} {
	var page struct {
		Value []struct {
			Reason string      `json:"reason"`
			Event  event.Event `json:"event"`
		} `json:"value"`
	}
	if err := json.Unmarshal([]byte(c.do("GET", "/endpoints/"+name+"/deadletters", "", http.StatusOK)), &page); err != nil {
		c.t.Fatal(err)
	}
	return page.Value
}

// TestTelemetryLoop routes telemetry to a webhook endpoint that posts it back to the server's
// own telemetry API, with a fixed Message-Id: each pass comes back with a higher hop count,
// so the loop goes round until the relay's hop limit turns the event into a dead letter,
// and the server stays healthy.
func TestTelemetryLoop(t *testing.T) {
	s, _ := start(t, Config{Config: config.Config{
		// The loop goes through the server's own listener, which the egress policy allows
		// only when told to.
		Server:   config.Server{EgressPolicy: config.EgressPolicy{AllowSelf: true}},
		Delivery: config.Delivery{SkipHandshake: true, MaxHops: 5}}}, nil)
	c := apiClient{t, s.URL()}
	c.do("POST", "/models", roomModel, http.StatusCreated)
	c.do("PUT", "/digitaltwins/room", `{"$metadata":{"$model":"dtmi:example:Room;1"}}`, http.StatusOK)
	c.do("PUT", "/endpoints/echo", `{"endpointType":"webhook","mode":"binary",
		"url":"`+s.URL()+`/digitaltwins/room/telemetry?api-version=2023-10-31","headers":{"Message-Id":"echo"}}`, http.StatusCreated)
	c.do("PUT", "/eventroutes/telemetry", `{"endpointName":"echo","filter":"type = 'microsoft.iot.telemetry'"}`, http.StatusNoContent)

	c.do("POST", "/digitaltwins/room/telemetry", `{"temperature":21}`, http.StatusNoContent, "Message-Id", "first")
	deadline := time.Now().Add(20 * time.Second)
	for len(deadLettersOf(c, "echo")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter; the log holds %d telemetry events", len(logEvents(t, s, event.Telemetry)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	dls := deadLettersOf(c, "echo")
	if len(dls) != 1 || !strings.HasPrefix(dls[0].Reason, "hop limit: ") || dls[0].Event.ID != "echo" || dls[0].Event.Hops != 6 {
		t.Fatalf("dead letters %+v, want one of the echo at hop 6 for the hop limit", dls)
	}
	// The first message and its five echoes, each carrying the hop count it came back with.
	tel := logEvents(t, s, event.Telemetry)
	if len(tel) != 6 {
		t.Fatalf("the log holds %d telemetry events, want 6", len(tel))
	}
	for i, e := range tel {
		if e.Hops != i || (i > 0 && e.ID != "echo") || !strings.Contains(string(e.Data), `"temperature":21`) {
			t.Errorf("telemetry event %d = %+v, want hop %d", i, e, i)
		}
	}

	// The loop is over and the server otherwise healthy: no more telemetry, the endpoint
	// delivering, writes and telemetry answered.
	time.Sleep(200 * time.Millisecond)
	if n := len(logEvents(t, s, event.Telemetry)); n != 6 {
		t.Errorf("after the dead letter the log holds %d telemetry events, want still 6", n)
	}
	if code, _ := get(t, http.DefaultClient, s.URL()+"/healthz"); code != http.StatusOK {
		t.Errorf("/healthz = %d", code)
	}
	if code, _ := get(t, http.DefaultClient, s.URL()+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz = %d", code)
	}
	c.do("PATCH", "/digitaltwins/room", `[{"op":"add","path":"/temperature","value":22}]`, http.StatusNoContent)
	if st := c.do("GET", "/endpoints/echo", "", http.StatusOK); !strings.Contains(st, `"state":"delivering"`) {
		t.Errorf("endpoint = %s, want it delivering", st)
	}
}

// TestTelemetryDedup checks that telemetry a twin sends again with the same Message-Id is
// acknowledged as the first was but not routed again, while other ids and twins are.
func TestTelemetryDedup(t *testing.T) {
	var (
		mu  sync.Mutex
		got []string
	)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e event.Event
		if err := json.NewDecoder(r.Body).Decode(&e); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		mu.Lock()
		got = append(got, e.Source[strings.LastIndex(e.Source, "/")+1:]+"/"+e.ID)
		mu.Unlock()
	}))
	defer hook.Close()
	s, _ := start(t, Config{Config: config.Config{
		Delivery:  config.Delivery{SkipHandshake: true},
		Endpoints: map[string]json.RawMessage{"hook": json.RawMessage(`{"endpointType":"webhook","url":"` + hook.URL + `"}`)},
		Routes:    map[string]config.Route{"telemetry": {EndpointName: "hook", Filter: "type = 'microsoft.iot.telemetry'"}},
	}}, nil)
	c := apiClient{t, s.URL()}
	c.do("POST", "/models", roomModel, http.StatusCreated)
	c.do("PUT", "/digitaltwins/r1", `{"$metadata":{"$model":"dtmi:example:Room;1"}}`, http.StatusOK)
	c.do("PUT", "/digitaltwins/r2", `{"$metadata":{"$model":"dtmi:example:Room;1"}}`, http.StatusOK)
	for _, send := range []struct{ twin, id string }{
		{"r1", "a"}, {"r1", "a"}, {"r2", "a"}, {"r1", "b"}, {"r1", "a"}, {"r2", "b"}, {"r2", "b"},
	} {
		c.do("POST", "/digitaltwins/"+send.twin+"/telemetry", `{"temperature":20}`, http.StatusNoContent, "Message-Id", send.id)
	}
	want := []string{"r1/a", "r2/a", "r1/b", "r2/b"}
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		mu.Unlock()
		if n >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the webhook got %d events, want %d", n, len(want))
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // room for a duplicate to arrive, were it routed
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("routed %v, want %v: each message once", got, want)
	}
	if n := len(logEvents(t, s, event.Telemetry)); n != len(want) {
		t.Errorf("the log holds %d telemetry events, want %d", n, len(want))
	}
}

// TestSourceLoop routes twin updates to a webhook that pushes them back to an http source
// whose mapping patches the twin again: the hop count the webhook sends in Twinflow-Hops
// comes back on the update the message causes, so the loop ends in a dead letter too.
func TestSourceLoop(t *testing.T) {
	s, _ := start(t, Config{Config: config.Config{
		// The loop goes through the server's own listener, which the egress policy allows
		// only when told to.
		Server:   config.Server{EgressPolicy: config.EgressPolicy{AllowSelf: true}},
		Delivery: config.Delivery{SkipHandshake: true, MaxHops: 3}}}, nil)
	c := apiClient{t, s.URL()}
	c.do("POST", "/models", roomModel, http.StatusCreated)
	c.do("PUT", "/digitaltwins/room", `{"$metadata":{"$model":"dtmi:example:Room;1"},"temperature":1}`, http.StatusOK)
	c.do("PUT", "/sources/echo", `{"sourceType":"http"}`, http.StatusCreated)
	c.do("PUT", "/mappings/echo", `{"source":"echo","twinId":"'room'",
		"patch":{"/temperature":"double(message.body.patch[0].value) + 1.0"}}`, http.StatusCreated)
	c.do("PUT", "/endpoints/back", `{"endpointType":"webhook","mode":"binary",
		"url":"`+s.URL()+`/sources/echo/messages?api-version=2023-10-31","headers":{"Message-Id":"same"}}`, http.StatusCreated)
	c.do("PUT", "/eventroutes/updates", `{"endpointName":"back","filter":"type = 'Microsoft.DigitalTwins.Twin.Update'"}`, http.StatusNoContent)

	c.do("PATCH", "/digitaltwins/room", `[{"op":"replace","path":"/temperature","value":10}]`, http.StatusNoContent)
	deadline := time.Now().Add(20 * time.Second)
	for len(deadLettersOf(c, "back")) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no dead letter; the log holds %d updates", len(logEvents(t, s, event.TwinUpdate)))
		}
		time.Sleep(20 * time.Millisecond)
	}
	updates := logEvents(t, s, event.TwinUpdate)
	if len(updates) != 4 {
		t.Fatalf("the log holds %d updates, want the PATCH's and three from the source", len(updates))
	}
	for i, e := range updates {
		if e.Hops != i || !strings.Contains(string(e.Data), fmt.Sprintf(`"value":%d`, 10+i)) {
			t.Errorf("update %d = %+v with %s, want hop %d setting %d", i, e, e.Data, i, 10+i)
		}
	}
	if dls := deadLettersOf(c, "back"); len(dls) != 1 || dls[0].Event.Hops != 4 {
		t.Errorf("dead letters %+v, want one at hop 4", dls)
	}
	waitStatus(t, c, "echo", `"applied":3`, `"duplicates":0`)
}

// TestBrokerSourceDedupAndHops sends messages through RabbitMQ to an amqp source: a message
// id the source applied is a duplicate when it comes again, unless it comes back with a
// higher hop count (cloudEvents:twinflowhops), which the changes it causes carry on.
func TestBrokerSourceDedupAndHops(t *testing.T) {
	url := testenv.RabbitMQ(t)
	s, _ := start(t, Config{}, nil)
	c := apiClient{t, s.URL()}
	c.do("POST", "/models", roomModel, http.StatusCreated)
	c.do("PUT", "/digitaltwins/room", `{"$metadata":{"$model":"dtmi:example:Room;1"}}`, http.StatusOK)
	conn, err := amqp091.Dial(url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	q := fmt.Sprintf("loop-%d", time.Now().UnixNano())
	defer ch.QueueDelete(q, false, false, false)
	c.do("PUT", "/sources/bus", `{"sourceType":"amqp","url":"`+url+`","queue":"`+q+`","exchange":"amq.topic","bindingKeys":["`+q+`"]}`, http.StatusCreated)
	c.do("PUT", "/mappings/bus", `{"source":"bus","twinId":"'room'","patch":{"/temperature":"message.body.t"}}`, http.StatusCreated)
	waitStatus(t, c, "bus", `"state":"running"`)
	for _, m := range []struct {
		id   string
		hops string
		t    int
	}{
		{"m1", "", 1},
		{"m1", "", 2},  // a duplicate
		{"m1", "2", 3}, // back around a loop
		{"m1", "2", 4}, // that, again
		{"m2", "", 5},
	} {
		p := amqp091.Publishing{MessageId: m.id, Body: fmt.Appendf(nil, `{"t":%d}`, m.t)}
		if m.hops != "" {
			p.Headers = amqp091.Table{"cloudEvents:twinflowhops": m.hops}
		}
		if err := ch.PublishWithContext(t.Context(), "amq.topic", q, false, false, p); err != nil {
			t.Fatal(err)
		}
	}
	waitStatus(t, c, "bus", `"applied":3`, `"duplicates":2`)
	var got []string
	for _, e := range logEvents(t, s, event.TwinUpdate) {
		got = append(got, fmt.Sprintf("%s@%d", e.Data, e.Hops))
	}
	want := []string{
		`{"modelId":"dtmi:example:Room;1","patch":[{"op":"add","path":"/temperature","value":1}]}@0`,
		`{"modelId":"dtmi:example:Room;1","patch":[{"op":"add","path":"/temperature","value":3}]}@2`,
		`{"modelId":"dtmi:example:Room;1","patch":[{"op":"add","path":"/temperature","value":5}]}@0`,
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("updates %v,\nwant %v", got, want)
	}
}
