// Package sdk_test runs the official Azure Digital Twins JavaScript SDK against the real
// twinflow binary over HTTPS: adt.test.js holds the calls and assertions, this file builds
// and starts the server and runs Node.
package sdk_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/twinflow/twinflow/test/process"
)

func TestJavaScriptSDK(t *testing.T) {
	node := requireNode(t)

	dir := t.TempDir()
	cert, key := process.SelfSignedCert(t, dir)
	bin := process.Build(t)
	srv := process.Start(t, bin,
		"--listen", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "data"),
		"--tls-cert", cert, "--tls-key", key,
		"--log-level", "debug")

	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "--test", "--test-reporter=spec", "adt.test.js")
	cmd.Env = append(os.Environ(),
		"TWINFLOW_URL="+srv.URL,
		"NODE_EXTRA_CA_CERTS="+cert,
		"NO_COLOR=1")
	out, err := cmd.CombinedOutput()
	t.Logf("node --test adt.test.js:\n%s", out)
	if err != nil {
		t.Fatalf("the SDK test failed: %v", err)
	}
	if err := srv.Stop(30 * time.Second); err != nil {
		t.Errorf("server did not stop cleanly: %v", err)
	}
}

// requireNode returns the path of node once it and the SDK packages are installed. Without
// them the test skips on a developer's machine but fails in CI (CI=true), where a missing
// install step must not pass silently.
func requireNode(t *testing.T) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv("CI") == "true" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format+" (run npm ci in test/sdk)", args...)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node is not installed: %v", err)
	}
	if _, err := os.Stat(filepath.Join("node_modules", "@azure", "digital-twins-core", "package.json")); err != nil {
		missing("@azure/digital-twins-core is not installed: %v", err)
	}
	return node
}
