// Package ui serves the explorer: a browser application, built from the sources in web/ into
// dist/ (make ui) and embedded in the binary, so that the server serves it without Node or a
// network. The application speaks to the API from the page with the user's credential; the
// assets themselves hold no data and are served to anyone.
package ui

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strings"
	"time"
)

// dist holds the built explorer: index.html and the assets it names, each named by its
// content hash (see web/build.mjs).
//
//go:embed dist
var dist embed.FS

// AssetPrefix is the path under which the assets are served. No API path starts with it.
const AssetPrefix = "/ui/"

// ContentSecurityPolicy is the policy every response of the handler carries: scripts and
// styles only from the server itself, no inline script, and requests (fetch) only to the
// server's own origin.
const ContentSecurityPolicy = "default-src 'none'; script-src 'self'; style-src 'self'; " +
	"img-src 'self' data: blob:; font-src 'self'; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// file is one file of the explorer, read once from dist.
type file struct {
	body        []byte
	contentType string
	etag        string
}

// Handler serves the explorer: GET / answers index.html, which browsers must revalidate
// (Cache-Control: no-cache, with an ETag), and GET /ui/<name> the assets, which are named by
// their content hash and so cached for a year as immutable. Any other path is 404. Handler is
// safe for concurrent use.
type Handler struct {
	index  file
	assets map[string]file
}

// New returns the handler of the embedded explorer. It fails if the build left no
// index.html, or an asset whose name does not hold the start of its content's SHA-256, which
// could not be cached as immutable.
func New() (*Handler, error) {
	return newHandler(dist)
}

// newHandler returns the handler of the explorer built into the directory dist of fsys.
func newHandler(fsys fs.FS) (*Handler, error) {
	h := &Handler{assets: make(map[string]file)}
	entries, err := fs.ReadDir(fsys, "dist")
	if err != nil {
		return nil, fmt.Errorf("read the explorer's assets: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			return nil, fmt.Errorf("read the explorer's assets: unexpected directory dist/%s", e.Name())
		}
		body, err := fs.ReadFile(fsys, path.Join("dist", e.Name()))
		if err != nil {
			return nil, fmt.Errorf("read the explorer's assets: %w", err)
		}
		sum := sha256.Sum256(body)
		hash := hex.EncodeToString(sum[:])
		f := file{body: body, contentType: contentType(e.Name()), etag: `"` + hash[:32] + `"`}
		if e.Name() == "index.html" {
			h.index = f
			continue
		}
		if !strings.Contains(e.Name(), "."+hash[:HashLen]+".") {
			return nil, fmt.Errorf("read the explorer's assets: dist/%s is not named by its content hash %s", e.Name(), hash[:HashLen])
		}
		h.assets[e.Name()] = f
	}
	if h.index.body == nil {
		return nil, fmt.Errorf("read the explorer's assets: no dist/index.html (run make ui)")
	}
	return h, nil
}

// HashLen is the number of hexadecimal digits of an asset's SHA-256 its name holds, as in
// app.0123456789ab.js.
const HashLen = 12

// contentType returns the media type of a file by its extension.
func contentType(name string) string {
	if t := mime.TypeByExtension(path.Ext(name)); t != "" {
		return t
	}
	return "application/octet-stream"
}

// ServeHTTP serves GET and HEAD of / and of the assets under AssetPrefix.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Security-Policy", ContentSecurityPolicy)
	hdr.Set("X-Content-Type-Options", "nosniff")
	hdr.Set("Referrer-Policy", "no-referrer")
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		hdr.Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	var f file
	switch name, isAsset := strings.CutPrefix(r.URL.Path, AssetPrefix); {
	case r.URL.Path == "/":
		f = h.index
		hdr.Set("Cache-Control", "no-cache")
	case isAsset:
		var ok bool
		if f, ok = h.assets[name]; !ok {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		hdr.Set("Cache-Control", "public, max-age=31536000, immutable")
	default:
		http.Error(w, "not found", http.StatusNotFound)
		return
	}
	hdr.Set("Content-Type", f.contentType)
	hdr.Set("ETag", f.etag)
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(f.body))
}
