package mqtt

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"
	"github.com/eclipse/paho.golang/paho/session/state"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/redact"
)

// keepAlive is the keep-alive interval, in seconds, of the source's connections.
const keepAlive = 30

// conn5 is one MQTT 5 connection of a source, with paho.golang.
type conn5 struct {
	src     *Source
	link    *link
	client  *paho.Client
	nc      *lingerConn
	session deferredAcks

	lostOnce sync.Once
	lostC    chan struct{}
	lostErr  error
}

// deferredAcks is the paho session state of one connection, with the acknowledgement of
// received messages left to the source: paho calls Ack when the message handlers return,
// before the message is settled. (paho's own manual acknowledgement sends the PUBACKs in
// order too, but from a timer, which delays them and cannot be flushed before a
// DISCONNECT.)
type deferredAcks struct{ *state.State }

// Ack does nothing: the source acknowledges with ack.
func (deferredAcks) Ack(*packets.Publish) error { return nil }

// ack sends the PUBACK of the QoS 1 message with packet id id.
func (s deferredAcks) ack(id uint16) error {
	return s.State.Ack(&packets.Publish{QoS: 1, PacketID: id})
}

func (c *conn5) connect(ctx context.Context) (bool, error) {
	c.lostC = make(chan struct{})
	nc, err := dial(ctx, c.src.url, c.src.tls, c.src.cfg.policy)
	if err != nil {
		return false, certificateError(err)
	}
	c.nc = nc
	c.session = deferredAcks{state.NewInMemory()}
	c.client = paho.NewClient(paho.ClientConfig{
		Conn:              packets.NewThreadSafeConn(nc),
		Session:           c.session,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){c.receive},
		OnClientError:     c.lose,
		OnServerDisconnect: func(d *paho.Disconnect) {
			c.lose(redact.Shown(fmt.Errorf("the broker disconnected: %s", reasonCode5(d.ReasonCode, reasonString(d.Properties)))))
		},
	})
	cfg := c.src.cfg
	expiry, inflight := cfg.sessionExpiry(), cfg.maxInflight()
	cp := &paho.Connect{
		ClientID:   cfg.ClientID,
		CleanStart: false,
		KeepAlive:  keepAlive,
		Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry, ReceiveMaximum: &inflight},
	}
	if cfg.Username != "" {
		cp.UsernameFlag, cp.Username = true, cfg.Username
	}
	if cfg.Password != "" {
		cp.PasswordFlag, cp.Password = true, []byte(cfg.Password)
	}
	ca, err := c.client.Connect(ctx, cp)
	if err != nil {
		_ = c.session.Close()
		if ca != nil && ca.ReasonCode >= 0x80 {
			var reason string
			if ca.Properties != nil {
				reason = ca.Properties.ReasonString
			}
			err := redact.Shown(fmt.Errorf("refused: %s", reasonCode5(ca.ReasonCode, reason)))
			if permanentConnack5(ca.ReasonCode) {
				return false, permanent(err)
			}
			return false, err
		}
		return false, err
	}
	return ca.SessionPresent, nil
}

// permanentConnack5 reports whether a CONNACK reason code refuses the connection for a
// reason connecting again cannot fix.
func permanentConnack5(code byte) bool {
	switch code {
	case 0x84, // unsupported protocol version
		0x85, // client identifier not valid
		0x86, // bad user name or password
		0x87, // not authorized
		0x8A, // banned
		0x8C: // bad authentication method
		return true
	}
	return false
}

// reasonCode5 describes an MQTT 5 reason code, with the reason string the broker gave.
func reasonCode5(code byte, reason string) string {
	s := fmt.Sprintf("reason code 0x%02X", code)
	if name := reasonNames5[code]; name != "" {
		s = fmt.Sprintf("%s (0x%02X)", name, code)
	}
	if reason != "" {
		s += ": " + reason
	}
	return s
}

// reasonNames5 names the MQTT 5 failure reason codes of CONNACK, SUBACK and DISCONNECT
// (MQTT 5 §2.4).
var reasonNames5 = map[byte]string{
	0x80: "unspecified error", 0x81: "malformed packet", 0x82: "protocol error",
	0x83: "implementation specific error", 0x84: "unsupported protocol version",
	0x85: "client identifier not valid", 0x86: "bad user name or password",
	0x87: "not authorized", 0x88: "server unavailable", 0x89: "server busy", 0x8A: "banned",
	0x8B: "server shutting down", 0x8C: "bad authentication method",
	0x8D: "keep alive timeout", 0x8E: "session taken over", 0x8F: "topic filter invalid",
	0x93: "receive maximum exceeded", 0x97: "quota exceeded", 0x98: "administrative action",
	0x9C: "use another server", 0x9D: "server moved",
	0x9E: "shared subscriptions not supported", 0x9F: "connection rate exceeded",
	0xA0: "maximum connect time", 0xA1: "subscription identifiers not supported",
	0xA2: "wildcard subscriptions not supported",
}

func reasonString(p *paho.DisconnectProperties) string {
	if p == nil {
		return ""
	}
	return p.ReasonString
}

func (c *conn5) subscribe(ctx context.Context) error {
	sub := &paho.Subscribe{}
	for _, f := range c.src.cfg.Topics {
		// Retained messages only for a subscription the session does not have yet.
		sub.Subscriptions = append(sub.Subscriptions, paho.SubscribeOptions{Topic: f, QoS: c.src.cfg.qos(), RetainHandling: 1})
	}
	sa, err := c.client.Subscribe(ctx, sub)
	if sa == nil {
		if errors.Is(err, paho.ErrInvalidArguments) {
			return permanent(err) // e.g. shared subscriptions the broker said it does not support
		}
		return err
	}
	var refused []error
	for i, code := range sa.Reasons {
		if code >= 0x80 && i < len(sub.Subscriptions) {
			var reason string
			if sa.Properties != nil {
				reason = sa.Properties.ReasonString
			}
			refused = append(refused, fmt.Errorf("%q refused: %s", sub.Subscriptions[i].Topic, reasonCode5(code, reason)))
		}
	}
	if len(refused) > 0 {
		return permanent(redact.Shown(errors.Join(refused...)))
	}
	return err
}

// receive hands a PUBLISH over; paho calls it in the order the messages arrive.
func (c *conn5) receive(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	m := ingress.Message{Topic: p.Topic, Body: p.Payload}
	if pp := p.Properties; pp != nil {
		if len(pp.User) > 0 || pp.ContentType != "" {
			m.Headers = make(map[string]string, len(pp.User)+1)
		}
		if pp.ContentType != "" {
			m.Headers["content-type"] = pp.ContentType
		}
		for _, u := range pp.User {
			m.Headers[u.Key] = u.Value
		}
	}
	var ack func()
	if p.QoS > 0 {
		id := p.PacketID
		ack = func() {
			if err := c.session.ack(id); err != nil {
				c.src.logger.Debug("mqtt source could not acknowledge a message", "packetId", id, "err", err)
			}
		}
	}
	c.link.deliver(m, ack)
	return true, nil
}

func (c *conn5) lose(err error) {
	c.lostOnce.Do(func() {
		c.lostErr = err
		close(c.lostC)
	})
}

func (c *conn5) lost() <-chan struct{} { return c.lostC }
func (c *conn5) cause() error          { return c.lostErr }

func (c *conn5) disconnect() {
	// Reason code 0 keeps the session for its expiry interval.
	c.nc.Linger()
	_ = c.client.Disconnect(&paho.Disconnect{ReasonCode: 0})
	<-c.client.Done()
	_ = c.session.Close()
}
