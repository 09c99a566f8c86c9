package source

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/ingress/runner"
	"github.com/twinflow/twinflow/internal/netpolicy"
)

// HTTPType is the sourceType of sources whose messages are pushed to twinflow's API,
// POST /sources/{name}/messages.
const HTTPType = "http"

// HTTPConfig holds the settings of an http source: it has none besides those of every
// source (see Definition).
type HTTPConfig struct{}

// Validate implements Settings: there is nothing to check.
func (HTTPConfig) Validate() error { return nil }

// Redacted implements Settings: there is no secret.
func (c HTTPConfig) Redacted() HTTPConfig { return c }

// Reach implements Settings: an http source connects nowhere.
func (HTTPConfig) Reach() netpolicy.Reach { return netpolicy.Reach{} }

// WithPolicy implements Settings: an http source connects nowhere.
func (c HTTPConfig) WithPolicy(*netpolicy.Policy) HTTPConfig { return c }

// HTTPKind is the Kind of http sources.
func HTTPKind() Kind { return KindOf(NewHTTPSource) }

// HTTPSource is the ingress.Source of an http source: Push hands it the messages of one
// request, which it passes to its handler in order while Run runs. It is not durable: a
// message that is not applied is reported to the pusher, who sends it again.
type HTTPSource struct {
	name string

	mu sync.Mutex
	// h and ctx are Run's while it runs, nil otherwise.
	h   ingress.Handler
	ctx context.Context
	// requests numbers the pushes, for their Orders.
	requests atomic.Uint64
}

var _ ingress.Source = (*HTTPSource)(nil)

// NewHTTPSource returns the http source named name.
func NewHTTPSource(_ HTTPConfig, name string, _ *slog.Logger) (*HTTPSource, error) {
	return &HTTPSource{name: name}, nil
}

// Run implements ingress.Source: the source runs, taking pushes, until ctx ends.
func (s *HTTPSource) Run(ctx context.Context, h ingress.Handler) error {
	s.mu.Lock()
	s.h, s.ctx = h, ctx
	s.mu.Unlock()
	h.State(ingress.Running, nil)
	<-ctx.Done()
	s.mu.Lock()
	s.h, s.ctx = nil, nil
	s.mu.Unlock()
	h.State(ingress.Stopped, nil)
	return nil
}

// submitter is a Handler that tells each message's Outcome (*runner.Runner is one).
type submitter interface {
	Submit(ctx context.Context, m ingress.Message, done func(runner.Outcome)) error
}

// Push hands msgs to the handler, in order, and returns each one's outcome once every one is
// settled. The messages of one push share an Order of their own, "<name>#<n>", unless they
// have one. It fails with runner.ErrNotRunning while Run does not run, and with ctx's error
// when ctx ends first; the messages handed over by then are applied all the same.
func (s *HTTPSource) Push(ctx context.Context, msgs []ingress.Message) ([]runner.Outcome, error) {
	s.mu.Lock()
	h, runCtx := s.h, s.ctx
	s.mu.Unlock()
	if h == nil {
		return nil, runner.ErrNotRunning
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(runCtx, cancel)
	defer stop()

	order := s.name + "#" + strconv.FormatUint(s.requests.Add(1), 10)
	var (
		mu       sync.Mutex
		outcomes = make([]runner.Outcome, len(msgs))
		pending  = len(msgs)
		done     = make(chan struct{})
	)
	finish := func(i int, o runner.Outcome) {
		mu.Lock()
		defer mu.Unlock()
		outcomes[i] = o
		if pending--; pending == 0 {
			close(done)
		}
	}
	if pending == 0 {
		close(done)
	}
	sub, _ := h.(submitter)
	for i, m := range msgs {
		if m.Order == "" {
			m.Order = order
		}
		var err error
		if sub != nil {
			err = sub.Submit(ctx, m, func(o runner.Outcome) { finish(i, o) })
		} else {
			err = h.Handle(ctx, m, func(err error) {
				o := runner.Outcome{Result: runner.Applied}
				if err != nil {
					o = runner.Outcome{Result: runner.Failed, Err: err}
				}
				finish(i, o)
			})
		}
		if err != nil {
			if runCtx.Err() != nil {
				err = runner.ErrNotRunning
			}
			for j := i; j < len(msgs); j++ {
				finish(j, runner.Outcome{Result: runner.Failed, Err: err})
			}
			break
		}
	}
	select {
	case <-done:
	case <-ctx.Done():
		if runCtx.Err() != nil {
			return nil, runner.ErrNotRunning
		}
		return nil, ctx.Err()
	}
	return outcomes, nil
}

// ErrBadPush is wrapped by the errors of ReadMessages.
var ErrBadPush = errors.New("invalid messages")

// NDJSON is the media type of a body of newline-delimited JSON messages.
const NDJSON = "application/x-ndjson"

// MessageIDField is the member of a JSON object message that gives its id, for
// de-duplication, when the message comes in a batch (or without a Message-Id header).
const MessageIDField = "messageId"

// droppedHeaders are request headers that never become message headers: credentials, which
// would otherwise be kept with dead letters, and those about the connection or the request's
// encoding rather than the message.
var droppedHeaders = map[string]bool{
	"authorization": true, "proxy-authorization": true, "cookie": true,
	"accept-encoding": true, "connection": true, "content-length": true, "expect": true,
	"keep-alive": true, "te": true, "transfer-encoding": true, "upgrade": true,
}

// ReadMessages reads the messages a request pushes to the http source topic:
//
//   - a body of Content-Type application/x-ndjson holds one message per non-empty line;
//   - else a body that is a JSON array holds one message per element;
//   - else the body is one message.
//
// Each message's body is the JSON value as sent (or the line, for NDJSON). Its id is the
// Message-Id header for a body of one message, else the string member messageId of a JSON
// object message, else none (it is then applied every time it is sent). Its headers are the
// request's, with lower-case names, except credentials (Authorization, Proxy-Authorization,
// Cookie) and those about the connection (Content-Length, Accept-Encoding, Connection and the
// like).
// Topic is topic, Time now.
func ReadMessages(body []byte, header http.Header, topic string, now time.Time) ([]ingress.Message, error) {
	headers := make(map[string]string, len(header))
	for k, v := range header {
		k = strings.ToLower(k)
		if !droppedHeaders[k] && len(v) > 0 {
			headers[k] = v[len(v)-1]
		}
	}
	newMessage := func(b []byte, id string) ingress.Message {
		if id == "" {
			id = messageID(b)
		}
		return ingress.Message{ID: id, Topic: topic, Headers: headers, Body: b, Time: now}
	}
	mediaType, _, _ := mime.ParseMediaType(header.Get("Content-Type"))
	trimmed := bytes.TrimSpace(body)
	switch {
	case mediaType == NDJSON:
		var msgs []ingress.Message
		for line := range bytes.Lines(body) {
			if line = bytes.TrimSpace(line); len(line) > 0 {
				msgs = append(msgs, newMessage(line, ""))
			}
		}
		if len(msgs) == 0 {
			return nil, fmt.Errorf("%w: the body holds no message", ErrBadPush)
		}
		return msgs, nil
	case len(trimmed) > 0 && trimmed[0] == '[':
		var elems []json.RawMessage
		if err := json.Unmarshal(trimmed, &elems); err != nil {
			return nil, fmt.Errorf("%w: the body starts as a JSON array of messages but is not one: %v", ErrBadPush, err)
		}
		if len(elems) == 0 {
			return nil, fmt.Errorf("%w: the array holds no message", ErrBadPush)
		}
		msgs := make([]ingress.Message, len(elems))
		for i, e := range elems {
			msgs[i] = newMessage(e, "")
		}
		return msgs, nil
	case len(trimmed) == 0:
		return nil, fmt.Errorf("%w: the body is empty", ErrBadPush)
	}
	return []ingress.Message{newMessage(body, header.Get("Message-Id"))}, nil
}

// messageID returns the string member MessageIDField of a JSON object, or "".
func messageID(b []byte) string {
	if len(b) == 0 || b[0] != '{' {
		return ""
	}
	var v struct {
		ID any `json:"messageId"`
	}
	if json.Unmarshal(b, &v) != nil {
		return ""
	}
	id, _ := v.ID.(string)
	return id
}
