package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/twinflow/twinflow/internal/source"
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
	// JobsDir is the jobs directory: import jobs read their input from, and write their
	// output logs to, files in it (file: URLs). Empty means Jobs.Dir, and when that is empty
	// too, DataDir/jobs. It is created when missing.
	JobsDir string
	// Jobs configures import and delete jobs (see LoadConfigFile); nil allows no https hosts.
	Jobs *JobsConfig
	// MappingCompiler compiles the definitions of mappings (PUT /mappings/{name}); nil means
	// none can be defined.
	MappingCompiler source.Compiler
}

// JobsConfig configures import and delete jobs, from the jobs section of the config file.
type JobsConfig struct {
	// Dir is the jobs directory when Config.JobsDir is empty.
	Dir string `yaml:"dir"`
	// AllowedHosts are the hosts ("host" or "host:port") import jobs may read their input
	// from and write their output log to over https.
	AllowedHosts []string `yaml:"allowedHosts"`
}

// FileConfig is what the config file declares (see LoadConfigFile).
type FileConfig struct {
	Delivery DeliveryConfig
	Jobs     JobsConfig
}

// LoadConfigFile reads the YAML config file at path:
//
//	delivery:
//	  maxRoutes: 10
//	  retention: 168h
//	  deadLetterDir: /var/lib/twinflow/deadletters
//	endpoints:
//	  hook:
//	    endpointType: webhook
//	    url: https://example.com/events
//	    delivery: {ttl: 1h}
//	routes:
//	  everything:
//	    endpointName: hook
//	    filter: "true"
//	jobs:
//	  dir: /var/lib/twinflow/jobs
//	  allowedHosts: [myaccount.blob.core.windows.net]
//
// Unknown keys are errors; every problem found is reported with its path.
func LoadConfigFile(path string) (FileConfig, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return FileConfig{}, fmt.Errorf("read config file: %w", err)
	}
	var file struct {
		Delivery  DeliveryConfig         `yaml:"delivery"`
		Endpoints map[string]any         `yaml:"endpoints"`
		Routes    map[string]RouteConfig `yaml:"routes"`
		Jobs      JobsConfig             `yaml:"jobs"`
	}
	dec := yaml.NewDecoder(bytes.NewReader(raw))
	dec.KnownFields(true)
	// An empty file is an empty config.
	if err := dec.Decode(&file); err != nil && !errors.Is(err, io.EOF) {
		return FileConfig{}, fmt.Errorf("config file %s: %w", path, err)
	}
	cfg := file.Delivery
	var errs []error
	for name, v := range file.Endpoints {
		b, err := json.Marshal(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("endpoints.%s: %w", name, err))
			continue
		}
		if cfg.Endpoints == nil {
			cfg.Endpoints = make(map[string]json.RawMessage)
		}
		cfg.Endpoints[name] = b
	}
	for id, r := range file.Routes {
		if r.EndpointName == "" {
			errs = append(errs, fmt.Errorf("routes.%s.endpointName: required", id))
		}
		if r.Filter == "" {
			errs = append(errs, fmt.Errorf("routes.%s.filter: required", id))
		}
	}
	cfg.Routes = file.Routes
	for i, h := range file.Jobs.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/ ") {
			errs = append(errs, fmt.Errorf("jobs.allowedHosts[%d]: %q is not a host name", i, h))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return FileConfig{}, fmt.Errorf("config file %s: %w", path, err)
	}
	return FileConfig{Delivery: cfg, Jobs: file.Jobs}, nil
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
	if c.JobsDir == "" && c.Jobs != nil {
		c.JobsDir = c.Jobs.Dir
	}
	if c.JobsDir == "" {
		c.JobsDir = filepath.Join(c.DataDir, "jobs")
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
