package amqp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// publisher091 publishes with AMQP 0-9-1 publisher confirms.
type publisher091 struct {
	cfg        SinkConfig
	routingKey sink.Template
	tls        *tls.Config
	logger     *slog.Logger

	ch *channel091 // nil until the first publish
}

// channel091 is a connection and its channel in confirm mode. It is dropped by closing the
// connection, which a wait may do concurrently with a publish on it.
type channel091 struct {
	conn *amqp091.Connection
	ch   *amqp091.Channel
	// closed is closed once the channel closed, and reason is why if the broker or the
	// library closed it; reason is read only after closed.
	closed chan struct{}
	reason *amqp091.Error
}

func newPublisher091(cfg SinkConfig, logger *slog.Logger) (*publisher091, error) {
	key, err := sink.ParseTemplate(cfg.RoutingKey)
	if err != nil {
		return nil, fmt.Errorf("routingKey: %w", err)
	}
	p := &publisher091{cfg: cfg, routingKey: key, logger: logger}
	if p.tls, err = tlsConfig(cfg.URL, cfg.TLS, cfg.policy); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *publisher091) connect() (*channel091, error) {
	conn, err := amqp091.DialConfig(p.cfg.URL, amqp091.Config{TLSClientConfig: p.tls, Dial: dial091(p.cfg.policy)})
	if err != nil {
		return nil, classify091(fmt.Errorf("connect to %s: %w", redactURL(p.cfg.URL), err))
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("enable publisher confirms: %w", err)
	}
	p.logger.Debug("amqp endpoint connected", "url", redactURL(p.cfg.URL))
	c := &channel091{conn: conn, ch: ch, closed: make(chan struct{})}
	// The library sends the reason, if any, then closes closes once the channel shut down.
	closes := ch.NotifyClose(make(chan *amqp091.Error, 1))
	go func() {
		c.reason = <-closes
		close(c.closed)
	}()
	return c, nil
}

// publish publishes events and returns a function waiting for the broker to confirm every
// one, in order. A failure drops the connection if it lost its channel (or the confirmations
// on their way), and the next publish dials again.
func (p *publisher091) publish(ctx context.Context, events []event.Event) (func(context.Context) error, error) {
	if p.ch == nil || p.ch.conn.IsClosed() || p.ch.ch.IsClosed() {
		if p.ch != nil {
			_ = p.ch.conn.Close()
		}
		c, err := p.connect()
		if err != nil {
			p.ch = nil
			return nil, err
		}
		p.ch = c
	}
	c := p.ch
	confirms := make([]*amqp091.DeferredConfirmation, len(events))
	for i := range events {
		e := &events[i]
		dc, err := c.ch.PublishWithDeferredConfirmWithContext(ctx, p.cfg.Exchange, p.routingKey.Expand(e, nil), false, false, Publishing(e))
		if err != nil {
			return nil, p.fail(c, fmt.Errorf("publish event %q: %w", e.ID, err))
		}
		confirms[i] = dc
	}
	return func(ctx context.Context) error {
		for i, dc := range confirms {
			ok, err := dc.WaitContext(ctx)
			if err != nil {
				// The confirmations still on their way belong to this channel: start afresh.
				_ = c.conn.Close()
				return fmt.Errorf("wait for the confirmation of event %q: %w", events[i].ID, err)
			}
			if !ok {
				return p.fail(c, redact.Shown(fmt.Errorf("broker did not confirm event %q", events[i].ID)))
			}
		}
		return nil
	}, nil
}

// fail adds the channel's close reason to err, classifies it and drops a closed connection.
func (p *publisher091) fail(c *channel091, err error) error {
	// A closed channel reports why just after it is marked closed.
	if c.ch.IsClosed() {
		select {
		case <-c.closed:
		case <-time.After(time.Second):
		}
	}
	var reason *amqp091.Error
	select {
	case <-c.closed:
		if reason = c.reason; reason != nil {
			err = fmt.Errorf("%w: %w", err, reason)
		}
	default:
	}
	if c.ch.IsClosed() {
		p.logger.Warn("amqp endpoint lost its channel; reconnecting on the next send", "url", redactURL(p.cfg.URL), "err", err)
		_ = c.conn.Close()
	}
	if reason != nil && permanentCode(reason.Code) {
		return sink.Permanent(answer(err))
	}
	return classify091(err)
}

// classify091 marks the failures that publishing again cannot fix as permanent: an exchange
// that does not exist, access refused, and a refused login. The broker's answers are
// redact.Shown.
func classify091(err error) error {
	err = answer(err)
	var amqpErr *amqp091.Error
	if errors.As(err, &amqpErr) && permanentCode(amqpErr.Code) {
		return sink.Permanent(err)
	}
	if errors.Is(err, amqp091.ErrSASL) || errors.Is(err, amqp091.ErrCredentials) {
		return sink.Permanent(err)
	}
	return err
}

// permanentCode reports whether an AMQP 0-9-1 reply code refuses the publish for good.
func permanentCode(code int) bool {
	switch code {
	case amqp091.NotFound, amqp091.AccessRefused, amqp091.NotAllowed, amqp091.PreconditionFailed:
		return true
	}
	return false
}

// Publishing returns the AMQP 0-9-1 message of e: a persistent message with the
// cloudEvents:* headers, content type, message id and data as body.
func Publishing(e *event.Event) amqp091.Publishing {
	return amqp091.Publishing{
		Headers:      amqp091.Table(properties(e)),
		ContentType:  e.DataContentType,
		DeliveryMode: amqp091.Persistent,
		MessageId:    e.ID,
		Body:         e.Data,
	}
}

func (p *publisher091) close() error {
	if p.ch == nil {
		return nil
	}
	err := p.ch.conn.Close()
	p.ch = nil
	if err != nil && !errors.Is(err, amqp091.ErrClosed) {
		return fmt.Errorf("close amqp connection: %w", err)
	}
	return nil
}
