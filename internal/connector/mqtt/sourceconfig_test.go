package mqtt

import (
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/sink"
)

func TestSourceConfigValidate(t *testing.T) {
	qos := func(q int) *int { return &q }
	tests := []struct {
		cfg  SourceConfig
		want []string
	}{
		{SourceConfig{URL: "tcp://h", Topics: []string{"a/+/b", "#", "$share/g/c/#"}}, nil},
		{SourceConfig{URL: "wss://h/mqtt", Version: 3, Topics: []string{"a"}, QoS: qos(0), Username: "u", Password: "p", TLS: sink.TLS{CAFile: "ca.pem"}}, nil},
		{SourceConfig{URL: "ws://h", Topics: []string{"a"}, SessionExpiry: Duration(time.Hour), MaxInflight: 65535, QoS: qos(1)}, nil},
		{SourceConfig{}, []string{"url: required", "topics: at least one"}},
		{SourceConfig{URL: "http://h", Topics: []string{"a"}, Version: 4, QoS: qos(2)}, []string{"url:", "version: 4", "qos: 2 is not 0 or 1"}},
		{SourceConfig{URL: "tcp://h", Topics: []string{"a/#/b", "a+", "", "$share/g", "$share/+/a", "a\x00"}}, []string{
			"topics[0]:", "topics[1]:", "topics[2]:", "topics[3]:", "topics[4]:", "topics[5]:"}},
		{SourceConfig{URL: "tcp://h", Topics: []string{"a"}, TLS: sink.TLS{CAFile: "ca.pem"}}, []string{"tls: set, but url"}},
		{SourceConfig{URL: "tcp://h", Topics: []string{"a"}, TLS: sink.TLS{CertFile: "c.pem"}}, []string{"tls.certFile"}},
		{SourceConfig{URL: "tcp://h", Topics: []string{"a"}, Version: 3, Password: "p", SessionExpiry: Duration(time.Hour), MaxInflight: 10}, []string{
			"password:", "sessionExpiry: MQTT 3.1.1", "maxInflight: MQTT 3.1.1"}},
		{SourceConfig{URL: "tcp://h", Topics: []string{"a"}, SessionExpiry: Duration(time.Millisecond), MaxInflight: 70000}, []string{
			"sessionExpiry: 1ms is less than 1s", "maxInflight: 70000"}},
		{SourceConfig{URL: "tcp://h", Topics: []string{"a"}, SessionExpiry: Duration(200 * 365 * 24 * time.Hour), ClientID: strings.Repeat("x", 70000)}, []string{
			"sessionExpiry:", "clientId: 70000 bytes"}},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if (err == nil) != (len(tt.want) == 0) {
			t.Errorf("Validate(%+v) = %v, want %v", tt.cfg, err, tt.want)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Validate(%+v) = %v, want it to mention %q", tt.cfg, err, w)
			}
		}
	}
	if r := (SourceConfig{Password: "p"}).Redacted(); r.Password == "p" {
		t.Error("Redacted kept the password")
	}
}

func TestSourceConfigJSON(t *testing.T) {
	var cfg SourceConfig
	in := `{"url":"mqtt://h","topics":["devices/+/messages/events/#"],"qos":0,"sessionExpiry":"12h","clientId":"c"}`
	if err := json.Unmarshal([]byte(in), &cfg); err != nil {
		t.Fatal(err)
	}
	if cfg.QoS == nil || cfg.qos() != 0 || time.Duration(cfg.SessionExpiry) != 12*time.Hour || cfg.sessionExpiry() != 12*3600 {
		t.Errorf("decoded %+v", cfg)
	}
	out, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(out), `"sessionExpiry":"12h0m0s"`) || !strings.Contains(string(out), `"qos":0`) {
		t.Errorf("encoded %s", out)
	}
	if err := json.Unmarshal([]byte(`{"sessionExpiry":12}`), &cfg); err == nil {
		t.Error("a number as sessionExpiry was accepted")
	}
	if d := (SourceConfig{}); d.qos() != 1 || d.sessionExpiry() != 86400 || d.maxInflight() != DefaultMaxInflight {
		t.Errorf("defaults: qos %d, session expiry %d, max inflight %d", d.qos(), d.sessionExpiry(), d.maxInflight())
	}
}

func TestNewSourceClientID(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	s, err := NewSource(SourceConfig{URL: "tcp://h", Topics: []string{"a"}}, "thermostats", logger)
	if err != nil {
		t.Fatal(err)
	}
	if s.ClientID() != "twinflow-thermostats" || s.cfg.Version != 5 {
		t.Errorf("client id %q, version %d; want twinflow-thermostats, 5", s.ClientID(), s.cfg.Version)
	}
	s, err = NewSource(SourceConfig{URL: "tcp://h", Topics: []string{"a"}, ClientID: "mine"}, "thermostats", logger)
	if err != nil || s.ClientID() != "mine" {
		t.Errorf("client id %q, %v; want the configured one", s.ClientID(), err)
	}
	if _, err := NewSource(SourceConfig{URL: "tcp://h", Topics: []string{"a"}}, strings.Repeat("n", 70000), logger); err == nil {
		t.Error("a name too long for a client id was accepted")
	}
	if _, err := NewSource(SourceConfig{URL: "tcp://h"}, "x", logger); err == nil || !strings.Contains(err.Error(), "topics") {
		t.Errorf("NewSource without topics = %v", err)
	}
}

func TestParseBrokerURL(t *testing.T) {
	for in, want := range map[string]string{
		"tcp://h":            "tcp://h:1883",
		"mqtts://h:8884":     "tls://h:8884",
		"ws://h/mqtt":        "ws://h:80/mqtt",
		"wss://u:p@h:8443/x": "wss://u:p@h:8443/x",
	} {
		u, err := parseBrokerURL(in, true)
		if err != nil || u.String() != want {
			t.Errorf("parseBrokerURL(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	for _, in := range []string{"http://h", "ws://", "tcp:///x"} {
		if u, err := parseBrokerURL(in, true); err == nil {
			t.Errorf("parseBrokerURL(%q) = %v, want an error", in, u)
		}
	}
	if _, err := brokerURL("ws://h"); err == nil {
		t.Error("the endpoint URL accepted ws://")
	}
}

func TestMatchTopic(t *testing.T) {
	tests := []struct {
		filter, topic string
		want          bool
	}{
		{"a/b", "a/b", true},
		{"a/b", "a/c", false},
		{"a/+", "a/b", true},
		{"a/+", "a/", true},
		{"a/+", "a/b/c", false},
		{"a/+", "a", false},
		{"a/#", "a", true},
		{"a/#", "a/b/c", true},
		{"a/#", "ab", false},
		{"#", "a/b", true},
		{"#", "$SYS/x", false},
		{"+/x", "$SYS/x", false},
		{"$SYS/#", "$SYS/x", true},
		{"+/+", "/x", true},
		{"devices/+/messages/events/#", "devices/d1/messages/events/", true},
		{"devices/+/messages/events/#", "devices/d1/messages/events", true},
		{"devices/+/messages/events/#", "devices/d1/messages/events/%24.mid=1&a=b", true},
		{"devices/+/messages/events/#", "devices/d1/twin/res", false},
	}
	for _, tt := range tests {
		if got := matchTopic(tt.filter, tt.topic); got != tt.want {
			t.Errorf("matchTopic(%q, %q) = %v, want %v", tt.filter, tt.topic, got, tt.want)
		}
	}
}

func TestIoTHubEvents(t *testing.T) {
	tests := []struct {
		topic, events, bag string
		ok                 bool
	}{
		{"devices/d1/messages/events/", "devices/d1/messages/events/", "", true},
		{"devices/d1/messages/events", "devices/d1/messages/events/", "", true},
		{"devices/d1/messages/events/%24.mid=7&k=v", "devices/d1/messages/events/", "%24.mid=7&k=v", true},
		{"devices/d1/messages/devicebound/", "", "", false},
		{"devices//messages/events/", "", "", false},
		{"plant/devices/d1/messages/events/", "", "", false},
	}
	for _, tt := range tests {
		events, bag, ok := iotHubEvents(tt.topic)
		if events != tt.events || bag != tt.bag || ok != tt.ok {
			t.Errorf("iotHubEvents(%q) = %q, %q, %v; want %q, %q, %v", tt.topic, events, bag, ok, tt.events, tt.bag, tt.ok)
		}
	}
}
