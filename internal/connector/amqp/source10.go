package amqp

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"time"

	amqp10 "github.com/Azure/go-amqp"

	"github.com/twinflow/twinflow/internal/ingress"
)

// session10 returns the session of an AMQP 1.0 source.
func (s *Source) session10() (func(context.Context, ingress.Handler, func()) error, error) {
	tc, err := tlsConfig(s.cfg.URL, s.cfg.TLS, s.cfg.policy)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context, h ingress.Handler, running func()) error {
		return s.run10(ctx, h, running, amqp10.ConnOptions{ContainerID: s.name}, tc)
	}, nil
}

// run10 connects, attaches a receiver to the address and hands over its messages until ctx
// ends (then it returns nil) or the link fails.
func (s *Source) run10(ctx context.Context, h ingress.Handler, running func(), opts amqp10.ConnOptions, tc *tls.Config) error {
	dctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	conn, err := dial10(dctx, s.cfg.URL, opts, tc, s.cfg.policy)
	if err != nil {
		return classify10(fmt.Errorf("connect to %s: %w", redactURL(s.cfg.URL), err))
	}
	defer conn.Close()
	session, err := conn.NewSession(dctx, nil)
	if err != nil {
		return classify10(fmt.Errorf("begin session: %w", err))
	}
	credit := s.cfg.Credit
	if credit == 0 {
		credit = DefaultPrefetch
	}
	// The source grants credit itself, a batch at a time, once the broker used up the last
	// one: RabbitMQ 3's plugin stops delivering, now and then, when credit is topped up while
	// deliveries are on their way, as go-amqp does by itself.
	r, err := session.NewReceiver(dctx, s.cfg.Address, &amqp10.ReceiverOptions{
		Credit:                    -1,
		Name:                      s.name,
		RequestedSenderSettleMode: amqp10.SenderSettleModeUnsettled.Ptr(),
	})
	if err != nil {
		return classify10(fmt.Errorf("attach receiver to %q: %w", s.cfg.Address, err))
	}
	if err := r.IssueCredit(uint32(credit)); err != nil {
		return classify10(fmt.Errorf("grant credit on %q: %w", s.cfg.Address, err))
	}
	left := credit // of the credit granted last
	settle := func(state func(context.Context, *amqp10.Message) error) func(*amqp10.Message) {
		return func(m *amqp10.Message) {
			ctx, cancel := context.WithTimeout(context.Background(), settleTimeout)
			defer cancel()
			_ = state(ctx, m)
		}
	}
	pending := ingress.NewPending(settle(r.AcceptMessage), settle(r.ReleaseMessage))
	running()
	for {
		m, err := r.Receive(ctx, nil)
		if err != nil {
			pending.Close()
			if ctx.Err() != nil {
				// Give back the messages delivered and not handed over too, after the
				// pending ones, which came before them.
				for m := r.Prefetched(); m != nil; m = r.Prefetched() {
					settle(r.ReleaseMessage)(m)
				}
				// The link ends with the connection, closed on return: RabbitMQ 3's plugin
				// does not answer the receiver's detach, which would hold Run for its timeout.
				return nil
			}
			return classify10(fmt.Errorf("receive from %q: %w", s.cfg.Address, err))
		}
		if left--; left == 0 {
			if err := r.IssueCredit(uint32(credit)); err != nil {
				pending.Close()
				return classify10(fmt.Errorf("grant credit on %q: %w", s.cfg.Address, err))
			}
			left = credit
		}
		// A message Handle does not accept (ctx ended) stays pending and is given back.
		_ = h.Handle(ctx, s.message10(m), pending.Add(m))
	}
}

// message10 returns the Message of m.
func (s *Source) message10(m *amqp10.Message) ingress.Message {
	var id any
	var ct string
	var t time.Time
	if p := m.Properties; p != nil {
		id = p.MessageID
		if p.ContentType != nil {
			ct = *p.ContentType
		}
		if p.CreationTime != nil {
			t = *p.CreationTime
		}
	}
	if enqueued, ok := m.Annotations["x-opt-enqueued-time"].(time.Time); ok && t.IsZero() {
		t = enqueued
	}
	if t.IsZero() {
		t = time.Now()
	}
	return ingress.Message{
		ID:      idString(id),
		Topic:   s.cfg.Address,
		Headers: headers(m.ApplicationProperties, ct),
		Body:    body10(m),
		Time:    t,
		Order:   s.cfg.Address,
	}
}

// body10 returns the body of m: its data sections, or its value section as it is for a
// string or binary and as JSON otherwise (a map, a list, a number).
func body10(m *amqp10.Message) []byte {
	if len(m.Data) > 0 {
		return m.GetData()
	}
	switch v := m.Value.(type) {
	case nil:
		return nil
	case string:
		return []byte(v)
	case []byte:
		return v
	}
	b, err := json.Marshal(m.Value)
	if err != nil {
		return fmt.Append(nil, m.Value)
	}
	return b
}
