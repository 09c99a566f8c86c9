package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/server"
	"github.com/twinflow/twinflow/internal/store/sqlite"
)

// keysCmd runs `twinflow keys args...` and returns its exit code and output.
func keysCmd(t *testing.T, env map[string]string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errOut bytes.Buffer
	code = run(context.Background(), append([]string{"keys"}, args...), func(k string) string { return env[k] }, &out, &errOut)
	return code, out.String(), errOut.String()
}

// keyLine matches the whole output of keys create: the key and a newline.
var keyLine = regexp.MustCompile(`^tfk_([0-9a-f]{16})_[A-Za-z0-9_-]{43}\n$`)

// TestKeysCommand creates keys in an empty data directory, which it initialises, lists and
// revokes them, and checks that a server on the directory accepts the keys until they are
// revoked.
func TestKeysCommand(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "new", "data")
	code, out, errOut := keysCmd(t, nil, "create", "--data-dir", dir, "--role", "owner", "--name", "ingest")
	m := keyLine.FindStringSubmatch(out)
	if code != 0 || m == nil || errOut != "" {
		t.Fatalf("keys create: exit %d, stdout %q, stderr %q; want the key alone on stdout", code, out, errOut)
	}
	owner, ownerID := strings.TrimSpace(out), m[1]
	if _, err := os.Stat(filepath.Join(dir, sqlite.FileName)); err != nil {
		t.Errorf("the data directory was not initialised: %v", err)
	}
	// The data directory from the environment, and an expiry.
	code, out, _ = keysCmd(t, map[string]string{"TWINFLOW_DATA_DIR": dir}, "create", "--role", "reader", "--expires", "1h")
	if code != 0 || !keyLine.MatchString(out) {
		t.Fatalf("keys create with TWINFLOW_DATA_DIR: exit %d, stdout %q", code, out)
	}
	reader := strings.TrimSpace(out)

	code, out, _ = keysCmd(t, nil, "list", "--data-dir", dir)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if code != 0 || len(lines) != 3 || !strings.HasPrefix(lines[0], "ID ") {
		t.Fatalf("keys list: exit %d:\n%s", code, out)
	}
	if !regexp.MustCompile(ownerID+`\s+owner\s+ingest\s+\S+\s+never`).MatchString(out) ||
		!regexp.MustCompile(`\s+reader\s+\S+\s+\d{4}-\d\d-\d\dT\S+Z\n`).MatchString(out) {
		t.Errorf("keys list shows:\n%s", out)
	}
	if strings.Contains(out, owner) {
		t.Error("keys list shows a key's secret")
	}

	// A server on the directory accepts the keys with their roles.
	get, stop := serveDir(t, dir)
	if got := get("/models", owner); got != http.StatusOK {
		t.Errorf("GET /models with the owner key: %d", got)
	}
	if got := get("/endpoints", owner); got != http.StatusForbidden {
		t.Errorf("GET /endpoints with the owner key: %d, want 403", got)
	}
	if got := get("/models", reader); got != http.StatusOK {
		t.Errorf("GET /models with the reader key: %d", got)
	}
	if got := get("/models", ""); got != http.StatusUnauthorized {
		t.Errorf("GET /models without a key: %d, want 401", got)
	}

	// While the server runs, the directory is locked: keys are managed through the API.
	code, _, errOut = keysCmd(t, nil, "list", "--data-dir", dir)
	if code != 1 || !strings.Contains(errOut, "in use by another twinflow process") || !strings.Contains(errOut, "through its API") {
		t.Errorf("keys list on a locked directory: exit %d, stderr %q", code, errOut)
	}
	stop()

	code, out, errOut = keysCmd(t, nil, "revoke", "--data-dir", dir, ownerID)
	if code != 0 || out != "" {
		t.Fatalf("keys revoke: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	code, _, errOut = keysCmd(t, nil, "revoke", "--data-dir", dir, ownerID)
	if code != 1 || !strings.Contains(errOut, "There is no API key with the id "+ownerID) {
		t.Errorf("revoking a revoked key: exit %d, stderr %q", code, errOut)
	}
	// Revoke takes the key's text too.
	if code, _, errOut = keysCmd(t, nil, "revoke", "--data-dir", dir, reader); code != 0 {
		t.Errorf("revoke by the key's text: exit %d, stderr %q", code, errOut)
	}
	if _, out, _ = keysCmd(t, nil, "list", "--data-dir", dir); strings.Count(out, "\n") != 1 {
		t.Errorf("keys left after revoking both:\n%s", out)
	}
	get, _ = serveDir(t, dir)
	if got := get("/models", owner); got != http.StatusUnauthorized {
		t.Errorf("GET /models with the revoked key: %d, want 401", got)
	}
}

func TestKeysCommandUsage(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{nil, 2, "Usage:"},
		{[]string{"rotate"}, 2, `unknown command "rotate"`},
		{[]string{"create", "--data-dir", dir}, 2, `--role: "" is not a role`},
		{[]string{"create", "--data-dir", dir, "--role", "root"}, 2, `--role: "root" is not a role`},
		{[]string{"create", "--data-dir", dir, "--role", "owner", "--expires", "-1h"}, 2, "--expires: -1h0m0s is negative"},
		{[]string{"create", "--data-dir", dir, "--role", "owner", "extra"}, 2, "want 0 argument(s)"},
		{[]string{"revoke", "--data-dir", dir}, 2, "want 1 argument(s)"},
		{[]string{"list", "--data-dir", dir, "--role", "owner"}, 2, "flag provided but not defined: -role"},
	} {
		code, out, errOut := keysCmd(t, nil, tc.args...)
		if code != tc.code || out != "" || !strings.Contains(errOut, tc.stderr) {
			t.Errorf("keys %q: exit %d, stdout %q, stderr %q; want exit %d saying %q", tc.args, code, out, errOut, tc.code, tc.stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, sqlite.FileName)); err == nil {
		t.Error("a refused command created the store")
	}
	if code, out, _ := keysCmd(t, nil, "help"); code != 0 || !strings.Contains(out, "twinflow keys create") {
		t.Errorf("keys help: exit %d, %q", code, out)
	}
}

// serveDir starts a server with authentication required on the data directory dir. It
// returns a function that sends GET path with the bearer credential cred (none when empty)
// and returns the status, and one that stops the server, which the test's end also does.
func serveDir(t *testing.T, dir string) (get func(path, cred string) int, stop func()) {
	t.Helper()
	cfg := server.Config{Config: config.Config{Server: config.Server{
		Listen: "127.0.0.1:0", DataDir: dir, Auth: config.Auth{Mode: config.AuthRequired},
	}, History: config.History{Mode: config.HistoryOff}}}
	srv, err := server.New(cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("server: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return func(path, cred string) int {
		t.Helper()
		for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
			req, err := http.NewRequest(http.MethodGet, srv.URL()+path+"?api-version=2023-10-31", nil)
			if err != nil {
				t.Fatal(err)
			}
			if cred != "" {
				req.Header.Set("Authorization", "Bearer "+cred)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			// 503 while the API is being built.
			if resp.StatusCode != http.StatusServiceUnavailable || time.Now().After(deadline) {
				return resp.StatusCode
			}
		}
	}, stop
}
