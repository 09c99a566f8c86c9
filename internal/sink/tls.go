package sink

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
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

// Config builds the crypto/tls configuration, reading the files t names.
func (t TLS) Config() (*tls.Config, error) {
	c := &tls.Config{ServerName: t.ServerName, InsecureSkipVerify: t.InsecureSkipVerify, MinVersion: tls.VersionTLS12}
	if t.CAFile != "" {
		pem, err := os.ReadFile(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("read TLS CA file: %w", err)
		}
		c.RootCAs = x509.NewCertPool()
		if !c.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("read TLS CA file %q: no PEM certificates", t.CAFile)
		}
	}
	if t.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load TLS client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return c, nil
}
