package amqp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"strings"

	amqp10 "github.com/Azure/go-amqp"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// publisher10 publishes AMQP 1.0 transfers on one sender link, all sent before the first
// settlement is awaited.
type publisher10 struct {
	cfg    SinkConfig
	opts   amqp10.ConnOptions
	tls    *tls.Config
	logger *slog.Logger

	conn   *amqp10.Conn // nil when disconnected; a wait may close it
	sender *amqp10.Sender
}

func newPublisher10(cfg SinkConfig, logger *slog.Logger) (*publisher10, error) {
	tc, err := tlsConfig(cfg.URL, cfg.TLS, cfg.policy)
	if err != nil {
		return nil, err
	}
	return &publisher10{cfg: cfg, opts: amqp10.ConnOptions{ContainerID: "twinflow"}, tls: tc, logger: logger}, nil
}

func (p *publisher10) connect(ctx context.Context) error {
	conn, err := dial10(ctx, p.cfg.URL, p.opts, p.tls, p.cfg.policy)
	if err != nil {
		return classify10(fmt.Errorf("connect to %s: %w", redactURL(p.cfg.URL), err))
	}
	session, err := conn.NewSession(ctx, nil)
	if err != nil {
		_ = conn.Close()
		return classify10(fmt.Errorf("begin session: %w", err))
	}
	sender, err := session.NewSender(ctx, p.cfg.Address, nil)
	if err != nil {
		_ = conn.Close()
		return classify10(fmt.Errorf("attach sender to %q: %w", p.cfg.Address, err))
	}
	p.logger.Debug("amqp 1.0 endpoint connected", "url", redactURL(p.cfg.URL), "address", p.cfg.Address)
	p.conn, p.sender = conn, sender
	return nil
}

func (p *publisher10) disconnect() {
	if p.conn != nil {
		_ = p.conn.Close()
		p.conn, p.sender = nil, nil
	}
}

// publish sends events and returns a function waiting for the broker to settle every one,
// in order. A failure drops the connection, and the next publish dials again.
func (p *publisher10) publish(ctx context.Context, events []event.Event) (func(context.Context) error, error) {
	if p.conn != nil && closed(p.conn.Done()) {
		p.disconnect()
	}
	if p.conn == nil {
		if err := p.connect(ctx); err != nil {
			return nil, err
		}
	}
	receipts := make([]amqp10.SendReceipt, len(events))
	for i := range events {
		r, err := p.sender.SendWithReceipt(ctx, Message(&events[i]), nil)
		if err != nil {
			p.logger.Warn("amqp 1.0 endpoint lost its link; reconnecting on the next send", "url", redactURL(p.cfg.URL), "err", err)
			p.disconnect()
			return nil, classify10(fmt.Errorf("send event %q: %w", events[i].ID, err))
		}
		receipts[i] = r
	}
	conn := p.conn
	return func(ctx context.Context) error {
		for i, r := range receipts {
			state, err := r.Wait(ctx)
			if err != nil {
				_ = conn.Close()
				return classify10(fmt.Errorf("wait for the settlement of event %q: %w", events[i].ID, err))
			}
			switch s := state.(type) {
			case *amqp10.StateAccepted:
			case *amqp10.StateRejected:
				err := fmt.Errorf("broker rejected event %q", events[i].ID)
				if s.Error != nil {
					err = fmt.Errorf("%w: %w", err, s.Error)
				}
				return sink.Permanent(redact.Shown(err))
			default:
				return fmt.Errorf("broker settled event %q as %T", events[i].ID, state)
			}
		}
		return nil
	}, nil
}

// closed reports whether done is closed.
func closed(done <-chan struct{}) bool {
	select {
	case <-done:
		return true
	default:
		return false
	}
}

// classify10 marks the failures that sending again cannot fix as permanent: an unknown
// address, refused access, a message too large. Refused credentials (a failed SASL exchange,
// unauthorized-access) are sink.ErrUnauthorized too. The broker's answers are
// redact.Shown.
func classify10(err error) error {
	err = answer(err)
	var amqpErr *amqp10.Error
	if errors.As(err, &amqpErr) {
		switch amqpErr.Condition {
		case amqp10.ErrCondUnauthorizedAccess:
			return sink.Permanent(sink.Unauthorized(err))
		case amqp10.ErrCondNotFound, amqp10.ErrCondMessageSizeExceeded,
			amqp10.ErrCondNotAllowed, amqp10.ErrCondInvalidField, amqp10.ErrCondDecodeError:
			return sink.Permanent(err)
		}
	}
	// go-amqp reports a refused SASL outcome as an untyped error whose message names it
	// ("SASL PLAIN auth failed with code 0x1: ...").
	if msg := err.Error(); strings.Contains(msg, "SASL") && strings.Contains(msg, "auth failed") {
		return sink.Permanent(sink.Unauthorized(err))
	}
	return err
}

// Message returns the AMQP 1.0 message of e: data in one data section, the cloudEvents:*
// application properties, content type and message id.
func Message(e *event.Event) *amqp10.Message {
	m := &amqp10.Message{
		Data:                  [][]byte{e.Data},
		Properties:            &amqp10.MessageProperties{MessageID: e.ID},
		ApplicationProperties: properties(e),
		Header:                &amqp10.MessageHeader{Durable: true},
	}
	if e.DataContentType != "" {
		ct := e.DataContentType
		m.Properties.ContentType = &ct
	}
	return m
}

func (p *publisher10) close() error {
	if p.conn == nil {
		return nil
	}
	err := p.conn.Close()
	p.conn, p.sender = nil, nil
	if err != nil {
		return fmt.Errorf("close amqp connection: %w", err)
	}
	return nil
}
