package mqtt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	paho3 "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/redact"
)

// conn3 is one MQTT 3.1.1 connection of a source, with paho.mqtt.golang: a client made for
// this connection only, which neither reconnects nor acknowledges by itself.
type conn3 struct {
	src    *Source
	link   *link
	client paho3.Client
	nc     atomic.Pointer[lingerConn] // set by the client's dial

	lostOnce sync.Once
	lostC    chan struct{}
	lostErr  error
}

func (c *conn3) connect(ctx context.Context) (bool, error) {
	c.lostC = make(chan struct{})
	cfg := c.src.cfg
	opts := paho3.NewClientOptions().
		// The client dials with dial; this address only names the broker in its logs.
		AddBroker("tcp://" + c.src.url.Host).
		SetCustomOpenConnectionFn(func(*url.URL, paho3.ClientOptions) (net.Conn, error) {
			nc, err := dial(ctx, c.src.url, c.src.tls, c.src.cfg.policy)
			if err != nil {
				return nil, err
			}
			c.nc.Store(nc)
			return nc, nil
		}).
		SetClientID(cfg.ClientID).
		SetProtocolVersion(4).
		SetCleanSession(false).
		SetResumeSubs(false).
		SetOrderMatters(true).
		SetAutoAckDisabled(true).
		SetAutoReconnect(false).
		SetConnectRetry(false).
		SetKeepAlive(keepAlive * time.Second).
		SetPingTimeout(10 * time.Second).
		SetConnectTimeout(dialTimeout).
		SetWriteTimeout(10 * time.Second).
		SetDefaultPublishHandler(c.receive).
		SetConnectionLostHandler(func(_ paho3.Client, err error) { c.lose(err) })
	if cfg.Username != "" {
		opts.SetUsername(cfg.Username).SetPassword(cfg.Password)
	}
	c.client = paho3.NewClient(opts)
	tok := c.client.Connect()
	select {
	case <-tok.Done():
	case <-ctx.Done():
		// The dial ends with ctx; wait for the client to give up, then leave.
		<-tok.Done()
		if tok.Error() == nil {
			c.client.Disconnect(0)
		}
		return false, ctx.Err()
	}
	if err := tok.Error(); err != nil {
		for _, refused := range []error{
			packets.ErrorRefusedBadProtocolVersion,
			packets.ErrorRefusedIDRejected,
			packets.ErrorRefusedBadUsernameOrPassword,
			packets.ErrorRefusedNotAuthorised,
		} {
			if errors.Is(err, refused) {
				return false, permanent(redact.Shown(fmt.Errorf("refused: %w", err)))
			}
		}
		return false, certificateError(err)
	}
	return tok.(*paho3.ConnectToken).SessionPresent(), nil
}

func (c *conn3) subscribe(ctx context.Context) error {
	filters := make(map[string]byte, len(c.src.cfg.Topics))
	for _, f := range c.src.cfg.Topics {
		filters[f] = c.src.cfg.qos()
	}
	// No callback: every message goes to the default handler, those of the session's
	// subscriptions arriving before this one's SUBACK too.
	tok := c.client.SubscribeMultiple(filters, nil)
	select {
	case <-tok.Done():
	case <-ctx.Done():
		return ctx.Err()
	}
	if err := tok.Error(); err != nil {
		return err
	}
	var refused []error
	for f, code := range tok.(*paho3.SubscribeToken).Result() {
		if code == 0x80 {
			refused = append(refused, fmt.Errorf("%q refused by the broker", f))
		}
	}
	if len(refused) > 0 {
		return permanent(redact.Shown(errors.Join(refused...)))
	}
	return nil
}

// receive hands a PUBLISH over; the client calls it in the order the messages arrive.
func (c *conn3) receive(_ paho3.Client, msg paho3.Message) {
	var ack func()
	if msg.Qos() > 0 {
		ack = msg.Ack
	}
	c.link.deliver(ingress.Message{Topic: msg.Topic(), Body: msg.Payload()}, ack)
}

func (c *conn3) lose(err error) {
	c.lostOnce.Do(func() {
		c.lostErr = err
		close(c.lostC)
	})
}

func (c *conn3) lost() <-chan struct{} { return c.lostC }
func (c *conn3) cause() error          { return c.lostErr }

func (c *conn3) disconnect() {
	// The DISCONNECT follows the PUBACKs sent before (the client writes both from one queue);
	// a 3.1.1 session without Clean Session outlives it.
	if nc := c.nc.Load(); nc != nil {
		nc.Linger()
	}
	c.client.Disconnect(uint((lingerTimeout + time.Second) / time.Millisecond))
}
