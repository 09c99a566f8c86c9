// Package webhook delivers events over HTTP, in Event Grid's role: CloudEvents 1.0 in
// structured, binary or batched mode, or the Event Grid event schema, optionally signed with
// HMAC-SHA256.
//
// Every request also carries the Twinflow-Hops header (event.HopsHeader): the largest hop
// count of the events it holds, which twinflow's telemetry API and http sources read, so
// that a route whose webhook posts back to twinflow, in any mode, is stopped by the relay's
// hop limit.
//
// # Signature
//
// With a secret, every request carries two headers:
//
//	Twinflow-Timestamp: <Unix seconds when the request was made>
//	Twinflow-Signature: sha256=<lower-case hex HMAC-SHA256(secret, timestamp + "." + body)>
//
// The receiver recomputes the HMAC over the timestamp header's value, a '.', and the raw
// request body, compares it in constant time, and may refuse old timestamps to stop replays.
//
// # Status codes
//
// 2xx is success. 400, 401, 403, 404, 410, 413 and every other 4xx except 408 and 429 are
// permanent failures (the events go to dead letters); 401 is also sink.ErrUnauthorized. 408, 429, 5xx and network errors are
// retryable; a Retry-After header (seconds or an HTTP date) on them becomes an
// sink.RetryAfterError. Redirects are not followed: a 3xx answer is a permanent failure, so
// that a destination cannot send twinflow's requests, with their headers, somewhere else.
// The errors name the status only, never the body of the answer, which status and dead
// letters would otherwise show to whoever can read them.
//
// # Egress
//
// Requests go straight to the URL's host, never through a proxy of the environment
// (HTTP_PROXY), and every connection is checked against the policy set with WithPolicy on
// the address it dials (see netpolicy).
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/event/cloudevents"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// Delivery modes.
const (
	// Structured posts each event alone as application/cloudevents+json. The default.
	Structured = "structured"
	// Binary posts each event's data alone as the body, its attributes as ce-* headers.
	Binary = "binary"
	// Batched posts each batch as one application/cloudevents-batch+json array.
	Batched = "batched"
	// EventGrid posts each batch as one JSON array of Event Grid schema events, the payload
	// under data.data as ADT sends it.
	EventGrid = "eventgrid"
)

// Header names of the signature.
const (
	SignatureHeader = "Twinflow-Signature"
	TimestampHeader = "Twinflow-Timestamp"
)

// DefaultTimeout bounds one HTTP request when SinkConfig.Timeout is zero.
const DefaultTimeout = 30 * time.Second

// SinkConfig is the settings of a webhook endpoint. Only URL is required.
type SinkConfig struct {
	// URL is the http or https address events are posted to.
	URL string `json:"url"`
	// Mode is Structured (default), Binary, Batched or EventGrid.
	Mode string `json:"mode,omitempty"`
	// Secret, if set, signs every request (see the package documentation).
	Secret string `json:"secret,omitempty"`
	// Headers are added to every request, e.g. an Authorization header. The values of
	// credential headers (Authorization, Proxy-Authorization, Cookie, X-Api-Key, Api-Key,
	// Aeg-Sas-Key, Aeg-Sas-Token) and of those SecretHeaders names are secrets: blanked
	// when shown.
	Headers map[string]string `json:"headers,omitempty"`
	// SecretHeaders names further headers of Headers (in any case) whose values are
	// secrets, e.g. ["X-Signature-Key"].
	SecretHeaders []string `json:"secretHeaders,omitempty"`
	// Timeout bounds one request; zero means DefaultTimeout.
	Timeout sink.Duration `json:"timeout,omitempty"`
	// Topic is the topic of Event Grid schema events in EventGrid mode (ADT writes the
	// resource id of its Event Grid topic); empty means each event's source.
	Topic string `json:"topic,omitempty"`
	// OmitTopic leaves topic out of Event Grid schema events, as a publisher to an Event Grid
	// topic must (Event Grid refuses a topic other than its own resource id, and sets it).
	OmitTopic bool `json:"omitTopic,omitempty"`
	// Origin is sent as WebHook-Request-Origin in the validation handshake; empty means
	// "twinflow".
	Origin string `json:"origin,omitempty"`
	// TLS configures https connections.
	TLS sink.TLS `json:"tls,omitzero"`

	// policy checks every connection (see WithPolicy); nil allows any.
	policy *netpolicy.Policy
}

// WithPolicy returns c with every connection of its sink and handshake checked against p on
// the address it dials, and the TLS files read only where p allows.
func (c SinkConfig) WithPolicy(p *netpolicy.Policy) SinkConfig {
	c.policy = p
	return c
}

// Reach returns the address c's requests go to and the files it reads.
func (c SinkConfig) Reach() netpolicy.Reach {
	var r netpolicy.Reach
	if u, err := url.Parse(c.URL); err == nil && u.Hostname() != "" {
		port := u.Port()
		if port == "" {
			port = "80"
			if u.Scheme == "https" {
				port = "443"
			}
		}
		r.Addrs = []netpolicy.Named{{Field: "url", Value: net.JoinHostPort(u.Hostname(), port)}}
	}
	r.Files = c.TLS.Files("tls")
	return r
}

// isSecretHeader reports whether a custom header's value is a secret, blanked by Redacted:
// a credential header, or one of c.SecretHeaders.
func (c SinkConfig) isSecretHeader(name string) bool {
	switch strings.ToLower(name) {
	case "authorization", "proxy-authorization", "cookie", "x-api-key", "api-key", "aeg-sas-key", "aeg-sas-token":
		return true
	}
	for _, s := range c.SecretHeaders {
		if strings.EqualFold(s, name) {
			return true
		}
	}
	return false
}

// Validate reports every problem with c, each naming its field.
func (c SinkConfig) Validate() error {
	var errs []error
	if c.URL == "" {
		errs = append(errs, errors.New("url: required"))
	} else if u, err := url.Parse(c.URL); err != nil {
		errs = append(errs, fmt.Errorf("url: %w", err))
	} else if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		errs = append(errs, fmt.Errorf("url: %q is not an absolute http or https URL", redact.URL(c.URL)))
	}
	switch c.Mode {
	case "", Structured, Binary, Batched, EventGrid:
	default:
		errs = append(errs, fmt.Errorf("mode: %q is not one of structured, binary, batched, eventgrid", c.Mode))
	}
	for name := range c.Headers {
		if name == "" || strings.ContainsAny(name, " :\r\n") {
			errs = append(errs, fmt.Errorf("headers: %q is not a valid header name", name))
		}
	}
	for i, name := range c.SecretHeaders {
		found := false
		for h := range c.Headers {
			found = found || strings.EqualFold(h, name)
		}
		if !found {
			errs = append(errs, fmt.Errorf("secretHeaders[%d]: %q is not one of headers", i, name))
		}
	}
	if c.Topic != "" && c.Mode != EventGrid {
		errs = append(errs, errors.New("topic: only for mode eventgrid"))
	}
	if c.OmitTopic && c.Mode != EventGrid {
		errs = append(errs, errors.New("omitTopic: only for mode eventgrid"))
	}
	if c.OmitTopic && c.Topic != "" {
		errs = append(errs, errors.New("omitTopic: not with a topic"))
	}
	if c.Timeout < 0 {
		errs = append(errs, errors.New("timeout: must not be negative"))
	}
	if err := c.TLS.Validate("tls"); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// Redacted returns c with the secret and the values of secret headers blanked, and the
// URL's password and query string (which often carries a key or a signature) replaced by
// redact.URLMask.
func (c SinkConfig) Redacted() SinkConfig {
	if c.Secret != "" {
		c.Secret = redact.Mask
	}
	c.URL = redact.URL(c.URL)
	if len(c.Headers) > 0 {
		h := make(map[string]string, len(c.Headers))
		for k, v := range c.Headers {
			if c.isSecretHeader(k) {
				v = redact.Mask
			}
			h[k] = v
		}
		c.Headers = h
	}
	return c
}

// Sink posts events to one webhook. It implements sink.Sink.
type Sink struct {
	cfg    SinkConfig
	client *http.Client
	logger *slog.Logger
	now    func() time.Time
	closed atomic.Bool
}

var _ sink.Sink = (*Sink)(nil)

// NewSink validates cfg and returns a sink posting to cfg.URL. It does not contact the
// destination; see Handshake.
func NewSink(cfg SinkConfig, logger *slog.Logger) (*Sink, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("webhook endpoint: %w", err)
	}
	if cfg.Mode == "" {
		cfg.Mode = Structured
	}
	client, err := newClient(cfg)
	if err != nil {
		return nil, fmt.Errorf("webhook endpoint: %w", err)
	}
	return &Sink{cfg: cfg, client: client, logger: logger, now: time.Now}, nil
}

// dialTimeout bounds opening a connection.
const dialTimeout = 30 * time.Second

// newClient returns the client of cfg: no proxy, every connection checked against cfg's
// policy, no redirects followed.
func newClient(cfg SinkConfig) (*http.Client, error) {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConnsPerHost = 16
	transport.Proxy = nil
	transport.DialContext = cfg.policy.Dialer(dialTimeout).DialContext
	if !cfg.TLS.IsZero() {
		tc, err := cfg.TLS.Config(cfg.policy)
		if err != nil {
			return nil, err
		}
		transport.TLSClientConfig = tc
	}
	timeout := time.Duration(cfg.Timeout)
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	return &http.Client{Transport: transport, Timeout: timeout, CheckRedirect: noRedirects}, nil
}

// noRedirects is the clients' CheckRedirect: the redirect itself is the answer.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// requestError returns the error of a request that got no answer, its URL's password and
// query string blanked: net/http's errors quote the whole URL.
func requestError(err error) error {
	if ue, ok := errors.AsType[*url.Error](err); ok {
		ue.URL = redact.URL(ue.URL)
	}
	return err
}

// Send posts events: one request per event in structured and binary mode, one request for
// the whole batch in batched and Event Grid mode. It returns at the first failed request.
func (s *Sink) Send(ctx context.Context, events []event.Event) error {
	if s.closed.Load() {
		return errors.New("webhook: send on a closed sink")
	}
	if len(events) == 0 {
		return nil
	}
	switch s.cfg.Mode {
	case Batched:
		body, err := cloudevents.Batch(events)
		if err != nil {
			return sink.Permanent(err)
		}
		return s.post(ctx, body, cloudevents.BatchContentType, maxHops(events), nil)
	case EventGrid:
		body, err := eventGridBatch(events, s.cfg.Topic, s.cfg.OmitTopic)
		if err != nil {
			return sink.Permanent(err)
		}
		return s.post(ctx, body, "application/json; charset=utf-8", maxHops(events), nil)
	}
	for i := range events {
		e := &events[i]
		var err error
		if s.cfg.Mode == Binary {
			err = s.post(ctx, e.Data, e.DataContentType, e.Hops, binaryHeaders(e))
		} else {
			var body []byte
			if body, err = cloudevents.Structured(e); err != nil {
				return sink.Permanent(err)
			}
			err = s.post(ctx, body, cloudevents.StructuredContentType, e.Hops, nil)
		}
		if err != nil {
			return fmt.Errorf("deliver event %q: %w", e.ID, err)
		}
	}
	return nil
}

// Close releases idle connections. Send after Close fails.
func (s *Sink) Close() error {
	s.closed.Store(true)
	s.client.CloseIdleConnections()
	return nil
}

// maxHops returns the largest hop count of events.
func maxHops(events []event.Event) int {
	n := 0
	for i := range events {
		n = max(n, events[i].Hops)
	}
	return n
}

func binaryHeaders(e *event.Event) http.Header {
	attrs := cloudevents.Attributes(e)
	h := make(http.Header, len(attrs))
	for _, a := range attrs {
		// CloudEvents HTTP binding: ce- prefix; values are percent-encoded where not
		// printable ASCII.
		h["ce-"+a.Name] = []string{encodeHeaderValue(a.Value)}
	}
	return h
}

// encodeHeaderValue percent-encodes what the CloudEvents HTTP binding requires: space,
// '"', '%' and everything outside printable ASCII.
func encodeHeaderValue(v string) string {
	var b strings.Builder
	for i := 0; i < len(v); i++ {
		c := v[i]
		if c <= ' ' || c >= 0x7f || c == '"' || c == '%' {
			fmt.Fprintf(&b, "%%%02X", c)
			continue
		}
		b.WriteByte(c)
	}
	return b.String()
}

// post sends one request with body, of contentType, carrying hops in the Twinflow-Hops
// header (when not 0) and the extra headers.
func (s *Sink) post(ctx context.Context, body []byte, contentType string, hops int, extra http.Header) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.cfg.URL, bytes.NewReader(body))
	if err != nil {
		return sink.Permanent(fmt.Errorf("build request: %w", err))
	}
	for k, v := range s.cfg.Headers {
		req.Header.Set(k, v)
	}
	for k, v := range extra {
		req.Header[k] = v
	}
	if hops > 0 {
		req.Header.Set(event.HopsHeader, strconv.Itoa(hops))
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	if s.cfg.Secret != "" {
		ts := strconv.FormatInt(s.now().Unix(), 10)
		req.Header.Set(TimestampHeader, ts)
		req.Header.Set(SignatureHeader, Sign(s.cfg.Secret, ts, body))
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("post to webhook: %w", requestError(err))
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // lets the connection be reused
	if err := statusError(resp, s.now()); err != nil {
		s.logger.Debug("webhook refused a request", "url", s.cfg.Redacted().URL, "status", resp.StatusCode, "permanent", sink.IsPermanent(err))
		return err
	}
	return nil
}

// Sign returns the Twinflow-Signature header value for body sent at timestamp (Unix seconds,
// as in the Twinflow-Timestamp header) with secret.
func Sign(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// statusError maps a response to nil, a retryable, a RetryAfter or a permanent error, each
// redact.Shown and naming the status code and its standard text only (the reason phrase
// and the body are the destination's to choose, and may carry what it should not tell).
func statusError(resp *http.Response, now time.Time) error {
	code := resp.StatusCode
	if code >= 200 && code < 300 {
		return nil
	}
	err := redact.Shown(fmt.Errorf("webhook answered %s", statusText(code)))
	if code >= 300 && code < 400 {
		return sink.Permanent(redact.Shown(fmt.Errorf("webhook answered %s: redirects are not followed", statusText(code))))
	}
	retryable := code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500 || code < 300
	if code == http.StatusUnauthorized {
		err = sink.Unauthorized(err)
	}
	if !retryable {
		return sink.Permanent(err)
	}
	if after, ok := retryAfter(resp.Header.Get("Retry-After"), now); ok {
		return &sink.RetryAfterError{Err: err, After: after}
	}
	return err
}

// statusText is code and its standard text ("404 Not Found").
func statusText(code int) string {
	if t := http.StatusText(code); t != "" {
		return strconv.Itoa(code) + " " + t
	}
	return strconv.Itoa(code)
}

// retryAfter parses a Retry-After value: delay seconds or an HTTP date.
func retryAfter(v string, now time.Time) (time.Duration, bool) {
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && secs >= 0 {
		return time.Duration(secs) * time.Second, true
	}
	if at, err := http.ParseTime(v); err == nil {
		return max(at.Sub(now), 0), true
	}
	return 0, false
}
