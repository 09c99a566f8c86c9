package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/server"
)

// serverConfig is a server configuration with only the server settings s and, when given,
// the jobs directory.
func serverConfig(s config.Server, jobsDir ...string) server.Config {
	c := server.Config{Config: config.Config{Server: s}}
	if len(jobsDir) > 0 {
		c.Jobs.Dir = jobsDir[0]
	}
	return c
}

func TestParseServe(t *testing.T) {
	defaults := serveOptions{
		server: serverConfig(config.Server{
			Listen:           config.DefaultListen,
			DataDir:          config.DefaultDataDir,
			ShutdownTimeout:  config.DefaultShutdownTimeout,
			MaxHeaderBytes:   config.DefaultMaxHeaderBytes,
			BodyReadTimeout:  config.DefaultBodyReadTimeout,
			DiskReserveBytes: config.DefaultDiskReserveBytes,
			Auth:             config.Auth{Mode: config.AuthAuto},
		}),
		logLevel:  slog.LevelInfo,
		logFormat: "text",
	}
	with := func(f func(*serveOptions)) serveOptions {
		o := defaults
		f(&o)
		return o
	}
	tests := []struct {
		name    string
		args    []string
		env     map[string]string
		want    serveOptions
		wantErr string
	}{
		{name: "defaults", want: defaults},
		{
			name: "every flag",
			args: []string{
				"--listen", "0.0.0.0:9000", "--data-dir", "/var/lib/tf",
				"--tls-cert", "c.pem", "--tls-key", "k.pem", "--service-id", "tf.example",
				"--shutdown-timeout", "3s", "--log-level", "debug", "--log-format", "json", "--jobs-dir", "/srv/jobs",
				"--allowed-hosts", "tf.example.com, 10.0.0.5:9000", "--max-header-bytes", "8192", "--body-read-timeout", "5s",
				"--auth", "required", "--insecure",
				"--disk-reserve-bytes", "1048576",
			},
			want: serveOptions{
				server: serverConfig(config.Server{
					Listen: "0.0.0.0:9000", DataDir: "/var/lib/tf",
					TLSCertFile: "c.pem", TLSKeyFile: "k.pem", ServiceID: "tf.example",
					ShutdownTimeout: 3 * time.Second,
					AllowedHosts:    []string{"tf.example.com", "10.0.0.5:9000"},
					MaxHeaderBytes:  8192, BodyReadTimeout: 5 * time.Second,
					Auth: config.Auth{Mode: config.AuthRequired}, Insecure: true,
					DiskReserveBytes: 1 << 20,
				}, "/srv/jobs"),
				logLevel:  slog.LevelDebug,
				logFormat: "json",
			},
		},
		{
			name: "environment",
			env: map[string]string{
				"TWINFLOW_LISTEN": "127.0.0.1:0", "TWINFLOW_DATA_DIR": "/tmp/d",
				"TWINFLOW_TLS_CERT": "c.pem", "TWINFLOW_TLS_KEY": "k.pem",
				"TWINFLOW_SERVICE_ID": "env.example", "TWINFLOW_SHUTDOWN_TIMEOUT": "1m",
				"TWINFLOW_LOG_LEVEL": "WARN", "TWINFLOW_LOG_FORMAT": "json", "TWINFLOW_JOBS_DIR": "/tmp/jobs",
				"TWINFLOW_ALLOWED_HOSTS": "*", "TWINFLOW_MAX_HEADER_BYTES": "4096", "TWINFLOW_BODY_READ_TIMEOUT": "1m",
				"TWINFLOW_AUTH": "off", "TWINFLOW_INSECURE": "true",
				"TWINFLOW_DISK_RESERVE_BYTES": "2097152",
			},
			want: serveOptions{
				server: serverConfig(config.Server{
					Listen: "127.0.0.1:0", DataDir: "/tmp/d",
					TLSCertFile: "c.pem", TLSKeyFile: "k.pem", ServiceID: "env.example",
					ShutdownTimeout: time.Minute,
					AllowedHosts:    []string{"*"}, MaxHeaderBytes: 4096, BodyReadTimeout: time.Minute,
					Auth: config.Auth{Mode: config.AuthOff}, Insecure: true,
					DiskReserveBytes: 2 << 20,
				}, "/tmp/jobs"),
				logLevel:  slog.LevelWarn,
				logFormat: "json",
			},
		},
		{
			name: "flag wins over environment",
			args: []string{"-data-dir=/from/flag", "-log-level=error"},
			env:  map[string]string{"TWINFLOW_DATA_DIR": "/from/env", "TWINFLOW_LOG_LEVEL": "debug", "TWINFLOW_LISTEN": "127.0.0.1:1"},
			want: with(func(o *serveOptions) {
				o.server.Server.DataDir = "/from/flag"
				o.server.Server.Listen = "127.0.0.1:1"
				o.logLevel = slog.LevelError
			}),
		},
		{
			name:    "bad environment value names the variable",
			env:     map[string]string{"TWINFLOW_SHUTDOWN_TIMEOUT": "soon"},
			wantErr: "TWINFLOW_SHUTDOWN_TIMEOUT",
		},
		{name: "bad log level", args: []string{"-log-level", "loud"}, wantErr: "log-level"},
		{name: "bad log format", args: []string{"-log-format", "xml"}, wantErr: "log format"},
		{name: "certificate without key", args: []string{"-tls-cert", "c.pem"}, wantErr: "together"},
		{name: "listen without port", args: []string{"-listen", "localhost"}, wantErr: "listen"},
		{name: "negative disk reserve", args: []string{"-disk-reserve-bytes", "-1"}, wantErr: "server.diskReserveBytes: -1 is negative"},
		{name: "any host among others", args: []string{"-allowed-hosts", "a,*"}, wantErr: "server.allowedHosts[1]"},
		{name: "unknown auth mode", args: []string{"-auth", "maybe"}, wantErr: `server.auth.mode: "maybe" is not`},
		{name: "bad insecure", env: map[string]string{"TWINFLOW_INSECURE": "very"}, wantErr: "TWINFLOW_INSECURE"},
		{name: "stray argument", args: []string{"now"}, wantErr: "unexpected arguments: now"},
		{name: "unknown flag", args: []string{"-port", "1"}, wantErr: "not defined"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			got, err := parseServe(tt.args, func(k string) string { return tt.env[k] }, &out)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parseServe: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("options =\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

func TestServeHelp(t *testing.T) {
	var out bytes.Buffer
	_, err := parseServe([]string{"-h"}, func(string) string { return "" }, &out)
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("error = %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"-data-dir", "-tls-cert", "-jobs-dir", "TWINFLOW_DATA_DIR"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("help lacks %q:\n%s", want, out.String())
		}
	}
}

func TestRunCommands(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{args: nil, code: 2, stderr: "Usage:"},
		{args: []string{"help"}, code: 0, stdout: "twinflow serve"},
		{args: []string{"version"}, code: 0, stdout: "twinflow "},
		{args: []string{"frobnicate"}, code: 2, stderr: `unknown command "frobnicate"`},
		{args: []string{"serve", "-log-format", "xml"}, code: 2, stderr: "log format"},
		{args: []string{"bench"}, code: 2, stderr: "Usage: twinflow bench"},
		{args: []string{"serve", "--listen", "0.0.0.0:0", "--data-dir", t.TempDir()}, code: 1, stderr: "without TLS: it is not a loopback address"},
		{args: []string{"keys"}, code: 2, stderr: "Usage:\n  twinflow keys create"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tt.args, func(string) string { return "" }, &stdout, &stderr)
			if code != tt.code {
				t.Errorf("exit code = %d, want %d; stderr:\n%s", code, tt.code, stderr.String())
			}
			if !strings.Contains(stdout.String(), tt.stdout) {
				t.Errorf("stdout = %q, want it to contain %q", stdout.String(), tt.stdout)
			}
			if !strings.Contains(stderr.String(), tt.stderr) {
				t.Errorf("stderr = %q, want it to contain %q", stderr.String(), tt.stderr)
			}
		})
	}
}

// TestParseServeConfigFile checks the config file's place: its server settings count where
// no flag or variable sets them, and everything it declares reaches the server's config.
func TestParseServeConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "twinflow.yaml")
	err := os.WriteFile(file, []byte(`
server:
  listen: 127.0.0.1:7000
  dataDir: /from/file
  shutdownTimeout: 3s
  allowedHosts: [tf.example.com]
  maxHeaderBytes: 2048
  bodyReadTimeout: 7s
  insecure: true
  auth:
    mode: required
    oidc:
      issuer: https://idp.example/realms/twins
      audiences: [twinflow]
  egressPolicy: {denyPrivate: true, deny: [10.9.0.0/16]}
  fileDirs: [/etc/tf]
  diskReserveBytes: 4096
delivery:
  maxRoutes: 9
routes:
  r: {endpointName: hook, filter: "true"}
sources:
  plant: {sourceType: http}
`), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"TWINFLOW_DATA_DIR": "/from/env"}
	o, err := parseServe([]string{"-config", file, "-shutdown-timeout", "1s"}, func(k string) string { return env[k] }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	got := o.server.Server
	if got.Listen != "127.0.0.1:7000" || got.DataDir != "/from/env" || got.ShutdownTimeout != time.Second ||
		!reflect.DeepEqual(got.AllowedHosts, []string{"tf.example.com"}) || got.MaxHeaderBytes != 2048 || got.BodyReadTimeout != 7*time.Second ||
		got.DiskReserveBytes != 4096 {
		t.Errorf("server settings = %+v; want listen from the file, the data dir from the environment, the timeout from the flag", got)
	}
	if !got.EgressPolicy.DenyPrivate || !reflect.DeepEqual(got.EgressPolicy.Deny, []string{"10.9.0.0/16"}) ||
		!reflect.DeepEqual(got.FileDirs, []string{"/etc/tf"}) || o.server.Dir != filepath.Dir(file) {
		t.Errorf("egress settings = %+v, %q, config dir %q; want the file's", got.EgressPolicy, got.FileDirs, o.server.Dir)
	}
	if o.server.Delivery.MaxRoutes != 9 || o.server.Routes["r"].EndpointName != "hook" || len(o.server.Sources) != 1 {
		t.Errorf("config = %+v", o.server.Config)
	}
	if got.Auth.Mode != config.AuthRequired || got.Auth.OIDC.Issuer != "https://idp.example/realms/twins" || !got.Insecure {
		t.Errorf("auth settings = %+v, insecure %v; want the file's", got.Auth, got.Insecure)
	}
	// A flag wins over the file's mode; the file's issuer stays.
	o, err = parseServe([]string{"-config", file, "-auth", "off", "-insecure=false"}, func(string) string { return "" }, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	if got := o.server.Server; got.Auth.Mode != config.AuthOff || got.Auth.OIDC.Issuer == "" || got.Insecure {
		t.Errorf("auth settings = %+v, insecure %v; want the flags' mode and insecure, the file's issuer", got.Auth, got.Insecure)
	}

	if err := os.WriteFile(file, []byte("sources:\n  plant: {sourceType: carrier-pigeon}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = parseServe([]string{"-config", file}, func(string) string { return "" }, &bytes.Buffer{})
	if err == nil || !strings.Contains(err.Error(), `sources.plant.sourceType: "carrier-pigeon" is not one of`) {
		t.Errorf("a bad source = %v; want its error with its path", err)
	}
}
