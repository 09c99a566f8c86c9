package mqtt

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/event/cloudevents"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// publisher5 is an MQTT 5 client that keeps itself connected.
type publisher5 struct {
	cm     *autopaho.ConnectionManager
	cancel context.CancelFunc
}

func newPublisher5(cfg SinkConfig, u *url.URL, tc *tls.Config, p *netpolicy.Policy, logger *slog.Logger) (*publisher5, error) {
	if u.Scheme == "tls" {
		u = &url.URL{Scheme: "tls", Host: u.Host}
	} else {
		u = &url.URL{Scheme: "tcp", Host: u.Host}
	}
	ctx, cancel := context.WithCancel(context.Background())
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{u},
		TlsCfg:     tc,
		AttemptConnection: func(ctx context.Context, _ autopaho.ClientConfig, u *url.URL) (net.Conn, error) {
			return dialNet(ctx, u, tc, p)
		},
		KeepAlive:                     30,
		CleanStartOnInitialConnection: true,
		ReconnectBackoff:              func(int) time.Duration { return 250 * time.Millisecond },
		ConnectTimeout:                10 * time.Second,
		ConnectUsername:               cfg.Username,
		ConnectPassword:               []byte(cfg.Password),
		OnConnectError: func(err error) {
			logger.Warn("mqtt endpoint cannot connect", "broker", u.Host, "err", err)
		},
		ClientConfig: paho.ClientConfig{ClientID: cfg.ClientID},
	})
	if err != nil {
		cancel()
		return nil, fmt.Errorf("start mqtt client: %w", err)
	}
	return &publisher5{cm: cm, cancel: cancel}, nil
}

func (p *publisher5) publish(ctx context.Context, topics []string, events []event.Event) error {
	if err := p.cm.AwaitConnection(ctx); err != nil {
		return fmt.Errorf("wait for the mqtt connection: %w", err)
	}
	for i := range events {
		resp, err := p.cm.Publish(ctx, Publish5(topics[i], &events[i]))
		if err != nil {
			if resp != nil && resp.ReasonCode >= 0x80 {
				// The broker's answer.
				err = redact.Shown(fmt.Errorf("publish event %q to %q: %w", events[i].ID, topics[i], err))
				if isPermanent5(resp.ReasonCode) {
					return sink.Permanent(err)
				}
				return err
			}
			return fmt.Errorf("publish event %q to %q: %w", events[i].ID, topics[i], err)
		}
	}
	return nil
}

// isPermanent5 reports whether a PUBACK reason code refuses the message for good: not
// authorized, topic name invalid, packet too large, payload format invalid.
func isPermanent5(code byte) bool {
	switch code {
	case 0x87, 0x90, 0x95, 0x99:
		return true
	}
	return false
}

// Publish5 returns the MQTT 5 QoS 1 publish of e on topic, in binary mode.
func Publish5(topic string, e *event.Event) *paho.Publish {
	attrs := cloudevents.Attributes(e)
	props := &paho.PublishProperties{ContentType: e.DataContentType, User: make(paho.UserProperties, 0, len(attrs))}
	for _, a := range attrs {
		props.User = append(props.User, paho.UserProperty{Key: a.Name, Value: a.Value})
	}
	return &paho.Publish{QoS: 1, Topic: topic, Payload: e.Data, Properties: props}
}

func (p *publisher5) close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	defer p.cancel()
	err := p.cm.Disconnect(ctx)
	if err != nil && err != autopaho.ConnectionDownError {
		return fmt.Errorf("disconnect from mqtt broker: %w", err)
	}
	return nil
}
