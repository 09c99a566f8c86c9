// Package client is a typed client of the twinflow REST API: the Azure Digital Twins data
// plane at api-version 2023-10-31 and twinflow's own resources beside it (endpoints, sources,
// mappings, dead letters, jobs, history and the event stream).
//
// Every method sends one request (a list method follows its nextLink or continuation token
// to the end) and returns either what the server answered or an error that is one of:
//
//   - *Error: the server answered with an error status; it carries ADT's error code and
//     message from the body, or the status text when the body is not ADT's.
//   - *UnreachableError: no answer came: the server could not be reached, the TLS handshake
//     failed, or the connection broke before a response arrived.
//   - any other error: the request could not be built, or the answer could not be read.
//
// Bodies the server returns are handed back as json.RawMessage wherever their shape is the
// server's to decide (twins, relationships, query rows, resources), so nothing is lost.
// A Client is safe for concurrent use.
package client

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// APIVersion is the api-version every request carries.
const APIVersion = "2023-10-31"

// Config configures a Client.
type Config struct {
	// Server is the base URL of the server, e.g. http://127.0.0.1:8080. Required.
	Server string
	// Token, when set, is sent as "Authorization: Bearer <Token>": an API key or an OIDC
	// access token.
	Token string
	// CAFile, when set, is a PEM file of the certificate authorities trusted for HTTPS
	// instead of the system's.
	CAFile string
	// InsecureSkipVerify turns off the verification of the server's certificate.
	InsecureSkipVerify bool
	// Timeout bounds each request but the event stream, whose reads have no end; 0 means
	// none (the caller's context still bounds it).
	Timeout time.Duration
}

// Client sends requests to one twinflow server.
type Client struct {
	base   *url.URL
	token  string
	http   *http.Client
	stream *http.Client // without a timeout, for the event stream
}

// New returns a Client for cfg. It fails when the server URL is not an absolute http or
// https URL, or when CAFile cannot be read or holds no certificate.
func New(cfg Config) (*Client, error) {
	u, err := url.Parse(strings.TrimRight(cfg.Server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server URL %q: want http://host:port or https://host:port", cfg.Server)
	}
	tlsCfg := &tls.Config{InsecureSkipVerify: cfg.InsecureSkipVerify} //nolint:gosec // asked for by the user
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read the CA file: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("CA file %s holds no PEM certificate", cfg.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = tlsCfg
	tr.MaxIdleConnsPerHost = 16
	return &Client{
		base:   u,
		token:  cfg.Token,
		http:   &http.Client{Transport: tr, Timeout: cfg.Timeout},
		stream: &http.Client{Transport: tr},
	}, nil
}

// Server returns the server's base URL.
func (c *Client) Server() string { return c.base.String() }

// Error is an error answer of the server: its HTTP status and ADT's error code and message.
type Error struct {
	Status  int
	Code    string
	Message string
	Details []ErrorDetail
}

// ErrorDetail is one entry of an ADT error's details.
type ErrorDetail struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Error returns "Code: Message", followed by each detail's message.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.Code)
	b.WriteString(": ")
	b.WriteString(e.Message)
	for _, d := range e.Details {
		b.WriteString("\n  ")
		if d.Code != "" {
			b.WriteString(d.Code + ": ")
		}
		b.WriteString(d.Message)
	}
	return b.String()
}

// UnreachableError is a request that got no answer from the server at URL.
type UnreachableError struct {
	URL string
	Err error
}

func (e *UnreachableError) Error() string {
	return fmt.Sprintf("cannot reach the server at %s: %v", e.URL, e.Err)
}

func (e *UnreachableError) Unwrap() error { return e.Err }

// request is one API request.
type request struct {
	method string
	path   string     // escaped path below the base URL, e.g. "/digitaltwins/a%2Fb"
	query  url.Values // added to api-version
	header http.Header
	body   io.Reader
	ctype  string // the body's Content-Type
	size   int64  // the body's length when positive and the body does not tell it
}

// seg escapes one path segment.
func seg(s string) string { return url.PathEscape(s) }

// jsonBody returns v encoded as JSON, or the bytes of v when v is already JSON.
func jsonBody(v any) (io.Reader, error) {
	switch b := v.(type) {
	case json.RawMessage:
		return bytes.NewReader(b), nil
	case []byte:
		return bytes.NewReader(b), nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode the request body: %w", err)
	}
	return bytes.NewReader(b), nil
}

// url returns the absolute URL of r.
func (c *Client) url(r request) string {
	q := url.Values{}
	for k, v := range r.query {
		q[k] = v
	}
	q.Set("api-version", APIVersion)
	return c.base.String() + r.path + "?" + q.Encode()
}

// do sends r with hc and returns the response when its status is 2xx; the caller closes
// its body. Any other status is returned as an *Error, and no answer as an
// *UnreachableError.
func (c *Client) do(ctx context.Context, hc *http.Client, r request) (*http.Response, error) {
	return c.doURL(ctx, hc, r, c.url(r))
}

func (c *Client) doURL(ctx context.Context, hc *http.Client, r request, u string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, r.method, u, r.body)
	if err != nil {
		return nil, fmt.Errorf("build the request %s %s: %w", r.method, r.path, err)
	}
	if r.size > 0 && req.ContentLength == 0 {
		req.ContentLength = r.size
	}
	for k, v := range r.header {
		req.Header[k] = v
	}
	if r.body != nil {
		ct := r.ctype
		if ct == "" {
			ct = "application/json"
		}
		req.Header.Set("Content-Type", ct)
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, &UnreachableError{URL: c.base.String(), Err: unwrapURLError(err)}
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, readError(resp)
}

// unwrapURLError drops the *url.Error around err, whose text repeats the whole URL.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// readError turns an error response into an *Error.
func readError(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var adt struct {
		Error struct {
			Code    string        `json:"code"`
			Message string        `json:"message"`
			Details []ErrorDetail `json:"details"`
		} `json:"error"`
	}
	e := &Error{Status: resp.StatusCode}
	if json.Unmarshal(body, &adt) == nil && adt.Error.Code != "" {
		e.Code, e.Message, e.Details = adt.Error.Code, adt.Error.Message, adt.Error.Details
		return e
	}
	e.Code = strings.ReplaceAll(http.StatusText(resp.StatusCode), " ", "")
	e.Message = fmt.Sprintf("the server answered %s", resp.Status)
	if text := strings.TrimSpace(string(body)); text != "" {
		e.Message += ": " + text
	}
	return e
}

// send sends r and decodes a JSON answer into out, unless out is nil.
func (c *Client) send(ctx context.Context, r request, out any) (http.Header, error) {
	resp, err := c.do(ctx, c.http, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return resp.Header, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return nil, fmt.Errorf("read the answer to %s %s: %w", r.method, r.path, err)
	}
	return resp.Header, nil
}

// page is the list shape of the API.
type page struct {
	Value    []json.RawMessage `json:"value"`
	NextLink *string           `json:"nextLink"`
}

// list sends the GET r and follows the nextLinks, calling fn with each page's items. It
// stops at fn's first error and returns it.
func (c *Client) list(ctx context.Context, r request, fn func([]json.RawMessage) error) error {
	u := c.url(r)
	for {
		resp, err := c.doURL(ctx, c.http, r, u)
		if err != nil {
			return err
		}
		var p page
		err = json.NewDecoder(resp.Body).Decode(&p)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("read the list %s: %w", r.path, err)
		}
		if err := fn(p.Value); err != nil {
			return err
		}
		if p.NextLink == nil || *p.NextLink == "" {
			return nil
		}
		u = *p.NextLink
	}
}

// listAll returns every item of the list at r.
func (c *Client) listAll(ctx context.Context, r request) ([]json.RawMessage, error) {
	var all []json.RawMessage
	err := c.list(ctx, r, func(items []json.RawMessage) error {
		all = append(all, items...)
		return nil
	})
	return all, err
}
