// Package amqp delivers events over AMQP in Service Bus' role: AMQP 0-9-1 to RabbitMQ with
// publisher confirms, or AMQP 1.0 (Azure Service Bus, ActiveMQ Artemis, RabbitMQ's AMQP 1.0
// plugin) with settled-on-accept transfers. Both use the CloudEvents AMQP binding's binary
// mode as ADT sends to Service Bus: the attributes as "cloudEvents:<name>" application
// properties (AMQP 0-9-1 headers), the content type as the message's content-type, the id
// as its message-id, and data as the body.
package amqp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strings"
	"sync"
	"time"

	amqp10 "github.com/Azure/go-amqp"
	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/event/cloudevents"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
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

	// policy checks every connection (see WithPolicy); nil allows any.
	policy *netpolicy.Policy
}

// WithPolicy returns c with every connection checked against p on the address it dials, and
// the TLS files read only where p allows.
func (c SinkConfig) WithPolicy(p *netpolicy.Policy) SinkConfig {
	c.policy = p
	return c
}

// Reach returns the broker c connects to and the files it reads.
func (c SinkConfig) Reach() netpolicy.Reach { return reach(c.URL, c.TLS) }

// reach returns the broker of rawURL, an amqp:// or amqps:// URL, and the files of t.
func reach(rawURL string, t sink.TLS) netpolicy.Reach {
	var r netpolicy.Reach
	if u, err := url.Parse(rawURL); err == nil && u.Hostname() != "" {
		port := u.Port()
		if port == "" {
			port = "5672"
			if u.Scheme == "amqps" {
				port = "5671"
			}
		}
		r.Addrs = []netpolicy.Named{{Field: "url", Value: net.JoinHostPort(u.Hostname(), port)}}
	}
	r.Files = t.Files("tls")
	return r
}

// validURL reports every problem with rawURL as an amqp:// or amqps:// URL. The query
// parameters by which AMQP 0-9-1 URIs name TLS files (certfile, keyfile, cacertfile) are
// refused: TLS files are set with tls, where the egress policy checks them.
func validURL(rawURL string) []error {
	if rawURL == "" {
		return []error{errors.New("url: required")}
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return []error{errors.New("url: not a URL")}
	}
	var errs []error
	if (u.Scheme != "amqp" && u.Scheme != "amqps") || u.Host == "" {
		errs = append(errs, fmt.Errorf("url: %q is not an amqp:// or amqps:// URL", redactURL(rawURL)))
	}
	for k := range u.Query() {
		switch strings.ToLower(k) {
		case "certfile", "keyfile", "cacertfile":
			errs = append(errs, fmt.Errorf("url: the query parameter %s is not supported; set the TLS files with tls", k))
		}
	}
	return errs
}

func (c SinkConfig) protocol() string {
	if c.Protocol == "" {
		return Protocol091
	}
	return c.Protocol
}

// Validate reports every problem with c, each naming its field.
func (c SinkConfig) Validate() error {
	errs := validURL(c.URL)
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

// Redacted returns c with the URL's password and query string blanked.
func (c SinkConfig) Redacted() SinkConfig {
	c.URL = redactURL(c.URL)
	return c
}

func redactURL(s string) string { return redact.URL(s) }

// dialTimeout bounds connecting to the broker, the TLS and AMQP handshakes included.
const dialTimeout = 10 * time.Second

// tlsConfig returns the TLS configuration of a connection to rawURL: t's for an amqps URL
// (the system roots when t is zero), nil otherwise.
func tlsConfig(rawURL string, t sink.TLS, p *netpolicy.Policy) (*tls.Config, error) {
	if u, err := url.Parse(rawURL); err != nil || u.Scheme != "amqps" {
		return nil, nil
	}
	return t.Config(p)
}

// dial091 returns the Dial hook of an AMQP 0-9-1 connection: every connection checked
// against p on the address it dials, with a deadline for the TLS and AMQP handshakes as
// amqp091.DefaultDial sets it.
func dial091(p *netpolicy.Policy) func(network, addr string) (net.Conn, error) {
	return func(network, addr string) (net.Conn, error) {
		conn, err := p.Dialer(dialTimeout).Dial(network, addr)
		if err != nil {
			return nil, err
		}
		if err := conn.SetDeadline(time.Now().Add(dialTimeout)); err != nil {
			conn.Close()
			return nil, err
		}
		return conn, nil
	}
}

// dial10 opens an AMQP 1.0 connection to rawURL as amqp10.Dial does (SASL PLAIN with the
// URL's user and password, TLS with tc for amqps), over a connection checked against p on
// the address it dials.
func dial10(ctx context.Context, rawURL string, opts amqp10.ConnOptions, tc *tls.Config, p *netpolicy.Policy) (*amqp10.Conn, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	host, port := u.Hostname(), u.Port()
	if port == "" {
		port = "5672"
		if u.Scheme == "amqps" {
			port = "5671"
		}
	}
	if u.User != nil {
		pass, _ := u.User.Password()
		opts.SASLType = amqp10.SASLTypePlain(u.User.Username(), pass)
	}
	if opts.HostName == "" {
		opts.HostName = host
	}
	opts.TLSConfig = nil
	var conn net.Conn
	d := p.Dialer(0)
	if u.Scheme == "amqps" {
		if tc == nil {
			tc = &tls.Config{MinVersion: tls.VersionTLS12}
		}
		if tc.ServerName == "" && !tc.InsecureSkipVerify {
			tc = tc.Clone()
			tc.ServerName = host
		}
		conn, err = (&tls.Dialer{NetDialer: d, Config: tc}).DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	} else {
		conn, err = d.DialContext(ctx, "tcp", net.JoinHostPort(host, port))
	}
	if err != nil {
		return nil, err
	}
	c, err := amqp10.NewConn(ctx, conn, &opts)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return c, nil
}

// answer marks err as the broker's answer (redact.Shown) when the broker gave it: an AMQP
// 0-9-1 exception the server raised, a refused login, an AMQP 1.0 error condition or a
// refused SASL outcome. Errors the client library raises on what it cannot parse (a peer
// that does not speak AMQP) are not answers.
func answer(err error) error {
	if err == nil {
		return nil
	}
	if e, ok := errors.AsType[*amqp091.Error](err); ok && (e.Server || e == amqp091.ErrSASL || e == amqp091.ErrCredentials) {
		return redact.Shown(err)
	}
	if _, ok := errors.AsType[*amqp10.Error](err); ok {
		return redact.Shown(err)
	}
	if msg := err.Error(); strings.Contains(msg, "SASL") && strings.Contains(msg, "auth failed") {
		return redact.Shown(err)
	}
	return err
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
