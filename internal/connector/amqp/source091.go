package amqp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"time"

	amqp091 "github.com/rabbitmq/amqp091-go"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/sink"
)

// session091 returns the session of an AMQP 0-9-1 source.
func (s *Source) session091() (func(context.Context, ingress.Handler, func()) error, error) {
	tc, err := tlsConfig(s.cfg.URL, s.cfg.TLS, s.cfg.policy)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, h ingress.Handler, running func()) error {
		return s.run091(ctx, h, running, tc)
	}, nil
}

// run091 connects, consumes the queue and hands over its deliveries until ctx ends (then it
// returns nil) or the channel closes.
func (s *Source) run091(ctx context.Context, h ingress.Handler, running func(), tc *tls.Config) error {
	conn, err := amqp091.DialConfig(s.cfg.URL, amqp091.Config{
		TLSClientConfig: tc,
		Dial:            dial091(s.cfg.policy),
		Properties:      amqp091.Table{"connection_name": s.name},
	})
	if err != nil {
		return classify091(fmt.Errorf("connect to %s: %w", redactURL(s.cfg.URL), err))
	}
	defer conn.Close()
	ch, err := s.declare091(conn)
	if err != nil {
		return err
	}
	prefetch := s.cfg.Prefetch
	if prefetch == 0 {
		prefetch = DefaultPrefetch
	}
	if err := ch.Qos(prefetch, 0, false); err != nil {
		return classify091(fmt.Errorf("set the prefetch count: %w", err))
	}
	closed := ch.NotifyClose(make(chan *amqp091.Error, 1))
	deliveries, err := ch.Consume(s.cfg.Queue, s.name, false, false, false, false, nil)
	if err != nil {
		return classify091(fmt.Errorf("consume queue %q: %w", s.cfg.Queue, err))
	}
	pending := ingress.NewPending(
		func(d amqp091.Delivery) { _ = d.Ack(false) },
		func(d amqp091.Delivery) { _ = d.Nack(false, true) })
	running()
	for {
		select {
		case d, ok := <-deliveries:
			if !ok {
				pending.Close()
				err := errors.New("channel closed")
				select {
				case reason := <-closed:
					if reason != nil {
						err = reason
					}
				case <-time.After(time.Second):
				}
				return classify091(fmt.Errorf("consume queue %q: %w", s.cfg.Queue, err))
			}
			// A delivery Handle does not accept (ctx ended) stays pending and is given back.
			if h.Handle(ctx, s.message091(d), pending.Add(d)) == nil {
				continue
			}
		case <-ctx.Done():
		}
		// Stop the deliveries, give back the pending ones in order; those delivered and
		// not handed over go back when the connection closes.
		_ = ch.Cancel(s.name, false)
		pending.Close()
		return nil
	}
}

// declare091 opens the channel and checks the queue, or with an exchange declares it if
// missing and binds it.
func (s *Source) declare091(conn *amqp091.Connection) (*amqp091.Channel, error) {
	ch, err := conn.Channel()
	if err != nil {
		return nil, classify091(fmt.Errorf("open channel: %w", err))
	}
	if _, err := ch.QueueDeclarePassive(s.cfg.Queue, true, false, false, false, nil); err != nil {
		var amqpErr *amqp091.Error
		if !errors.As(err, &amqpErr) || amqpErr.Code != amqp091.NotFound {
			return nil, classify091(fmt.Errorf("check queue %q: %w", s.cfg.Queue, err))
		}
		if s.cfg.Exchange == "" {
			return nil, sink.Permanent(fmt.Errorf("queue %q does not exist", s.cfg.Queue))
		}
		// The refused passive declaration closed the channel.
		if ch, err = conn.Channel(); err != nil {
			return nil, classify091(fmt.Errorf("open channel: %w", err))
		}
		if _, err := ch.QueueDeclare(s.cfg.Queue, true, false, false, false, nil); err != nil {
			return nil, classify091(fmt.Errorf("declare queue %q: %w", s.cfg.Queue, err))
		}
	}
	if s.cfg.Exchange == "" {
		return ch, nil
	}
	keys := s.cfg.BindingKeys
	if len(keys) == 0 {
		keys = []string{""}
	}
	for _, k := range keys {
		if err := ch.QueueBind(s.cfg.Queue, k, s.cfg.Exchange, false, nil); err != nil {
			return nil, classify091(fmt.Errorf("bind queue %q to exchange %q with key %q: %w", s.cfg.Queue, s.cfg.Exchange, k, err))
		}
	}
	return ch, nil
}

// message091 returns the Message of d.
func (s *Source) message091(d amqp091.Delivery) ingress.Message {
	topic := d.RoutingKey
	if topic == "" {
		topic = s.cfg.Queue
	}
	t := d.Timestamp
	if t.IsZero() {
		t = time.Now()
	}
	return ingress.Message{
		ID:      d.MessageId,
		Topic:   topic,
		Headers: headers(d.Headers, d.ContentType),
		Body:    d.Body,
		Time:    t,
		Order:   s.cfg.Queue,
	}
}
