package server

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/config"
)

// rawResponse is the answer to a request written byte for byte on a new connection.
type rawResponse struct {
	status int
	header http.Header
	body   string
}

// code returns the ADT error code of the response body, or "" when it has none.
func (r rawResponse) code() string {
	var b struct {
		Error struct{ Code string } `json:"error"`
	}
	_ = json.Unmarshal([]byte(r.body), &b)
	return b.Error.Code
}

// raw writes req to a new connection to s and reads the response.
func raw(t *testing.T, s *Server, req string) rawResponse {
	t.Helper()
	return exchange(t, s, func(conn *net.TCPConn) { _, _ = io.WriteString(conn, req) })
}

// exchange runs send on its own goroutine over a new connection to s, while it reads the
// response.
func exchange(t *testing.T, s *Server, send func(*net.TCPConn)) rawResponse {
	t.Helper()
	c, err := net.Dial("tcp", s.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	conn := c.(*net.TCPConn)
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		send(conn) // write errors show as a missing or wrong response
	}()
	defer func() { <-sent }()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("read the response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return rawResponse{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// wantADT checks r is an ADT error response with the status and code.
func wantADT(t *testing.T, what string, r rawResponse, status int, code string) {
	t.Helper()
	if r.status != status || r.code() != code || r.header.Get("x-ms-error-code") != code ||
		r.header.Get("Content-Type") != "application/json; charset=utf-8" {
		t.Errorf("%s = %d %s %q, want %d %s with ADT's body", what, r.status, r.header, r.body, status, code)
	}
}

// startWith starts a server with the server settings srv on a free loopback port.
func startWith(t *testing.T, srv config.Server) *Server {
	t.Helper()
	s, _ := start(t, Config{Config: config.Config{Server: srv}}, nil)
	return s
}

// TestPathsAreNotCleaned checks that a path with an empty, "." or ".." segment is answered
// 400 with ADT's body rather than redirected to, or served as, another path.
func TestPathsAreNotCleaned(t *testing.T) {
	s := startWith(t, config.Server{})
	for _, path := range []string{
		"/digitaltwins/a/../b", "/digitaltwins/a/./b", "/digitaltwins//b", "//models", "/./models",
		"/models/..", "/healthz/../metrics", "/digitaltwins/a/..",
	} {
		r := raw(t, s, "GET "+path+"?api-version=2023-10-31 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
		wantADT(t, "GET "+path, r, http.StatusBadRequest, "InvalidArgument")
		if loc := r.header.Get("Location"); loc != "" {
			t.Errorf("GET %s redirects to %s", path, loc)
		}
	}
	// An absolute-form target without a path is not cleaned to "/" either.
	r := raw(t, s, "GET http://localhost HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	wantADT(t, "GET http://localhost", r, http.StatusBadRequest, "InvalidArgument")

	// A trailing slash is a path of its own, which no route serves.
	r = raw(t, s, "GET /models/?api-version=2023-10-31 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	wantADT(t, "GET /models/", r, http.StatusNotFound, "NotFound")
}

// TestBadIDsAreRefused checks that every kind of id in a path is refused with ADT's error
// code for its resource when it cannot be an id, before anything is stored under a changed
// name.
func TestBadIDsAreRefused(t *testing.T) {
	s := startWith(t, config.Server{})
	c := apiClient{t: t, base: s.URL()}
	c.do(http.MethodPost, "/models", `[{"@id": "dtmi:test:R;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
		"contents": [{"@type": "Relationship", "name": "next"}]}]`, http.StatusCreated)
	c.do(http.MethodPut, "/digitaltwins/r1", `{"$metadata": {"$model": "dtmi:test:R;1"}}`, http.StatusOK)
	for _, id := range []string{
		"%2E", "%2E%2E", "a%2F..%2Fb", "..%2Fx", "a%2F.", // "." and ".." segments
		"a%00b", "a%01b", "a%0Ab", "a%7Fb", "a%C2%85b", // control characters
		"%FF", "a%C3", // not UTF-8
		strings.Repeat("x", 1025), // too long
	} {
		for _, tt := range []struct {
			method, path, body, code string
		}{
			{http.MethodPut, "/digitaltwins/" + id, `{"$metadata": {"$model": "dtmi:test:R;1"}}`, "InvalidArgument"},
			{http.MethodGet, "/digitaltwins/" + id, "", "InvalidArgument"},
			{http.MethodPatch, "/digitaltwins/" + id, `[]`, "InvalidArgument"},
			{http.MethodDelete, "/digitaltwins/" + id, "", "InvalidArgument"},
			{http.MethodPost, "/digitaltwins/" + id + "/telemetry", `{}`, "InvalidArgument"},
			{http.MethodGet, "/digitaltwins/" + id + "/relationships", "", "InvalidArgument"},
			{http.MethodPut, "/digitaltwins/r1/relationships/" + id, `{"$targetId": "r1", "$relationshipName": "next"}`, "InvalidArgument"},
			{http.MethodGet, "/digitaltwins/r1/components/" + id, "", "InvalidArgument"},
			{http.MethodGet, "/models/" + id, "", "InvalidArgument"},
			{http.MethodDelete, "/models/" + id, "", "InvalidArgument"},
			{http.MethodPut, "/eventroutes/" + id, `{"endpointName": "e", "filter": "true"}`, "EventRouteIdInvalid"},
			{http.MethodGet, "/eventroutes/" + id, "", "EventRouteIdInvalid"},
			{http.MethodPut, "/jobs/imports/" + id, `{"inputBlobUri": "file:in.ndjson", "outputBlobUri": "file:out.ndjson"}`, "ValidationFailed"},
			{http.MethodGet, "/jobs/deletions/" + id, "", "ValidationFailed"},
			{http.MethodPut, "/endpoints/" + id, `{"endpointType": "webhook", "url": "http://127.0.0.1:1/"}`, "InvalidArgument"},
			{http.MethodGet, "/endpoints/e/deadletters/" + id, "", "InvalidArgument"},
			{http.MethodPut, "/sources/" + id, `{"sourceType": "http"}`, "InvalidArgument"},
			{http.MethodPost, "/sources/" + id + "/messages", `{}`, "InvalidArgument"},
			{http.MethodPut, "/mappings/" + id, `{}`, "InvalidArgument"},
		} {
			r := raw(t, s, fmt.Sprintf("%s %s?api-version=2023-10-31 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"+
				"Content-Length: %d\r\nConnection: close\r\n\r\n%s", tt.method, tt.path, len(tt.body), tt.body))
			wantADT(t, tt.method+" "+tt.path[:min(len(tt.path), 60)], r, http.StatusBadRequest, tt.code)
		}
	}
	// Nothing was stored: r1 is the one twin, and has no relationships.
	got := c.do(http.MethodPost, "/query", `{"query": "SELECT T.$dtId FROM DIGITALTWINS T"}`, http.StatusOK)
	if !strings.Contains(got, `"value":[{"$dtId":"r1"}]`) {
		t.Errorf("twins after the bad requests: %s", got)
	}
	if got := c.do(http.MethodGet, "/digitaltwins/r1/relationships", "", http.StatusOK); !strings.Contains(got, `"value":[]`) {
		t.Errorf("relationships after the bad requests: %s", got)
	}
}

// TestHostCheck checks that, by default, only requests naming the server by a loopback name,
// its address or its service id are served (DNS rebinding), that the configuration adds
// names or lets any through, and that the health endpoints answer whatever the Host.
func TestHostCheck(t *testing.T) {
	get := func(s *Server, path, host string) rawResponse {
		t.Helper()
		hostLine := "Host: " + host + "\r\n"
		proto := "HTTP/1.1"
		if host == "" {
			hostLine, proto = "", "HTTP/1.0"
		}
		return raw(t, s, "GET "+path+"?api-version=2023-10-31 "+proto+"\r\n"+hostLine+"Connection: close\r\n\r\n")
	}
	check := func(s *Server, allowed, refused []string) {
		t.Helper()
		for _, h := range allowed {
			if r := get(s, "/models", h); r.status != http.StatusOK {
				t.Errorf("Host %q: %d %s, want 200", h, r.status, r.body)
			}
			if r := get(s, "/", h); r.status != http.StatusOK {
				t.Errorf("Host %q: the explorer answered %d, want 200", h, r.status)
			}
		}
		for _, h := range refused {
			wantADT(t, "Host "+h, get(s, "/models", h), http.StatusMisdirectedRequest, "MisdirectedRequest")
			wantADT(t, "Host "+h+" /metrics", get(s, "/metrics", h), http.StatusMisdirectedRequest, "MisdirectedRequest")
			// A rebinding page must not get the explorer either: it would run on the
			// attacker's origin with the server's.
			wantADT(t, "Host "+h+" /", get(s, "/", h), http.StatusMisdirectedRequest, "MisdirectedRequest")
			for _, path := range []string{"/healthz", "/readyz"} {
				if r := get(s, path, h); r.status != http.StatusOK {
					t.Errorf("Host %q: %s answered %d, want 200", h, path, r.status)
				}
			}
		}
	}

	s := startWith(t, config.Server{ServiceID: "twins.example.com"})
	_, port, _ := net.SplitHostPort(s.Addr().String())
	check(s, []string{
		"localhost", "localhost:" + port, "LOCALHOST:" + port, "127.0.0.1", "127.0.0.1:" + port, "[::1]", "[::1]:" + port,
		"twins.example.com", "twins.example.com:" + port,
	}, []string{
		"evil.example", "evil.example:" + port, "localhost.evil.example:" + port, "127.0.0.1.nip.io:" + port,
		"localhost:1", "twins.example.com:1", "",
	})

	s = startWith(t, config.Server{AllowedHosts: []string{"tf.example.com", "proxy.example.com:8443"}})
	_, port, _ = net.SplitHostPort(s.Addr().String())
	check(s, []string{
		"tf.example.com", "tf.example.com:" + port, "proxy.example.com:8443", "localhost:" + port,
	}, []string{
		"proxy.example.com", "proxy.example.com:" + port, "tf.example.com:8443", "evil.example",
	})

	s = startWith(t, config.Server{AllowedHosts: []string{config.AnyHost}})
	check(s, []string{"evil.example", "anything:1"}, nil)
}

// TestHeaderLimit checks that a request whose header is over the configured limit is
// answered 431 with ADT's body, up to where net/http stops reading and answers on its own.
func TestHeaderLimit(t *testing.T) {
	s := startWith(t, config.Server{MaxHeaderBytes: 4096})
	request := func(n int) string {
		return "GET /models?api-version=2023-10-31 HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\nX-Pad: " +
			strings.Repeat("a", n) + "\r\n\r\n"
	}
	if r := raw(t, s, request(3000)); r.status != http.StatusOK {
		t.Errorf("a 3 KB header: %d %s", r.status, r.body)
	}
	wantADT(t, "a 5 KB header", raw(t, s, request(5000)), http.StatusRequestHeaderFieldsTooLarge, "RequestHeaderFieldsTooLarge")
	wantADT(t, "a 900 KB header", raw(t, s, request(900<<10)), http.StatusRequestHeaderFieldsTooLarge, "RequestHeaderFieldsTooLarge")
	// Past net/http's own limit (ServerMaxHeaderBytes: 1 MiB here) it answers before any
	// handler runs, in plain text.
	if r := raw(t, s, request(2<<20)); r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Errorf("a 2 MB header: %d %s", r.status, r.body)
	}
}

// TestSlowBody checks that a body that trickles in is cut off at the body read timeout with
// 408 and ADT's body, and that a body arriving in time is served.
func TestSlowBody(t *testing.T) {
	s := startWith(t, config.Server{BodyReadTimeout: 300 * time.Millisecond})
	const body = `[{"@id": "dtmi:test:S;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3"}]`
	head := fmt.Sprintf("POST /models?api-version=2023-10-31 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"+
		"Content-Length: %d\r\nConnection: close\r\n\r\n", len(body))

	trickle := func(pause time.Duration) func(*net.TCPConn) {
		return func(conn *net.TCPConn) {
			_, _ = io.WriteString(conn, head+body[:10])
			for i := 10; i < len(body); i++ {
				time.Sleep(pause)
				if _, err := io.WriteString(conn, body[i:i+1]); err != nil {
					return
				}
			}
		}
	}
	start := time.Now()
	r := exchange(t, s, trickle(100*time.Millisecond))
	wantADT(t, "a body that trickles in", r, http.StatusRequestTimeout, "RequestTimeout")
	if d := time.Since(start); d > 1500*time.Millisecond {
		t.Errorf("the trickling body was answered after %v, want about 300ms", d)
	}

	r = exchange(t, s, trickle(0))
	if r.status != http.StatusCreated {
		t.Errorf("a body that arrives in time: %d %s", r.status, r.body)
	}

	// Each request of a kept-alive connection has its own deadline.
	c := apiClient{t: t, base: s.URL()}
	for i := range 3 {
		c.do(http.MethodPut, fmt.Sprintf("/digitaltwins/t%d", i), `{"$metadata": {"$model": "dtmi:test:S;1"}}`, http.StatusOK)
		time.Sleep(200 * time.Millisecond)
	}
}

// TestMalformedBodies checks that a body whose chunked encoding is malformed, or that ends
// before its Content-Length, is answered 400 with ADT's body, not 500.
func TestMalformedBodies(t *testing.T) {
	s := startWith(t, config.Server{})
	const head = "PUT /digitaltwins/c?api-version=2023-10-31 HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
	for name, req := range map[string]string{
		"a chunk size that is not hex": head + "Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
		"a chunk longer than its size": head + "Transfer-Encoding: chunked\r\n\r\n1\r\n{}\r\n0\r\n\r\n",
		"a chunked body cut short":     head + "Transfer-Encoding: chunked\r\n\r\n10\r\n{}",
	} {
		r := exchange(t, s, func(conn *net.TCPConn) {
			_, _ = io.WriteString(conn, req)
			_ = conn.CloseWrite() // the client is done: what it sent is all there is
		})
		wantADT(t, name, r, http.StatusBadRequest, "InvalidArgument")
	}
}

// TestErrorsNetHTTPAnswers records the malformed requests net/http answers itself, before any
// handler runs, so that their answers cannot carry ADT's body: a percent-escape in the path
// that does not decode, a malformed or missing Host, a transfer coding it does not know.
// If a Go release starts handing one of them to the handler, this test tells.
func TestErrorsNetHTTPAnswers(t *testing.T) {
	s := startWith(t, config.Server{})
	for _, tt := range []struct {
		name, req string
		status    int
	}{
		{"a bad escape in the path", "GET /digitaltwins/%zz?api-version=2023-10-31 HTTP/1.1\r\nHost: localhost\r\n\r\n", http.StatusBadRequest},
		{"a malformed Host", "GET /models?api-version=2023-10-31 HTTP/1.1\r\nHost: a b\r\n\r\n", http.StatusBadRequest},
		{"no Host in HTTP/1.1", "GET /models?api-version=2023-10-31 HTTP/1.1\r\n\r\n", http.StatusBadRequest},
		{"an unknown transfer coding", "POST /query?api-version=2023-10-31 HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: gzip\r\n\r\n", http.StatusNotImplemented},
	} {
		r := raw(t, s, tt.req)
		if r.status != tt.status || r.code() != "" || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") {
			t.Errorf("%s: %d %q %q, want net/http's own plain %d", tt.name, r.status, r.header.Get("Content-Type"), r.body, tt.status)
		}
	}
}

// TestFormPostsAreRefused checks, on the whole server, that what a browser can POST across
// origins without a preflight is refused, while requests without a body need no type.
func TestFormPostsAreRefused(t *testing.T) {
	s := startWith(t, config.Server{})
	const query = `{"query": "SELECT * FROM DIGITALTWINS"}`
	for _, ct := range []string{"application/x-www-form-urlencoded", "text/plain", "multipart/form-data; boundary=x"} {
		r := raw(t, s, fmt.Sprintf("POST /query?api-version=2023-10-31 HTTP/1.1\r\nHost: localhost\r\nContent-Type: %s\r\n"+
			"Content-Length: %d\r\nConnection: close\r\n\r\n%s", ct, len(query), query))
		wantADT(t, "POST /query as "+ct, r, http.StatusUnsupportedMediaType, "UnsupportedMediaType")
	}
	r := raw(t, s, "POST /jobs/deletions?api-version=2023-10-31 HTTP/1.1\r\nHost: localhost\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
	if r.status != http.StatusAccepted {
		t.Errorf("POST /jobs/deletions without a body: %d %s", r.status, r.body)
	}
}
