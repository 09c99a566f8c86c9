package e2e_test

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/test/process"
)

// TestServeFromEnvironment configures the binary through TWINFLOW_* variables alone and checks
// that each one took effect.
func TestServeFromEnvironment(t *testing.T) {
	bin := process.Build(t)
	dataDir := filepath.Join(t.TempDir(), "env-data")
	p := process.StartEnv(t, bin, []string{
		"TWINFLOW_LISTEN=127.0.0.1:0",
		"TWINFLOW_DATA_DIR=" + dataDir,
		"TWINFLOW_SERVICE_ID=env.twinflow.test",
		"TWINFLOW_LOG_FORMAT=json",
		"TWINFLOW_LOG_LEVEL=debug",
	})
	c := newClient(p.URL, 1)
	c.must(t, http.MethodGet, "/healthz", nil, http.StatusOK)
	if err := p.Stop(30 * time.Second); err != nil {
		t.Fatalf("SIGTERM: %v", err)
	}

	if _, err := os.Stat(filepath.Join(dataDir, "twinflow.db")); err != nil {
		t.Errorf("no store in TWINFLOW_DATA_DIR: %v", err)
	}
	var sawServiceID, sawAccess bool
	for line := range strings.Lines(strings.TrimSpace(p.Output())) {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("log line is not JSON: %q: %v", line, err)
		}
		if rec["service_id"] == "env.twinflow.test" {
			sawServiceID = true
		}
		if rec["msg"] == "request" && rec["level"] == "DEBUG" && rec["path"] == "/healthz" {
			sawAccess = true
		}
	}
	if !sawServiceID || !sawAccess {
		t.Errorf("service id logged: %v, debug access log: %v; output:\n%s", sawServiceID, sawAccess, p.Output())
	}
}
