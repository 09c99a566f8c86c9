package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/event/cloudevents"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// publisher3 is an MQTT 3.1.1 client, connected on demand.
type publisher3 struct {
	client paho3.Client
	logger *slog.Logger
}

func newPublisher3(cfg SinkConfig, u *url.URL, tc *tls.Config, p *netpolicy.Policy, logger *slog.Logger) *publisher3 {
	opts := paho3.NewClientOptions().
		// The client dials with dialNet; this address only names the broker in its logs.
		AddBroker("tcp://" + u.Host).
		SetCustomOpenConnectionFn(func(*url.URL, paho3.ClientOptions) (net.Conn, error) {
			return dialNet(context.Background(), u, tc, p)
		}).
		SetClientID(cfg.ClientID).
		SetProtocolVersion(4).
		SetCleanSession(true).
		SetKeepAlive(30 * time.Second).
		SetConnectTimeout(10 * time.Second).
		SetWriteTimeout(10 * time.Second).
		SetAutoReconnect(false).
		SetConnectRetry(false)
	if cfg.Username != "" {
		opts.SetUsername(cfg.Username).SetPassword(cfg.Password)
	}
	return &publisher3{client: paho3.NewClient(opts), logger: logger}
}

func (p *publisher3) publish(ctx context.Context, topics []string, events []event.Event) error {
	if !p.client.IsConnectionOpen() {
		p.logger.Debug("mqtt endpoint connecting")
		if err := wait(ctx, p.client.Connect()); err != nil {
			return refused3(fmt.Errorf("connect to mqtt broker: %w", err))
		}
	}
	tokens := make([]paho3.Token, len(events))
	for i := range events {
		body, err := cloudevents.Structured(&events[i])
		if err != nil {
			return sink.Permanent(err)
		}
		tokens[i] = p.client.Publish(topics[i], 1, false, body)
	}
	for i, t := range tokens {
		if err := wait(ctx, t); err != nil {
			if ctx.Err() != nil {
				// Unacknowledged publishes stay in the client's store; start afresh.
				p.client.Disconnect(0)
			}
			return fmt.Errorf("publish event %q to %q: %w", events[i].ID, topics[i], err)
		}
	}
	return nil
}

// refused3 marks err as the broker's answer (redact.Shown) when the broker refused the
// connection in its CONNACK.
func refused3(err error) error {
	for _, refused := range []error{
		packets.ErrorRefusedBadProtocolVersion, packets.ErrorRefusedIDRejected, packets.ErrorRefusedServerUnavailable,
		packets.ErrorRefusedBadUsernameOrPassword, packets.ErrorRefusedNotAuthorised,
	} {
		if errors.Is(err, refused) {
			return redact.Shown(err)
		}
	}
	return err
}

// wait waits for t or ctx.
func wait(ctx context.Context, t paho3.Token) error {
	select {
	case <-t.Done():
		return t.Error()
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *publisher3) close() error {
	if p.client.IsConnectionOpen() {
		p.client.Disconnect(250)
	}
	return nil
}
