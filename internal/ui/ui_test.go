package ui

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"testing/fstest"

	"github.com/twinflow/twinflow/internal/testenv"
)

// TestHandler serves the committed build: the page, its assets with their caching, the
// security headers on each, and 404 and 405 for the rest.
func TestHandler(t *testing.T) {
	h, err := New()
	if err != nil {
		t.Fatal(err)
	}
	index := get(t, h, http.MethodGet, "/", nil)
	if index.Code != http.StatusOK || index.Header().Get("Cache-Control") != "no-cache" ||
		!strings.HasPrefix(index.Header().Get("Content-Type"), "text/html") {
		t.Fatalf("GET /: %d %v", index.Code, index.Header())
	}
	assets := regexp.MustCompile(`/ui/app\.[0-9a-f]{12}\.(js|css)`).FindAllString(index.Body.String(), -1)
	if len(assets) != 2 {
		t.Fatalf("index.html names %v, want a script and a style sheet", assets)
	}
	if strings.Contains(index.Body.String(), "<script>") || strings.Contains(index.Body.String(), "<style") {
		t.Error("index.html has an inline script or style")
	}
	for _, path := range assets {
		res := get(t, h, http.MethodGet, path, nil)
		if res.Code != http.StatusOK || res.Header().Get("Cache-Control") != "public, max-age=31536000, immutable" {
			t.Errorf("GET %s: %d %v", path, res.Code, res.Header())
		}
		sum := sha256.Sum256(res.Body.Bytes())
		if !strings.Contains(path, hex.EncodeToString(sum[:])[:HashLen]) {
			t.Errorf("%s is not named by its content's hash", path)
		}
	}
	if ct := get(t, h, http.MethodGet, assets[0], nil).Header().Get("Content-Type"); !strings.Contains(ct, "javascript") && !strings.Contains(ct, "css") {
		t.Errorf("%s has the type %q", assets[0], ct)
	}

	tests := []struct {
		name, method, path string
		header             map[string]string
		want               int
	}{
		{"head of the page", http.MethodHead, "/", nil, http.StatusOK},
		{"revalidated page", http.MethodGet, "/", map[string]string{"If-None-Match": index.Header().Get("ETag")}, http.StatusNotModified},
		{"unknown asset", http.MethodGet, "/ui/app.000000000000.js", nil, http.StatusNotFound},
		{"asset directory", http.MethodGet, "/ui/", nil, http.StatusNotFound},
		{"index by name", http.MethodGet, "/ui/index.html", nil, http.StatusNotFound},
		{"other path", http.MethodGet, "/models.html", nil, http.StatusNotFound},
		{"post", http.MethodPost, "/", nil, http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := get(t, h, tt.method, tt.path, tt.header)
			if res.Code != tt.want {
				t.Fatalf("%s %s: %d, want %d", tt.method, tt.path, res.Code, tt.want)
			}
			if res.Header().Get("Content-Security-Policy") != ContentSecurityPolicy ||
				res.Header().Get("X-Content-Type-Options") != "nosniff" {
				t.Errorf("%s %s: headers %v", tt.method, tt.path, res.Header())
			}
		})
	}
}

func get(t *testing.T, h http.Handler, method, path string, header map[string]string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res := httptest.NewRecorder()
	h.ServeHTTP(res, req)
	return res
}

// TestNewRefuses refuses a build it could not serve right: no index.html, or an asset not
// named by its hash, which browsers would keep for a year after it changed.
func TestNewRefuses(t *testing.T) {
	good := []byte("console.log(1)\n")
	sum := sha256.Sum256(good)
	hashed := "app." + hex.EncodeToString(sum[:])[:HashLen] + ".js"
	tests := []struct {
		name  string
		files fstest.MapFS
		err   string
	}{
		{"no index", fstest.MapFS{"dist/" + hashed: {Data: good}}, "no dist/index.html"},
		{"stale name", fstest.MapFS{"dist/index.html": {Data: []byte("<!doctype html>")}, "dist/app.0123456789ab.js": {Data: good}}, "not named by its content hash"},
		{"plain name", fstest.MapFS{"dist/index.html": {Data: []byte("<!doctype html>")}, "dist/app.js": {Data: good}}, "not named by its content hash"},
		{"good", fstest.MapFS{"dist/index.html": {Data: []byte("<!doctype html>")}, "dist/" + hashed: {Data: good}}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := newHandler(tt.files)
			if tt.err == "" && err != nil || tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)) {
				t.Fatalf("newHandler: %v, want an error with %q", err, tt.err)
			}
		})
	}
}

// TestWebLogic runs the table tests of the application's pure logic (web/test: the upload
// order of models, SSE parsing, ...) with Node's test runner.
func TestWebLogic(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		testenv.Missing(t, "node on PATH (apt-get install nodejs): %v", err)
	}
	files, err := filepath.Glob(filepath.Join("web", "test", "*.test.mjs"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no tests in web/test: %v", err)
	}
	cmd := exec.Command(node, append([]string{"--test"}, files...)...)
	cmd.Env = append(os.Environ(), "NODE_NO_WARNINGS=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
