package server

import (
	"net"
	"os"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/source"
)

// Config configures a Server: the configuration tree (server settings, limits and the
// resources declared at start-up) and what the build plugs in.
type Config struct {
	config.Config
	// MappingCompiler compiles the definitions of mappings (PUT /mappings/{name} and those
	// the configuration declares); nil means none can be defined.
	MappingCompiler source.Compiler
}

// Validate reports every problem with c at once, each with its path: the server settings,
// the limits, and each declared endpoint, source and mapping against the kinds of this build.
func (c Config) Validate() error {
	return c.Config.Validate(config.Checks{
		EndpointKinds:  Kinds(),
		SourceKinds:    SourceKinds(),
		CompileMapping: c.MappingCompiler,
	})
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
