package amqp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/sink"
)

// DefaultPrefetch is the default of SourceConfig.Prefetch and Credit: the messages a broker
// sends ahead of the Handler.
const DefaultPrefetch = 256

// SourceConfig is the settings of an AMQP source: a queue of an AMQP 0-9-1 broker
// (RabbitMQ), or an address of an AMQP 1.0 broker (Azure Service Bus queues and topic
// subscriptions, ActiveMQ Artemis, RabbitMQ's AMQP 1.0 plugin).
type SourceConfig struct {
	// URL is amqp://user:password@host:port/vhost, or amqps:// for TLS. For Azure Service Bus
	// over AMQP 1.0 the user and password are a shared access policy's name and its
	// URL-escaped key: amqps://<policy>:<key>@<namespace>.servicebus.windows.net.
	URL string `json:"url"`
	// Protocol is Protocol091 (default) or Protocol10.
	Protocol string `json:"protocol,omitempty"`
	// Queue is the AMQP 0-9-1 queue consumed. It must exist, unless Exchange is set.
	Queue string `json:"queue,omitempty"`
	// Exchange, if set, is an AMQP 0-9-1 exchange the source binds Queue to with each of
	// BindingKeys, declaring Queue (durable) first if it does not exist. The exchange must
	// exist.
	Exchange string `json:"exchange,omitempty"`
	// BindingKeys are the routing keys (topic exchanges: patterns) of Queue's bindings to
	// Exchange; empty means one binding with the empty key, which fanout and headers
	// exchanges ignore.
	BindingKeys []string `json:"bindingKeys,omitempty"`
	// Prefetch bounds the AMQP 0-9-1 messages delivered and not yet settled; zero means
	// DefaultPrefetch.
	Prefetch int `json:"prefetch,omitempty"`
	// Address is the AMQP 1.0 source: a Service Bus queue, or "<topic>/Subscriptions/<name>";
	// "/queues/<name>" for RabbitMQ 4, "/amq/queue/<name>" for RabbitMQ 3's plugin.
	Address string `json:"address,omitempty"`
	// Credit is the AMQP 1.0 link credit the source grants at a time: the broker delivers
	// that many messages, and the source grants as many again once they arrived; zero means
	// DefaultPrefetch.
	Credit int `json:"credit,omitempty"`
	// TLS configures amqps connections.
	TLS sink.TLS `json:"tls,omitzero"`

	// policy checks every connection (see WithPolicy); nil allows any.
	policy *netpolicy.Policy
}

// WithPolicy returns c with every connection checked against p on the address it dials, and
// the TLS files read only where p allows.
func (c SourceConfig) WithPolicy(p *netpolicy.Policy) SourceConfig {
	c.policy = p
	return c
}

// Reach returns the broker c connects to and the files it reads.
func (c SourceConfig) Reach() netpolicy.Reach { return reach(c.URL, c.TLS) }

func (c SourceConfig) protocol() string {
	if c.Protocol == "" {
		return Protocol091
	}
	return c.Protocol
}

// Validate reports every problem with c, each naming its field.
func (c SourceConfig) Validate() error {
	errs := validURL(c.URL)
	switch c.protocol() {
	case Protocol091:
		if c.Queue == "" {
			errs = append(errs, errors.New("queue: required for protocol 0-9-1"))
		}
		if len(c.BindingKeys) > 0 && c.Exchange == "" {
			errs = append(errs, errors.New("bindingKeys: only with an exchange"))
		}
		if c.Address != "" || c.Credit != 0 {
			errs = append(errs, errors.New("address, credit: only for protocol 1.0; use queue and prefetch"))
		}
	case Protocol10:
		if c.Address == "" {
			errs = append(errs, errors.New("address: required for protocol 1.0"))
		}
		if c.Queue != "" || c.Exchange != "" || len(c.BindingKeys) > 0 || c.Prefetch != 0 {
			errs = append(errs, errors.New("queue, exchange, bindingKeys, prefetch: only for protocol 0-9-1; use address and credit"))
		}
	default:
		errs = append(errs, fmt.Errorf("protocol: %q is not one of 0-9-1, 1.0", c.Protocol))
	}
	if c.Prefetch < 0 || c.Prefetch > 65535 {
		errs = append(errs, fmt.Errorf("prefetch: %d is not within 0 and 65535", c.Prefetch))
	}
	if c.Credit < 0 {
		errs = append(errs, fmt.Errorf("credit: %d is negative", c.Credit))
	}
	if err := c.TLS.Validate("tls"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Redacted returns c with the URL's password and query string blanked.
func (c SourceConfig) Redacted() SourceConfig {
	c.URL = redactURL(c.URL)
	return c
}

// ConsumerName returns the consumer tag (AMQP 0-9-1) and container id (1.0) of the twinflow
// source called name.
func ConsumerName(name string) string { return "twinflow-" + name }

// Source consumes an AMQP queue (0-9-1) or address (1.0). It implements ingress.Source.
//
// Each message is acknowledged (basic.ack; accepted) once its Settle is called with nil; one
// settled with an error is given back after ingress.RedeliveryDelay (basic.nack with requeue;
// released). When the source stops, it gives back at once every message not acknowledged,
// and those delivered but not handed over yet, so the broker delivers them again in order.
// The Message's ID is the message-id property, its Headers the application properties
// (AMQP 0-9-1 headers) as strings and the content type as "content-type", its Time the
// creation time (timestamp) property, else the Service Bus enqueued time, else when it
// arrived. Its Order is the queue or address; its Topic the routing key (0-9-1) or address.
//
// The source connects again with backoff when the connection or channel is lost, reporting
// Reconnecting; the broker then delivers every unacknowledged message again. A refused login,
// a queue or address that does not exist, or refused access fail the source.
type Source struct {
	cfg    SourceConfig
	name   string
	logger *slog.Logger
	// session runs one connection of the protocol: connect, hand over until ctx ends (nil)
	// or the connection fails, settle or give back what is left.
	session func(ctx context.Context, h ingress.Handler, running func()) error
}

var _ ingress.Source = (*Source)(nil)

// NewSource validates cfg and returns the source of the twinflow source called name. It does
// not connect: Run does.
func NewSource(cfg SourceConfig, name string, logger *slog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("amqp source: %w", err)
	}
	s := &Source{cfg: cfg, name: ConsumerName(name), logger: logger.With("source", name)}
	var err error
	if cfg.protocol() == Protocol10 {
		s.session, err = s.session10()
	} else {
		s.session, err = s.session091()
	}
	if err != nil {
		return nil, fmt.Errorf("amqp source: %w", err)
	}
	return s, nil
}

// Run implements ingress.Source.
func (s *Source) Run(ctx context.Context, h ingress.Handler) error {
	st := &ingress.StateReporter{Handler: h}
	st.Set(ingress.Starting, nil)
	var backoff ingress.Backoff
	for {
		err := s.session(ctx, h, func() {
			st.Set(ingress.Running, nil)
			backoff.Reset()
		})
		if ctx.Err() != nil {
			st.Set(ingress.Stopped, nil)
			return nil
		}
		if sink.IsPermanent(err) {
			err = fmt.Errorf("amqp source: %w", answer(err))
			st.Set(ingress.Failed, err)
			return err
		}
		s.logger.Warn("amqp source: connecting again after a failure", "err", err)
		st.Set(ingress.Reconnecting, answer(err))
		if !backoff.Wait(ctx) {
			st.Set(ingress.Stopped, nil)
			return nil
		}
	}
}

// settleTimeout bounds the sending of one settlement, which must not hold the Handler.
const settleTimeout = 5 * time.Second

// propertyString returns an application property's value as a message header: strings and
// binary as they are, times in RFC 3339, everything else as JSON.
func propertyString(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case []byte:
		return string(v)
	case time.Time:
		return v.UTC().Format(time.RFC3339Nano)
	case fmt.Stringer:
		return v.String()
	}
	if b, err := json.Marshal(v); err == nil {
		return string(b)
	}
	return fmt.Sprint(v)
}

// headers returns the headers of a message with application properties props and content
// type ct: nil when there are none.
func headers(props map[string]any, ct string) map[string]string {
	if len(props) == 0 && ct == "" {
		return nil
	}
	h := make(map[string]string, len(props)+1)
	for k, v := range props {
		h[k] = propertyString(v)
	}
	if ct != "" {
		h["content-type"] = ct
	}
	return h
}

// idString returns a message-id as a Message ID: AMQP 1.0 allows strings, unsigned
// integers, UUIDs and binary.
func idString(id any) string {
	switch id := id.(type) {
	case nil:
		return ""
	case string:
		return id
	case []byte:
		return string(id)
	case fmt.Stringer:
		return id.String()
	}
	return strings.TrimSpace(fmt.Sprint(id))
}
