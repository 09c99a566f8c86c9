// Package config is twinflow's configuration as one typed tree: server settings, the limits of
// event delivery and ingress, the settings of bulk jobs, and the endpoints, routes, sources and mappings to declare at
// start-up. The YAML file of `twinflow serve --config` is this tree; each endpoint, source and
// mapping in it is the JSON object its API resource takes (PUT /endpoints/{name},
// PUT /sources/{name}, PUT /mappings/{name}), and each route the body of
// PUT /eventroutes/{id}, so a deployment declared in a file and one built through the API are
// the same thing. Defaults live here, in WithDefaults; Validate reports every problem at
// once, each with its path in the tree (sources.plant-mqtt.topics[0]: ...).
package config

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/twinflow/twinflow/internal/endpoint"
	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/source"
)

// Defaults of the server settings.
const (
	DefaultListen          = "127.0.0.1:8080"
	DefaultDataDir         = "./twinflow-data"
	DefaultShutdownTimeout = 10 * time.Second
	// DefaultMaxHeaderBytes bounds a request's line and header fields: room for a large
	// bearer token (Entra ID tokens with many group claims run to several KB) many times
	// over, and far below the 1 MiB net/http allows by default.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultBodyReadTimeout bounds how long a request body may take to arrive: a 16 MiB
	// model upload or push arrives well within it over any working link, while a body that
	// trickles in a byte at a time holds its connection no longer.
	DefaultBodyReadTimeout = 30 * time.Second
	// DefaultDiskReserveBytes is the disk space kept for deletes when the disk fills up:
	// room for many thousands of deletes with the events of their deletion.
	DefaultDiskReserveBytes = 8 << 20
)

// AnyHost, as the only entry of Server.AllowedHosts, lets requests name any host.
const AnyHost = "*"

// Config is the whole configuration. The zero value of every field means its default.
type Config struct {
	Server   Server   `yaml:"server"`
	Delivery Delivery `yaml:"delivery"`
	Ingress  Ingress  `yaml:"ingress"`
	Jobs     Jobs     `yaml:"jobs"`
	History  History  `yaml:"history"`
	// Endpoints are created, or replaced, at start-up: name to definition (see
	// endpoint.Parse). Endpoints created through the API stay as they are.
	Endpoints map[string]json.RawMessage `yaml:"-"`
	// Routes are created, or replaced, at start-up, after the endpoints: id to route.
	Routes map[string]Route `yaml:"routes"`
	// Sources are created, or replaced, at start-up: name to definition (see source.Parse).
	Sources map[string]json.RawMessage `yaml:"-"`
	// Mappings are created, or replaced, at start-up, after the sources: name to
	// definition.
	Mappings map[string]json.RawMessage `yaml:"-"`
}

// Server says how the server listens and where it keeps its data.
type Server struct {
	// Listen is the TCP address to serve on, host:port. Port 0 picks a free port.
	Listen string `yaml:"listen"`
	// DataDir is the directory holding the embedded store; created if missing.
	DataDir string `yaml:"dataDir"`
	// TLSCertFile and TLSKeyFile, set together, make the server speak HTTPS with that
	// PEM-encoded certificate chain and key.
	TLSCertFile string `yaml:"tlsCert"`
	TLSKeyFile  string `yaml:"tlsKey"`
	// ServiceID is the instance's host name, carried as the source of every event. Empty means
	// one derived from the bound address.
	ServiceID string `yaml:"serviceId"`
	// ShutdownTimeout bounds how long the server waits for in-flight requests once it is
	// asked to stop.
	ShutdownTimeout time.Duration `yaml:"shutdownTimeout"`
	// AllowedHosts are the host names ("host", or "host:port" for that port only) requests
	// may name in their Host header besides the ones always allowed: localhost, 127.0.0.1,
	// [::1], the listen address and the service id. A request naming another host is refused,
	// so that a web page cannot reach the server through DNS rebinding. [AnyHost] turns the
	// check off.
	AllowedHosts []string `yaml:"allowedHosts"`
	// MaxHeaderBytes bounds a request's line and header fields; a larger request is refused
	// with 431.
	MaxHeaderBytes int `yaml:"maxHeaderBytes"`
	// BodyReadTimeout bounds how long a request body may take to arrive; a slower one is
	// refused with 408.
	BodyReadTimeout time.Duration `yaml:"bodyReadTimeout"`
	// DiskReserveBytes is the size of the reserve file kept in the data directory, which a
	// full disk gives back so that deletes still commit (see package reserve).
	DiskReserveBytes int64 `yaml:"diskReserveBytes"`
}

// Delivery holds the limits of event delivery.
type Delivery struct {
	// MaxRoutes and MaxEndpoints limit routes and endpoints; 0 means ADT's 6.
	MaxRoutes    int `yaml:"maxRoutes"`
	MaxEndpoints int `yaml:"maxEndpoints"`
	// Retention is how long the change log keeps events every endpoint and consumer is past
	// and the graph index has applied (the log keeps every event one of them still needs,
	// however old); 0 means 7 days.
	Retention time.Duration `yaml:"retention"`
	// DeadLetterDir, when set, also writes dead letters as files in ADT's layout under it.
	DeadLetterDir string `yaml:"deadLetterDir"`
	// SkipHandshake skips the webhook validation handshake of new endpoints.
	SkipHandshake bool `yaml:"skipHandshake"`
}

// Ingress holds the limits every source's runner applies, unless a source's definition sets
// its own (maxMessageBytes, dedupWindow). Zero fields take the runner's defaults.
type Ingress struct {
	// MaxMessageBytes is the largest message applied; a larger one is a dead letter (256 KiB).
	MaxMessageBytes int `yaml:"maxMessageBytes"`
	// DedupWindow is how long message ids are remembered (1h).
	DedupWindow time.Duration `yaml:"dedupWindow"`
	// MaxDepth bounds chains of $events mappings (8).
	MaxDepth int `yaml:"maxDepth"`
	// MaxUnsettled bounds the messages of one source accepted and not yet applied (4096).
	MaxUnsettled int `yaml:"maxUnsettled"`
	// MaxConcurrency bounds the transactions of one source in flight (256).
	MaxConcurrency int `yaml:"maxConcurrency"`
}

// Jobs configures import and delete jobs.
type Jobs struct {
	// Dir is the jobs directory: import jobs read their input from, and write their output
	// logs to, files in it (file: URLs). Empty means <dataDir>/jobs. It is created when
	// missing.
	Dir string `yaml:"dir"`
	// AllowedHosts are the hosts ("host" or "host:port") import jobs may read their input
	// from and write their output log to over https.
	AllowedHosts []string `yaml:"allowedHosts"`
}

// The values of History.Mode.
const (
	HistoryOn  = "on"
	HistoryOff = "off"
)

// History configures data history: the change log kept as ADX-shaped tables in
// <dataDir>/history.db.
type History struct {
	// Mode is HistoryOn (the default when empty) or HistoryOff.
	Mode string `yaml:"mode"`
	// DSN, when set, keeps history in that PostgreSQL database (URL or key=value form)
	// instead of <dataDir>/history.db.
	DSN string `yaml:"dsn"`
	// Schema is the PostgreSQL schema of the tables, created if missing; empty means public.
	Schema string `yaml:"schema"`
	// Retention is how long rows are kept, counted from their TimeStamp; 0 means 30 days.
	Retention time.Duration `yaml:"retention"`
	// Tables names the three tables; empty names take ADT's (AdtPropertyEvents,
	// AdtTwinLifeCycleEvents, AdtRelationshipLifeCycleEvents).
	Tables HistoryTables `yaml:"tables"`
	// SkipRemovals leaves property removals out of the property table, as ADT does unless
	// recordPropertyAndItemRemovals is set. Queries with asOf then cannot tell that a
	// removed property was gone.
	SkipRemovals bool `yaml:"skipRemovals"`
	// Telemetry records every telemetry message in the telemetry table; ADT records none,
	// so it is off by default.
	Telemetry bool `yaml:"telemetry"`
}

// HistoryTables names the history tables.
type HistoryTables struct {
	Properties            string `yaml:"properties"`
	TwinLifecycle         string `yaml:"twinLifecycle"`
	RelationshipLifecycle string `yaml:"relationshipLifecycle"`
	Telemetry             string `yaml:"telemetry"`
}

// On reports whether data history is on.
func (h History) On() bool { return h.Mode != HistoryOff }

// Route is an event route: events that pass Filter go to the endpoint EndpointName.
type Route struct {
	EndpointName string `yaml:"endpointName" json:"endpointName"`
	Filter       string `yaml:"filter" json:"filter"`
}

// WithDefaults returns c with the empty server settings and the jobs directory set to their
// defaults.
func (c Config) WithDefaults() Config {
	if c.Server.Listen == "" {
		c.Server.Listen = DefaultListen
	}
	if c.Server.DataDir == "" {
		c.Server.DataDir = DefaultDataDir
	}
	if c.Server.ShutdownTimeout == 0 {
		c.Server.ShutdownTimeout = DefaultShutdownTimeout
	}
	if c.Server.MaxHeaderBytes == 0 {
		c.Server.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if c.Server.BodyReadTimeout == 0 {
		c.Server.BodyReadTimeout = DefaultBodyReadTimeout
	}
	if c.Server.DiskReserveBytes == 0 {
		c.Server.DiskReserveBytes = DefaultDiskReserveBytes
	}
	if c.Jobs.Dir == "" {
		c.Jobs.Dir = filepath.Join(c.Server.DataDir, "jobs")
	}
	return c
}

// Load reads the YAML file at path (see Parse).
func Load(path string) (Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read config file: %w", err)
	}
	c, err := Parse(raw)
	if err != nil {
		return Config{}, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

// file is the YAML document: Config, with the definitions as YAML values.
type file struct {
	Config    `yaml:",inline"`
	Endpoints map[string]any `yaml:"endpoints"`
	Sources   map[string]any `yaml:"sources"`
	Mappings  map[string]any `yaml:"mappings"`
}

// Parse reads a YAML config document:
//
//	server:
//	  listen: 0.0.0.0:8080
//	  dataDir: /var/lib/twinflow
//	  allowedHosts: [twins.example.com]
//	delivery:
//	  maxRoutes: 10
//	  retention: 168h
//	ingress:
//	  dedupWindow: 2h
//	jobs:
//	  dir: /var/lib/twinflow/jobs
//	  allowedHosts: [myaccount.blob.core.windows.net]
//	endpoints:
//	  hook:
//	    endpointType: webhook
//	    url: https://example.com/events
//	routes:
//	  everything:
//	    endpointName: hook
//	    filter: "true"
//	sources:
//	  plant:
//	    sourceType: mqtt
//	    url: tcp://broker:1883
//	    topics: [devices/+/messages/events/]
//	mappings:
//	  thermostats:
//	    source: plant
//	    twinId: message.topic.split("/")[1]
//	    patch: {/temperature: message.body.temperature}
//
// Unknown keys are errors. An empty document is an empty config. Parse checks the shape of
// the document only; Validate checks its values.
func Parse(data []byte) (Config, error) {
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil && !errors.Is(err, io.EOF) {
		return Config{}, err
	}
	c := f.Config
	var errs []error
	convert := func(section string, in map[string]any) map[string]json.RawMessage {
		if len(in) == 0 {
			return nil
		}
		out := make(map[string]json.RawMessage, len(in))
		for name, v := range in {
			b, err := json.Marshal(v)
			if err != nil {
				errs = append(errs, fmt.Errorf("%s.%s: %w", section, name, err))
				continue
			}
			out[name] = b
		}
		return out
	}
	c.Endpoints = convert("endpoints", f.Endpoints)
	c.Sources = convert("sources", f.Sources)
	c.Mappings = convert("mappings", f.Mappings)
	return c, errors.Join(errs...)
}

// Checks are what Validate checks definitions with.
type Checks struct {
	// EndpointKinds and SourceKinds are the kinds this build offers.
	EndpointKinds map[string]endpoint.Kind
	SourceKinds   map[string]source.Kind
	// CompileMapping compiles mapping definitions; nil leaves them to be checked when they
	// are applied.
	CompileMapping source.Compiler
}

// Validate reports every problem with c at once, each prefixed with its path.
func (c Config) Validate(checks Checks) error {
	var errs []error
	add := func(path string, err error, sentinel error) {
		if err == nil {
			return
		}
		for _, line := range lines(err, sentinel) {
			errs = append(errs, errors.New(join(path, line)))
		}
	}
	s := c.Server
	if _, _, err := net.SplitHostPort(s.Listen); s.Listen != "" && err != nil {
		add("server.listen", err, nil)
	}
	if (s.TLSCertFile == "") != (s.TLSKeyFile == "") {
		errs = append(errs, errors.New("server.tlsCert: the certificate and the key must be given together"))
	}
	negative := func(path string, v int64) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s: %d is negative", path, v))
		}
	}
	negativeDuration := func(path string, v time.Duration) {
		if v < 0 {
			errs = append(errs, fmt.Errorf("%s: %v is negative", path, v))
		}
	}
	negativeDuration("server.shutdownTimeout", s.ShutdownTimeout)
	negative("server.maxHeaderBytes", int64(s.MaxHeaderBytes))
	negativeDuration("server.bodyReadTimeout", s.BodyReadTimeout)
	negative("server.diskReserveBytes", s.DiskReserveBytes)
	for i, h := range s.AllowedHosts {
		switch {
		case h == AnyHost && len(s.AllowedHosts) > 1:
			errs = append(errs, fmt.Errorf("server.allowedHosts[%d]: %q allows every host, so it must be the only entry", i, h))
		case h != AnyHost && (h == "" || strings.ContainsAny(h, "/ @*")):
			errs = append(errs, fmt.Errorf("server.allowedHosts[%d]: %q is not a host name", i, h))
		}
	}
	negative("delivery.maxRoutes", int64(c.Delivery.MaxRoutes))
	negative("delivery.maxEndpoints", int64(c.Delivery.MaxEndpoints))
	negativeDuration("delivery.retention", c.Delivery.Retention)
	if m := c.History.Mode; m != "" && m != HistoryOn && m != HistoryOff {
		errs = append(errs, fmt.Errorf("history.mode: %q is neither %q nor %q", m, HistoryOn, HistoryOff))
	}
	negativeDuration("history.retention", c.History.Retention)
	t := c.History.Tables
	add("history.tables", history.Tables{Properties: t.Properties, TwinLifecycle: t.TwinLifecycle,
		RelationshipLifecycle: t.RelationshipLifecycle, Telemetry: t.Telemetry}.WithDefaults().Validate(), nil)
	negative("ingress.maxMessageBytes", int64(c.Ingress.MaxMessageBytes))
	negativeDuration("ingress.dedupWindow", c.Ingress.DedupWindow)
	negative("ingress.maxDepth", int64(c.Ingress.MaxDepth))
	negative("ingress.maxUnsettled", int64(c.Ingress.MaxUnsettled))
	negative("ingress.maxConcurrency", int64(c.Ingress.MaxConcurrency))
	for i, h := range c.Jobs.AllowedHosts {
		if h == "" || strings.ContainsAny(h, "/ ") {
			errs = append(errs, fmt.Errorf("jobs.allowedHosts[%d]: %q is not a host name", i, h))
		}
	}

	for _, name := range sortedKeys(c.Endpoints) {
		if !endpoint.ValidName(name) {
			errs = append(errs, fmt.Errorf("endpoints.%s: the name must be 1 to %d letters, digits, '-' or '_'", name, endpoint.MaxNameLength))
		}
		if checks.EndpointKinds != nil {
			_, err := endpoint.Parse(c.Endpoints[name], checks.EndpointKinds)
			add("endpoints."+name, err, endpoint.ErrInvalid)
		}
	}
	for _, id := range sortedKeys(c.Routes) {
		r := c.Routes[id]
		if r.EndpointName == "" {
			errs = append(errs, fmt.Errorf("routes.%s.endpointName: required", id))
		}
		if r.Filter == "" {
			errs = append(errs, fmt.Errorf("routes.%s.filter: required", id))
		}
	}
	for _, name := range sortedKeys(c.Sources) {
		if !source.ValidName(name) {
			errs = append(errs, fmt.Errorf("sources.%s: the name must be 1 to %d letters, digits, '-' or '_'", name, source.MaxNameLength))
		}
		if checks.SourceKinds != nil {
			_, err := source.Parse(c.Sources[name], checks.SourceKinds)
			add("sources."+name, err, source.ErrInvalid)
		}
	}
	for _, name := range sortedKeys(c.Mappings) {
		if !source.ValidName(name) {
			errs = append(errs, fmt.Errorf("mappings.%s: the name must be 1 to %d letters, digits, '-' or '_'", name, source.MaxNameLength))
		}
		if checks.CompileMapping != nil {
			_, err := checks.CompileMapping(c.Mappings[name])
			add("mappings."+name, err, nil)
		}
	}
	return errors.Join(errs...)
}

// join prefixes a problem with path: a problem that starts with a field's path ("topics[0]:
// ...") continues path with it ("sources.plant.topics[0]: ..."), any other is set after it.
func join(path, problem string) string {
	field, _, ok := strings.Cut(problem, ": ")
	if !ok || field == "json" || strings.ContainsAny(field, " \t\"'") {
		return path + ": " + problem
	}
	return path + "." + problem
}

// lines returns the lines of err's message, without sentinel's prefix.
func lines(err, sentinel error) []string {
	msg := err.Error()
	if sentinel != nil {
		if rest, ok := strings.CutPrefix(msg, sentinel.Error()+": "); ok {
			msg = rest
		}
	}
	return strings.Split(msg, "\n")
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
