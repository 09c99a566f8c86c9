package api

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/connector/webhook"
	"github.com/twinflow/twinflow/internal/endpoint"
	"github.com/twinflow/twinflow/internal/eventroute"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

// deliveryEnv serves the API with event routes and endpoints over a real store, with the
// endpoint registry running.
func deliveryEnv(t *testing.T, maxRoutes int) (base string, st *sqlite.Store) {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := sqlite.Open(sqlite.Config{Dir: t.TempDir(), NoSync: true}, logger)
	if err != nil {
		t.Fatal(err)
	}
	g, err := twins.New(twins.Config{ServiceID: testHost}, st, logger)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := eventroute.New(context.Background(), eventroute.Config{MaxRoutes: maxRoutes}, st)
	if err != nil {
		t.Fatal(err)
	}
	kinds := map[string]endpoint.Kind{
		"webhook":               endpoint.KindOf(webhook.NewSink, webhook.Handshake),
		endpoint.EventGridType:  endpoint.EventGridKind(),
		endpoint.ServiceBusType: endpoint.ServiceBusKind(),
	}
	reg, err := endpoint.New(endpoint.Config{}, kinds, st, routes, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{Delivery: &Delivery{Routes: routes, Endpoints: reg}}, g, logger)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- reg.Run(ctx) }()
	srv := httptest.NewServer(a)
	t.Cleanup(func() {
		srv.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("registry: %v", err)
		}
		st.Close()
	})
	return srv.URL, st
}

// call sends a request with api-version and returns the status and body.
func call(t *testing.T, method, url, body string) (int, string) {
	t.Helper()
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	req, err := http.NewRequest(method, url+sep+"api-version=2023-10-31", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// wantCall fails the test unless the request answers status with a body containing every
// fragment.
func wantCall(t *testing.T, method, url, body string, status int, fragments ...string) string {
	t.Helper()
	got, resp := call(t, method, url, body)
	if got != status {
		t.Fatalf("%s %s = %d %s, want %d", method, url, got, resp, status)
	}
	for _, f := range fragments {
		if !strings.Contains(resp, f) {
			t.Errorf("%s %s: body %s lacks %s", method, url, resp, f)
		}
	}
	return resp
}

func TestEventRoutesAndEndpoints(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.Header().Set("WebHook-Allowed-Origin", "*")
		}
	}))
	defer hook.Close()
	base, _ := deliveryEnv(t, 1)

	// ER3 before the endpoint exists.
	wantCall(t, "PUT", base+"/eventroutes/r1", `{"endpointName":"hook","filter":"true"}`, 400,
		`"code":"EventRouteEndpointInvalid"`,
		`"message":"The endpoint provided does not exist or is not active. Check that your endpoint is provisioned correctly. See event route documentation (https://aka.ms/ADTv2Routes)."`)

	// Endpoints: invalid definitions name every problem.
	wantCall(t, "PUT", base+"/endpoints/hook", `{"endpointType":"webhook","url":"ftp://x","mode":"nope"}`, 400,
		`"code":"InvalidArgument"`, `url:`, `mode:`)
	resp := wantCall(t, "PUT", base+"/endpoints/hook", `{"endpointType":"webhook","url":"`+hook.URL+`","secret":"s3cret"}`, 201,
		`"name":"hook"`, `"endpointType":"webhook"`, `"status":{"state":`)
	if strings.Contains(resp, "s3cret") {
		t.Errorf("PUT returned the secret: %s", resp)
	}
	wantCall(t, "PUT", base+"/endpoints/hook", `{"endpointType":"webhook","url":"`+hook.URL+`","secret":"s3cret"}`, 200)
	resp = wantCall(t, "GET", base+"/endpoints", "", 200, `"nextLink":null`, `"name":"hook"`)
	if strings.Contains(resp, "s3cret") {
		t.Errorf("list returned the secret: %s", resp)
	}

	// ER3 errors, then success.
	wantCall(t, "PUT", base+"/eventroutes/r1", `{"endpointName":"hook","filter":"type =="}`, 400,
		`"code":"EventRouteFilterInvalid"`, `position 6`)
	wantCall(t, "PUT", base+"/eventroutes/r1", `{"endpointName":"hook"}`, 400, `"code":"EventRouteFilterInvalid"`)
	wantCall(t, "PUT", base+"/eventroutes/bad%20id", `{"endpointName":"hook","filter":"true"}`, 400, `"code":"EventRouteIdInvalid"`)
	wantCall(t, "PUT", base+"/eventroutes/r1", `{"endpointName":"hook","filter":"type = 'Microsoft.DigitalTwins.Twin.Create'"}`, 204)
	wantCall(t, "PUT", base+"/eventroutes/r2", `{"endpointName":"hook","filter":"true"}`, 400, `"code":"LimitExceeded"`)
	// Replacing at the limit is fine.
	wantCall(t, "PUT", base+"/eventroutes/r1", `{"endpointName":"hook","filter":"true","id":"ignored"}`, 204)

	// ER2, ER1.
	resp = wantCall(t, "GET", base+"/eventroutes/r1", "", 200)
	var rt eventRouteJSON
	if err := json.Unmarshal([]byte(resp), &rt); err != nil || rt != (eventRouteJSON{ID: "r1", EndpointName: "hook", Filter: "true"}) {
		t.Errorf("GET route = %s", resp)
	}
	wantCall(t, "GET", base+"/eventroutes", "", 200, `{"nextLink":null,"value":[{"id":"r1","endpointName":"hook","filter":"true"}]}`)
	wantCall(t, "GET", base+"/eventroutes/nope", "", 404, `"code":"EventRouteNotFound"`)

	// The endpoint cannot go while r1 uses it.
	wantCall(t, "DELETE", base+"/endpoints/hook", "", 409, `"code":"EndpointInUse"`, `r1`)

	// Dead letters and replay.
	wantCall(t, "GET", base+"/endpoints/hook/deadletters", "", 200, `{"nextLink":null,"value":[]}`)
	wantCall(t, "GET", base+"/endpoints/hook/deadletters/5", "", 404, `"code":"DeadLetterNotFound"`)
	wantCall(t, "POST", base+"/endpoints/hook/deadletters/5/redrive", "", 404, `"code":"DeadLetterNotFound"`)
	wantCall(t, "POST", base+"/endpoints/hook/replay", `{}`, 400, `"code":"InvalidArgument"`)
	wantCall(t, "POST", base+"/endpoints/hook/replay", `{"fromSequence":1}`, 202, `{"fromSequence":1}`)
	wantCall(t, "POST", base+"/endpoints/hook/replay", `{"fromTime":"2020-01-01T00:00:00Z"}`, 202, `"fromSequence":`)
	wantCall(t, "POST", base+"/endpoints/nope/replay", `{"fromSequence":1}`, 404, `"code":"EndpointNotFound"`)

	// ER4, then the endpoint goes.
	wantCall(t, "DELETE", base+"/eventroutes/r1", "", 204)
	wantCall(t, "DELETE", base+"/eventroutes/r1", "", 404, `"code":"EventRouteNotFound"`)
	wantCall(t, "DELETE", base+"/endpoints/hook", "", 204)
	wantCall(t, "GET", base+"/endpoints/hook", "", 404, `"code":"EndpointNotFound"`)
}

// TestADTEndpointDefinitions puts endpoints in ADT's shapes, an ARM resource and flat
// properties: they are read back as ADT shows them, secrets blanked, and bad ones are
// refused with every problem named.
func TestADTEndpointDefinitions(t *testing.T) {
	base, _ := deliveryEnv(t, 1)
	const conn = "Endpoint=sb://mysb.servicebus.windows.net/;SharedAccessKeyName=RootManageSharedAccessKey;SharedAccessKey=xyzxyzoX4=;EntityPath=abcabc"
	resp := wantCall(t, "PUT", base+"/endpoints/myServiceBus", `{"properties":{"endpointType":"ServiceBus","authenticationType":"KeyBased",
		"primaryConnectionString":"`+conn+`","secondaryConnectionString":"`+conn+`"}}`, 201,
		`"name":"myServiceBus"`, `"endpointType":"ServiceBus"`, `"authenticationType":"KeyBased"`, `"provisioningState":"Succeeded"`,
		`"primaryConnectionString":"Endpoint=sb://***/;SharedAccessKeyName=***;SharedAccessKey=***;EntityPath=***"`, `"createdTime":"`, `"status":{`)
	resp += wantCall(t, "PUT", base+"/endpoints/grid", `{"endpointType":"EventGrid","TopicEndpoint":"https://t.westus2-1.eventgrid.azure.net/api/events",
		"accessKey1":"k3y-one"}`, 201, `"accessKey1":"************"`)
	resp += wantCall(t, "GET", base+"/endpoints", "", 200, `"name":"grid"`, `"name":"myServiceBus"`)
	if strings.Contains(resp, "xyzxyzoX4") || strings.Contains(resp, "k3y-one") {
		t.Errorf("a secret was shown: %s", resp)
	}
	wantCall(t, "PUT", base+"/endpoints/mi", `{"properties":{"endpointType":"ServiceBus","authenticationType":"IdentityBased",
		"endpointUri":"sb://mysb.servicebus.windows.net","entityPath":"abcabc","deadLetterUri":"https://a.blob.core.windows.net/c"}}`, 400,
		`"code":"InvalidArgument"`, `authenticationType: IdentityBased`, `deadLetterUri:`, `primaryConnectionString: required`)
	wantCall(t, "GET", base+"/endpoints/mi", "", 404, `"code":"EndpointNotFound"`)
}

// TestDeadLetterPages pages through dead letters with max-items-per-page.
func TestDeadLetterPages(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.Header().Set("WebHook-Allowed-Origin", "*")
		}
	}))
	defer hook.Close()
	base, st := deliveryEnv(t, 0)
	wantCall(t, "PUT", base+"/endpoints/hook", `{"endpointType":"webhook","url":"`+hook.URL+`"}`, 201)
	err := st.UpdateDelivery(context.Background(), func(w store.DeliveryWriter) error {
		for _, id := range []string{"a", "b", "c"} {
			d := store.DeadLetter{Endpoint: "hook", Seq: 1, Reason: "rejected: HTTP 400"}
			d.Event.ID, d.Event.Type, d.Event.Data = id, "t", json.RawMessage(`{}`)
			if _, err := w.AddDeadLetter(d); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for url := base + "/endpoints/hook/deadletters?api-version=2023-10-31"; url != ""; {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("max-items-per-page", "2")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p page[deadLetterJSON]
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range p.Value {
			ids = append(ids, d.Event.ID)
		}
		url = ""
		if p.NextLink != nil {
			url = *p.NextLink
		}
	}
	if strings.Join(ids, " ") != "a b c" {
		t.Errorf("paged dead letters %v, want a b c", ids)
	}
	wantCall(t, "GET", base+"/endpoints/hook/deadletters/2", "", 200, `"reason":"rejected: HTTP 400"`, `"event":{"id":"b"`)
	wantCall(t, "DELETE", base+"/endpoints/hook/deadletters/2", "", 204)
	wantCall(t, "GET", base+"/endpoints/hook/deadletters/2", "", 404)
}

// TestEventRoutePages pages through GET /eventroutes with max-items-per-page (ER1).
func TestEventRoutePages(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("WebHook-Allowed-Origin", "*")
	}))
	defer hook.Close()
	base, _ := deliveryEnv(t, 3)
	wantCall(t, "PUT", base+"/endpoints/hook", `{"endpointType":"webhook","url":"`+hook.URL+`"}`, 201)
	for _, id := range []string{"c", "a", "b"} {
		wantCall(t, "PUT", base+"/eventroutes/"+id, `{"endpointName":"hook","filter":"true"}`, 204)
	}
	var ids []string
	pages := 0
	for url := base + "/eventroutes?api-version=2023-10-31"; url != ""; pages++ {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("max-items-per-page", "2")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var p page[eventRouteJSON]
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range p.Value {
			ids = append(ids, r.ID)
		}
		url = ""
		if p.NextLink != nil {
			url = *p.NextLink
		}
	}
	if strings.Join(ids, " ") != "a b c" || pages != 2 {
		t.Errorf("paged routes %v in %d pages, want a b c in 2", ids, pages)
	}
}

// TestTelemetryReachesRoutedEvent sends telemetry with a source time and a trace context
// through the API and checks what a binary-mode webhook receives: ADT's telemetrySourceTime
// extension attribute, the span the API answered in traceresponse, and the tracestate.
func TestTelemetryReachesRoutedEvent(t *testing.T) {
	received := make(chan *http.Request, 10)
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.Header().Set("WebHook-Allowed-Origin", "*")
			return
		}
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(strings.NewReader(string(body)))
		received <- r
	}))
	defer hook.Close()
	base, _ := deliveryEnv(t, 1)
	wantCall(t, "PUT", base+"/endpoints/hook", `{"endpointType":"webhook","url":"`+hook.URL+`","mode":"binary"}`, 201)
	wantCall(t, "PUT", base+"/eventroutes/r1", `{"endpointName":"hook","filter":"type = 'microsoft.iot.telemetry'"}`, 204)
	wantCall(t, "POST", base+"/models", testModels, 201)
	wantCall(t, "PUT", base+"/digitaltwins/t1", roomBody, 200)

	const (
		sourceTime = "2026-01-01T01:00:03.123456789+01:00"
		parent     = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
		state      = "rojo=00f067aa0ba902b7,congo=t61rcWkgMzE"
	)
	req, err := http.NewRequest(http.MethodPost, base+"/digitaltwins/t1/telemetry?api-version=2023-10-31", strings.NewReader(`{"occupancy":3}`))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Message-Id", "msg-1")
	req.Header.Set("Telemetry-Source-Time", sourceTime)
	req.Header.Set("traceparent", parent)
	req.Header.Set("tracestate", state)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	span := resp.Header.Get("traceresponse")
	if resp.StatusCode != http.StatusNoContent || span[:36] != parent[:36] {
		t.Fatalf("telemetry answered %d with traceresponse %q", resp.StatusCode, span)
	}

	select {
	case r := <-received:
		body, _ := io.ReadAll(r.Body)
		for name, want := range map[string]string{
			"ce-id": "msg-1", "ce-type": "microsoft.iot.telemetry", "ce-source": testHost + "/digitaltwins/t1",
			"ce-telemetrySourceTime": sourceTime, "ce-traceparent": span, "ce-tracestate": state,
			"ce-dataschema": "dtmi:test:Room;1", "Content-Type": "application/json",
		} {
			if got := r.Header.Get(name); got != want {
				t.Errorf("%s = %q, want %q", name, got, want)
			}
		}
		if string(body) != `{"occupancy":3}` {
			t.Errorf("body = %s", body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event reached the webhook")
	}
}
