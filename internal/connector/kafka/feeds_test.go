package kafka

import "testing"

func TestFeeds(t *testing.T) {
	for _, tc := range []struct {
		name string
		sink SinkConfig
		src  any
		want bool
	}{
		{"same topic, one seed broker shared", SinkConfig{Brokers: []string{"a:9092", "b:9092"}, Topic: "t"},
			SourceConfig{Brokers: []string{"b"}, Topics: []string{"x", "t"}}, true},
		{"loopback names", SinkConfig{Brokers: []string{"127.0.0.1:9092"}, Topic: "t"}, SourceConfig{Brokers: []string{"localhost:9092"}, Topics: []string{"t"}}, true},
		{"another topic", SinkConfig{Brokers: []string{"a"}, Topic: "t"}, SourceConfig{Brokers: []string{"a"}, Topics: []string{"u"}}, false},
		{"another cluster", SinkConfig{Brokers: []string{"a:9092"}, Topic: "t"}, SourceConfig{Brokers: []string{"a:9093"}, Topics: []string{"t"}}, false},
		{"another kind of source", SinkConfig{Brokers: []string{"a"}, Topic: "t"}, "t", false},
	} {
		if got := tc.sink.Feeds(tc.src); got != tc.want {
			t.Errorf("%s: Feeds = %v, want %v", tc.name, got, tc.want)
		}
	}
}
