package mqtt

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/redact"
)

// Source consumes the messages of an MQTT broker's topic filters for twinflow's ingress. It
// implements ingress.Source.
//
// # Sessions
//
// The source connects with a persistent session (MQTT 5: Clean Start off and the session
// expiry set; 3.1.1: Clean Session off) under a client id that stays the same across
// restarts, so the broker keeps its subscriptions and queues its QoS 1 messages while
// twinflow is down, and sends them when it comes back. It subscribes each time Run starts
// (so changed topics take effect; MQTT 5 asks for retained messages only for new
// subscriptions) and after a reconnection that found no session. A message on a topic no
// configured filter matches, left from a subscription of an earlier configuration, is
// acknowledged and dropped.
//
// A broker queues a limited number of messages per session (Mosquitto's
// max_queued_messages, 1000 by default, beyond which it drops QoS 1 messages with only a
// log notice): raise the limit to what the devices publish while twinflow is restarting
// or behind.
//
// # Acknowledgements
//
// A QoS 1 message is acknowledged (PUBACK) only after its Settle was called with nil, and,
// because MQTT requires PUBACKs in the order the messages arrived, after every message
// received before it on the connection was too. When Run stops, the PUBACKs due are sent
// before the DISCONNECT, and Run waits (up to a second) for the broker to close the
// connection, so that it has processed them before a restarted source connects with the
// same client id. Messages settled behind one still unsettled then are delivered again by
// the broker after the restart (the runner recognises those with an id).
//
// MQTT has no negative acknowledgement: a message settled with an error is delivered again
// by dropping the connection without acknowledging it and connecting again (after a backoff
// that grows while it keeps happening). The broker then sends every unacknowledged message
// of the session again, in order, flagged as duplicates: the failed one and those received
// after it.
//
// # Messages
//
// Message.Topic is the MQTT topic and Order the topic too: a device publishes its messages
// on one topic, and the broker keeps the order of one topic. Headers are the MQTT 5 user
// properties, and "content-type" the Content Type property when set. ID is the user
// property "message-id" (in any case), else empty. Time is when the message arrived.
//
// A topic in Azure IoT Hub's device-to-cloud form, devices/{deviceId}/messages/events/
// followed by an optional property bag (URL-encoded key=value pairs joined by &, as IoT Hub
// device SDKs write message properties), is one device's sequence whatever its properties:
// Order is devices/{deviceId}/messages/events/, the bag's pairs are added to Headers, and its
// $.mid (message id) is the ID when no "message-id" user property gives one.
//
// With a shared subscription ($share/...) the broker hands one device's messages to whichever
// member of the group it picks, so their order holds only within each member.
type Source struct {
	cfg     SourceConfig
	url     *url.URL
	tls     *tls.Config
	filters []string // cfg.Topics without their $share/<group>/ prefix
	logger  *slog.Logger
}

var _ ingress.Source = (*Source)(nil)

// NewSource validates cfg and returns the source called name (the twinflow source name, from
// which the default client id is derived). It does not connect: Run does.
func NewSource(cfg SourceConfig, name string, logger *slog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("mqtt source %q: %w", name, err)
	}
	if cfg.ClientID == "" {
		cfg.ClientID = ClientIDPrefix + name
		if err := validClientID(cfg.ClientID); err != nil {
			return nil, fmt.Errorf("mqtt source %q: client id %q derived from the name: %w", name, cfg.ClientID, err)
		}
	}
	if cfg.Version == 0 {
		cfg.Version = 5
	}
	u, err := parseBrokerURL(cfg.URL, true)
	if err != nil {
		return nil, fmt.Errorf("mqtt source %q: url: %w", name, err)
	}
	s := &Source{cfg: cfg, url: u, logger: logger.With("source", name, "broker", redact.URL(u.String()))}
	if u.Scheme == "tls" || u.Scheme == "wss" {
		if s.tls, err = cfg.TLS.Config(cfg.policy); err != nil {
			return nil, fmt.Errorf("mqtt source %q: %w", name, err)
		}
	}
	for _, f := range cfg.Topics {
		if rest, ok := strings.CutPrefix(f, "$share/"); ok {
			_, f, _ = strings.Cut(rest, "/")
		}
		s.filters = append(s.filters, f)
	}
	return s, nil
}

// ClientID returns the client id the source connects with.
func (s *Source) ClientID() string { return s.cfg.ClientID }

// The reconnection backoff starts at minBackoff (see ingress.Backoff); a connection that
// stayed up for healthyAfter starts it again.
const (
	minBackoff   = 100 * time.Millisecond
	healthyAfter = 10 * time.Second
)

// errRedeliver ends a connection so that the broker delivers a message settled with an error
// again.
var errRedeliver = errors.New("a message was settled with an error: reconnecting to have it delivered again")

// Run implements ingress.Source: see the type's documentation.
func (s *Source) Run(ctx context.Context, h ingress.Handler) error {
	st := &ingress.StateReporter{Handler: h}
	st.Set(ingress.Starting, nil)
	subscribed := false
	backoff := ingress.Backoff{Min: minBackoff}
	for {
		up, err := s.connection(ctx, h, st, &subscribed)
		if ctx.Err() != nil {
			st.Set(ingress.Stopped, nil)
			return nil
		}
		if perm := (*permanentError)(nil); errors.As(err, &perm) {
			s.logger.Error("mqtt source failed", "err", err)
			st.Set(ingress.Failed, err)
			return err
		}
		if up >= healthyAfter {
			backoff.Reset()
		}
		if errors.Is(err, errRedeliver) {
			s.logger.Debug("mqtt source reconnecting to have a message delivered again")
		} else {
			s.logger.Warn("mqtt source reconnecting", "err", err)
			st.Set(ingress.Reconnecting, err)
		}
		if !backoff.Wait(ctx) {
			st.Set(ingress.Stopped, nil)
			return nil
		}
	}
}

// conn is one connection of one protocol version's client.
type conn interface {
	// connect opens the connection with a persistent session and reports whether the broker
	// had the session. Messages may arrive from then on, even before subscribe.
	connect(ctx context.Context) (sessionPresent bool, err error)
	// subscribe subscribes to the source's topic filters.
	subscribe(ctx context.Context) error
	// lost is closed when the connection ended by itself; cause then says why.
	lost() <-chan struct{}
	cause() error
	// disconnect ends the connection with a DISCONNECT that keeps the session, and waits
	// for the client's goroutines as far as the client allows.
	disconnect()
}

// connection runs one connection: it connects, subscribes when needed, reports Running and
// hands messages to h until ctx ends, the connection is lost, or a message is settled with
// an error. It returns how long the connection was up and why it ended.
func (s *Source) connection(ctx context.Context, h ingress.Handler, st *ingress.StateReporter, subscribed *bool) (time.Duration, error) {
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	l := &link{ctx: cctx, h: h, acks: newAcks(), src: s}
	stopAcks := make(chan struct{})
	go l.acks.run(stopAcks)
	var c conn
	if s.cfg.Version == 3 {
		c = &conn3{src: s, link: l}
	} else {
		c = &conn5{src: s, link: l}
	}
	present, err := c.connect(cctx)
	if err != nil {
		cancel()
		l.close()
		close(stopAcks)
		<-l.acks.done
		return 0, fmt.Errorf("connect to %s as %q: %w", redact.URL(s.url.String()), s.cfg.ClientID, err)
	}
	start := time.Now()
	defer func() {
		// Stop handing messages over, send the PUBACKs due, then say goodbye.
		cancel()
		l.close()
		close(stopAcks)
		<-l.acks.done
		c.disconnect()
	}()
	if !*subscribed || !present {
		if err := c.subscribe(cctx); err != nil {
			return time.Since(start), fmt.Errorf("subscribe to %q at %s: %w", s.cfg.Topics, redact.URL(s.url.String()), err)
		}
		*subscribed = true
	}
	s.logger.Info("mqtt source connected", "clientId", s.cfg.ClientID, "sessionPresent", present)
	st.Set(ingress.Running, nil)
	select {
	case <-ctx.Done():
		return time.Since(start), ctx.Err()
	case <-c.lost():
		return time.Since(start), fmt.Errorf("connection to %s lost: %w", redact.URL(s.url.String()), c.cause())
	case <-l.acks.failed:
		return time.Since(start), errRedeliver
	}
}

// link is what a connection's client shares with the source: where its messages go.
type link struct {
	ctx  context.Context // ends when the connection is to end
	h    ingress.Handler
	acks *acks
	src  *Source

	mu     sync.Mutex
	closed bool
	active sync.WaitGroup // deliver calls in progress
}

// deliver hands m to the handler and, for a QoS 1 message (ack not nil, sending its PUBACK),
// queues its acknowledgement. The clients call it in the order messages arrive, one at a
// time. After close it drops m, which the broker then sends again.
func (l *link) deliver(m ingress.Message, ack func()) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return
	}
	l.active.Add(1)
	l.mu.Unlock()
	defer l.active.Done()

	settle := func(error) {}
	if ack != nil {
		settle = l.acks.add(ack)
	}
	if !l.src.subscribed(m.Topic) {
		l.src.logger.Debug("mqtt source dropped a message of a former subscription", "topic", m.Topic)
		settle(nil)
		return
	}
	l.src.complete(&m)
	if err := l.h.Handle(l.ctx, m, settle); err != nil {
		// Not accepted (the connection is ending): deliver it again.
		settle(err)
	}
}

// close stops deliver and waits for the calls in progress.
func (l *link) close() {
	l.mu.Lock()
	l.closed = true
	l.mu.Unlock()
	l.active.Wait()
}

// subscribed reports whether one of the source's filters matches topic.
func (s *Source) subscribed(topic string) bool {
	for _, f := range s.filters {
		if matchTopic(f, topic) {
			return true
		}
	}
	return false
}

// matchTopic reports whether topic matches filter (MQTT 5 §4.7; no $share prefix). A
// wildcard at the first level does not match a topic starting with $.
func matchTopic(filter, topic string) bool {
	if strings.HasPrefix(topic, "$") && (strings.HasPrefix(filter, "+") || strings.HasPrefix(filter, "#")) {
		return false
	}
	for {
		f, frest, fmore := strings.Cut(filter, "/")
		if f == "#" {
			return true
		}
		t, trest, tmore := strings.Cut(topic, "/")
		switch {
		case f != "+" && f != t:
			return false
		case !fmore && !tmore:
			return true
		case !tmore:
			// "a/#" matches "a".
			return frest == "#"
		case !fmore:
			return false
		}
		filter, topic = frest, trest
	}
}

// messageIDHeader is the MQTT 5 user property, in any case, that gives a message its id.
const messageIDHeader = "message-id"

// complete sets m's Order, ID and Time, and adds the properties of an IoT Hub topic to its
// headers (see Source).
func (s *Source) complete(m *ingress.Message) {
	m.Time = time.Now()
	m.Order = m.Topic
	for k, v := range m.Headers {
		if strings.EqualFold(k, messageIDHeader) {
			m.ID = v
		}
	}
	order, bag, ok := iotHubEvents(m.Topic)
	if !ok {
		return
	}
	m.Order = order
	props, err := url.ParseQuery(bag)
	if err != nil || len(props) == 0 {
		return
	}
	if m.Headers == nil {
		m.Headers = make(map[string]string, len(props))
	}
	for k, v := range props {
		m.Headers[k] = v[len(v)-1]
	}
	if m.ID == "" {
		m.ID = m.Headers[iotHubMessageID]
	}
}

// iotHubMessageID is the property of an IoT Hub property bag holding the message id.
const iotHubMessageID = "$.mid"

// iotHubEvents splits an IoT Hub device-to-cloud topic,
// devices/{deviceId}/messages/events/{propertyBag}, into the topic without the bag and the
// bag, and reports whether topic has that form.
func iotHubEvents(topic string) (events, bag string, ok bool) {
	rest, ok := strings.CutPrefix(topic, "devices/")
	if !ok {
		return "", "", false
	}
	device, rest, ok := strings.Cut(rest, "/")
	if !ok || device == "" {
		return "", "", false
	}
	if rest == "messages/events" {
		return topic + "/", "", true
	}
	if bag, ok = strings.CutPrefix(rest, "messages/events/"); !ok {
		return "", "", false
	}
	return topic[:len(topic)-len(bag)], bag, true
}

// states reports a source's states to its handler, each change once.

// permanentError is a failure that connecting again cannot fix: refused credentials, a
// refused subscription, an unverifiable certificate.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// permanent marks err as a failure retrying cannot fix.
func permanent(err error) error { return &permanentError{err} }

// certificateError marks err permanent when it is a TLS certificate verification failure.
func certificateError(err error) error {
	var cv *tls.CertificateVerificationError
	if errors.As(err, &cv) {
		return permanent(err)
	}
	return err
}
