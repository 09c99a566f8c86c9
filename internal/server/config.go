package server

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// Defaults for Config fields left empty.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultDataDir         = "./twinflow-data"
	DefaultShutdownTimeout = 10 * time.Second
)

// Config says how a Server listens and where it keeps its data. The zero value of every field
// means its default.
type Config struct {
	// Listen is the TCP address to serve on, host:port. Port 0 picks a free port; the address
	// actually bound is logged and returned by Server.Addr.
	Listen string
	// DataDir is the directory holding the embedded store. It is created if missing.
	DataDir string
	// TLSCertFile and TLSKeyFile, set together, make the server speak HTTPS with that
	// PEM-encoded certificate chain and key. Both empty means plain HTTP.
	TLSCertFile string
	TLSKeyFile  string
	// ServiceID is the instance's host name, carried as the source of every event. Empty means
	// one derived from the bound address; see DefaultServiceID.
	ServiceID string
	// ShutdownTimeout bounds how long Run waits for in-flight requests once its context ends.
	ShutdownTimeout time.Duration
	// Delivery configures event delivery (see LoadConfigFile); nil means the defaults with no
	// endpoints or routes declared.
	Delivery *DeliveryConfig
}

// withDefaults returns c with every empty field set to its default.
func (c Config) withDefaults() Config {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.ShutdownTimeout == 0 {
		c.ShutdownTimeout = DefaultShutdownTimeout
	}
	return c
}

// Validate reports every problem with c at once.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); c.Listen != "" && err != nil {
		errs = append(errs, fmt.Errorf("listen: %w", err))
	}
	if (c.TLSCertFile == "") != (c.TLSKeyFile == "") {
		errs = append(errs, errors.New("tls: the certificate and the key must be given together"))
	}
	if c.ShutdownTimeout < 0 {
		errs = append(errs, fmt.Errorf("shutdown timeout: %v is negative", c.ShutdownTimeout))
	}
	return errors.Join(errs...)
}

// DefaultServiceID derives an instance name from the address a server is bound to, so events
// carry a source that tells instances apart: a loopback address becomes "localhost:PORT", an
// unspecified one (":8080", "0.0.0.0:8080") the machine's host name and port, and any other
// host stays as it is.
func DefaultServiceID(addr net.Addr) string {
	host, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	ip := net.ParseIP(host)
	switch {
	case ip != nil && ip.IsLoopback():
		host = "localhost"
	case ip != nil && ip.IsUnspecified():
		if name, err := os.Hostname(); err == nil && name != "" {
			host = name
		} else {
			host = "localhost"
		}
	}
	return net.JoinHostPort(host, port)
}
