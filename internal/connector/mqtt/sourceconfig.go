package mqtt

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// The defaults of SourceConfig.
const (
	// DefaultSessionExpiry is how long an MQTT 5 broker keeps a source's session, and queues
	// its messages, while the source is not connected.
	DefaultSessionExpiry = 24 * time.Hour
	// DefaultMaxInflight is how many QoS 1 messages an MQTT 5 broker may send a source before
	// it acknowledges the first of them (the Receive Maximum of its CONNECT).
	DefaultMaxInflight = 1000
	// ClientIDPrefix starts the client id derived from a source's name.
	ClientIDPrefix = "twinflow-"
)

// SourceConfig is the settings of an MQTT source: the JSON object of a source of kind "mqtt"
// beside its sourceType. URL and Topics are required.
type SourceConfig struct {
	// URL is the broker: tcp:// or mqtt:// (port 1883 by default), ssl://, tls:// or
	// mqtts:// for TLS (8883), ws:// (80) or wss:// (443) for MQTT over WebSocket, whose
	// path is kept (many brokers serve it at /mqtt).
	URL string `json:"url"`
	// Topics are the topic filters subscribed to, wildcards allowed ("devices/+/telemetry",
	// "plant/#"). A filter "$share/<group>/<filter>" is a shared subscription: the broker
	// splits the filter's messages among the clients subscribed with the same group, so that
	// several twinflow nodes share the load (each node needs its own ClientID then).
	Topics []string `json:"topics"`
	// Version is the protocol version, 5 (default) or 3 (3.1.1).
	Version int `json:"version,omitempty"`
	// ClientID identifies the source's session at the broker; empty means ClientIDPrefix and
	// the source's name, which stays the same across restarts, so the session survives them.
	// Two connections with one client id take the session from each other. MQTT guarantees
	// only ids of 1 to 23 letters and digits; most brokers take longer ones.
	ClientID string `json:"clientId,omitempty"`
	// QoS is the subscriptions' maximum quality of service: 1 (the default, at least once:
	// a message is acknowledged after it is applied, and queued by the broker while the
	// source is away) or 0 (at most once: what arrives while twinflow is down or restarting
	// is lost). QoS 2 is refused: its exactly-once handshake ends at the broker, not at the
	// twin, so it would only cost round trips; twinflow de-duplicates by message id instead.
	QoS      *int   `json:"qos,omitempty"`
	Username string `json:"username,omitempty"`
	Password string `json:"password,omitempty"`
	// TLS configures ssl://, tls://, mqtts:// and wss:// connections.
	TLS sink.TLS `json:"tls,omitzero"`
	// SessionExpiry is how long an MQTT 5 broker keeps the session, with its subscriptions
	// and queued messages, after the source disconnected; zero means DefaultSessionExpiry.
	// MQTT 3.1.1 has no such setting: the broker's configuration decides.
	SessionExpiry Duration `json:"sessionExpiry,omitzero"`
	// MaxInflight is how many QoS 1 messages an MQTT 5 broker may send before the first is
	// acknowledged (the CONNECT's Receive Maximum), 1 to 65535; zero means
	// DefaultMaxInflight. With MQTT 3.1.1 the broker's configuration decides (Mosquitto's
	// max_inflight_messages, 20 by default).
	MaxInflight int `json:"maxInflight,omitempty"`

	// policy checks every connection (see WithPolicy); nil allows any.
	policy *netpolicy.Policy
}

// WithPolicy returns c with every connection checked against p on the address it dials, and
// the TLS files read only where p allows.
func (c SourceConfig) WithPolicy(p *netpolicy.Policy) SourceConfig {
	c.policy = p
	return c
}

// Reach returns the broker c connects to and the files it reads.
func (c SourceConfig) Reach() netpolicy.Reach { return reach(c.URL, true, c.TLS) }

// Validate reports every problem with c, each naming its field.
func (c SourceConfig) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("url: required"))
	} else if u, err := parseBrokerURL(c.URL, true); err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	} else if !c.TLS.IsZero() && u.Scheme != "tls" && u.Scheme != "wss" {
		errs = append(errs, fmt.Errorf("tls: set, but url %q is not ssl://, tls://, mqtts:// or wss://", redact.URL(c.URL)))
	}
	if len(c.Topics) == 0 {
		errs = append(errs, errors.New("topics: at least one topic filter required"))
	}
	for i, f := range c.Topics {
		if err := validFilter(f); err != nil {
			errs = append(errs, fmt.Errorf("topics[%d]: %q: %w", i, f, err))
		}
	}
	switch c.Version {
	case 0, 3, 5:
	default:
		errs = append(errs, fmt.Errorf("version: %d is not 3 or 5", c.Version))
	}
	if err := validClientID(c.ClientID); c.ClientID != "" && err != nil {
		errs = append(errs, fmt.Errorf("clientId: %w", err))
	}
	if c.QoS != nil && *c.QoS != 0 && *c.QoS != 1 {
		errs = append(errs, fmt.Errorf("qos: %d is not 0 or 1 (QoS 2 is not supported: use 1; twinflow de-duplicates by message id)", *c.QoS))
	}
	if c.Password != "" && c.Username == "" && c.Version == 3 {
		errs = append(errs, errors.New("password: MQTT 3.1.1 needs a username with a password"))
	}
	if err := c.TLS.Validate("tls"); err != nil {
		errs = append(errs, err)
	}
	switch d := time.Duration(c.SessionExpiry); {
	case d == 0:
	case c.Version == 3:
		errs = append(errs, errors.New("sessionExpiry: MQTT 3.1.1 has none; the broker's configuration decides"))
	case d < time.Second:
		errs = append(errs, fmt.Errorf("sessionExpiry: %v is less than 1s", d))
	case d > maxSessionExpiry:
		errs = append(errs, fmt.Errorf("sessionExpiry: %v is more than MQTT's %v", d, maxSessionExpiry))
	}
	switch {
	case c.MaxInflight == 0:
	case c.Version == 3:
		errs = append(errs, errors.New("maxInflight: MQTT 3.1.1 has none; the broker's configuration decides"))
	case c.MaxInflight < 0 || c.MaxInflight > math.MaxUint16:
		errs = append(errs, fmt.Errorf("maxInflight: %d is not between 1 and 65535", c.MaxInflight))
	}
	return errors.Join(errs...)
}

// maxSessionExpiry is the longest Session Expiry Interval MQTT 5 can express, short of
// "never" (0xFFFFFFFF seconds).
const maxSessionExpiry = (math.MaxUint32 - 1) * time.Second

// Redacted returns c with the password, and the URL's password and query string, blanked.
func (c SourceConfig) Redacted() SourceConfig {
	if c.Password != "" {
		c.Password = redact.Mask
	}
	c.URL = redact.URL(c.URL)
	return c
}

func (c SourceConfig) qos() byte {
	if c.QoS == nil {
		return 1
	}
	return byte(*c.QoS)
}

func (c SourceConfig) sessionExpiry() uint32 {
	if c.SessionExpiry == 0 {
		return uint32(DefaultSessionExpiry / time.Second)
	}
	return uint32(time.Duration(c.SessionExpiry) / time.Second)
}

func (c SourceConfig) maxInflight() uint16 {
	if c.MaxInflight == 0 {
		return DefaultMaxInflight
	}
	return uint16(c.MaxInflight)
}

// validClientID reports what makes id unusable as an MQTT client id.
func validClientID(id string) error {
	switch {
	case id == "":
		return errors.New("empty")
	case len(id) > math.MaxUint16:
		return fmt.Errorf("%d bytes, more than MQTT's 65535", len(id))
	case !utf8.ValidString(id) || strings.ContainsRune(id, 0):
		return errors.New("not UTF-8 without NUL characters")
	}
	return nil
}

// validFilter reports what makes f unusable as a topic filter (MQTT 5 §4.7 and §4.8.2).
func validFilter(f string) error {
	switch {
	case f == "":
		return errors.New("empty")
	case len(f) > math.MaxUint16:
		return errors.New("longer than MQTT's 65535 bytes")
	case !utf8.ValidString(f) || strings.ContainsRune(f, 0):
		return errors.New("not UTF-8 without NUL characters")
	}
	if rest, ok := strings.CutPrefix(f, "$share/"); ok {
		group, filter, ok := strings.Cut(rest, "/")
		switch {
		case !ok || group == "" || filter == "":
			return errors.New("want $share/<group>/<filter>")
		case strings.ContainsAny(group, "+#"):
			return errors.New("a shared subscription's group cannot hold + or #")
		}
		f = filter
	}
	levels := strings.Split(f, "/")
	for i, l := range levels {
		if strings.Contains(l, "#") && (l != "#" || i != len(levels)-1) {
			return errors.New("# must be the last level, alone")
		}
		if strings.Contains(l, "+") && l != "+" {
			return errors.New("+ must be a level alone")
		}
	}
	return nil
}

// Duration is a time.Duration written in JSON as a Go duration string ("30s", "24h").
type Duration time.Duration

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`want a duration string such as "24h"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}
