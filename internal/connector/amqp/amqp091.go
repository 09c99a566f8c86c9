package amqp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/twinflow/twinflow/internal/egress"
	"github.com/twinflow/twinflow/internal/event"
)

// publisher091 publishes with AMQP 0-9-1 publisher confirms.
type publisher091 struct {
	cfg        SinkConfig
	routingKey egress.Template
	tls        *tls.Config
	logger     *slog.Logger

	conn    *amqp091.Connection // nil when disconnected
	ch      *amqp091.Channel
	closes  chan *amqp091.Error // the channel's close reason
	confirm []*amqp091.DeferredConfirmation
}

func newPublisher091(cfg SinkConfig, logger *slog.Logger) (*publisher091, error) {
	key, err := egress.ParseTemplate(cfg.RoutingKey)
	if err != nil {
		return nil, fmt.Errorf("routingKey: %w", err)
	}
	p := &publisher091{cfg: cfg, routingKey: key, logger: logger}
	if !cfg.TLS.IsZero() {
		if p.tls, err = cfg.TLS.Config(); err != nil {
			return nil, err
		}
	}
	return p, nil
}

func (p *publisher091) connect() error {
	var conn *amqp091.Connection
	var err error
	if p.tls != nil {
		conn, err = amqp091.DialTLS(p.cfg.URL, p.tls)
	} else {
		conn, err = amqp091.Dial(p.cfg.URL)
	}
	if err != nil {
		return classify091(fmt.Errorf("connect to %s: %w", redactURL(p.cfg.URL), err))
	}
	ch, err := conn.Channel()
	if err != nil {
		_ = conn.Close()
		return fmt.Errorf("open channel: %w", err)
	}
	if err := ch.Confirm(false); err != nil {
		_ = conn.Close()
		return fmt.Errorf("enable publisher confirms: %w", err)
	}
	p.logger.Debug("amqp endpoint connected", "url", redactURL(p.cfg.URL))
	p.conn, p.ch = conn, ch
	p.closes = ch.NotifyClose(make(chan *amqp091.Error, 1))
	return nil
}

// disconnect drops the connection after a failure; the next publish dials again.
func (p *publisher091) disconnect() {
	if p.conn != nil {
		_ = p.conn.Close()
		p.conn, p.ch = nil, nil
	}
}

func (p *publisher091) publish(ctx context.Context, events []event.Event) error {
	if p.conn == nil || p.conn.IsClosed() || p.ch.IsClosed() {
		p.disconnect()
		if err := p.connect(); err != nil {
			return err
		}
	}
	p.confirm = p.confirm[:0]
	for i := range events {
		e := &events[i]
		dc, err := p.ch.PublishWithDeferredConfirmWithContext(ctx, p.cfg.Exchange, p.routingKey.Expand(e, nil), false, false, Publishing(e))
		if err != nil {
			return p.fail(fmt.Errorf("publish event %q: %w", e.ID, err))
		}
		p.confirm = append(p.confirm, dc)
	}
	for i, dc := range p.confirm {
		ok, err := dc.WaitContext(ctx)
		if err != nil {
			// The confirmations still on their way belong to this channel: start afresh.
			p.disconnect()
			return fmt.Errorf("wait for the confirmation of event %q: %w", events[i].ID, err)
		}
		if !ok {
			return p.fail(fmt.Errorf("broker did not confirm event %q", events[i].ID))
		}
	}
	return nil
}

// fail adds the channel's close reason to err, classifies it and drops a closed connection.
func (p *publisher091) fail(err error) error {
	// A closed channel reports why on p.closes, possibly just after the publish failed.
	wait := time.After(0)
	if p.ch.IsClosed() {
		wait = time.After(time.Second)
	}
	var reason *amqp091.Error
	select {
	case r, ok := <-p.closes:
		if ok && r != nil {
			reason = r
			err = fmt.Errorf("%w: %w", err, r)
		}
	case <-wait:
	}
	if p.ch.IsClosed() {
		p.logger.Warn("amqp endpoint lost its channel; reconnecting on the next send", "url", redactURL(p.cfg.URL), "err", err)
		p.disconnect()
	}
	if reason != nil && permanentCode(reason.Code) {
		return egress.Permanent(err)
	}
	return classify091(err)
}

// classify091 marks the failures that publishing again cannot fix as permanent: an exchange
// that does not exist, access refused, and a refused login.
func classify091(err error) error {
	var amqpErr *amqp091.Error
	if errors.As(err, &amqpErr) && permanentCode(amqpErr.Code) {
		return egress.Permanent(err)
	}
	if errors.Is(err, amqp091.ErrSASL) || errors.Is(err, amqp091.ErrCredentials) {
		return egress.Permanent(err)
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
	if p.conn == nil {
		return nil
	}
	err := p.conn.Close()
	p.conn, p.ch = nil, nil
	if err != nil && !errors.Is(err, amqp091.ErrClosed) {
		return fmt.Errorf("close amqp connection: %w", err)
	}
	return nil
}
