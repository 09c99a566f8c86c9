package server

import (
	"crypto/tls"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/auth/authtest"
	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/test/process"
)

// authServer starts a server with authentication required that accepts iss's tokens for
// authtest.Audience, with ADT's role names and "twins-admin" mapped to roles.
func authServer(t *testing.T, iss *authtest.Issuer) *Server {
	t.Helper()
	s, _ := start(t, Config{Config: config.Config{Server: config.Server{Auth: config.Auth{
		Mode: config.AuthRequired,
		OIDC: config.OIDC{Issuer: iss.URL, Audiences: []string{authtest.Audience}, Roles: map[string]string{
			"Azure Digital Twins Data Owner":  "owner",
			"Azure Digital Twins Data Reader": "reader",
			"twins-admin":                     "admin",
		}},
	}}}}, nil)
	return s
}

// send sends a request to s with the bearer credential cred (none when empty) and returns
// the status, the headers and the body.
func send(t *testing.T, s *Server, method, path, cred, body string, headers ...string) (int, http.Header, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	if !strings.Contains(path, "?") && !strings.HasPrefix(path, "/healthz") && !strings.HasPrefix(path, "/readyz") && path != "/metrics" {
		path += "?api-version=2023-10-31"
	}
	req, err := http.NewRequest(method, s.URL()+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if cred != "" {
		req.Header.Set("Authorization", "Bearer "+cred)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	if h := req.Header.Get("Host"); h != "" {
		req.Host = h
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// TestRolesByResourceGroup sends a request of each group of resources with no credential,
// and with tokens of a local OpenID Connect issuer for a reader, an owner, an administrator
// and an identity without a role, and checks each status.
func TestRolesByResourceGroup(t *testing.T) {
	iss := authtest.NewIssuer(t)
	s := authServer(t, iss)
	tokens := map[string]string{
		"none":   "",
		"reader": iss.Token(t, iss.Claims("reader-1", "Azure Digital Twins Data Reader")),
		"owner":  iss.Token(t, iss.Claims("owner-1", "Azure Digital Twins Data Owner")),
		"admin":  iss.Token(t, iss.Claims("admin-1", "twins-admin")),
		"norole": iss.Token(t, iss.Claims("nobody", "some-other-role")),
	}
	const model = `[{"@id": "dtmi:example:Room;1", "@type": "Interface", "@context": "dtmi:dtdl:context;3",
		"contents": [{"@type": "Property", "name": "temperature", "schema": "double"}]}]`
	if code, _, body := send(t, s, http.MethodPost, "/models", tokens["owner"], model); code != http.StatusCreated {
		t.Fatalf("upload the model as the owner: %d %s", code, body)
	}
	const room = `{"$metadata": {"$model": "dtmi:example:Room;1"}, "temperature": 20}`
	for _, tc := range []struct {
		group, method, path, body string
		headers                   []string
		// want is the status for none, reader, owner, admin and norole.
		want [5]int
	}{
		{"models read", http.MethodGet, "/models", "", nil, [5]int{401, 200, 200, 200, 403}},
		{"twins write", http.MethodPut, "/digitaltwins/r1", room, nil, [5]int{401, 403, 200, 200, 403}},
		{"twins read", http.MethodGet, "/digitaltwins/r1", "", nil, [5]int{401, 200, 200, 200, 403}},
		{"query", http.MethodPost, "/query", `{"query": "SELECT * FROM DIGITALTWINS"}`, nil, [5]int{401, 200, 200, 200, 403}},
		{"telemetry", http.MethodPost, "/digitaltwins/r1/telemetry", `{"t": 1}`, []string{"Message-Id", "m1"}, [5]int{401, 403, 204, 204, 403}},
		{"relationships write", http.MethodPut, "/digitaltwins/r1/relationships/x", `{"$targetId": "r1", "$relationshipName": "none"}`, nil, [5]int{401, 403, 400, 400, 403}},
		{"event routes read", http.MethodGet, "/eventroutes", "", nil, [5]int{401, 200, 200, 200, 403}},
		{"event routes write", http.MethodDelete, "/eventroutes/missing", "", nil, [5]int{401, 403, 404, 404, 403}},
		{"jobs read", http.MethodGet, "/jobs/imports", "", nil, [5]int{401, 200, 200, 200, 403}},
		{"jobs write", http.MethodPost, "/jobs/imports/missing/cancel", "", nil, [5]int{401, 403, 404, 404, 403}},
		{"history", http.MethodGet, "/history/status", "", nil, [5]int{401, 200, 200, 200, 403}},
		{"endpoints", http.MethodGet, "/endpoints", "", nil, [5]int{401, 403, 403, 200, 403}},
		{"sources", http.MethodGet, "/sources", "", nil, [5]int{401, 403, 403, 200, 403}},
		{"mappings", http.MethodGet, "/mappings", "", nil, [5]int{401, 403, 403, 200, 403}},
		{"keys", http.MethodGet, "/keys", "", nil, [5]int{401, 403, 403, 200, 403}},
		{"metrics", http.MethodGet, "/metrics", "", nil, [5]int{401, 200, 200, 200, 403}},
		{"unknown path", http.MethodGet, "/nowhere", "", nil, [5]int{401, 404, 404, 404, 404}},
		{"liveness", http.MethodGet, "/healthz", "", nil, [5]int{200, 200, 200, 200, 200}},
		{"readiness", http.MethodGet, "/readyz", "", nil, [5]int{200, 200, 200, 200, 200}},
	} {
		for i, who := range []string{"none", "reader", "owner", "admin", "norole"} {
			code, header, body := send(t, s, tc.method, tc.path, tokens[who], tc.body, tc.headers...)
			if code != tc.want[i] {
				t.Errorf("%s (%s %s) as %s: %d %s, want %d", tc.group, tc.method, tc.path, who, code, body, tc.want[i])
				continue
			}
			var adt struct {
				Error struct{ Code, Message string }
			}
			_ = json.Unmarshal([]byte(body), &adt)
			switch code {
			case http.StatusUnauthorized:
				if adt.Error.Code != "Unauthorized" || header.Get("x-ms-error-code") != "Unauthorized" ||
					header.Get("WWW-Authenticate") != `Bearer realm="twinflow"` {
					t.Errorf("%s as %s: 401 with %q, WWW-Authenticate %q", tc.group, who, body, header.Get("WWW-Authenticate"))
				}
			case http.StatusForbidden:
				if adt.Error.Code != "Forbidden" || header.Get("x-ms-error-code") != "Forbidden" || !strings.HasPrefix(adt.Error.Message, "Forbidden: ") {
					t.Errorf("%s as %s: 403 with %q", tc.group, who, body)
				}
			}
		}
	}

	// A token the server refuses is challenged with the reason.
	expired := iss.Claims("late", "Azure Digital Twins Data Owner")
	expired["exp"] = expired["iat"].(int64) - 3600
	code, header, body := send(t, s, http.MethodGet, "/models", iss.Token(t, expired), "")
	if code != 401 || !strings.Contains(header.Get("WWW-Authenticate"), `error="invalid_token", error_description="The request is not authenticated: the token has expired."`) ||
		!strings.Contains(body, `"code":"Unauthorized"`) {
		t.Errorf("an expired token: %d %s, WWW-Authenticate %q", code, body, header.Get("WWW-Authenticate"))
	}
}

// TestHostCheckOffWithAuthentication checks the Host allow-list is not applied while
// authentication is required: a rebinding page cannot present a credential.
func TestHostCheckOffWithAuthentication(t *testing.T) {
	iss := authtest.NewIssuer(t)
	s := authServer(t, iss)
	reader := iss.Token(t, iss.Claims("reader-1", "Azure Digital Twins Data Reader"))
	if code, _, body := send(t, s, http.MethodGet, "/models", reader, "", "Host", "twins.example.org:443"); code != http.StatusOK {
		t.Errorf("another Host with a credential: %d %s, want 200", code, body)
	}
	if code, _, _ := send(t, s, http.MethodGet, "/models", "", "", "Host", "twins.example.org:443"); code != http.StatusUnauthorized {
		t.Errorf("another Host without a credential: %d, want 401", code)
	}
}

// TestKeysThroughTheAPI has an administrator create API keys through the API, which then
// authenticate with their roles until they are revoked.
func TestKeysThroughTheAPI(t *testing.T) {
	iss := authtest.NewIssuer(t)
	s := authServer(t, iss)
	admin := iss.Token(t, iss.Claims("admin-1", "twins-admin"))
	owner := iss.Token(t, iss.Claims("owner-1", "Azure Digital Twins Data Owner"))

	if code, _, _ := send(t, s, http.MethodPost, "/keys", owner, `{"role": "admin"}`); code != http.StatusForbidden {
		t.Fatalf("an owner made a key: %d, want 403", code)
	}
	code, _, body := send(t, s, http.MethodPost, "/keys", admin, `{"name": "ingest", "role": "owner", "expiresIn": "1h"}`)
	var key struct{ ID, Key, ExpiresTime string }
	if err := json.Unmarshal([]byte(body), &key); code != http.StatusCreated || err != nil || key.Key == "" || key.ExpiresTime == "" {
		t.Fatalf("POST /keys: %d %s", code, body)
	}
	if code, _, body := send(t, s, http.MethodPut, "/digitaltwins/x", key.Key, `{}`); code != http.StatusBadRequest {
		t.Errorf("a write with the owner key: %d %s, want it to run (400 for the empty twin)", code, body)
	}
	if code, _, _ := send(t, s, http.MethodGet, "/keys", key.Key, ""); code != http.StatusForbidden {
		t.Errorf("the owner key listed keys: %d, want 403", code)
	}
	code, _, body = send(t, s, http.MethodGet, "/keys", admin, "")
	if code != http.StatusOK || !strings.Contains(body, `"id":"`+key.ID+`"`) || strings.Contains(body, key.Key) {
		t.Errorf("GET /keys: %d %s", code, body)
	}
	if code, _, _ := send(t, s, http.MethodDelete, "/keys/"+key.ID, admin, ""); code != http.StatusNoContent {
		t.Errorf("DELETE /keys/%s: %d", key.ID, code)
	}
	code, _, body = send(t, s, http.MethodGet, "/models", key.Key, "")
	if code != http.StatusUnauthorized || !strings.Contains(body, "the API key is not known") {
		t.Errorf("the revoked key: %d %s, want 401", code, body)
	}
}

// TestExposure checks a server listening on an address other than loopback refuses to start
// without TLS or without authentication, saying why, unless it is told it may.
func TestExposure(t *testing.T) {
	dir := t.TempDir()
	cert, key := process.SelfSignedCert(t, dir)
	for _, tc := range []struct {
		name string
		srv  config.Server
		want []string // what the refusal says; none when the server starts
	}{
		{name: "plain", srv: config.Server{}, want: []string{"without TLS: it is not a loopback address", "--insecure"}},
		{name: "no auth", srv: config.Server{TLSCertFile: cert, TLSKeyFile: key, Auth: config.Auth{Mode: config.AuthOff}},
			want: []string{"without authentication", "drop --auth off"}},
		{name: "neither", srv: config.Server{Auth: config.Auth{Mode: config.AuthOff}}, want: []string{"without TLS", "without authentication"}},
		{name: "TLS and auth", srv: config.Server{TLSCertFile: cert, TLSKeyFile: key}},
		{name: "insecure", srv: config.Server{Insecure: true}},
		{name: "insecure without auth", srv: config.Server{Insecure: true, Auth: config.Auth{Mode: config.AuthOff}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.srv.Listen, tc.srv.DataDir = "0.0.0.0:0", t.TempDir()
			s, err := New(Config{Config: config.Config{Server: tc.srv, History: config.History{Mode: config.HistoryOff}}}, slog.New(slog.DiscardHandler))
			if len(tc.want) > 0 {
				if err == nil {
					run(t, s)()
					t.Fatal("the server started")
				}
				for _, w := range tc.want {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("the refusal %q does not say %q", err, w)
					}
				}
				return
			}
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			run(t, s)
			waitReady(t, s)
			// Off loopback, auto requires authentication.
			c := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}}
			req, _ := http.NewRequest(http.MethodGet, strings.Replace(s.URL(), "0.0.0.0", "127.0.0.1", 1)+"/models?api-version=2023-10-31", nil)
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			want := http.StatusUnauthorized
			if tc.srv.Auth.Mode == config.AuthOff {
				want = http.StatusOK
			}
			if resp.StatusCode != want {
				t.Errorf("GET /models without a credential: %d, want %d", resp.StatusCode, want)
			}
		})
	}
}

// insecureTLS trusts any certificate: for a loopback server with a self-signed one.
func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} }
