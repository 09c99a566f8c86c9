package sink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/redact"
)

// TLS holds the TLS settings of a connection to a destination. The zero TLS means no TLS
// unless the destination's URL scheme asks for it (amqps, tls, ssl, https), in which case the
// system roots verify the server.
type TLS struct {
	// Enabled turns TLS on for destinations whose address has no scheme (Kafka brokers).
	Enabled bool `json:"enabled,omitempty"`
	// CAFile is a PEM file of the roots that verify the server, replacing the system roots.
	CAFile string `json:"caFile,omitempty"`
	// CertFile and KeyFile are a PEM client certificate and its key, for mutual TLS.
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	// ServerName overrides the name the server's certificate is verified against.
	ServerName string `json:"serverName,omitempty"`
	// InsecureSkipVerify accepts any server certificate. For tests only.
	InsecureSkipVerify bool `json:"insecureSkipVerify,omitempty"`
}

// IsZero reports whether t has no settings.
func (t TLS) IsZero() bool { return t == TLS{} }

// Validate reports every problem with t, each naming its field under path (e.g. "tls").
func (t TLS) Validate(path string) error {
	var errs []error
	if (t.CertFile == "") != (t.KeyFile == "") {
		errs = append(errs, fmt.Errorf("%s.certFile and %s.keyFile: give both or neither", path, path))
	}
	return errors.Join(errs...)
}

// Files returns the files t names, each with its field under path (e.g. "tls").
func (t TLS) Files(path string) []netpolicy.Named {
	var out []netpolicy.Named
	for _, f := range []netpolicy.Named{{Field: "caFile", Value: t.CAFile}, {Field: "certFile", Value: t.CertFile}, {Field: "keyFile", Value: t.KeyFile}} {
		if f.Value != "" {
			out = append(out, netpolicy.Named{Field: path + "." + f.Field, Value: f.Value})
		}
	}
	return out
}

// Config builds the crypto/tls configuration, reading the files t names once p allows
// them (a nil p allows every file). Its errors are problems of the local configuration,
// marked redact.Shown, or p's refusal.
func (t TLS) Config(p *netpolicy.Policy) (*tls.Config, error) {
	for _, f := range t.Files("tls") {
		if err := p.CheckFile(f.Value); err != nil {
			return nil, fmt.Errorf("%s: %w", f.Field, err)
		}
	}
	c := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, redact.Shown(fmt.Errorf("read TLS CA file: %w", err))
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, redact.Shown(fmt.Errorf("read TLS CA file %q: no PEM certificates", t.CAFile))
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, redact.Shown(fmt.Errorf("load TLS client certificate: %w", err))
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
