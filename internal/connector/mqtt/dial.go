package mqtt

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"

	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
)

// dialTimeout bounds opening the network connection, TLS and WebSocket handshakes included.
const dialTimeout = 10 * time.Second

// dial opens the network connection to the broker at u (as parseBrokerURL returns it):
// TCP, TLS with tc, or a WebSocket (over TLS for wss) carrying MQTT in binary messages. The
// connection is checked against p on the address it dials (a nil p allows any).
func dial(ctx context.Context, u *url.URL, tc *tls.Config, p *netpolicy.Policy) (*lingerConn, error) {
	c, err := dialNet(ctx, u, tc, p)
	if err != nil {
		return nil, err
	}
	return &lingerConn{Conn: c, readEnded: make(chan struct{})}, nil
}

func dialNet(ctx context.Context, u *url.URL, tc *tls.Config, p *netpolicy.Policy) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, dialTimeout)
	defer cancel()
	d := p.Dialer(0)
	switch u.Scheme {
	case "tls":
		return (&tls.Dialer{NetDialer: d, Config: tc}).DialContext(ctx, "tcp", u.Host)
	case "ws", "wss":
		wd := websocket.Dialer{
			NetDialContext:  d.DialContext,
			TLSClientConfig: tc,
			Subprotocols:    []string{"mqtt"},
		}
		c, resp, err := wd.DialContext(ctx, u.String(), nil)
		if resp != nil && resp.Body != nil {
			_ = resp.Body.Close()
		}
		if err != nil {
			if resp != nil {
				return nil, fmt.Errorf("websocket handshake with %s: %d: %w", redact.URL(u.String()), resp.StatusCode, err)
			}
			return nil, fmt.Errorf("websocket handshake with %s: %w", redact.URL(u.String()), err)
		}
		return &wsConn{Conn: c}, nil
	default:
		return d.DialContext(ctx, "tcp", u.Host)
	}
}

// lingerTimeout bounds how long Close waits for the broker to close its side.
const lingerTimeout = time.Second

// lingerConn is a broker connection whose Close, once Linger was called, waits (up to
// lingerTimeout) until reading it ended because the broker closed its side, as brokers do
// after a DISCONNECT. A broker processes one connection's packets in order, so by then it
// has processed the PUBACKs sent before the DISCONNECT. Without the wait, a source started
// again with the same client id could connect first: the broker would hand it the session,
// dropping the old connection with those PUBACKs unread, and send their messages again.
type lingerConn struct {
	net.Conn
	readEnded chan struct{}
	endOnce   sync.Once
	linger    atomic.Bool
}

// Linger makes Close wait for the broker to close its side.
func (c *lingerConn) Linger() { c.linger.Store(true) }

func (c *lingerConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if err != nil {
		c.endOnce.Do(func() { close(c.readEnded) })
	}
	return n, err
}

func (c *lingerConn) Close() error {
	if c.linger.Load() {
		t := time.NewTimer(lingerTimeout)
		select {
		case <-c.readEnded:
		case <-t.C:
		}
		t.Stop()
	}
	return c.Conn.Close()
}

// wsConn is a WebSocket as the byte stream MQTT clients read and write: each Write is one
// binary message, and Read reads the messages' bytes one after another (MQTT over
// WebSocket lets a packet span messages and a message hold several packets). Writes must
// not be concurrent, which the MQTT clients ensure.
type wsConn struct {
	*websocket.Conn
	r io.Reader
}

func (c *wsConn) Read(p []byte) (int, error) {
	for {
		if c.r == nil {
			_, r, err := c.NextReader()
			if err != nil {
				return 0, err
			}
			c.r = r
		}
		n, err := c.r.Read(p)
		if err == io.EOF {
			c.r = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	if err := c.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *wsConn) SetDeadline(t time.Time) error {
	if err := c.SetReadDeadline(t); err != nil {
		return err
	}
	return c.SetWriteDeadline(t)
}
