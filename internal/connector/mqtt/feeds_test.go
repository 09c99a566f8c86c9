package mqtt

import "testing"

func TestFeeds(t *testing.T) {
	src := func(url string, topics ...string) SourceConfig { return SourceConfig{URL: url, Topics: topics} }
	for _, tc := range []struct {
		name string
		sink SinkConfig
		src  any
		want bool
	}{
		{"default topic, everything read", SinkConfig{URL: "tcp://127.0.0.1:1883"}, src("mqtt://localhost", "#"), true},
		{"default topic, its prefix read", SinkConfig{URL: "tcp://127.0.0.1:1883"}, src("tcp://127.0.0.1:1883", "twinflow/+/room1"), true},
		{"shared subscription", SinkConfig{URL: "tcp://h:1883", Topic: "plant/{twinId}"}, src("tcp://h", "$share/g/plant/+"), true},
		{"other topics", SinkConfig{URL: "tcp://h:1883"}, src("tcp://h:1883", "devices/+/messages/events/"), false},
		{"other broker", SinkConfig{URL: "tcp://h:1883"}, src("tcp://h:1884", "#"), false},
		{"TLS port", SinkConfig{URL: "ssl://h"}, src("mqtts://h:8883", "#"), true},
		{"literal topic", SinkConfig{URL: "tcp://h", Topic: "out/events"}, src("tcp://h", "out/+", "in/#"), true},
		{"literal topic not read", SinkConfig{URL: "tcp://h", Topic: "out/events"}, src("tcp://h", "out"), false},
		{"another kind of source", SinkConfig{URL: "tcp://h"}, struct{}{}, false},
		{"a URL that does not parse", SinkConfig{URL: "::"}, src("::", "#"), false},
	} {
		if got := tc.sink.Feeds(tc.src); got != tc.want {
			t.Errorf("%s: Feeds = %v, want %v", tc.name, got, tc.want)
		}
	}
}
