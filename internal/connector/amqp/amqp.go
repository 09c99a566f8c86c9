// Package amqp delivers events over AMQP in Service Bus' role: AMQP 0-9-1 to RabbitMQ with
// publisher confirms, or AMQP 1.0 (Azure Service Bus, ActiveMQ Artemis, RabbitMQ's AMQP 1.0
// plugin) with settled-on-accept transfers. Both use the CloudEvents AMQP binding's binary
// mode as ADT sends to Service Bus: the attributes as "cloudEvents:<name>" application
// properties (AMQP 0-9-1 headers), the content type as the message's content-type, the id
// as its message-id, and data as the body.
package amqp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/event/cloudevents"
	"github.com/twinflow/twinflow/internal/sink"
)

// Protocol versions.
const (
	Protocol091 = "0-9-1"
	Protocol10  = "1.0"
)

// PropertyPrefix prefixes each CloudEvents attribute's application property name.
const PropertyPrefix = "cloudEvents:"

// SinkConfig is the settings of an AMQP endpoint.
type SinkConfig struct {
	// URL is amqp://user:password@host:port/vhost, or amqps:// for TLS. The user and
	// password log in with SASL PLAIN; for Azure Service Bus over AMQP 1.0 they are a shared
	// access policy's name and its URL-escaped key: amqps://<policy>:<key>@<ns>.servicebus.windows.net.
	URL string `json:"url"`
	// Protocol is Protocol091 (default) or Protocol10.
	Protocol string `json:"protocol,omitempty"`
	// Exchange is the AMQP 0-9-1 exchange; empty means the default exchange, where the
	// routing key names a queue.
	Exchange string `json:"exchange,omitempty"`
	// RoutingKey is the AMQP 0-9-1 routing key template (see sink.Template).
	RoutingKey string `json:"routingKey,omitempty"`
	// Address is the AMQP 1.0 target, e.g. a Service Bus topic or queue name, or
	// "/queues/<name>" or "/exchanges/<name>/<key>" for RabbitMQ 4, "/queue/<name>" or
	// "/exchange/<name>/<key>" for RabbitMQ 3's plugin.
	Address string `json:"address,omitempty"`
	// TLS configures amqps connections.
	TLS sink.TLS `json:"tls,omitzero"`
}

func (c SinkConfig) protocol() string {
	if c.Protocol == "" {
		return Protocol091
	}
	return c.Protocol
}

// Validate reports every problem with c, each naming its field.
func (c SinkConfig) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("url: required"))
	} else if u, err := url.Parse(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	} else if (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
		errs = append(errs, fmt.Errorf("url: %q is not an amqp:// or amqps:// URL", redactURL(c.URL)))
	}
	switch c.protocol() {
	case Protocol091:
		if _, err := sink.ParseTemplate(c.RoutingKey); err != nil {
			errs = append(errs, fmt.Errorf("routingKey: %w", err))
		}
		if c.Exchange == "" && c.RoutingKey == "" {
			errs = append(errs, errors.New("routingKey: required with the default exchange (it names the queue)"))
		}
		if c.Address != "" {
			errs = append(errs, errors.New("address: only for protocol 1.0; use exchange and routingKey"))
		}
	case Protocol10:
		if c.Address == "" {
			errs = append(errs, errors.New("address: required for protocol 1.0"))
		}
		if c.Exchange != "" || c.RoutingKey != "" {
			errs = append(errs, errors.New("exchange, routingKey: only for protocol 0-9-1; use address"))
		}
	default:
		errs = append(errs, fmt.Errorf("protocol: %q is not one of 0-9-1, 1.0", c.Protocol))
	}
	if err := c.TLS.Validate("tls"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Redacted returns c with the URL's password blanked.
func (c SinkConfig) Redacted() SinkConfig {
	c.URL = redactURL(c.URL)
	return c
}

func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	return u.Redacted()
}

// publisher is one protocol's connection. Both reconnect lazily: after a failure they drop
// the connection and the next publish dials again.
type publisher interface {
	// publish hands events to the broker and returns a function waiting until the broker
	// accepted every one, in order, which may run concurrently with the next publish.
	publish(ctx context.Context, events []event.Event) (wait func(context.Context) error, err error)
	close() error
}

// Sink publishes events over AMQP. It implements sink.Publisher.
type Sink struct {
	mu     sync.Mutex // held by Send, Publish and Close
	pub    publisher
	closed bool
}

var _ sink.Publisher = (*Sink)(nil)

// NewSink validates cfg and returns a sink. It connects on the first Send.
func NewSink(cfg SinkConfig, logger *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("amqp endpoint: %w", err)
	}
	s := &Sink{}
	var err error
	if cfg.protocol() == Protocol10 {
		s.pub, err = newPublisher10(cfg, logger)
	} else {
		s.pub, err = newPublisher091(cfg, logger)
	}
	if err != nil {
		return nil, fmt.Errorf("amqp endpoint: %w", err)
	}
	return s, nil
}

// Send publishes events and waits until the broker confirmed every one, in order.
func (s *Sink) Send(ctx context.Context, events []event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	wait, err := s.publish(ctx, events, "send")
	if err != nil {
		return err
	}
	return wait(ctx)
}

// Publish implements sink.Publisher: it publishes events on the connection every earlier
// batch went out on, so the broker takes them in order, and returns an Ack waiting for the
// broker's confirmations (AMQP 0-9-1) or settlements (AMQP 1.0) of every one. A negative
// confirmation or a rejection fails the Ack as it fails Send. A failure that loses the
// channel or link, or an Ack whose context ends, drops the connection, failing the batches
// published after it too; the next Send or Publish dials again.
func (s *Sink) Publish(ctx context.Context, events []event.Event) (sink.Ack, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	wait, err := s.publish(ctx, events, "publish")
	if err != nil {
		return nil, err
	}
	return sink.Ack(wait), nil
}

// publish checks the sink's state and hands events to the protocol; op names the caller in
// errors.
func (s *Sink) publish(ctx context.Context, events []event.Event, op string) (func(context.Context) error, error) {
	if s.closed {
		return nil, fmt.Errorf("amqp: %s on a closed sink", op)
	}
	if len(events) == 0 {
		return func(context.Context) error { return nil }, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return s.pub.publish(ctx, events)
}

// Close closes the connection; Send after Close fails.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.pub.close()
}

// properties returns e's application properties.
func properties(e *event.Event) map[string]any {
	attrs := cloudevents.Attributes(e)
	p := make(map[string]any, len(attrs))
	for _, a := range attrs {
		p[PropertyPrefix+a.Name] = a.Value
	}
	return p
}

// FromProperties rebuilds an event from a message's application properties, content type
// and body.
func FromProperties(props map[string]any, contentType string, body []byte) (event.Event, error) {
	return cloudevents.FromAttributes(func(name string) string {
		v, _ := props[PropertyPrefix+name].(string)
		return v
	}, contentType, body)
}
