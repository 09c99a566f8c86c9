package nats

import "testing"

func TestFeeds(t *testing.T) {
	const url = "nats://127.0.0.1:4222"
	for _, tc := range []struct {
		name string
		sink SinkConfig
		src  any
		want bool
	}{
		{"default subject read", SinkConfig{URL: url}, SourceConfig{URL: "nats://localhost", Stream: "s", Subjects: []string{"twinflow.>"}}, true},
		{"a server of the list", SinkConfig{URL: "nats://a:4222,nats://b:4222"}, SourceConfig{URL: "nats://b", Stream: "s", Subjects: []string{"twinflow.*.room1"}}, true},
		{"other subjects", SinkConfig{URL: url}, SourceConfig{URL: url, Stream: "s", Subjects: []string{"commands.>"}}, false},
		{"the whole stream the sink names", SinkConfig{URL: url, Stream: "s"}, SourceConfig{URL: url, Stream: "s"}, true},
		{"the whole of another stream", SinkConfig{URL: url, Stream: "s"}, SourceConfig{URL: url, Stream: "t"}, false},
		{"a whole stream the sink does not name", SinkConfig{URL: url}, SourceConfig{URL: url, Stream: "s"}, false},
		{"other server", SinkConfig{URL: url}, SourceConfig{URL: "nats://127.0.0.1:4223", Stream: "s", Subjects: []string{">"}}, false},
		{"another kind of source", SinkConfig{URL: url}, nil, false},
	} {
		if got := tc.sink.Feeds(tc.src); got != tc.want {
			t.Errorf("%s: Feeds = %v, want %v", tc.name, got, tc.want)
		}
	}
}
