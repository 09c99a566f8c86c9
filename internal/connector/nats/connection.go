package nats

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// connection is where a connection goes and how it logs in: the settings an endpoint and a
// source share.
type connection struct {
	URL                                string
	Credentials, User, Password, Token string
	TLS                                sink.TLS
	// policy checks every connection and the files read; nil allows any.
	policy *netpolicy.Policy
}

// reach returns the servers s connects to, host:port, and the files it reads.
func (s connection) reach() netpolicy.Reach {
	var r netpolicy.Reach
	for u := range strings.SplitSeq(s.URL, ",") {
		p, err := url.Parse(strings.TrimSpace(u))
		if err != nil || p.Hostname() == "" {
			continue
		}
		port := p.Port()
		switch {
		case port != "":
		case p.Scheme == "ws":
			port = "80"
		case p.Scheme == "wss":
			port = "443"
		default:
			port = "4222"
		}
		r.Addrs = append(r.Addrs, netpolicy.Named{Field: "url", Value: net.JoinHostPort(p.Hostname(), port)})
	}
	if s.Credentials != "" {
		r.Files = append(r.Files, netpolicy.Named{Field: "credentials", Value: s.Credentials})
	}
	r.Files = append(r.Files, s.TLS.Files("tls")...)
	return r
}

// answer marks err as the server's answer (redact.Shown) when the server gave it: a refused
// login or permission, a JetStream API error, no JetStream, a message it cannot take.
func answer(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := errors.AsType[*jetstream.APIError](err); ok {
		return redact.Shown(err)
	}
	for _, a := range []error{
		nats.ErrAuthorization, nats.ErrAuthExpired, nats.ErrAuthRevoked, nats.ErrAccountAuthExpired,
		nats.ErrPermissionViolation, nats.ErrNoResponders, nats.ErrMaxPayload, nats.ErrBadSubject,
		jetstream.ErrStreamNotFound, jetstream.ErrConsumerNotFound, jetstream.ErrJetStreamNotEnabled,
		jetstream.ErrJetStreamNotEnabledForAccount, jetstream.ErrInvalidStreamName, jetstream.ErrInvalidConsumerName,
	} {
		if errors.Is(err, a) {
			return redact.Shown(err)
		}
	}
	return err
}

// validate reports every problem with s, each naming its field.
func (s connection) validate() []error {
	var errs []error
	if s.URL == "" {
		errs = append(errs, errors.New("url: required"))
	}
	for u := range strings.SplitSeq(s.URL, ",") {
		if u == "" {
			continue
		}
		p, err := url.Parse(strings.TrimSpace(u))
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("url: %w", err))
		case p.Scheme != "nats" && p.Scheme != "tls" && p.Scheme != "ws" && p.Scheme != "wss":
			errs = append(errs, fmt.Errorf("url: %q: want a nats://, tls://, ws:// or wss:// URL", p.Redacted()))
		}
	}
	if s.Token != "" && (s.User != "" || s.Password != "") {
		errs = append(errs, errors.New("token: give a token or a user and password, not both"))
	}
	if err := s.TLS.Validate("tls"); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// options returns the connection options that log in, set up TLS and check every connection
// against s's policy on the address it dials.
func (s connection) options() ([]nats.Option, error) {
	opts := []nats.Option{nats.SetCustomDialer(s.policy.Dialer(nats.DefaultTimeout))}
	switch {
	case s.Credentials != "":
		if err := s.policy.CheckFile(s.Credentials); err != nil {
			return nil, fmt.Errorf("credentials: %w", err)
		}
		opts = append(opts, nats.UserCredentials(s.Credentials))
	case s.Token != "":
		opts = append(opts, nats.Token(s.Token))
	case s.User != "":
		opts = append(opts, nats.UserInfo(s.User, s.Password))
	}
	if !s.TLS.IsZero() {
		tc, err := s.TLS.Config(s.policy)
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// redactedURL returns the URLs with any password and query string in them blanked. A token
// given as a URL's user name (nats://token@host) is blanked too.
func (s connection) redactedURL() string {
	var out []string
	for u := range strings.SplitSeq(s.URL, ",") {
		if p, err := url.Parse(strings.TrimSpace(u)); err == nil && p.User != nil {
			if _, ok := p.User.Password(); !ok {
				p.User = url.User(redact.URLMask)
			}
			u = p.String()
		}
		out = append(out, redact.URL(strings.TrimSpace(u)))
	}
	return strings.Join(out, ",")
}
