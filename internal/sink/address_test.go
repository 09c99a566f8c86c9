package sink

import "testing"

func TestServerAddress(t *testing.T) {
	for _, tc := range []struct{ url, port, want string }{
		{"tcp://127.0.0.1:1883", "1883", "localhost:1883"},
		{"mqtt://LOCALHOST", "1883", "localhost:1883"},
		{"amqp://guest:guest@[::1]:5672/", "5672", "localhost:5672"},
		{"nats://Broker.example.com", "4222", "broker.example.com:4222"},
		{"broker:9092", "9092", "broker:9092"},
		{"broker", "9092", "broker:9092"},
		{"127.0.0.2:9093", "9092", "localhost:9093"},
		{"tcp://", "1883", ""},
		{"%zz://x", "1", ""},
	} {
		if got := ServerAddress(tc.url, tc.port); got != tc.want {
			t.Errorf("ServerAddress(%q, %q) = %q, want %q", tc.url, tc.port, got, tc.want)
		}
	}
	if !SameServer([]string{"a:1", "b:2"}, []string{"c:3", "b:2"}) || SameServer([]string{"a:1"}, []string{"a:2"}) || SameServer([]string{""}, []string{""}) {
		t.Error("SameServer compares wrongly")
	}
}

func TestReaches(t *testing.T) {
	type lang struct {
		sep       byte
		one, rest string
	}
	mqtt, nats, queue := lang{'/', "+", "#"}, lang{'.', "*", ">"}, lang{'.', "", ""}
	for _, tc := range []struct {
		template, filter string
		lang             lang
		want             bool
	}{
		{"twinflow/{type}/{twinId}", "twinflow/#", mqtt, true},
		{"twinflow/{type}/{twinId}", "#", mqtt, true},
		{"twinflow/{type}/{twinId}", "twinflow/+/room1", mqtt, true},
		{"twinflow/{type}/{twinId}", "+/x", mqtt, true},
		{"twinflow/{type}/{twinId}", "devices/+/telemetry", mqtt, false},
		{"twinflow/{type}/{twinId}", "twinflow", mqtt, false},
		{"twin-{twinId}", "twin-7/x", mqtt, true},
		{"twin-{twinId}", "twins", mqtt, false},
		{"fixed/topic", "fixed/topic", mqtt, true},
		{"fixed/topic", "fixed/+", mqtt, true},
		{"fixed/topic", "fixed/#", mqtt, true},
		{"fixed/topic", "fixed/topic/#", mqtt, true},
		{"fixed/topic", "fixed", mqtt, false},
		{"fixed/topic", "fixed/topic/more", mqtt, false},
		{"fixed/topic", "fixed/other", mqtt, false},
		{"twinflow.{type}.{twinId}", "twinflow.>", nats, true},
		{"twinflow.{type}.{twinId}", "twinflow.*.room1", nats, true},
		{"twinflow.{type}.{twinId}", "commands.>", nats, false},
		{"events", "events", nats, true},
		{"events", "events.*", nats, false},
		{"q-{twinId}", "q-room", queue, true},
		{"q-{twinId}", "p-room", queue, false},
		{"orders", "orders", queue, true},
		{"orders", "orders2", queue, false},
	} {
		tmpl, err := ParseTemplate(tc.template)
		if err != nil {
			t.Fatal(err)
		}
		if got := tmpl.Reaches(tc.filter, tc.lang.sep, tc.lang.one, tc.lang.rest); got != tc.want {
			t.Errorf("%q reaches %q: %v, want %v", tc.template, tc.filter, got, tc.want)
		}
	}
}
