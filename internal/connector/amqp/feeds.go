package amqp

import (
	"net/url"
	"strings"

	"github.com/twinflow/twinflow/internal/sink"
)

// destination is where a message goes, or comes from, on one broker: a queue, an exchange
// with a routing key (a template) or binding keys, or another entity (a Service Bus topic or
// queue), by name.
type destination struct {
	queue    string
	exchange string
	entity   string
}

// sinkDestination returns where the endpoint c sends and its routing key template (a queue's
// name, over the default exchange).
func (c SinkConfig) sinkDestination() (destination, string) {
	if c.protocol() == Protocol091 {
		if c.Exchange == "" {
			return destination{}, c.RoutingKey
		}
		return destination{exchange: c.Exchange}, c.RoutingKey
	}
	for _, p := range []string{"/queues/", "/queue/"} {
		if q, ok := strings.CutPrefix(c.Address, p); ok {
			return destination{queue: q}, ""
		}
	}
	for _, p := range []string{"/exchanges/", "/exchange/"} {
		if rest, ok := strings.CutPrefix(c.Address, p); ok {
			e, key, _ := strings.Cut(rest, "/")
			return destination{exchange: e}, key
		}
	}
	return destination{entity: c.Address}, ""
}

// sourceDestination returns what the source c consumes.
func (c SourceConfig) sourceDestination() destination {
	if c.protocol() == Protocol091 {
		return destination{queue: c.Queue, exchange: c.Exchange}
	}
	for _, p := range []string{"/queues/", "/amq/queue/", "/queue/"} {
		if q, ok := strings.CutPrefix(c.Address, p); ok {
			return destination{queue: q}
		}
	}
	topic, _, _ := strings.Cut(c.Address, "/Subscriptions/")
	return destination{entity: topic}
}

// Feeds reports whether the endpoint c sends where source, when it is an AMQP SourceConfig,
// consumes, on the same broker (host, port and virtual host): a queue of the name c's routing
// key over the default exchange (or c's AMQP 1.0 queue address) can take, the exchange the
// source binds its queue to with a binding key c's routing key can match (any key, for an
// empty binding key: a fanout exchange ignores it), or the Service Bus entity the source
// reads (a topic, for a subscription of it). A queue bound outside twinflow's configuration
// cannot be told from here; the hop limit stops a loop through it.
func (c SinkConfig) Feeds(source any) bool {
	src, ok := source.(SourceConfig)
	if !ok || brokerKey(c.URL) == "" || brokerKey(c.URL) != brokerKey(src.URL) {
		return false
	}
	to, key := c.sinkDestination()
	from := src.sourceDestination()
	tmpl, err := sink.ParseTemplate(key)
	if err != nil {
		return false
	}
	switch {
	case to.entity != "" || from.entity != "":
		return to.entity != "" && strings.EqualFold(to.entity, from.entity)
	case to.exchange == "" && to.queue != "":
		return to.queue == from.queue
	case to.exchange == "":
		// The default exchange routes by queue name.
		return from.queue != "" && tmpl.Reaches(from.queue, '.', "", "")
	case to.exchange != from.exchange:
		return false
	}
	keys := src.BindingKeys
	if len(keys) == 0 {
		keys = []string{""}
	}
	for _, k := range keys {
		if k == "" || tmpl.Reaches(k, '.', "*", "#") {
			return true
		}
	}
	return false
}

// brokerKey returns the normalised host, port and virtual host of an AMQP URL, "" when it does
// not parse.
func brokerKey(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return ""
	}
	port := "5672"
	if u.Scheme == "amqps" {
		port = "5671"
	}
	vhost := strings.TrimPrefix(u.Path, "/")
	if vhost == "" {
		vhost = "/" // the default virtual host
	}
	return sink.ServerAddress(u.Host, port) + "/" + vhost
}
