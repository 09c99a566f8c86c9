package server

import (
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/ui"
)

// TestExplorerWithoutCredentials serves the explorer's page and assets without a credential
// while authentication is required, as they hold no data, and keeps the API behind it; paths
// beside them stay the API's.
func TestExplorerWithoutCredentials(t *testing.T) {
	s, _ := start(t, Config{Config: config.Config{Server: config.Server{Auth: config.Auth{Mode: config.AuthRequired}}}}, nil)
	status, hdr, body := send(t, s, http.MethodGet, "/", "", "")
	if status != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") ||
		hdr.Get("Content-Security-Policy") != ui.ContentSecurityPolicy {
		t.Fatalf("GET /: %d %v", status, hdr)
	}
	script := regexp.MustCompile(`/ui/app\.[0-9a-f]+\.js`).FindString(body)
	if script == "" {
		t.Fatalf("the page names no script:\n%s", body)
	}
	if status, hdr, _ := send(t, s, http.MethodGet, script, "", ""); status != http.StatusOK || !strings.Contains(hdr.Get("Cache-Control"), "immutable") {
		t.Errorf("GET %s: %d %v", script, status, hdr)
	}
	for _, tt := range []struct {
		method, path string
		want         int
	}{
		{http.MethodGet, "/models", http.StatusUnauthorized},
		{http.MethodPost, "/", http.StatusUnauthorized},
		{http.MethodGet, "/uix", http.StatusUnauthorized},
		{http.MethodGet, "/ui/missing.js", http.StatusNotFound},
	} {
		if status, _, body := send(t, s, tt.method, tt.path, "", ""); status != tt.want {
			t.Errorf("%s %s: %d %s, want %d", tt.method, tt.path, status, body, tt.want)
		}
	}
}
