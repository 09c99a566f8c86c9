// Package sdk_test runs the official Azure Digital Twins JavaScript and Python SDKs against
// the real twinflow binary over HTTPS: adt.test.js and adt_test.py hold the calls and
// assertions, this file builds and starts the server and runs Node and Python.
package sdk_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/auth/authtest"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/testenv"
	"github.com/twinflow/twinflow/test/process"
)

func TestJavaScriptSDK(t *testing.T) {
	runSDK(t, nil, nil)
}

// TestJavaScriptSDKWithAuthentication runs the SDK test against a server that requires
// authentication, with a real access token of a local OpenID Connect issuer: the SDK's
// credential hands it out as Entra ID's would, for ADT's audience.
func TestJavaScriptSDKWithAuthentication(t *testing.T) {
	iss := authtest.NewIssuer(t)
	config := filepath.Join(t.TempDir(), "twinflow.yaml")
	err := os.WriteFile(config, []byte(fmt.Sprintf(`
server:
  auth:
    mode: required
    oidc:
      issuer: %s
      audiences: [%s]
`, iss.URL, authtest.Audience)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	runSDK(t, []string{"--config", config}, []string{
		"TWINFLOW_TOKEN=" + iss.Token(t, iss.Claims("sdk-owner", "Azure Digital Twins Data Owner")),
		"TWINFLOW_READER_TOKEN=" + iss.Token(t, iss.Claims("sdk-reader", "Azure Digital Twins Data Reader")),
	})
}

// TestPythonSDKWithAuthentication runs adt_test.py, the official Python SDK's calls, against a
// server that requires authentication, with real access tokens of a local OpenID Connect
// issuer, a Data Owner's and a Data Reader's.
func TestPythonSDKWithAuthentication(t *testing.T) {
	python := requirePythonSDK(t)
	iss := authtest.NewIssuer(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "twinflow.yaml")
	err := os.WriteFile(config, []byte(fmt.Sprintf(`
server:
  auth:
    mode: required
    oidc:
      issuer: %s
      audiences: [%s]
`, iss.URL, authtest.Audience)), 0o600)
	if err != nil {
		t.Fatal(err)
	}
	cert, key := process.SelfSignedCert(t, dir)
	srv := process.Start(t, process.Build(t), "--listen", "127.0.0.1:0", "--data-dir", filepath.Join(dir, "data"),
		"--tls-cert", cert, "--tls-key", key, "--service-id", serviceID, "--config", config)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, python, "adt_test.py")
	cmd.Env = append(os.Environ(),
		"TWINFLOW_URL="+srv.URL,
		"TWINFLOW_CA="+cert,
		"TWINFLOW_TOKEN="+iss.Token(t, iss.Claims("py-owner", "Azure Digital Twins Data Owner")),
		"TWINFLOW_READER_TOKEN="+iss.Token(t, iss.Claims("py-reader", "Azure Digital Twins Data Reader")))
	out, err := cmd.CombinedOutput()
	t.Logf("python3 adt_test.py:\n%s", out)
	if err != nil {
		t.Fatalf("the Python SDK test failed: %v", err)
	}
	if err := srv.Stop(30 * time.Second); err != nil {
		t.Fatalf("server did not stop cleanly: %v", err)
	}
}

// requirePythonSDK returns a python3 that imports the official SDK (Debian's python3-azure
// package holds it; .ci/run installs it): python3 on PATH, else the system's /usr/bin/python3.
// It is a prerequisite: without it the test skips, or fails under CI (see testenv.Missing).
func requirePythonSDK(t *testing.T) string {
	t.Helper()
	var tried []string
	for _, name := range []string{"python3", "/usr/bin/python3"} {
		path, err := exec.LookPath(name)
		if err != nil {
			continue
		}
		out, err := exec.Command(path, "-c", "import azure.digitaltwins.core").CombinedOutput()
		if err == nil {
			return path
		}
		tried = append(tried, fmt.Sprintf("%s: %v %s", path, err, out))
	}
	testenv.Missing(t, "no python3 imports azure.digitaltwins.core (install Debian's python3-azure, or pip install azure-digitaltwins-core): %v", tried)
	return ""
}

// runSDK runs adt.test.js against the binary serving over HTTPS on loopback with the extra
// serve flags args, with env added to Node's environment, and checks the telemetry it sent.
func runSDK(t *testing.T, args, env []string) {
	node := requireNode(t)

	dir := t.TempDir()
	cert, key := process.SelfSignedCert(t, dir)
	bin := process.Build(t)
	srv := process.Start(t, bin, append([]string{
		"--listen", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "data"),
		"--tls-cert", cert, "--tls-key", key,
		"--service-id", serviceID,
		"--log-level", "debug"}, args...)...)

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "adt.test.js")
	cmd.Env = append(os.Environ(),
		"TWINFLOW_URL="+srv.URL,
		"NODE_EXTRA_CA_CERTS="+cert,
		"NO_COLOR=1")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	t.Logf("node --test adt.test.js:\n%s", out)
	if err != nil {
		t.Fatalf("the SDK test failed: %v", err)
	}
	if err := srv.Stop(30 * time.Second); err != nil {
		t.Fatalf("server did not stop cleanly: %v", err)
	}
	checkTelemetry(t, filepath.Join(dir, "data"))
}

// serviceID is the instance name the SDK test's server runs under.
const serviceID = "sdk.twinflow.test"

// checkTelemetry reads the change log of the stopped server and checks the two telemetry
// messages adt.test.js sent landed there as ADT shapes them.
func checkTelemetry(t *testing.T, dataDir string) {
	t.Helper()
	st, err := sqlite.Open(sqlite.Config{Dir: dataDir}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatalf("open the store: %v", err)
	}
	defer st.Close()
	recs, err := st.Log().Read(t.Context(), 0, int(st.Log().Last()))
	if err != nil {
		t.Fatalf("read the change log: %v", err)
	}
	got := map[string]event.Event{}
	for _, r := range recs {
		if r.Event.Type == event.Telemetry {
			got[r.Event.ID] = r.Event
		}
	}
	want := []event.Event{
		{
			ID: "msg-1", Source: serviceID + "/digitaltwins/building-1", SpecVersion: "1.0",
			Type: event.Telemetry, DataContentType: "application/json",
			DataSchema: "dtmi:twinflow:sdktest:Building;1", Data: json.RawMessage(`{"alarm":"smoke"}`),
		},
		{
			ID: "msg-2", Source: serviceID + "/digitaltwins/building-1", SpecVersion: "1.0",
			Type: event.Telemetry, Subject: "climate", DataContentType: "application/json",
			DataSchema: "dtmi:twinflow:sdktest:Thermostat;1", Data: json.RawMessage(`{"reading":20.25}`),
		},
	}
	if len(got) != len(want) {
		t.Errorf("%d telemetry events in the log, want %d: %+v", len(got), len(want), got)
	}
	for _, w := range want {
		g := got[w.ID]
		g.TraceParent = "" // a fresh trace per request; its shape is the API's to test
		// The SDK stamps each message with the time it sends it, in Telemetry-Source-Time.
		if _, err := time.Parse(time.RFC3339Nano, g.TelemetrySourceTime); err != nil {
			t.Errorf("telemetry event %s: telemetrySourceTime %q is not the SDK's RFC 3339 time", w.ID, g.TelemetrySourceTime)
		}
		g.TelemetrySourceTime = ""
		if !reflect.DeepEqual(g, w) {
			t.Errorf("telemetry event %s:\n got %+v\nwant %+v", w.ID, g, w)
		}
	}
}

// requireNode returns the path of node once it and the SDK packages are installed. Both are
// prerequisites: without them the test skips, or fails under CI (see testenv.Missing).
func requireNode(t *testing.T) string {
	t.Helper()
	node := testenv.Command(t, "node")
	if _, err := os.Stat(filepath.Join("node_modules", "@azure", "digital-twins-core", "package.json")); err != nil {
		testenv.Missing(t, "the SDK's npm packages are not installed (%v); run npm ci in test/sdk, or make sdk-deps", err)
	}
	return node
}
