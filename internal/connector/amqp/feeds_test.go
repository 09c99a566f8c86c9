package amqp

import "testing"

func TestFeeds(t *testing.T) {
	const url = "amqp://guest:guest@127.0.0.1:5672/"
	for _, tc := range []struct {
		name string
		sink SinkConfig
		src  any
		want bool
	}{
		{"default exchange to the queue read", SinkConfig{URL: url, RoutingKey: "events"}, SourceConfig{URL: "amqp://localhost", Queue: "events"}, true},
		{"default exchange, a key template", SinkConfig{URL: url, RoutingKey: "q-{twinId}"}, SourceConfig{URL: url, Queue: "q-room"}, true},
		{"default exchange to another queue", SinkConfig{URL: url, RoutingKey: "events"}, SourceConfig{URL: url, Queue: "commands"}, false},
		{"exchange the queue is bound to", SinkConfig{URL: url, Exchange: "amq.topic", RoutingKey: "twins.{type}"},
			SourceConfig{URL: url, Queue: "q", Exchange: "amq.topic", BindingKeys: []string{"devices.#", "twins.*"}}, true},
		{"exchange, bindings the key cannot match", SinkConfig{URL: url, Exchange: "amq.topic", RoutingKey: "twins.{type}"},
			SourceConfig{URL: url, Queue: "q", Exchange: "amq.topic", BindingKeys: []string{"devices.#"}}, false},
		{"exchange, empty binding key", SinkConfig{URL: url, Exchange: "fan"}, SourceConfig{URL: url, Queue: "q", Exchange: "fan"}, true},
		{"another exchange", SinkConfig{URL: url, Exchange: "a"}, SourceConfig{URL: url, Queue: "q", Exchange: "b"}, false},
		{"a queue bound outside the configuration", SinkConfig{URL: url, Exchange: "a"}, SourceConfig{URL: url, Queue: "q"}, false},
		{"another virtual host", SinkConfig{URL: url, RoutingKey: "events"}, SourceConfig{URL: "amqp://127.0.0.1:5672/other", Queue: "events"}, false},
		{"AMQP 1.0 queue address, 0-9-1 source", SinkConfig{URL: url, Protocol: Protocol10, Address: "/queues/events"}, SourceConfig{URL: url, Queue: "events"}, true},
		{"AMQP 1.0 both, RabbitMQ 3 forms", SinkConfig{URL: url, Protocol: Protocol10, Address: "/queue/events"},
			SourceConfig{URL: url, Protocol: Protocol10, Address: "/amq/queue/events"}, true},
		{"AMQP 1.0 exchange address", SinkConfig{URL: url, Protocol: Protocol10, Address: "/exchanges/amq.topic/twins.x"},
			SourceConfig{URL: url, Queue: "q", Exchange: "amq.topic", BindingKeys: []string{"twins.*"}}, true},
		{"Service Bus topic and its subscription", SinkConfig{URL: "amqps://k:v@ns.servicebus.windows.net", Protocol: Protocol10, Address: "twins"},
			SourceConfig{URL: "amqps://k:v@NS.servicebus.windows.net/", Protocol: Protocol10, Address: "Twins/Subscriptions/tf"}, true},
		{"Service Bus, another topic", SinkConfig{URL: "amqps://ns.servicebus.windows.net", Protocol: Protocol10, Address: "twins"},
			SourceConfig{URL: "amqps://ns.servicebus.windows.net", Protocol: Protocol10, Address: "commands"}, false},
		{"another kind of source", SinkConfig{URL: url, RoutingKey: "events"}, 1, false},
	} {
		if got := tc.sink.Feeds(tc.src); got != tc.want {
			t.Errorf("%s: Feeds = %v, want %v", tc.name, got, tc.want)
		}
	}
}
