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
	cfg, err := config.Load(write(t, `
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
  diskReserveBytes: 1048576
ingress:
  maxMessageBytes: 1024
  dedupWindow: 2h
  maxDepth: 4
sources:
  plant:
    sourceType: http
    maxMessageBytes: 512
mappings:
  thermostats:
    source: plant
    rule: device
`))
	if err != nil {
		t.Fatal(err)
	}
	want := config.Server{Listen: "0.0.0.0:9000", DataDir: "/var/lib/twinflow", TLSCertFile: "c.pem", TLSKeyFile: "k.pem",
		ServiceID: "twins.example.com", ShutdownTimeout: 30 * time.Second,
		AllowedHosts: []string{"twins.example.com", "tf.local:8443"}, MaxHeaderBytes: 16384, BodyReadTimeout: 5 * time.Second,
		DiskReserveBytes: 1 << 20}
	if !reflect.DeepEqual(cfg.Server, want) {
		t.Errorf("server = %+v, want %+v", cfg.Server, want)
	}
	if cfg.Ingress != (config.Ingress{MaxMessageBytes: 1024, DedupWindow: 2 * time.Hour, MaxDepth: 4}) {
		t.Errorf("ingress = %+v", cfg.Ingress)
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
  allowedHosts: ["", "http://x", "*"]
delivery:
  maxRoutes: -1
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
		`server.allowedHosts[0]: "" is not a host name`,
		`server.allowedHosts[1]: "http://x" is not a host name`,
		`server.allowedHosts[2]: "*" allows every host, so it must be the only entry`,
		"delivery.maxRoutes: -1 is negative",
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
		DiskReserveBytes: config.DefaultDiskReserveBytes}
	if !reflect.DeepEqual(defaults.Server, want) || defaults.Jobs.Dir != filepath.Join(config.DefaultDataDir, "jobs") {
		t.Errorf("defaults = %+v, jobs %+v; want %+v, jobs in the data directory", defaults.Server, defaults.Jobs, want)
	}
	set := config.Config{Server: config.Server{Listen: ":1", DataDir: "d", ShutdownTimeout: time.Second,
		AllowedHosts: []string{"h"}, MaxHeaderBytes: 1, BodyReadTimeout: time.Second, DiskReserveBytes: 1}}
	if got := set.WithDefaults().Server; !reflect.DeepEqual(got, set.Server) {
		t.Errorf("WithDefaults changed set values: %+v", got)
	}
}
