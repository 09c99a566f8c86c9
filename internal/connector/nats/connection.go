package nats

import (
	"errors"
	"fmt"
	"net/url"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/twinflow/twinflow/internal/sink"
)

// connection is where a connection goes and how it logs in: the settings an endpoint and a
// source share.
type connection struct {
	URL                                string
	Credentials, User, Password, Token string
	TLS                                sink.TLS
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

// options returns the connection options that log in and set up TLS.
func (s connection) options() ([]nats.Option, error) {
	var opts []nats.Option
	switch {
	case s.Credentials != "":
		opts = append(opts, nats.UserCredentials(s.Credentials))
	case s.Token != "":
		opts = append(opts, nats.Token(s.Token))
	case s.User != "":
		opts = append(opts, nats.UserInfo(s.User, s.Password))
	}
	if !s.TLS.IsZero() {
		tc, err := s.TLS.Config()
		if err != nil {
			return nil, err
		}
		opts = append(opts, nats.Secure(tc))
	}
	return opts, nil
}

// redactedURL returns the URL with any password in it blanked.
func (s connection) redactedURL() string {
	var out []string
	for u := range strings.SplitSeq(s.URL, ",") {
		if p, err := url.Parse(strings.TrimSpace(u)); err == nil {
			u = p.Redacted()
		}
		out = append(out, u)
	}
	return strings.Join(out, ",")
}
