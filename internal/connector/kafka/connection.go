package kafka

import (
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
	"github.com/twinflow/twinflow/internal/sink"
)

// SASL mechanisms.
const (
	Plain       = "PLAIN"
	ScramSHA256 = "SCRAM-SHA-256"
	ScramSHA512 = "SCRAM-SHA-512"
)

// SASL is the SASL settings of a Kafka endpoint or source. For Event Hubs use PLAIN, user
// "$ConnectionString" and the connection string as password.
type SASL struct {
	// Mechanism is PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
	Mechanism string `json:"mechanism,omitempty"`
	User      string `json:"user,omitempty"`
	Password  string `json:"password,omitempty"`
}

// connection is where a client connects and how it logs in: the settings an endpoint and a
// source share.
type connection struct {
	Brokers  []string
	SASL     SASL
	TLS      sink.TLS
	ClientID string
	// policy checks every connection to a broker; nil allows any.
	policy *netpolicy.Policy
}

// reach returns the brokers c dials and the files it reads.
func (c connection) reach() netpolicy.Reach {
	var r netpolicy.Reach
	for i, b := range c.Brokers {
		r.Addrs = append(r.Addrs, netpolicy.Named{Field: "brokers[" + strconv.Itoa(i) + "]", Value: b})
	}
	r.Files = c.TLS.Files("tls")
	return r
}

// answer marks err as the brokers' answer (redact.Shown) if it carries a Kafka error code.
func answer(err error) error {
	if _, ok := errors.AsType[*kerr.Error](err); ok {
		return redact.Shown(err)
	}
	return err
}

// validate reports every problem with c, each naming its field.
func (c connection) validate() []error {
	var errs []error
	if len(c.Brokers) == 0 {
		errs = append(errs, errors.New("brokers: at least one required"))
	}
	for i, b := range c.Brokers {
		if _, port, err := net.SplitHostPort(b); err != nil || port == "" {
			errs = append(errs, fmt.Errorf("brokers[%d]: %q is not host:port", i, b))
		}
	}
	switch c.SASL.Mechanism {
	case "":
		if c.SASL.User != "" || c.SASL.Password != "" {
			errs = append(errs, errors.New("sasl.mechanism: required with a user or password"))
		}
	case Plain, ScramSHA256, ScramSHA512:
		if c.SASL.User == "" {
			errs = append(errs, errors.New("sasl.user: required"))
		}
	default:
		errs = append(errs, fmt.Errorf("sasl.mechanism: %q is not one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512", c.SASL.Mechanism))
	}
	if err := c.TLS.Validate("tls"); err != nil {
		errs = append(errs, err)
	}
	return errs
}

// options returns the client options that reach the brokers (every connection checked
// against c's policy, whatever address a broker advertises) and log in, with franz-go's
// warnings logged to log, each message prefixed with who ("kafka endpoint").
func (c connection) options(log *slog.Logger, who string) ([]kgo.Opt, error) {
	id := c.ClientID
	if id == "" {
		id = "twinflow"
	}
	opts := []kgo.Opt{
		kgo.SeedBrokers(c.Brokers...),
		kgo.ClientID(id),
		kgo.RetryBackoffFn(func(int) time.Duration { return 100 * time.Millisecond }),
		kgo.WithLogger(logger{log, who + ": "}),
	}
	switch c.SASL.Mechanism {
	case Plain:
		opts = append(opts, kgo.SASL(plain.Auth{User: c.SASL.User, Pass: c.SASL.Password}.AsMechanism()))
	case ScramSHA256:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASL.User, Pass: c.SASL.Password}.AsSha256Mechanism()))
	case ScramSHA512:
		opts = append(opts, kgo.SASL(scram.Auth{User: c.SASL.User, Pass: c.SASL.Password}.AsSha512Mechanism()))
	}
	dialer := c.policy.Dialer(10 * time.Second)
	if c.TLS.IsZero() {
		opts = append(opts, kgo.Dialer(dialer.DialContext))
	} else {
		tc, err := c.TLS.Config(c.policy)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.Dialer((&tls.Dialer{NetDialer: dialer, Config: tc}).DialContext))
	}
	return opts, nil
}

// validTopic reports whether name is a valid Kafka topic name.
func validTopic(name string) bool {
	return name != "" && len(name) <= 249 && name != "." && name != ".." &&
		strings.Trim(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._-") == ""
}
