package server

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
)

// TestEgressPolicyThroughTheAPI puts endpoints and sources whose destinations the server's
// egress policy denies: its own listener, a metadata address, a TLS file outside the
// allowed directories, and, with denyLoopback, loopback. Each is refused with 400 naming the
// field, create and update alike, and nothing changes.
func TestEgressPolicyThroughTheAPI(t *testing.T) {
	dataDir := t.TempDir()
	caFile, _ := sinktest.ServerTLS(t) // outside the data directory
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	inside := filepath.Join(dataDir, "ca.pem")
	if err := os.WriteFile(inside, pem, 0o600); err != nil {
		t.Fatal(err)
	}
	s, _ := start(t, Config{Config: config.Config{
		Server:   config.Server{DataDir: dataDir},
		Delivery: config.Delivery{SkipHandshake: true},
	}}, nil)
	c := apiClient{t, s.URL()}

	c.do("PUT", "/endpoints/hook", `{"endpointType":"webhook","url":"https://203.0.113.7/hook","tls":{"caFile":"`+inside+`"}}`, http.StatusCreated)
	c.do("PUT", "/sources/plant", `{"sourceType":"mqtt","url":"tcp://127.0.0.1:9","topics":["t"]}`, http.StatusCreated)
	endpointBefore := c.do("GET", "/endpoints/hook", "", http.StatusOK)
	sourceBefore := c.do("GET", "/sources/plant", "", http.StatusOK)
	for _, tt := range []struct {
		path, body, want string
	}{
		{"/endpoints/hook", `{"endpointType":"webhook","url":"` + s.URL() + `/sources/plant/messages"}`, "twinflow's own listener"},
		{"/endpoints/new", `{"endpointType":"webhook","url":"` + s.URL() + `/sources/plant/messages"}`, "twinflow's own listener"},
		{"/endpoints/hook", `{"endpointType":"webhook","url":"http://169.254.169.254/latest/meta-data/"}`, "url: 169.254.169.254:80 is not allowed by the egress policy: a cloud metadata address"},
		{"/endpoints/new", `{"endpointType":"nats","url":"nats://metadata.google.internal:4222"}`, "url: metadata.google.internal:4222 is not allowed"},
		{"/endpoints/hook", `{"endpointType":"webhook","url":"https://203.0.113.7/hook","tls":{"caFile":"` + caFile + `"}}`, "tls.caFile"},
		{"/sources/plant", `{"sourceType":"mqtt","url":"tcp://169.254.169.254:1883","topics":["t"]}`, "a cloud metadata address"},
		{"/sources/new", `{"sourceType":"kafka","brokers":["[fe80::1]:9092"],"topics":["t"]}`, "brokers[0]: [fe80::1]:9092 is not allowed by the egress policy: a link-local address"},
		{"/sources/plant", `{"sourceType":"nats","url":"nats://127.0.0.1:4222","stream":"S","credentials":"/etc/passwd"}`, "credentials"},
	} {
		body := c.do("PUT", tt.path, tt.body, http.StatusBadRequest)
		if !strings.Contains(body, `"code":"InvalidArgument"`) || !strings.Contains(body, tt.want) {
			t.Errorf("PUT %s %s = %s, want InvalidArgument naming %q", tt.path, tt.body, body, tt.want)
		}
	}
	if got := c.do("GET", "/endpoints/hook", "", http.StatusOK); stripStatus(got) != stripStatus(endpointBefore) {
		t.Errorf("refused updates changed the endpoint:\n%s\nwas\n%s", got, endpointBefore)
	}
	if got := c.do("GET", "/sources/plant", "", http.StatusOK); stripStatus(got) != stripStatus(sourceBefore) {
		t.Errorf("refused updates changed the source:\n%s\nwas\n%s", got, sourceBefore)
	}
	c.do("GET", "/endpoints/new", "", http.StatusNotFound)
	c.do("GET", "/sources/new", "", http.StatusNotFound)

	// denyLoopback refuses loopback, which is allowed by default.
	s2, _ := start(t, Config{Config: config.Config{Server: config.Server{EgressPolicy: config.EgressPolicy{DenyLoopback: true}}}}, nil)
	c2 := apiClient{t, s2.URL()}
	body := c2.do("PUT", "/sources/plant", `{"sourceType":"mqtt","url":"tcp://127.0.0.1:1883","topics":["t"]}`, http.StatusBadRequest)
	if !strings.Contains(body, "denied by denyLoopback") {
		t.Errorf("PUT a loopback source under denyLoopback = %s", body)
	}
}

// stripStatus returns an endpoint or source as GET shows it, without its status.
func stripStatus(body string) string {
	var m map[string]any
	_ = json.Unmarshal([]byte(body), &m)
	delete(m, "status")
	b, _ := json.Marshal(m)
	return string(b)
}

// TestSlowHandshakeThroughTheAPI creates a webhook endpoint whose destination takes its time
// to answer the validation handshake: PUT answers 201 within seconds with the endpoint
// provisioning, a route to it can be made, and it delivers once the destination accepts.
func TestSlowHandshakeThroughTheAPI(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	answer := func() { once.Do(func() { close(release) }) }
	defer answer()
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
			w.Header().Set("WebHook-Allowed-Origin", "*")
		}
	}))
	defer hook.Close()
	s, _ := start(t, Config{}, nil)
	c := apiClient{t, s.URL()}
	begin := time.Now()
	body := c.do("PUT", "/endpoints/slow", `{"endpointType":"webhook","url":"`+hook.URL+`"}`, http.StatusCreated)
	if d := time.Since(begin); d > 5*time.Second {
		t.Errorf("PUT took %v", d)
	}
	if !strings.Contains(body, `"state":"provisioning"`) {
		t.Errorf("PUT answered %s, want the endpoint provisioning", body)
	}
	c.do("PUT", "/eventroutes/all", `{"endpointName":"slow","filter":"true"}`, http.StatusNoContent)
	answer()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		body = c.do("GET", "/endpoints/slow", "", http.StatusOK)
		if strings.Contains(body, `"state":"delivering"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the endpoint is not delivering: %s", body)
		}
	}
}

// TestSecretsStayHidden runs endpoints and sources of every kind with secrets in every
// setting that holds one, against destinations that fail, and checks that neither the API
// (definitions and status), /metrics nor the logs show them, nor what answered.
func TestSecretsStayHidden(t *testing.T) {
	var logs syncBuffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	down := sinktest.NewListener(t).Addr() // closes every connection at once
	s, _ := start(t, Config{Config: config.Config{
		Delivery: config.Delivery{MaxEndpoints: 20, MaxRoutes: 20, SkipHandshake: true},
	}}, logger)
	c := apiClient{t, s.URL()}
	retry := `"delivery":{"minBackoff":"10ms","maxBackoff":"50ms"},`
	endpoints := map[string]string{
		"webhook": `{` + retry + `"endpointType":"webhook","url":"http://u:ep-url-pass@` + down + `/h?sig=ep-query-sig","secret":"ep-hmac-secret",
			"headers":{"Authorization":"Bearer ep-bearer","X-Key":"ep-header-key"},"secretHeaders":["X-Key"]}`,
		"kafka": `{` + retry + `"endpointType":"kafka","brokers":["` + down + `"],"topic":"t","sasl":{"mechanism":"SCRAM-SHA-256","user":"u","password":"ep-kafka-pass"}}`,
		"nats":  `{` + retry + `"endpointType":"nats","url":"nats://ep-nats-url-token@` + down + `","user":"u","password":"ep-nats-pass"}`,
		"natst": `{` + retry + `"endpointType":"nats","url":"nats://` + down + `","token":"ep-nats-token"}`,
		"amqp":  `{` + retry + `"endpointType":"amqp","url":"amqp://u:ep-amqp-pass@` + down + `/","routingKey":"q"}`,
		"mqtt":  `{` + retry + `"endpointType":"mqtt","url":"tcp://` + down + `","version":3,"username":"u","password":"ep-mqtt-pass"}`,
		"grid":  `{` + retry + `"endpointType":"EventGrid","TopicEndpoint":"http://` + down + `/api/events","accessKey1":"ep-grid-key1","accessKey2":"ep-grid-key2"}`,
		"hub": `{` + retry + `"endpointType":"EventHub","protocol":"amqp","connectionStringPrimaryKey":"Endpoint=sb://` + down +
			`/;SharedAccessKeyName=s;SharedAccessKey=ep-hub-key;EntityPath=h;UseDevelopmentEmulator=true"}`,
		"bus": `{` + retry + `"endpointType":"ServiceBus","primaryConnectionString":"Endpoint=sb://` + down +
			`/;SharedAccessKeyName=s;SharedAccessKey=ep-bus-key;EntityPath=t;UseDevelopmentEmulator=true"}`,
	}
	sources := map[string]string{
		"mqtt":  `{"sourceType":"mqtt","url":"ws://u:src-mqtt-url-pass@` + down + `/mqtt?sas=src-mqtt-sas","topics":["src"],"username":"u","password":"src-mqtt-pass"}`,
		"nats":  `{"sourceType":"nats","url":"nats://` + down + `","stream":"S","user":"u","password":"src-nats-pass"}`,
		"natst": `{"sourceType":"nats","url":"nats://src-nats-url-token@` + down + `","stream":"S"}`,
		"kafka": `{"sourceType":"kafka","brokers":["` + down + `"],"topics":["src"],"sasl":{"mechanism":"PLAIN","user":"u","password":"src-kafka-pass"}}`,
		"amqp":  `{"sourceType":"amqp","url":"amqp://u:src-amqp-pass@` + down + `/","queue":"src"}`,
	}
	secrets := []string{"ep-url-pass", "ep-query-sig", "ep-hmac-secret", "ep-bearer", "ep-header-key", "ep-kafka-pass",
		"ep-nats-url-token", "ep-nats-pass", "ep-nats-token", "ep-amqp-pass", "ep-mqtt-pass", "ep-grid-key1", "ep-grid-key2",
		"ep-hub-key", "ep-bus-key", "src-mqtt-url-pass", "src-mqtt-sas", "src-mqtt-pass", "src-nats-pass", "src-nats-url-token",
		"src-kafka-pass", "src-amqp-pass"}
	for name, def := range endpoints {
		c.do("PUT", "/endpoints/"+name, def, http.StatusCreated)
		c.do("PUT", "/eventroutes/"+name, `{"endpointName":"`+name+`","filter":"true"}`, http.StatusNoContent)
	}
	for name, def := range sources {
		c.do("PUT", "/sources/"+name, def, http.StatusCreated)
	}
	c.do("POST", "/models", `[{"@id":"dtmi:example:Room;1","@type":"Interface","@context":"dtmi:dtdl:context;3"}]`, http.StatusCreated)
	c.do("PUT", "/digitaltwins/room-1", `{"$metadata":{"$model":"dtmi:example:Room;1"}}`, http.StatusOK)

	lastError := func(body string) string {
		var v struct {
			Status struct {
				LastError string `json:"lastError"`
			} `json:"status"`
		}
		_ = json.Unmarshal([]byte(body), &v)
		return v.Status.LastError
	}
	wait := func(path string) string {
		for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(20 * time.Millisecond) {
			body := c.do("GET", path, "", http.StatusOK)
			if lastError(body) != "" {
				return body
			}
			if time.Now().After(deadline) {
				t.Fatalf("GET %s shows no error: %s", path, body)
			}
		}
	}
	var shown []string
	for name := range endpoints {
		if name == "kafka" {
			// An unreachable Kafka cluster fails a batch only after the producer's 30 s
			// delivery timeout; what GET shows is checked below all the same.
			continue
		}
		body := wait("/endpoints/" + name)
		if got := lastError(body); got != redact.Unreachable {
			t.Errorf("endpoint %s: last error %q, want %q", name, got, redact.Unreachable)
		}
	}
	for name := range sources {
		body := wait("/sources/" + name)
		if got := lastError(body); got != redact.Unreachable {
			t.Errorf("source %s: last error %q, want %q", name, got, redact.Unreachable)
		}
	}
	shown = append(shown, c.do("GET", "/endpoints", "", http.StatusOK), c.do("GET", "/sources", "", http.StatusOK))
	for name := range endpoints {
		shown = append(shown, c.do("GET", "/endpoints/"+name, "", http.StatusOK))
		shown = append(shown, c.do("GET", "/endpoints/"+name+"/deadletters", "", http.StatusOK))
	}
	_, metrics := get(t, http.DefaultClient, s.URL()+"/metrics")
	if !strings.Contains(metrics, `twinflow_endpoint_failed_sends_total{endpoint="webhook"}`) ||
		!strings.Contains(metrics, `twinflow_source_received_messages_total{source="mqtt"}`) {
		t.Errorf("/metrics lacks the endpoints' and sources' series: %s", metrics)
	}
	shown = append(shown, metrics, logs.String())
	for _, text := range shown {
		for _, secret := range secrets {
			if strings.Contains(text, secret) {
				t.Errorf("%s is shown:\n%s", secret, text)
			}
		}
	}
	if !strings.Contains(logs.String(), "send failed") || !strings.Contains(logs.String(), "reconnecting") {
		t.Errorf("the logs say nothing of the failures: %s", logs.String())
	}
}
