// Package mqtt connects twinflow to MQTT brokers, 3.1.1 and 5, in both directions.
//
// The Sink (an endpoint) delivers events with QoS 1, each to a topic expanded from a
// template. MQTT 5 uses the CloudEvents MQTT binding's binary mode: the attributes as user
// properties named as the attributes, the content type as the Content Type property, data as
// the payload. MQTT 3.1.1 has no properties, so it gets the structured mode: the whole event
// as application/cloudevents+json.
//
// The Source (ingress) consumes topic filters with a persistent session and acknowledges
// each message only after it was applied; see Source.
package mqtt

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// DefaultTopic is the topic template when SinkConfig.Topic is empty.
const DefaultTopic = "twinflow/{type}/{twinId}"

// SinkConfig is the settings of an MQTT endpoint.
type SinkConfig struct {
	// URL is the broker: tcp:// or mqtt:// (port 1883 by default), ssl://, tls:// or mqtts://
	// for TLS (8883).
	URL string `json:"url"`
	// Topic is the topic template (see sink.Template), DefaultTopic if empty. '+' and '#'
	// in a placeholder's value become '_'; '/' stays, so {subject} of a relationship event
	// spans three levels.
	Topic string `json:"topic,omitempty"`
	// Version is the protocol version, 5 (default) or 3 (3.1.1).
	Version int `json:"version,omitempty"`
	// ClientID identifies the connection; empty means "twinflow-" and random hex. Two
	// connections with one client id take the broker's session from each other.
	ClientID string `json:"clientId,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// TLS configures ssl://, tls:// and mqtts:// connections.
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
func (c SinkConfig) Reach() netpolicy.Reach { return reach(c.URL, false, c.TLS) }

// reach returns the broker at rawURL and the files of t.
func reach(rawURL string, websockets bool, t sink.TLS) netpolicy.Reach {
	var r netpolicy.Reach
	if u, err := parseBrokerURL(rawURL, websockets); err == nil {
		r.Addrs = []netpolicy.Named{{Field: "url", Value: u.Host}}
	}
	r.Files = t.Files("tls")
	return r
}

func (c SinkConfig) topic() string {
	if c.Topic == "" {
		return DefaultTopic
	}
	return c.Topic
}

// Validate reports every problem with c, each naming its field.
func (c SinkConfig) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("url: required"))
	} else if _, err := brokerURL(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	}
	if _, err := sink.ParseTemplate(c.topic()); err != nil {
		errs = append(errs, fmt.Errorf("topic: %w", err))
	} else if strings.ContainsAny(c.topic(), "+#\x00") {
		errs = append(errs, fmt.Errorf("topic: %q: wildcards cannot be published to", c.topic()))
	}
	switch c.Version {
	case 0, 3, 5:
	default:
		errs = append(errs, fmt.Errorf("version: %d is not 3 or 5", c.Version))
	}
	if len(c.ClientID) > 65535 {
		errs = append(errs, errors.New("clientId: longer than 65535 bytes"))
	}
	if c.Password != "" && c.Username == "" && c.Version == 3 {
		errs = append(errs, errors.New("password: MQTT 3.1.1 needs a username with a password"))
	}
	if err := c.TLS.Validate("tls"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Redacted returns c with the password, and the URL's password and query string, blanked.
func (c SinkConfig) Redacted() SinkConfig {
	if c.Password != "" {
		c.Password = redact.Mask
	}
	c.URL = redact.URL(c.URL)
	return c
}

// brokerURL parses and normalises an endpoint's broker URL: scheme tcp or tls, explicit port.
func brokerURL(s string) (*url.URL, error) {
	return parseBrokerURL(s, false)
}

// parseBrokerURL parses and normalises a broker URL: scheme tcp or tls, or with websockets
// ws or wss (MQTT over WebSocket, path kept), and an explicit port.
func parseBrokerURL(s string, websockets bool) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, err
	}
	port := "1883"
	switch u.Scheme {
	case "tcp", "mqtt":
		u.Scheme = "tcp"
	case "ssl", "tls", "mqtts":
		u.Scheme, port = "tls", "8883"
	case "ws":
		port = "80"
	case "wss":
		port = "443"
	}
	switch {
	case u.Scheme == "tcp" || u.Scheme == "tls":
	case websockets && (u.Scheme == "ws" || u.Scheme == "wss"):
	case websockets:
		return nil, fmt.Errorf("%q: want a tcp://, mqtt://, ssl://, tls://, mqtts://, ws:// or wss:// URL", redact.URL(s))
	default:
		return nil, fmt.Errorf("%q: want a tcp://, mqtt://, ssl://, tls:// or mqtts:// URL", redact.URL(s))
	}
	if u.Hostname() == "" {
		return nil, fmt.Errorf("%q: no host", redact.URL(s))
	}
	if u.Port() == "" {
		u.Host += ":" + port
	}
	return u, nil
}

// publisher is one protocol version's client.
type publisher interface {
	publish(ctx context.Context, topics []string, events []event.Event) error
	close() error
}

// Sink publishes events to an MQTT broker. It implements sink.Sink.
type Sink struct {
	topic sink.Template
	pub   publisher

	mu     sync.Mutex // held by Send and Close
	closed bool
	topics []string
}

var _ sink.Sink = (*Sink)(nil)

// NewSink validates cfg and starts the client. MQTT 5 connects in the background and
// reconnects by itself; MQTT 3.1.1 connects on the first Send and again after a failure.
func NewSink(cfg SinkConfig, logger *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mqtt endpoint: %w", err)
	}
	topic, err := sink.ParseTemplate(cfg.topic())
	if err != nil {
		return nil, fmt.Errorf("mqtt endpoint: topic: %w", err)
	}
	u, err := brokerURL(cfg.URL)
	if err != nil {
		return nil, fmt.Errorf("mqtt endpoint: url: %w", err)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = "twinflow-" + randomHex()
	}
	var tc *tls.Config
	if !cfg.TLS.IsZero() || u.Scheme == "tls" {
		if tc, err = cfg.TLS.Config(cfg.policy); err != nil {
			return nil, fmt.Errorf("mqtt endpoint: %w", err)
		}
	}
	s := &Sink{topic: topic}
	if cfg.Version == 3 {
		s.pub = newPublisher3(cfg, u, tc, cfg.policy, logger)
	} else if s.pub, err = newPublisher5(cfg, u, tc, cfg.policy, logger); err != nil {
		return nil, fmt.Errorf("mqtt endpoint: %w", err)
	}
	return s, nil
}

func randomHex() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails
	return hex.EncodeToString(b)
}

// Send publishes events with QoS 1 and waits for every PUBACK, in order.
func (s *Sink) Send(ctx context.Context, events []event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("mqtt: send on a closed sink")
	}
	if len(events) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.topics = s.topics[:0]
	for i := range events {
		s.topics = append(s.topics, s.topic.Expand(&events[i], escapeLevel))
	}
	return s.pub.publish(ctx, s.topics, events)
}

// Close disconnects; Send after Close fails.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	return s.pub.close()
}

// escapeLevel keeps a placeholder's value from adding wildcards to a topic.
func escapeLevel(v string) string {
	return strings.Map(func(r rune) rune {
		switch r {
		case '+', '#', 0:
			return '_'
		}
		return r
	}, v)
}
