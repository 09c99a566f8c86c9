package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// The deliver policies of a new consumer.
const (
	// DeliverAll starts a new consumer at the stream's first message. The default.
	DeliverAll = "all"
	// DeliverNew starts a new consumer with the messages stored after it was created.
	DeliverNew = "new"
)

// The defaults of SourceConfig.
const (
	DefaultAckWait       = 30 * time.Second
	DefaultMaxAckPending = 1000
)

// pullBatch bounds the messages one pull request asks for, and so the messages buffered in the
// client ahead of the Handler.
const pullBatch = 500

// lagRefresh is how often a running source asks for its consumer's pending count, which
// otherwise comes with each message.
const lagRefresh = 5 * time.Second

// SourceConfig is the settings of a NATS JetStream source: a durable pull consumer of a
// stream, created (or updated) with these settings when the source starts.
type SourceConfig struct {
	// URL is the server, e.g. nats://127.0.0.1:4222; several may be given comma-separated.
	URL string `json:"url"`
	// Stream is the stream to consume; it must exist.
	Stream string `json:"stream"`
	// Subjects, if set, select the stream's messages whose subject matches one of these
	// filters (wildcards allowed); empty means all. More than one needs NATS 2.10 or later.
	Subjects []string `json:"subjects,omitempty"`
	// Durable names the consumer; empty means "twinflow-" and the source's name. Sources on
	// several twinflow nodes with one durable share its messages.
	Durable string `json:"durable,omitempty"`
	// Deliver is where a new consumer starts: DeliverAll (default) or DeliverNew.
	Deliver string `json:"deliver,omitempty"`
	// AckWait is how long the server waits for a message's acknowledgement before it
	// delivers it again; zero means DefaultAckWait.
	AckWait sink.Duration `json:"ackWait,omitzero"`
	// MaxAckPending bounds the messages delivered and not yet acknowledged; zero means
	// DefaultMaxAckPending.
	MaxAckPending int `json:"maxAckPending,omitempty"`
	// Credentials is the path of a .creds file (JWT and NKey seed).
	Credentials string `json:"credentials,omitempty"`
	// User and Password, or Token, authenticate otherwise.
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
	Token    string `json:"token,omitempty"`
	// TLS configures tls:// connections.
	TLS sink.TLS `json:"tls,omitzero"`

	// policy checks every connection (see WithPolicy); nil allows any.
	policy *netpolicy.Policy
}

// WithPolicy returns c with every connection checked against p on the address it dials, and
// the credentials and TLS files read only where p allows.
func (c SourceConfig) WithPolicy(p *netpolicy.Policy) SourceConfig {
	c.policy = p
	return c
}

// Reach returns the servers c connects to and the files it reads.
func (c SourceConfig) Reach() netpolicy.Reach { return c.connection().reach() }

// Validate reports every problem with c, each naming its field.
func (c SourceConfig) Validate() error {
	errs := c.connection().validate()
	if c.Stream == "" {
		errs = append(errs, errors.New("stream: required"))
	} else if strings.ContainsAny(c.Stream, " \t\r\n.*>/\\") {
		errs = append(errs, fmt.Errorf("stream: %q: a stream name has no spaces, '.', '*', '>', '/' or '\\'", c.Stream))
	}
	for i, s := range c.Subjects {
		if s == "" || strings.ContainsAny(s, " \t\r\n") || strings.HasPrefix(s, ".") || strings.HasSuffix(s, ".") || strings.Contains(s, "..") {
			errs = append(errs, fmt.Errorf("subjects[%d]: %q is not a subject filter", i, s))
		}
	}
	if strings.ContainsAny(c.Durable, " \t\r\n.*>/\\") {
		errs = append(errs, fmt.Errorf("durable: %q: a consumer name has no spaces, '.', '*', '>', '/' or '\\'", c.Durable))
	}
	switch c.Deliver {
	case "", DeliverAll, DeliverNew:
	default:
		errs = append(errs, fmt.Errorf("deliver: %q is not one of %s, %s", c.Deliver, DeliverAll, DeliverNew))
	}
	if c.AckWait < 0 {
		errs = append(errs, fmt.Errorf("ackWait: %v is negative", time.Duration(c.AckWait)))
	}
	if c.MaxAckPending < 0 {
		errs = append(errs, fmt.Errorf("maxAckPending: %d is negative", c.MaxAckPending))
	}
	return errors.Join(errs...)
}

func (c SourceConfig) connection() connection {
	return connection{URL: c.URL, Credentials: c.Credentials, User: c.User, Password: c.Password, Token: c.Token, TLS: c.TLS, policy: c.policy}
}

// Redacted returns c with its password, its token and the secrets of its URLs blanked.
func (c SourceConfig) Redacted() SourceConfig {
	if c.Password != "" {
		c.Password = redact.Mask
	}
	if c.Token != "" {
		c.Token = redact.Mask
	}
	c.URL = c.connection().redactedURL()
	return c
}

// consumerConfig returns the configuration of the durable consumer.
func (c SourceConfig) consumerConfig(durable string) jetstream.ConsumerConfig {
	cc := jetstream.ConsumerConfig{
		Durable:       durable,
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       DefaultAckWait,
		MaxAckPending: DefaultMaxAckPending,
	}
	if c.AckWait > 0 {
		cc.AckWait = time.Duration(c.AckWait)
	}
	if c.MaxAckPending > 0 {
		cc.MaxAckPending = c.MaxAckPending
	}
	if c.Deliver == DeliverNew {
		cc.DeliverPolicy = jetstream.DeliverNewPolicy
	}
	switch len(c.Subjects) {
	case 0:
	case 1:
		cc.FilterSubject = c.Subjects[0]
	default:
		cc.FilterSubjects = c.Subjects
	}
	return cc
}

// DurableName returns the consumer name of the twinflow source called name: "twinflow-" and
// the name, with each character a consumer name cannot hold replaced by '_'.
func DurableName(name string) string {
	return "twinflow-" + strings.Map(func(r rune) rune {
		switch r {
		case ' ', '\t', '\r', '\n', '.', '*', '>', '/', '\\':
			return '_'
		}
		return r
	}, name)
}

// Source consumes a JetStream stream through a durable pull consumer. It implements
// ingress.Lagger.
//
// Each message is acknowledged once its Settle is called with nil; one settled with an error
// is given back (Nak) after ingress.RedeliveryDelay. When the source stops, the messages not
// acknowledged, and those the client had fetched but not handed over, are given back at once,
// so the next consumer of the durable gets them promptly and in order. The Message's ID is
// the Nats-Msg-Id header, its Topic and Order the subject, its Time when the stream stored it.
//
// The connection reconnects on its own (reporting Reconnecting, then Running); a consumer
// that goes away (deleted, or lost with a server's storage) is created again. A refused login,
// a stream that does not exist, or a consumer configuration the server refuses fail the
// source.
type Source struct {
	cfg     SourceConfig
	durable string
	opts    []nats.Option
	logger  *slog.Logger

	// lag is the consumer's pending count, -1 until known.
	lag atomic.Int64
}

var _ ingress.Lagger = (*Source)(nil)

// NewSource validates cfg and returns the source of the twinflow source called name. It does
// not connect: Run does.
func NewSource(cfg SourceConfig, name string, logger *slog.Logger) (*Source, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("nats source: %w", err)
	}
	opts, err := cfg.connection().options()
	if err != nil {
		return nil, fmt.Errorf("nats source: %w", err)
	}
	durable := cfg.Durable
	if durable == "" {
		durable = DurableName(name)
	}
	s := &Source{cfg: cfg, durable: durable, opts: opts, logger: logger.With("source", name, "durable", durable)}
	s.lag.Store(-1)
	return s, nil
}

// Lag implements ingress.Lagger: the messages of the stream that match the consumer's filter
// and were not delivered to it yet.
func (s *Source) Lag() (int64, bool) {
	n := s.lag.Load()
	return n, n >= 0
}

// Run implements ingress.Source.
func (s *Source) Run(ctx context.Context, h ingress.Handler) error {
	st := &ingress.StateReporter{Handler: h}
	st.Set(ingress.Starting, nil)
	var backoff ingress.Backoff
	for {
		err := s.session(ctx, h, st, &backoff)
		if ctx.Err() != nil {
			st.Set(ingress.Stopped, nil)
			return nil
		}
		if permanent(err) {
			err = fmt.Errorf("nats source: %w", answer(err))
			st.Set(ingress.Failed, err)
			return err
		}
		s.logger.Warn("nats source: consuming again after a failure", "err", err)
		st.Set(ingress.Reconnecting, answer(err))
		if !backoff.Wait(ctx) {
			st.Set(ingress.Stopped, nil)
			return nil
		}
	}
}

// session connects, creates the consumer and hands over its messages until ctx ends (then it
// returns nil) or consuming fails.
func (s *Source) session(ctx context.Context, h ingress.Handler, st *ingress.StateReporter, backoff *ingress.Backoff) error {
	// The connection's callbacks run on their own goroutine, possibly after the session
	// closed it: they report nothing then.
	var closing atomic.Bool
	opts := append(s.opts[:len(s.opts):len(s.opts)],
		nats.Name("twinflow "+s.durable),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250*time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if closing.Load() {
				return
			}
			if err == nil {
				err = errors.New("disconnected")
			}
			s.logger.Warn("nats source disconnected", "err", err)
			st.Set(ingress.Reconnecting, answer(err))
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			if closing.Load() {
				return
			}
			s.logger.Info("nats source reconnected", "server", nc.ConnectedUrlRedacted())
			st.Set(ingress.Running, nil)
		}),
	)
	nc, err := nats.Connect(s.cfg.URL, opts...)
	if err != nil {
		return fmt.Errorf("connect to %s: %w", s.cfg.connection().redactedURL(), err)
	}
	defer func() {
		closing.Store(true)
		nc.Close()
	}()
	js, err := jetstream.New(nc)
	if err != nil {
		return err
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, s.cfg.Stream, s.cfg.consumerConfig(s.durable))
	if err != nil {
		return fmt.Errorf("create consumer %q of stream %q: %w", s.durable, s.cfg.Stream, err)
	}
	s.lag.Store(int64(cons.CachedInfo().NumPending))
	msgs, err := cons.Messages(
		jetstream.PullMaxMessages(min(pullBatch, s.cfg.consumerConfig(s.durable).MaxAckPending)),
		jetstream.WithMessagesErrOnMissingHeartbeat(true))
	if err != nil {
		return fmt.Errorf("consume %q: %w", s.durable, err)
	}
	// Stopping drains: the messages already fetched still come out of Next, to be given back.
	stop := context.AfterFunc(ctx, msgs.Drain)
	defer stop()
	defer msgs.Stop()

	pending := ingress.NewPending(
		func(m jetstream.Msg) { _ = m.Ack() },
		func(m jetstream.Msg) { _ = m.Nak() })
	defer func() {
		pending.Close()
		// The acknowledgements and Naks reach the server before Run returns.
		_ = nc.FlushTimeout(5 * time.Second)
	}()

	refresh := s.refreshLag(ctx, cons)
	defer refresh()

	st.Set(ingress.Running, nil)
	backoff.Reset()
	var fetched []jetstream.Msg // after ctx ended: fetched, not handed over
	for {
		m, err := msgs.Next()
		if err != nil {
			if ctx.Err() != nil && errors.Is(err, jetstream.ErrMsgIteratorClosed) {
				s.giveBack(cons, pending, fetched)
				return nil
			}
			if errors.Is(err, jetstream.ErrMsgIteratorClosed) && nc.LastError() != nil {
				err = fmt.Errorf("%w: %w", err, nc.LastError())
			}
			return fmt.Errorf("consume %q: %w", s.durable, err)
		}
		if ctx.Err() != nil {
			fetched = append(fetched, m)
			continue
		}
		im, err := s.message(m)
		if err != nil {
			// Not a JetStream message: nothing to acknowledge.
			s.logger.Warn("nats source: skipping a message without JetStream metadata", "subject", m.Subject(), "err", err)
			continue
		}
		// A message Handle does not accept (ctx ended) stays pending and is given back.
		_ = h.Handle(ctx, im, pending.Add(m))
	}
}

// giveBack gives back, once the source stopped consuming, the pending messages and then those
// fetched after ctx ended, in the order they were delivered.
//
// The consumer's pull request must be gone at the server first: a NATS 2.9 server hands a
// message given back to a waiting pull request whose subscriber left, which loses it until
// the ack wait passes, and miscounts the consumer's delivered sequence so that a later message
// comes again. Asking for the consumer's info makes the server drop such requests.
func (s *Source) giveBack(cons jetstream.Consumer, pending *ingress.Pending[jetstream.Msg], fetched []jetstream.Msg) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if info, err := cons.Info(ctx); err == nil {
		s.lag.Store(int64(info.NumPending))
	}
	pending.Close()
	for _, m := range fetched {
		_ = m.Nak()
	}
}

// message returns the ingress message of m, and records the consumer's pending count it
// carries.
func (s *Source) message(m jetstream.Msg) (ingress.Message, error) {
	meta, err := m.Metadata()
	if err != nil {
		return ingress.Message{}, err
	}
	s.lag.Store(int64(meta.NumPending))
	var headers map[string]string
	if h := m.Headers(); len(h) > 0 {
		headers = make(map[string]string, len(h))
		for k, v := range h {
			if len(v) > 0 {
				headers[k] = v[len(v)-1]
			}
		}
	}
	return ingress.Message{
		ID:      m.Headers().Get(jetstream.MsgIDHeader),
		Topic:   m.Subject(),
		Headers: headers,
		Body:    m.Data(),
		Time:    meta.Timestamp,
		Order:   m.Subject(),
	}, nil
}

// refreshLag asks for the consumer's pending count every lagRefresh until the returned stop
// is called, so Lag stays current while no message arrives (the Handler holds the source back,
// or every message is filtered out).
func (s *Source) refreshLag(ctx context.Context, cons jetstream.Consumer) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(lagRefresh)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				ictx, icancel := context.WithTimeout(ctx, lagRefresh)
				if info, err := cons.Info(ictx); err == nil {
					s.lag.Store(int64(info.NumPending))
				}
				icancel()
			}
		}
	}()
	return func() {
		cancel()
		<-done
	}
}

// permanent reports whether consuming again cannot fix err: a refused login, no JetStream, no
// such stream, a consumer configuration the server refuses.
func permanent(err error) bool {
	if err == nil {
		return false
	}
	for _, p := range []error{
		nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked, nats.ErrAccountAuthExpired,
		jetstream.ErrStreamNotFound, jetstream.ErrJetStreamNotEnabled, jetstream.ErrJetStreamNotEnabledForAccount,
		jetstream.ErrInvalidStreamName, jetstream.ErrInvalidConsumerName,
	} {
		if errors.Is(err, p) {
			return true
		}
	}
	var apiErr *jetstream.APIError
	return errors.As(err, &apiErr) && apiErr.Code == 400
}
