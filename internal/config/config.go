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

	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/detector"
	"github.com/twinflow/twinflow/internal/endpoint"
	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/source"
	"github.com/twinflow/twinflow/internal/throttle"
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
	Store    Store    `yaml:"store"`
	Delivery Delivery `yaml:"delivery"`
	Ingress  Ingress  `yaml:"ingress"`
	Jobs     Jobs     `yaml:"jobs"`
	History  History  `yaml:"history"`
	Index    Index    `yaml:"index"`
	Limits   Limits   `yaml:"limits"`
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
	// Detectors are created, or replaced, at start-up: name to definition (see
	// detector.Parse). A replaced detector keeps what it learned unless its method changed.
	Detectors map[string]json.RawMessage `yaml:"-"`
	// Dir is the directory of the file the configuration was read from (Load); empty when
	// it was not read from a file.
	Dir string `yaml:"-"`
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
	// Auth says how requests are authenticated.
	Auth Auth `yaml:"auth"`
	// Insecure lets the server listen on an address other than loopback without TLS, or
	// without authentication, which it otherwise refuses to do.
	Insecure bool `yaml:"insecure"`
	// EgressPolicy decides what endpoints and sources may connect to.
	EgressPolicy EgressPolicy `yaml:"egressPolicy"`
	// FileDirs are the directories the files that endpoints and sources name (TLS
	// certificates and keys, NATS credentials) must be in. Empty means the data directory
	// and the directory of the config file.
	FileDirs []string `yaml:"fileDirs"`
	// DiskReserveBytes is the size of the reserve file kept in the data directory, which a
	// full disk gives back so that deletes still commit (see package reserve).
	DiskReserveBytes int64 `yaml:"diskReserveBytes"`
	// MemoryLimitBytes, when set, is the process's soft memory limit (runtime/debug
	// SetMemoryLimit): the Go runtime collects garbage more often as its memory nears it,
	// instead of letting the heap grow to twice what is live. 0 leaves the runtime's default,
	// the GOMEMLIMIT environment variable or no limit.
	MemoryLimitBytes int64 `yaml:"memoryLimitBytes"`
}

// The values of Auth.Mode.
const (
	// AuthAuto requires authentication unless the server listens on a loopback address.
	AuthAuto = "auto"
	// AuthRequired requires authentication.
	AuthRequired = "required"
	// AuthOff authenticates no request: every request may do everything.
	AuthOff = "off"
)

// Auth configures authentication: every request but the health probes must then carry an
// API key (see POST /keys and `twinflow keys create`) or, with OIDC set, an access token of
// that OpenID Connect issuer.
type Auth struct {
	// Mode is AuthAuto (the default when empty), AuthRequired or AuthOff.
	Mode string `yaml:"mode"`
	// OIDC, when its issuer is set, accepts that issuer's access tokens.
	OIDC OIDC `yaml:"oidc"`
}

// OIDC says which OpenID Connect access tokens are accepted and the role each grants (see
// auth.OIDCConfig, which its zero fields take their defaults from).
type OIDC struct {
	// Issuer is the iss of accepted tokens; its discovery document names its keys.
	Issuer string `yaml:"issuer"`
	// Audiences are the accepted aud values; required with an issuer.
	Audiences []string `yaml:"audiences"`
	// JWKSURI, when set, is where the issuer's keys are, and discovery is skipped.
	JWKSURI string `yaml:"jwksUri"`
	// ClockSkew is the clock skew allowed around a token's nbf, iat and exp (1m).
	ClockSkew time.Duration `yaml:"clockSkew"`
	// RoleClaim names the claim holding a token's roles ("roles"); a dotted path reaches
	// into nested objects ("realm_access.roles").
	RoleClaim string `yaml:"roleClaim"`
	// Roles maps role claim values to roles: reader, owner or admin. Empty maps ADT's
	// role names, "Azure Digital Twins Data Owner" and "Azure Digital Twins Data Reader".
	Roles map[string]string `yaml:"roles"`
	// NameClaim names the claim that names an identity in the log; empty tries
	// preferred_username, upn, email, appid, azp, client_id and sub in turn.
	NameClaim string `yaml:"nameClaim"`
}

// EgressPolicy decides what endpoints and sources may connect to, checked when they are
// created or updated and on every connection they make (see package netpolicy). Cloud
// metadata and link-local addresses are always denied, and so is the server's own listen
// address unless AllowSelf; loopback and private addresses are allowed unless denied here.
type EgressPolicy struct {
	// DenyLoopback denies loopback addresses (127.0.0.0/8, ::1).
	DenyLoopback bool `yaml:"denyLoopback"`
	// DenyPrivate denies private addresses (10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16,
	// fc00::/7, 100.64.0.0/10).
	DenyPrivate bool `yaml:"denyPrivate"`
	// Allow lists addresses and prefixes ("10.1.0.0/16") allowed even where the rules above
	// deny them (the server's own listener aside).
	Allow []string `yaml:"allow"`
	// Deny lists addresses and prefixes denied whatever else says.
	Deny []string `yaml:"deny"`
	// AllowSelf allows connections to the server's own listen address.
	AllowSelf bool `yaml:"allowSelf"`
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
	// SkipHandshake skips the webhook validation handshake of endpoints, when they are put
	// and when the server starts.
	SkipHandshake bool `yaml:"skipHandshake"`
	// MaxHops is how many times an event may come back to twinflow (through the telemetry
	// API or a source, from one of its own endpoints) and still be delivered; an event past it
	// is dead-lettered, which ends a route that feeds itself. 0 means 8.
	MaxHops int `yaml:"maxHops"`
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

// Limits are the API's rate limits, ADT's service limits made settings (see package
// throttle). Each is off while zero, and so all are by default; ADT's own values are 1,000
// writes a second, 10 per twin, 1,000 reads, 500 queries and 500 operations in flight on one
// twin. A request over a limit is answered 429 with Retry-After.
type Limits struct {
	// WritesPerSecond bounds the writes of twins, components and relationships.
	WritesPerSecond float64 `yaml:"writesPerSecond"`
	// TwinWritesPerSecond bounds the writes of one twin, its components and the relationships
	// from it.
	TwinWritesPerSecond float64 `yaml:"twinWritesPerSecond"`
	// ReadsPerSecond bounds the reads of twins, components and relationships.
	ReadsPerSecond float64 `yaml:"readsPerSecond"`
	// QueriesPerSecond bounds the queries.
	QueriesPerSecond float64 `yaml:"queriesPerSecond"`
	// MaxOutstandingPerTwin bounds the requests on one twin in flight at once.
	MaxOutstandingPerTwin int `yaml:"maxOutstandingPerTwin"`
}

// Throttle returns the throttle settings of l.
func (l Limits) Throttle() throttle.Config {
	return throttle.Config{
		WritesPerSecond: l.WritesPerSecond, TwinWritesPerSecond: l.TwinWritesPerSecond, ReadsPerSecond: l.ReadsPerSecond,
		QueriesPerSecond: l.QueriesPerSecond, MaxOutstandingPerTwin: l.MaxOutstandingPerTwin,
	}
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

// Store chooses where twinflow keeps its state and change log: the embedded SQLite store in
// the data directory (the default), or a PostgreSQL database that several nodes may share.
type Store struct {
	// DSN, when set, keeps the state in that PostgreSQL database (URL or key=value form)
	// instead of the data directory.
	DSN string `yaml:"dsn"`
	// Schema is the PostgreSQL schema of the tables, created if missing; empty means
	// "twinflow". The nodes of one twinflow instance share it.
	Schema string `yaml:"schema"`
	// MaxConns bounds the connections serving reads; 0 means the store's default (8). The
	// writer and the change log's listener have one connection each besides.
	MaxConns int32 `yaml:"maxConns"`
	// StatementTimeout bounds every statement; 0 means the store's default (30 s).
	StatementTimeout time.Duration `yaml:"statementTimeout"`
	// LeaseTTL is how long a node's lease on work that runs on one node at a time (an
	// endpoint's relay, the history writer, a source) lasts unless renewed; 0 means
	// lease.DefaultTTL (6 s). A lease whose node died is taken over within about 4/3 of it.
	LeaseTTL time.Duration `yaml:"leaseTTL"`
}

// The values of Index.Snapshot.
const (
	SnapshotOn  = "on"
	SnapshotOff = "off"
)

// DefaultSnapshotRecords is Index.SnapshotRecords' default: a snapshot of a million twins
// takes a few seconds of one core to write, spent once per this many changes.
const DefaultSnapshotRecords = 100_000

// Index configures the graph index that queries read.
type Index struct {
	// Snapshot is SnapshotOn (the default when empty) or SnapshotOff. On, the index is saved
	// to <dataDir>/index.snapshot in the background and when the server stops cleanly, and a
	// start loads it and replays the change log from it instead of reading every twin and
	// relationship from the store; the log keeps the records after the snapshot for that.
	Snapshot string `yaml:"snapshot"`
	// SnapshotRecords is how many change-log records the index applies after a snapshot
	// before the next is written in the background; 0 means DefaultSnapshotRecords.
	SnapshotRecords int `yaml:"snapshotRecords"`
}

// SnapshotsOn reports whether the index is saved to and loaded from a snapshot.
func (i Index) SnapshotsOn() bool { return i.Snapshot != SnapshotOff }

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
	Anomalies             string `yaml:"anomalies"`
}

// On reports whether data history is on.
func (h History) On() bool { return h.Mode != HistoryOff }

// Route is an event route: events that pass Filter go to the endpoint EndpointName.
type Route struct {
	EndpointName string `yaml:"endpointName" json:"endpointName"`
	Filter       string `yaml:"filter" json:"filter"`
}

// WithDefaults returns c with the empty server settings and the jobs directory set to their
// defaults. The default file directories are the data directory and the config file's
// directory (Dir).
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
	if c.Server.Auth.Mode == "" {
		c.Server.Auth.Mode = AuthAuto
	}
	if c.Server.DiskReserveBytes == 0 {
		c.Server.DiskReserveBytes = DefaultDiskReserveBytes
	}
	if c.Jobs.Dir == "" {
		c.Jobs.Dir = filepath.Join(c.Server.DataDir, "jobs")
	}
	if len(c.Server.FileDirs) == 0 {
		c.Server.FileDirs = []string{c.Server.DataDir}
		if c.Dir != "" {
			c.Server.FileDirs = append(c.Server.FileDirs, c.Dir)
		}
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
	c.Dir = filepath.Dir(path)
	return c, nil
}

// file is the YAML document: Config, with the definitions as YAML values.
type file struct {
	Config    `yaml:",inline"`
	Endpoints map[string]any `yaml:"endpoints"`
	Sources   map[string]any `yaml:"sources"`
	Mappings  map[string]any `yaml:"mappings"`
	Detectors map[string]any `yaml:"detectors"`
}

// Parse reads a YAML config document:
//
//	server:
//	  listen: 0.0.0.0:8080
//	  dataDir: /var/lib/twinflow
//	  allowedHosts: [twins.example.com]
//	  egressPolicy:
//	    denyPrivate: true
//	    allow: [10.1.0.0/16]
//	  fileDirs: [/etc/twinflow/tls]
//	delivery:
//	  maxRoutes: 10
//	  retention: 168h
//	ingress:
//	  dedupWindow: 2h
//	limits:
//	  twinWritesPerSecond: 10
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
	c.Detectors = convert("detectors", f.Detectors)
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
	errs = append(errs, s.Auth.validate()...)
	for _, list := range []struct {
		path    string
		entries []string
	}{{"server.egressPolicy.allow", s.EgressPolicy.Allow}, {"server.egressPolicy.deny", s.EgressPolicy.Deny}} {
		for i, e := range list.entries {
			if _, err := netpolicy.ParsePrefix(e); err != nil {
				errs = append(errs, fmt.Errorf("%s[%d]: %w", list.path, i, err))
			}
		}
	}
	for i, d := range s.FileDirs {
		if d == "" {
			errs = append(errs, fmt.Errorf("server.fileDirs[%d]: empty", i))
		}
	}
	negative("store.maxConns", int64(c.Store.MaxConns))
	negativeDuration("store.statementTimeout", c.Store.StatementTimeout)
	if c.Store.LeaseTTL != 0 && c.Store.LeaseTTL < time.Millisecond {
		errs = append(errs, fmt.Errorf("store.leaseTTL: %v is shorter than 1ms", c.Store.LeaseTTL))
	}
	negative("delivery.maxRoutes", int64(c.Delivery.MaxRoutes))
	negative("delivery.maxEndpoints", int64(c.Delivery.MaxEndpoints))
	negativeDuration("delivery.retention", c.Delivery.Retention)
	negative("delivery.maxHops", int64(c.Delivery.MaxHops))
	if m := c.History.Mode; m != "" && m != HistoryOn && m != HistoryOff {
		errs = append(errs, fmt.Errorf("history.mode: %q is neither %q nor %q", m, HistoryOn, HistoryOff))
	}
	negativeDuration("history.retention", c.History.Retention)
	if m := c.Index.Snapshot; m != "" && m != SnapshotOn && m != SnapshotOff {
		errs = append(errs, fmt.Errorf("index.snapshot: %q is neither %q nor %q", m, SnapshotOn, SnapshotOff))
	}
	negative("index.snapshotRecords", int64(c.Index.SnapshotRecords))
	negative("server.memoryLimitBytes", c.Server.MemoryLimitBytes)
	t := c.History.Tables
	add("history.tables", history.Tables{Properties: t.Properties, TwinLifecycle: t.TwinLifecycle,
		RelationshipLifecycle: t.RelationshipLifecycle, Telemetry: t.Telemetry, Anomalies: t.Anomalies}.WithDefaults().Validate(), nil)
	add("limits", c.Limits.Throttle().Validate(), nil)
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
	for _, name := range sortedKeys(c.Detectors) {
		if !detector.ValidName(name) {
			errs = append(errs, fmt.Errorf("detectors.%s: the name must be 1 to %d letters, digits, '-' or '_'", name, source.MaxNameLength))
		}
		_, err := detector.Parse(c.Detectors[name])
		add("detectors."+name, err, detector.ErrInvalid)
	}
	return errors.Join(errs...)
}

// validate reports every problem with the authentication settings, each with its path.
func (a Auth) validate() []error {
	var errs []error
	if m := a.Mode; m != "" && m != AuthAuto && m != AuthRequired && m != AuthOff {
		errs = append(errs, fmt.Errorf("server.auth.mode: %q is not %q, %q or %q", m, AuthAuto, AuthRequired, AuthOff))
	}
	o := a.OIDC
	if o.Issuer == "" {
		if len(o.Audiences) > 0 || o.JWKSURI != "" || o.ClockSkew != 0 || o.RoleClaim != "" || len(o.Roles) > 0 || o.NameClaim != "" {
			errs = append(errs, errors.New("server.auth.oidc.issuer: required with the other oidc settings"))
		}
		return errs
	}
	if err := auth.CheckIssuerURL(o.Issuer); err != nil {
		errs = append(errs, fmt.Errorf("server.auth.oidc.issuer: %w", err))
	}
	if len(o.Audiences) == 0 {
		errs = append(errs, errors.New("server.auth.oidc.audiences: required: a token must name one of them in aud"))
	}
	for i, aud := range o.Audiences {
		if aud == "" {
			errs = append(errs, fmt.Errorf("server.auth.oidc.audiences[%d]: empty", i))
		}
	}
	if o.JWKSURI != "" {
		if err := auth.CheckIssuerURL(o.JWKSURI); err != nil {
			errs = append(errs, fmt.Errorf("server.auth.oidc.jwksUri: %w", err))
		}
	}
	if o.ClockSkew < 0 {
		errs = append(errs, fmt.Errorf("server.auth.oidc.clockSkew: %v is negative", o.ClockSkew))
	}
	for _, value := range sortedKeys(o.Roles) {
		if _, err := auth.ParseRole(o.Roles[value]); err != nil {
			errs = append(errs, fmt.Errorf("server.auth.oidc.roles[%q]: %w", value, err))
		}
	}
	return errs
}

// OIDCConfig returns the OIDC settings as package auth takes them; the roles must have
// passed Validate.
func (o OIDC) OIDCConfig() auth.OIDCConfig {
	c := auth.OIDCConfig{
		Issuer: o.Issuer, Audiences: o.Audiences, JWKSURL: o.JWKSURI, ClockSkew: o.ClockSkew,
		RoleClaim: o.RoleClaim, NameClaim: o.NameClaim,
	}
	if len(o.Roles) > 0 {
		c.Roles = make(map[string]auth.Role, len(o.Roles))
		for value, name := range o.Roles {
			c.Roles[value], _ = auth.ParseRole(name)
		}
	}
	return c
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
