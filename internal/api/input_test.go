package api

import (
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
)

// TestMalformedQueryEscapes checks that a parameter whose percent-escape does not decode is
// refused rather than dropped (which would, for one, list every relationship instead of
// those of the name asked for).
func TestMalformedQueryEscapes(t *testing.T) {
	e := newTestEnv(t, Config{})
	e.putRoom("r1")
	for _, q := range []string{
		"api-version=2023-10-31&relationshipName=%zz",
		"api-version=2023-10-31&relationshipName=%",
		"api-version=2023-10-31&%zz=next",
		"api-version=%2",
	} {
		e.must(e.do(http.MethodGet, "/digitaltwins/r1/relationships?"+q, ""), http.StatusBadRequest, "InvalidArgument")
	}
	e.must(e.do(http.MethodGet, "/digitaltwins/r1/relationships?api-version=2023-10-31&relationshipName="+url.QueryEscape("n%xt"), ""), http.StatusOK, "")
}

// TestBodyMediaTypes checks that a body is taken only with a JSON media type, the JSON Patch
// type for patches and NDJSON for pushed messages, and that everything a browser can send
// without a CORS preflight is refused with 415.
func TestBodyMediaTypes(t *testing.T) {
	e := newTestEnv(t, Config{})
	e.putRoom("r1")
	e.must(e.do(http.MethodPut, "/sources/lab", `{"sourceType": "http"}`), http.StatusCreated, "")
	const patch = `[{"op": "add", "path": "/counter", "value": 1}]`
	for _, tt := range []struct {
		method, path, contentType, body string
		status                          int
	}{
		{http.MethodPut, "/digitaltwins/r2", "application/json", roomBody, http.StatusOK},
		{http.MethodPut, "/digitaltwins/r2", "application/json; charset=utf-8", roomBody, http.StatusOK},
		{http.MethodPut, "/digitaltwins/r2", "Application/JSON; Charset=UTF-8", roomBody, http.StatusOK},
		{http.MethodPut, "/digitaltwins/r2", "application/json; charset=iso-8859-1", roomBody, http.StatusUnsupportedMediaType},
		{http.MethodPut, "/digitaltwins/r2", "text/plain", roomBody, http.StatusUnsupportedMediaType},
		{http.MethodPut, "/digitaltwins/r2", "application/json-patch+json", roomBody, http.StatusUnsupportedMediaType},
		{http.MethodPut, "/digitaltwins/r2", "", roomBody, http.StatusUnsupportedMediaType},

		{http.MethodPatch, "/digitaltwins/r1", "application/json-patch+json", patch, http.StatusNoContent},
		{http.MethodPatch, "/digitaltwins/r1", "application/json-patch+json; charset=utf-8", patch, http.StatusNoContent},
		{http.MethodPatch, "/digitaltwins/r1", "application/json", patch, http.StatusNoContent},
		{http.MethodPatch, "/digitaltwins/r1", "application/merge-patch+json", patch, http.StatusUnsupportedMediaType},
		{http.MethodPatch, "/digitaltwins/r1", "", patch, http.StatusUnsupportedMediaType},

		// What an HTML form or a no-cors fetch can POST across origins.
		{http.MethodPost, "/digitaltwins/r1/telemetry", "application/x-www-form-urlencoded", `{"a": 1}`, http.StatusUnsupportedMediaType},
		{http.MethodPost, "/digitaltwins/r1/telemetry", "multipart/form-data; boundary=x", `{"a": 1}`, http.StatusUnsupportedMediaType},
		{http.MethodPost, "/digitaltwins/r1/telemetry", "", `{"a": 1}`, http.StatusUnsupportedMediaType},
		{http.MethodPost, "/digitaltwins/r1/telemetry", "text/plain", `{"a": 1}`, http.StatusUnsupportedMediaType},
		{http.MethodPost, "/digitaltwins/r1/telemetry", "application/json", `{"a": 1}`, http.StatusNoContent},

		{http.MethodPost, "/sources/lab/messages", "application/x-ndjson", "{\"a\": 1}\n{\"a\": 2}\n", http.StatusOK},
		{http.MethodPost, "/sources/lab/messages", "application/json", `{"a": 1}`, http.StatusOK},
		{http.MethodPost, "/sources/lab/messages", "text/plain", `{"a": 1}`, http.StatusUnsupportedMediaType},
		{http.MethodPut, "/sources/lab", "application/x-ndjson", `{"sourceType": "http"}`, http.StatusUnsupportedMediaType},

		// No body: nothing to judge.
		{http.MethodGet, "/digitaltwins/r1", "text/plain", "", http.StatusOK},
		{http.MethodDelete, "/digitaltwins/r2", "", "", http.StatusNoContent},
	} {
		r := e.do(tt.method, tt.path, tt.body, "Content-Type", tt.contentType, "Message-Id", "m1")
		if r.status != tt.status {
			t.Errorf("%s %s as %q = %d %s, want %d", tt.method, tt.path, tt.contentType, r.status, r.body, tt.status)
			continue
		}
		if tt.status == http.StatusUnsupportedMediaType {
			e.must(r, tt.status, "UnsupportedMediaType")
		}
	}
}

// TestBodylessHTTP2Request checks that a request without a body as HTTP/2 delivers it (a
// Body that is not http.NoBody, of length 0) is not taken for a body without Content-Type.
func TestBodylessHTTP2Request(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/models", strings.NewReader(""))
	r.ContentLength = 0
	if err := checkMediaType(r, []string{mediaJSON}); err != nil {
		t.Errorf("a GET without a body: %v", err)
	}
	r = httptest.NewRequest(http.MethodPost, "/query", strings.NewReader(`{}`))
	r.ContentLength = -1 // a body of unknown length
	if err := checkMediaType(r, []string{mediaJSON}); err == nil {
		t.Error("a body of unknown length without Content-Type passed")
	}
}
