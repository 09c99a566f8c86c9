package config_test

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/endpoint"
	"github.com/twinflow/twinflow/internal/server"
	"github.com/twinflow/twinflow/internal/source"
)

func write(t *testing.T, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "twinflow.yaml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// checks are this build's kinds, and a mapping compiler that accepts definitions naming a
// rule.
var checks = config.Checks{
	EndpointKinds: server.Kinds(),
	SourceKinds:   server.SourceKinds(),
	CompileMapping: func(raw json.RawMessage) (source.Compiled, error) {
		var def struct{ Rule string }
		if err := json.Unmarshal(raw, &def); err != nil || def.Rule == "" {
			return nil, errors.Join(errors.New("rule: required"), errors.New(`condition: ERROR: <input>:1:3: Syntax error`))
		}
		return nil, nil
	},
}

// TestLoadDeliveryFile loads a file written for the delivery settings before sources and
// mappings existed: it reads as it always did.
func TestLoadDeliveryFile(t *testing.T) {
	cfg, err := config.Load(write(t, `
delivery:
  maxRoutes: 10
  retention: 48h
endpoints:
  hook:
    endpointType: webhook
    url: http://127.0.0.1:9/x
    headers: {X-Team: twins}
    delivery: {ttl: 1h, maxAttempts: 5}
  grid:
    properties:
      endpointType: EventGrid
      TopicEndpoint: https://contoso.westus2-1.eventgrid.azure.net/api/events
      accessKey1: key-one
routes:
  all:
    endpointName: hook
    filter: "true"
jobs:
  dir: /srv/jobs
  allowedHosts: [blobs.example.net, "10.0.0.1:8443"]
`))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Jobs.Dir != "/srv/jobs" || !slices.Equal(cfg.Jobs.AllowedHosts, []string{"blobs.example.net", "10.0.0.1:8443"}) {
		t.Errorf("jobs %+v", cfg.Jobs)
	}
	if cfg.Delivery.MaxRoutes != 10 || cfg.Delivery.Retention != 48*time.Hour || cfg.Routes["all"] != (config.Route{EndpointName: "hook", Filter: "true"}) {
		t.Errorf("config %+v", cfg)
	}
	var def map[string]any
	if err := json.Unmarshal(cfg.Endpoints["hook"], &def); err != nil {
		t.Fatal(err)
	}
	if def["endpointType"] != "webhook" || def["delivery"].(map[string]any)["maxAttempts"] != 5.0 {
		t.Errorf("endpoint hook = %s", cfg.Endpoints["hook"])
	}
	if def, err := endpoint.Parse(cfg.Endpoints["grid"], server.Kinds()); err != nil || def.Type != endpoint.EventGridType {
		t.Errorf("endpoint grid %s: %+v, %v", cfg.Endpoints["grid"], def, err)
	}
	if err := cfg.Validate(checks); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if _, err := config.Load(write(t, "")); err != nil {
		t.Errorf("empty file: %v", err)
	}
	for _, bad := range []struct{ body, want string }{
		{"delivery:\n  maxRoute: 1\n", "maxRoute"},
		{"nonsense: [", "config file"},
		{"server:\n  port: 1\n", "port"},
		{"jobs:\n  allowed: [x]\n", "allowed"},
	} {
		if _, err := config.Load(write(t, bad.body)); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: error %v, want one mentioning %q", bad.body, err, bad.want)
		}
	}
}

func TestLoadEverything(t *testing.T) {
	path := write(t, `
server:
  listen: 0.0.0.0:9000
  dataDir: /var/lib/twinflow
  tlsCert: c.pem
  tlsKey: k.pem
  serviceId: twins.example.com
  shutdownTimeout: 30s
  allowedHosts: [twins.example.com, "tf.local:8443"]
  maxHeaderBytes: 16384
  bodyReadTimeout: 5s
  insecure: true
  auth:
    mode: required
    oidc:
      issuer: https://login.microsoftonline.com/tenant/v2.0
      audiences: [api://twinflow, https://digitaltwins.azure.net]
      jwksUri: https://login.microsoftonline.com/tenant/discovery/v2.0/keys
      clockSkew: 2m
      roleClaim: realm_access.roles
      nameClaim: oid
      roles:
        Azure Digital Twins Data Owner: owner
        twins-admin: admin
  egressPolicy:
    denyLoopback: true
    denyPrivate: true
    allow: [10.1.0.0/16]
    deny: ["2001:db8::/32"]
    allowSelf: true
  fileDirs: [/etc/twinflow/tls]
  diskReserveBytes: 1048576
ingress:
  maxMessageBytes: 1024
  dedupWindow: 2h
  maxDepth: 4
delivery:
  maxHops: 3
limits:
  writesPerSecond: 1000
  twinWritesPerSecond: 10
  readsPerSecond: 2000.5
  queriesPerSecond: 500
  maxOutstandingPerTwin: 500
sources:
  plant:
    sourceType: http
    maxMessageBytes: 512
mappings:
  thermostats:
    source: plant
    rule: device
`)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := config.Server{Listen: "0.0.0.0:9000", DataDir: "/var/lib/twinflow", TLSCertFile: "c.pem", TLSKeyFile: "k.pem",
		ServiceID: "twins.example.com", ShutdownTimeout: 30 * time.Second,
		AllowedHosts: []string{"twins.example.com", "tf.local:8443"}, MaxHeaderBytes: 16384, BodyReadTimeout: 5 * time.Second,
		Insecure: true,
		Auth: config.Auth{Mode: config.AuthRequired, OIDC: config.OIDC{
			Issuer:    "https://login.microsoftonline.com/tenant/v2.0",
			Audiences: []string{"api://twinflow", "https://digitaltwins.azure.net"},
			JWKSURI:   "https://login.microsoftonline.com/tenant/discovery/v2.0/keys",
			ClockSkew: 2 * time.Minute, RoleClaim: "realm_access.roles", NameClaim: "oid",
			Roles: map[string]string{"Azure Digital Twins Data Owner": "owner", "twins-admin": "admin"},
		}},
		EgressPolicy: config.EgressPolicy{DenyLoopback: true, DenyPrivate: true, Allow: []string{"10.1.0.0/16"},
			Deny: []string{"2001:db8::/32"}, AllowSelf: true},
		FileDirs: []string{"/etc/twinflow/tls"}, DiskReserveBytes: 1 << 20}
	if !reflect.DeepEqual(cfg.Server, want) {
		t.Errorf("server = %+v, want %+v", cfg.Server, want)
	}
	oc := cfg.Server.Auth.OIDC.OIDCConfig()
	wantOIDC := auth.OIDCConfig{
		Issuer: want.Auth.OIDC.Issuer, Audiences: want.Auth.OIDC.Audiences, JWKSURL: want.Auth.OIDC.JWKSURI,
		ClockSkew: 2 * time.Minute, RoleClaim: "realm_access.roles", NameClaim: "oid",
		Roles: map[string]auth.Role{"Azure Digital Twins Data Owner": auth.RoleOwner, "twins-admin": auth.RoleAdmin},
	}
	if !reflect.DeepEqual(oc, wantOIDC) {
		t.Errorf("OIDCConfig = %+v, want %+v", oc, wantOIDC)
	}
	if cfg.Dir != filepath.Dir(path) {
		t.Errorf("config directory %q", cfg.Dir)
	}
	if cfg.Ingress != (config.Ingress{MaxMessageBytes: 1024, DedupWindow: 2 * time.Hour, MaxDepth: 4}) {
		t.Errorf("ingress = %+v", cfg.Ingress)
	}
	if cfg.Delivery.MaxHops != 3 {
		t.Errorf("delivery = %+v", cfg.Delivery)
	}
	if cfg.Limits != (config.Limits{WritesPerSecond: 1000, TwinWritesPerSecond: 10, ReadsPerSecond: 2000.5, QueriesPerSecond: 500, MaxOutstandingPerTwin: 500}) {
		t.Errorf("limits = %+v", cfg.Limits)
	}
	def, err := source.Parse(cfg.Sources["plant"], server.SourceKinds())
	if err != nil || def.Type != source.HTTPType || def.MaxMessageBytes != 512 {
		t.Errorf("source plant = %+v, %v", def, err)
	}
	if !strings.Contains(string(cfg.Mappings["thermostats"]), `"rule":"device"`) {
		t.Errorf("mapping = %s", cfg.Mappings["thermostats"])
	}
	if err := cfg.Validate(checks); err != nil {
		t.Errorf("Validate: %v", err)
	}
}

// TestValidateReportsEveryErrorWithItsPath checks each problem is reported, with the path of
// the field it is about.
func TestValidateReportsEveryErrorWithItsPath(t *testing.T) {
	cfg, err := config.Parse([]byte(`
server:
  listen: nohost
  tlsKey: k.pem
  shutdownTimeout: -1s
  maxHeaderBytes: -1
  bodyReadTimeout: -2s
  diskReserveBytes: -3
  memoryLimitBytes: -4
  allowedHosts: ["", "http://x", "*"]
  auth:
    mode: sometimes
    oidc:
      issuer: http://idp.example
      audiences: [""]
      jwksUri: keys
      clockSkew: -1s
      roles: {Azure Digital Twins Data Owner: superuser, x: none}
  egressPolicy:
    allow: [10.0.0.0/8, ten]
    deny: [1.2.3.4/33]
  fileDirs: [""]
delivery:
  maxRoutes: -1
  maxHops: -1
index:
  snapshot: sometimes
  snapshotRecords: -1
limits:
  writesPerSecond: -1
  twinWritesPerSecond: -0.5
  readsPerSecond: .nan
  queriesPerSecond: -2
  maxOutstandingPerTwin: -3
ingress:
  dedupWindow: -1m
  maxDepth: -2
jobs:
  allowedHosts: ["https://x"]
endpoints:
  hook:
    endpointType: webhook
    url: ftp://h
  "bad name":
    endpointType: webhook
    url: http://h/x
routes:
  r:
    filter: "true"
sources:
  plant:
    sourceType: http
    maxMessageBytes: -1
    url: x
  other:
    sourceType: carrier-pigeon
mappings:
  thermostats:
    source: plant
detectors:
  rooms:
    twins: SELECT * FROM
    properties: []
    sensitivity: 2
  bad.name:
    twins: SELECT * FROM DIGITALTWINS
    properties: [temp]
`))
	if err != nil {
		t.Fatal(err)
	}
	err = cfg.Validate(checks)
	if err == nil {
		t.Fatal("Validate succeeded")
	}
	for _, want := range []string{
		"server.listen: address nohost: missing port in address",
		"server.tlsCert: the certificate and the key must be given together",
		"server.shutdownTimeout: -1s is negative",
		"server.maxHeaderBytes: -1 is negative",
		"server.bodyReadTimeout: -2s is negative",
		"server.diskReserveBytes: -3 is negative",
		"server.memoryLimitBytes: -4 is negative",
		`server.allowedHosts[0]: "" is not a host name`,
		`server.allowedHosts[1]: "http://x" is not a host name`,
		`server.allowedHosts[2]: "*" allows every host, so it must be the only entry`,
		`server.auth.mode: "sometimes" is not "auto", "required" or "off"`,
		`server.auth.oidc.issuer: "http://idp.example" must be https (http only to a loopback host)`,
		`server.auth.oidc.audiences[0]: empty`,
		`server.auth.oidc.jwksUri: "keys" is not an absolute URL`,
		`server.auth.oidc.clockSkew: -1s is negative`,
		`server.auth.oidc.roles["Azure Digital Twins Data Owner"]: "superuser" is not a role: want reader, owner or admin`,
		`server.auth.oidc.roles["x"]: "none" is not a role`,
		`server.egressPolicy.allow[1]: "ten" is not an address or a prefix`,
		`server.egressPolicy.deny[0]: "1.2.3.4/33" is not an address or a prefix`,
		"server.fileDirs[0]: empty",
		"delivery.maxRoutes: -1 is negative",
		"delivery.maxHops: -1 is negative",
		`index.snapshot: "sometimes" is neither "on" nor "off"`,
		"index.snapshotRecords: -1 is negative",
		"limits.writesPerSecond: -1 is not a non-negative number",
		"limits.twinWritesPerSecond: -0.5 is not a non-negative number",
		"limits.readsPerSecond: NaN is not a non-negative number",
		"limits.queriesPerSecond: -2 is not a non-negative number",
		"limits.maxOutstandingPerTwin: -3 is not a non-negative number",
		"ingress.dedupWindow: -1m0s is negative",
		"ingress.maxDepth: -2 is negative",
		`jobs.allowedHosts[0]: "https://x" is not a host name`,
		"endpoints.hook.url:",
		"endpoints.bad name: the name must be",
		"routes.r.endpointName: required",
		"sources.other.sourceType: \"carrier-pigeon\" is not one of ",
		"sources.plant.maxMessageBytes: must be a positive integer",
		`sources.plant: json: unknown field "url"`,
		"mappings.thermostats.rule: required",
		"mappings.thermostats.condition: ERROR: <input>:1:3: Syntax error",
		"detectors.rooms.twins: SQL query parse failed",
		"detectors.rooms.properties: at least one property name is required",
		"detectors.rooms.sensitivity: 2 is not in (0, 1]",
		"detectors.bad.name: the name must be",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("errors lack %q:\n%v", want, err)
		}
	}
}

func TestWithDefaults(t *testing.T) {
	defaults := config.Config{}.WithDefaults()
	want := config.Server{Listen: config.DefaultListen, DataDir: config.DefaultDataDir, ShutdownTimeout: config.DefaultShutdownTimeout,
		MaxHeaderBytes: config.DefaultMaxHeaderBytes, BodyReadTimeout: config.DefaultBodyReadTimeout,
		Auth: config.Auth{Mode: config.AuthAuto}, FileDirs: []string{config.DefaultDataDir},
		DiskReserveBytes: config.DefaultDiskReserveBytes}
	if !reflect.DeepEqual(defaults.Server, want) || defaults.Jobs.Dir != filepath.Join(config.DefaultDataDir, "jobs") {
		t.Errorf("defaults = %+v, jobs %+v; want %+v, jobs in the data directory", defaults.Server, defaults.Jobs, want)
	}
	// A config read from a file reads files from the file's directory too.
	if got := (config.Config{Dir: "/etc/twinflow"}).WithDefaults().Server.FileDirs; !slices.Equal(got, []string{config.DefaultDataDir, "/etc/twinflow"}) {
		t.Errorf("file directories %q", got)
	}
	set := config.Config{Server: config.Server{Listen: ":1", DataDir: "d", ShutdownTimeout: time.Second,
		AllowedHosts: []string{"h"}, MaxHeaderBytes: 1, BodyReadTimeout: time.Second, Auth: config.Auth{Mode: config.AuthOff},
		FileDirs: []string{"/tls"}, DiskReserveBytes: 1}}
	if got := set.WithDefaults().Server; !reflect.DeepEqual(got, set.Server) {
		t.Errorf("WithDefaults changed set values: %+v", got)
	}
}

// TestOIDCNeedsIssuerAndAudience checks the OIDC settings are refused without an issuer, and
// an issuer without an audience.
func TestOIDCNeedsIssuerAndAudience(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"server:\n  auth:\n    oidc:\n      audiences: [a]\n", "server.auth.oidc.issuer: required with the other oidc settings"},
		{"server:\n  auth:\n    oidc:\n      issuer: https://idp.example\n", "server.auth.oidc.audiences: required"},
	} {
		cfg, err := config.Parse([]byte(tc.yaml))
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.Validate(checks); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.yaml, err, tc.want)
		}
	}
	cfg, err := config.Parse([]byte("server:\n  auth:\n    mode: off\n    oidc:\n      issuer: http://127.0.0.1:5556/dex\n      audiences: [twinflow]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(checks); err != nil {
		t.Errorf("a loopback http issuer: %v", err)
	}
}
