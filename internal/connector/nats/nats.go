// Package nats delivers events to NATS JetStream: each event is published with
// acknowledgement to a subject expanded from a template, carries its CloudEvents attributes as
// ce-* headers (the CloudEvents NATS binding's binary mode) and its id as Nats-Msg-Id, so the
// stream drops duplicates within its de-duplication window.
package nats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/event/cloudevents"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// DefaultSubject is the subject template when SinkConfig.Subject is empty.
const DefaultSubject = "twinflow.{type}.{twinId}"

// defaultBatch is the batch size a relay hands the sink (see SinkConfig.DefaultMaxBatch).
const defaultBatch = 1024

// defaultPending bounds the publishes awaiting acknowledgement of a sink whose config has no
// window (see SinkConfig.WithWindow).
const defaultPending = defaultBatch

// ackTimeout bounds the wait for one acknowledgement, so an unanswered publish stops
// counting against the bound of publishes awaiting acknowledgement.
const ackTimeout = 30 * time.Second

// SinkConfig is the settings of a NATS JetStream endpoint.
type SinkConfig struct {
	// URL is the server, e.g. nats://127.0.0.1:4222; several may be given comma-separated.
	URL string `json:"url"`
	// Subject is the subject template (see sink.Template), DefaultSubject if empty. Each
	// placeholder's value has '.', ' ', '*' and '>' replaced by '_' and stands for one
	// subject token ("_" if empty), so twins.{type}.{twinId} always has three tokens:
	// twins.Microsoft_DigitalTwins_Twin_Update.room1.
	Subject string `json:"subject,omitempty"`
	// Stream, if set, is the stream that must store the events: a publish that another
	// stream (or none) acknowledges fails permanently.
	Stream string `json:"stream,omitempty"`
	// Credentials is the path of a .creds file (JWT and NKey seed).
	Credentials string `json:"credentials,omitempty"`
	// User and Password, or Token, authenticate otherwise.
	User     string `json:"user,omitempty"`
	Password string `json:"password,omitempty"`
	Token    string `json:"token,omitempty"`
	// TLS configures tls:// connections.
	TLS sink.TLS `json:"tls,omitzero"`

	// window is what WithWindow set, 0 if nothing.
	window int
	// policy checks every connection (see WithPolicy); nil allows any.
	policy *netpolicy.Policy
}

// WithPolicy returns c with every connection checked against p on the address it dials, and
// the credentials and TLS files read only where p allows.
func (c SinkConfig) WithPolicy(p *netpolicy.Policy) SinkConfig {
	c.policy = p
	return c
}

// Reach returns the servers c connects to and the files it reads.
func (c SinkConfig) Reach() netpolicy.Reach { return c.connection().reach() }

// WithWindow implements endpoint.WindowSizer: it returns c for a relay that keeps up to events
// published events awaiting acknowledgement. The sink then lets twice that many await
// acknowledgement before a publish stalls: the relay's window, and as many again of batches
// the relay abandoned after a failure, whose answers may still be on their way.
func (c SinkConfig) WithWindow(events int) SinkConfig {
	c.window = events
	return c
}

// pending returns the most publishes awaiting acknowledgement, and so the largest piece a
// batch goes out in.
func (c SinkConfig) pending() int {
	if c.window > 0 {
		return 2 * c.window
	}
	return defaultPending
}

// Validate reports every problem with c, each naming its field.
func (c SinkConfig) Validate() error {
	errs := c.connection().validate()
	if _, err := sink.ParseTemplate(c.subject()); err != nil {
		errs = append(errs, fmt.Errorf("subject: %w", err))
	} else if strings.ContainsAny(strings.NewReplacer("{type}", "", "{twinId}", "", "{subject}", "", "{source}", "", "{id}", "").Replace(c.subject()), " \t*>") {
		errs = append(errs, fmt.Errorf("subject: %q: wildcards and spaces cannot be published to", c.subject()))
	}
	return errors.Join(errs...)
}

func (c SinkConfig) connection() connection {
	return connection{URL: c.URL, Credentials: c.Credentials, User: c.User, Password: c.Password, Token: c.Token, TLS: c.TLS, policy: c.policy}
}

func (c SinkConfig) subject() string {
	if c.Subject == "" {
		return DefaultSubject
	}
	return c.Subject
}

// Redacted returns c with its password, its token and the secrets of its URLs blanked.
func (c SinkConfig) Redacted() SinkConfig {
	if c.Password != "" {
		c.Password = redact.Mask
	}
	if c.Token != "" {
		c.Token = redact.Mask
	}
	c.URL = c.connection().redactedURL()
	return c
}

// DefaultMaxBatch implements endpoint.BatchSizer: a relay hands the sink batches of 1,024
// events, which JetStream acknowledges at a far higher rate than batches of the relay's
// default size.
func (SinkConfig) DefaultMaxBatch() int { return defaultBatch }

// Sink publishes events to JetStream. It implements sink.Sink. The connection reconnects
// on its own; a Send while it is down fails after its context or the acknowledgement
// timeout, and the relay sends again.
type Sink struct {
	cfg     SinkConfig
	subject sink.Template
	nc      *nats.Conn
	js      jetstream.JetStream
	// pending is cfg.pending().
	pending int
	// done is closed by Close; Acks still waiting then fail.
	done chan struct{}

	mu     sync.Mutex // held by Send, Publish and Close
	closed bool
}

var _ sink.Sink = (*Sink)(nil)

// NewSink validates cfg and starts connecting to the server. It does not wait: a server
// that is down is tried again forever, and Sends fail until it answers.
func NewSink(cfg SinkConfig, logger *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("nats endpoint: %w", err)
	}
	subject, err := sink.ParseTemplate(cfg.subject())
	if err != nil {
		return nil, fmt.Errorf("nats endpoint: subject: %w", err)
	}
	opts := []nats.Option{
		nats.Name("twinflow"),
		nats.MaxReconnects(-1),
		nats.RetryOnFailedConnect(true),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(100*time.Millisecond, time.Second),
		// Publishes while disconnected fail at once instead of waiting in a buffer: the relay
		// owns retries.
		nats.ReconnectBufSize(-1),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			if err != nil {
				logger.Warn("nats endpoint disconnected", "err", err)
			}
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { logger.Info("nats endpoint reconnected", "server", nc.ConnectedUrlRedacted()) }),
	}
	auth, err := cfg.connection().options()
	if err != nil {
		return nil, fmt.Errorf("nats endpoint: %w", err)
	}
	opts = append(opts, auth...)
	nc, err := nats.Connect(cfg.URL, opts...)
	if err != nil {
		return nil, answer(fmt.Errorf("connect to nats %s: %w", cfg.connection().redactedURL(), err))
	}
	pending := cfg.pending()
	js, err := jetstream.New(nc, jetstream.WithPublishAsyncMaxPending(pending), jetstream.WithPublishAsyncTimeout(ackTimeout))
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("nats endpoint: %w", err)
	}
	return &Sink{cfg: cfg, subject: subject, nc: nc, js: js, pending: pending, done: make(chan struct{})}, nil
}

var _ sink.Publisher = (*Sink)(nil)

// Send publishes events asynchronously, then waits for every acknowledgement in order.
func (s *Sink) Send(ctx context.Context, events []event.Event) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return errors.New("nats: send on a closed sink")
	}
	for len(events) > 0 {
		n := min(len(events), s.pending)
		futures, err := s.publish(ctx, events[:n])
		if err == nil {
			err = s.wait(ctx, events[:n], futures)
		}
		if err != nil {
			return err
		}
		events = events[n:]
	}
	return nil
}

// Publish implements sink.Publisher: it publishes events asynchronously and returns an Ack
// waiting for their acknowledgements in order. Of a batch longer than the bound of publishes
// awaiting acknowledgement (see SinkConfig.WithWindow), all but the last bound's worth is
// acknowledged before Publish returns. An Ack still waiting when the sink closes fails.
func (s *Sink) Publish(ctx context.Context, events []event.Event) (sink.Ack, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, errors.New("nats: publish on a closed sink")
	}
	for len(events) > s.pending {
		futures, err := s.publish(ctx, events[:s.pending])
		if err == nil {
			err = s.wait(ctx, events[:s.pending], futures)
		}
		if err != nil {
			return nil, err
		}
		events = events[s.pending:]
	}
	futures, err := s.publish(ctx, events)
	if err != nil {
		return nil, err
	}
	return func(ctx context.Context) error { return s.wait(ctx, events, futures) }, nil
}

// publish publishes events asynchronously and returns their acknowledgements to come.
func (s *Sink) publish(ctx context.Context, events []event.Event) ([]jetstream.PubAckFuture, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	futures := make([]jetstream.PubAckFuture, 0, len(events))
	var opts []jetstream.PublishOpt
	for i := range events {
		e := &events[i]
		opts = append(opts[:0], jetstream.WithMsgID(e.ID), jetstream.WithRetryAttempts(0))
		if s.cfg.Stream != "" {
			opts = append(opts, jetstream.WithExpectStream(s.cfg.Stream))
		}
		f, err := s.js.PublishMsgAsync(Message(s.subject.Expand(e, escapeToken), e), opts...)
		if err != nil {
			return nil, classify(fmt.Errorf("publish event %q: %w", e.ID, err))
		}
		futures = append(futures, f)
	}
	return futures, nil
}

// wait waits for the acknowledgements of events, in order. It fails once the sink is closed:
// closing the connection does not fail the publishes still awaiting acknowledgement.
func (s *Sink) wait(ctx context.Context, events []event.Event, futures []jetstream.PubAckFuture) error {
	for i, f := range futures {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			return classify(fmt.Errorf("publish event %q: %w", events[i].ID, err))
		case <-ctx.Done():
			return fmt.Errorf("wait for acknowledgement of event %q: %w", events[i].ID, ctx.Err())
		case <-s.done:
			return fmt.Errorf("wait for acknowledgement of event %q: %w", events[i].ID, errClosed)
		}
	}
	return nil
}

// errClosed fails the Acks still waiting when the sink closes.
var errClosed = errors.New("nats: sink closed")

// Message returns the NATS message of e on subject: data as the body, ce-* headers, the
// content type and Nats-Msg-Id.
func Message(subject string, e *event.Event) *nats.Msg {
	attrs := cloudevents.Attributes(e)
	h := make(nats.Header, len(attrs)+2)
	// One array backs every header's value.
	values := make([]string, 0, len(attrs)+2)
	set := func(key, value string) {
		values = append(values, value)
		h[key] = values[len(values)-1:]
	}
	for _, a := range attrs {
		set(headerName(a.Name), a.Value)
	}
	if e.DataContentType != "" {
		set("content-type", e.DataContentType)
	}
	set(jetstream.MsgIDHeader, e.ID)
	return &nats.Msg{Subject: subject, Header: h, Data: e.Data}
}

// headerName returns the ce- header of the CloudEvents attribute name, without building it
// for the attributes twinflow sets.
func headerName(name string) string {
	switch name {
	case "id":
		return "ce-id"
	case "source":
		return "ce-source"
	case "specversion":
		return "ce-specversion"
	case "type":
		return "ce-type"
	case "subject":
		return "ce-subject"
	case "time":
		return "ce-time"
	case "dataschema":
		return "ce-dataschema"
	case "traceparent":
		return "ce-traceparent"
	case "tracestate":
		return "ce-tracestate"
	case "telemetrySourceTime":
		return "ce-telemetrySourceTime"
	}
	return "ce-" + name
}

// classify marks the failures that sending again cannot fix as permanent; the server's
// answers are redact.Shown.
func classify(err error) error {
	err = answer(err)
	var apiErr *jetstream.APIError
	switch {
	case errors.Is(err, nats.ErrMaxPayload), errors.Is(err, nats.ErrBadSubject):
		return sink.Permanent(err)
	case errors.As(err, &apiErr) && apiErr.Code == 400:
		// The stream refused the message itself (wrong stream, too large, ...).
		return sink.Permanent(err)
	}
	return err
}

// escapeToken keeps a placeholder's value one subject token.
func escapeToken(v string) string {
	if v == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch r {
		case '.', ' ', '\t', '\r', '\n', '*', '>':
			return '_'
		}
		return r
	}, v)
}

// Close closes the connection; Send and Publish after Close fail, and so do the Acks still
// waiting.
func (s *Sink) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.done)
		s.nc.Close()
	}
	return nil
}
