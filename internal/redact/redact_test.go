package redact

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/netpolicy"
)

func TestScrubberString(t *testing.T) {
	s := NewScrubber("hunter2-secret", "p@ss/w rd", "abc", "")
	tests := []struct{ in, want string }{
		{"login with hunter2-secret failed", "login with *** failed"},
		{"url amqp://u:p%40ss%2Fw%20rd@h", "url amqp://u:***@h"}, // userinfo escaping
		{"query p%40ss%2Fw+rd", "query ***"},                     // query escaping
		{"path p@ss%2Fw%20rd", "path ***"},                       // path escaping
		{"short abc stays", "short abc stays"},                   // below MinSecretLength
		{"twice hunter2-secret hunter2-secret", "twice *** ***"},
	}
	for _, tt := range tests {
		if got := s.String(tt.in); got != tt.want {
			t.Errorf("String(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	var none *Scrubber
	if got := none.String("x hunter2-secret"); got != "x hunter2-secret" {
		t.Errorf("nil scrubber changed %q", got)
	}
}

func TestScrubberReplacesLongerSecretsWhole(t *testing.T) {
	s := NewScrubber("key1", "Endpoint=sb://ns/;SharedAccessKey=key1secret")
	got := s.String("dial Endpoint=sb://ns/;SharedAccessKey=key1secret now")
	if got != "dial *** now" {
		t.Errorf("got %q", got)
	}
}

func TestScrubberError(t *testing.T) {
	s := NewScrubber("s3cr3t-token")
	refused := &net.OpError{Op: "dial", Net: "tcp", Err: errors.New("connect: connection refused")}
	answer := Shown(fmt.Errorf("webhook answered 401 Unauthorized for token s3cr3t-token"))
	denied := &netpolicy.DeniedError{What: "169.254.169.254:80", Why: "a cloud metadata address"}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"network failure", fmt.Errorf("post to https://h/?k=s3cr3t-token: %w", refused), Unreachable},
		{"timeout", fmt.Errorf("publish: %w", context.DeadlineExceeded), Unreachable},
		{"tls banner", errors.New("tls: first record does not look like a TLS handshake"), Unreachable},
		{"answer", fmt.Errorf("deliver event: %w", answer), "deliver event: webhook answered 401 Unauthorized for token ***"},
		{"denied", fmt.Errorf("dial: %w", denied), "169.254.169.254:80 is not allowed by the egress policy: a cloud metadata address"},
		{"canceled", fmt.Errorf("wait: %w", context.Canceled), "canceled"},
		{"certificate", fmt.Errorf("dial: %w", &tls.CertificateVerificationError{Err: x509.HostnameError{Host: "internal.corp"}}), CertificateRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := s.Error(tt.err)
			if got.Error() != tt.want {
				t.Errorf("Error() = %q, want %q", got.Error(), tt.want)
			}
			if !errors.Is(got, tt.err) {
				t.Error("the sanitized error does not wrap the original")
			}
		})
	}
	if s.Error(nil) != nil {
		t.Error("Error(nil) is not nil")
	}
	if Shown(nil) != nil {
		t.Error("Shown(nil) is not nil")
	}
}

type settings struct {
	URL      string            `json:"url"`
	User     string            `json:"user"`
	Password string            `json:"password,omitempty"`
	Headers  map[string]string `json:"headers,omitempty"`
	Conn     string            `json:"conn,omitempty"`
	Brokers  []string          `json:"brokers,omitempty"`
}

func (s settings) redacted() settings {
	s.URL = URL(s.URL)
	if s.Password != "" {
		s.Password = Mask
	}
	h := map[string]string{}
	for k, v := range s.Headers {
		if k == "Authorization" {
			v = Mask
		}
		h[k] = v
	}
	s.Headers = h
	if s.Conn != "" {
		s.Conn = "************"
	}
	return s
}

func TestValues(t *testing.T) {
	c := settings{
		URL:      "https://user:url-pass@h:8443/p?sig=sig-value&sv=2020",
		User:     "alice",
		Password: "plain-pass",
		Headers:  map[string]string{"Authorization": "Bearer tok-123", "X-Trace": "on"},
		Conn:     "Endpoint=sb://ns.example/;SharedAccessKeyName=send;SharedAccessKey=sak-value;EntityPath=hub",
		Brokers:  []string{"b1:9092"},
	}
	got := Values(c, c.redacted())
	for _, want := range []string{c.URL, "url-pass", "sig=sig-value&sv=2020", "sig-value", "plain-pass", "Bearer tok-123", c.Conn, "sak-value"} {
		if !slices.Contains(got, want) {
			t.Errorf("Values lacks %q: %q", want, got)
		}
	}
	for _, not := range []string{"alice", "on", "b1:9092", "send", "hub"} {
		if slices.Contains(got, not) {
			t.Errorf("Values holds %q, which is not secret: %q", not, got)
		}
	}
}

func tree(t *testing.T, v any) map[string]any {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestRestore(t *testing.T) {
	stored := settings{
		URL:      "amqp://u:url-pass@h:5672/vh?heartbeat=5",
		User:     "alice",
		Password: "plain-pass",
		Headers:  map[string]string{"Authorization": "Bearer tok-123", "X-Trace": "on"},
		Conn:     "Endpoint=sb://ns/;SharedAccessKeyName=a;SharedAccessKey=k",
	}
	shown := stored.redacted()

	// GET, modify a field that is not secret, PUT back: every secret is kept.
	next := tree(t, shown)
	next["user"] = "bob"
	paths := Restore(next, tree(t, stored), tree(t, shown))
	slices.Sort(paths)
	if want := []string{"conn", "headers.Authorization", "password", "url"}; !slices.Equal(paths, want) {
		t.Errorf("restored %q, want %q", paths, want)
	}
	if next["password"] != "plain-pass" || next["url"] != stored.URL || next["conn"] != stored.Conn ||
		next["headers"].(map[string]any)["Authorization"] != "Bearer tok-123" || next["user"] != "bob" {
		t.Errorf("restored definition %v", next)
	}

	// A URL changed around its masked password and query keeps them.
	next = tree(t, shown)
	u, _ := url.Parse(shown.URL)
	u.Path = "/other"
	next["url"] = u.String()
	Restore(next, tree(t, stored), tree(t, shown))
	if next["url"] != "amqp://u:url-pass@h:5672/other?heartbeat=5" {
		t.Errorf("url = %v", next["url"])
	}

	// A value shown otherwise than stored, but not blanked, is no secret: it is taken as sent.
	next = map[string]any{"ttl": "24h0m0s"}
	if paths := Restore(next, map[string]any{"ttl": "24h"}, map[string]any{"ttl": "24h0m0s"}); len(paths) != 0 || next["ttl"] != "24h0m0s" {
		t.Errorf("restored %q: %v", paths, next)
	}

	// New values are taken as sent, and a field stored without a secret is left alone.
	next = tree(t, shown)
	next["password"] = "new-pass"
	next["headers"].(map[string]any)["Authorization"] = "Bearer new"
	next["headers"].(map[string]any)["X-Trace"] = "off"
	if paths := Restore(next, tree(t, stored), tree(t, shown)); slices.Contains(paths, "password") || slices.Contains(paths, "headers.Authorization") {
		t.Errorf("restored %q over new values", paths)
	}
	if next["password"] != "new-pass" || next["headers"].(map[string]any)["X-Trace"] != "off" {
		t.Errorf("definition %v", next)
	}
}

func TestHandlerScrubs(t *testing.T) {
	var buf bytes.Buffer
	s := NewScrubber("pw-secret-1")
	log := s.Logger(slog.New(slog.NewJSONHandler(&buf, nil)))
	log = log.With("url", "amqp://u:pw-secret-1@h").WithGroup("g")
	log.Warn("connect with pw-secret-1 failed",
		"err", fmt.Errorf("dial amqp://u:pw-secret-1@h: refused"),
		"count", 3,
		slog.Group("inner", "v", "x pw-secret-1 y"),
		"clean", errors.New("plain"),
		"any", struct{ P string }{"pw-secret-1"})
	out := buf.String()
	if strings.Contains(out, "pw-secret-1") {
		t.Fatalf("log holds the secret: %s", out)
	}
	for _, want := range []string{`"msg":"connect with *** failed"`, `"url":"amqp://u:***@h"`, `"count":3`, `"v":"x *** y"`, `"clean":"plain"`, `"any":"{P:***}"`} {
		if !strings.Contains(out, want) {
			t.Errorf("log lacks %s: %s", want, out)
		}
	}
}

func TestURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://h/p?code=abc", "https://h/p?xxxxx"},
		{"amqp://u:p@h:5672/v", "amqp://u:xxxxx@h:5672/v"},
		{"nats://h:4222", "nats://h:4222"},
		{"%zz", "(unparsable URL)"},
	}
	for _, tt := range tests {
		if got := URL(tt.in); got != tt.want {
			t.Errorf("URL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
	if got := URLs("nats://a:b@h1:4222, tls://h2:4222?x=1"); got != "nats://a:xxxxx@h1:4222,tls://h2:4222?xxxxx" {
		t.Errorf("URLs = %q", got)
	}
}
