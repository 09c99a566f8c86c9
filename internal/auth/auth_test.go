package auth_test

import (
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/auth/authtest"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twin"
)

// clock is a settable clock for the tests.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func newClock() *clock { return &clock{now: time.Now()} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// writeError answers as api.WriteError does, without importing the API: status from the kind.
func writeError(w http.ResponseWriter, e *twin.Error) {
	status := map[twin.Kind]int{twin.KindUnauthorized: 401, twin.KindForbidden: 403, twin.KindInternal: 500}[e.Kind]
	w.WriteHeader(status)
	io.WriteString(w, e.Message)
}

// newKeys returns the keys of a fresh SQLite store, closed when t ends.
func newKeys(t *testing.T, now func() time.Time) *auth.Keys {
	t.Helper()
	st, err := sqlite.Open(sqlite.Config{Dir: t.TempDir(), NoSync: true}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return auth.NewKeys(st, now)
}

// newAuth returns a required Authenticator accepting iss's tokens for authtest.Audience, on
// the clock c.
func newAuth(t *testing.T, iss *authtest.Issuer, c *clock, edit func(*auth.OIDCConfig)) *auth.Authenticator {
	t.Helper()
	oc := auth.OIDCConfig{Issuer: iss.URL, Audiences: []string{"api://twinflow", authtest.Audience}}
	if edit != nil {
		edit(&oc)
	}
	a, err := auth.New(auth.Config{Required: true, OIDC: oc, WriteError: writeError, Now: c.Now}, newKeys(t, c.Now), nil)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// authenticate runs Authenticate on a request with the bearer credential cred.
func authenticate(a *auth.Authenticator, cred string) (auth.Identity, error) {
	r := httptest.NewRequest(http.MethodGet, "/models", nil)
	if cred != "" {
		r.Header.Set("Authorization", "Bearer "+cred)
	}
	return a.Authenticate(r)
}

// wantUnauthorized fails t unless err is a KindUnauthorized error whose message holds reason.
func wantUnauthorized(t *testing.T, err error, reason string) {
	t.Helper()
	var te *twin.Error
	if !errors.As(err, &te) || te.Kind != twin.KindUnauthorized {
		t.Fatalf("got %v, want an Unauthorized error", err)
	}
	if !strings.Contains(te.Message, reason) {
		t.Errorf("message %q does not say %q", te.Message, reason)
	}
}

func TestTokens(t *testing.T) {
	iss := authtest.NewIssuer(t)
	c := newClock()
	a := newAuth(t, iss, c, func(oc *auth.OIDCConfig) { oc.ClockSkew = 2 * time.Minute })
	now := c.Now()
	claims := func(edit func(jwt.MapClaims)) jwt.MapClaims {
		cl := iss.Claims("alice", "Azure Digital Twins Data Owner")
		cl["iat"], cl["nbf"], cl["exp"] = now.Unix(), now.Unix(), now.Add(time.Hour).Unix()
		if edit != nil {
			edit(cl)
		}
		return cl
	}
	hmac := func() string {
		s, err := jwt.NewWithClaims(jwt.SigningMethodHS256, claims(nil)).SignedString([]byte("secret"))
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	for _, tc := range []struct {
		name  string
		token string
		role  auth.Role // the identity's role, when valid
		// reason is in the message of a refusal; empty for a valid token.
		reason string
	}{
		{name: "valid", token: iss.Token(t, claims(nil)), role: auth.RoleOwner},
		{name: "reader", token: iss.Token(t, claims(func(c jwt.MapClaims) { c["roles"] = []string{"Azure Digital Twins Data Reader"} })), role: auth.RoleReader},
		{name: "highest role wins", token: iss.Token(t, claims(func(c jwt.MapClaims) {
			c["roles"] = []string{"Azure Digital Twins Data Reader", "other", "Azure Digital Twins Data Owner"}
		})), role: auth.RoleOwner},
		{name: "no mapped role", token: iss.Token(t, claims(func(c jwt.MapClaims) { c["roles"] = []string{"Writer"} })), role: auth.RoleNone},
		{name: "no role claim", token: iss.Token(t, claims(func(c jwt.MapClaims) { delete(c, "roles") })), role: auth.RoleNone},
		{name: "second audience", token: iss.Token(t, claims(func(c jwt.MapClaims) { c["aud"] = []string{"other", "api://twinflow"} })), role: auth.RoleOwner},
		{name: "expired within skew", token: iss.Token(t, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-time.Minute).Unix() })), role: auth.RoleOwner},
		{name: "not yet valid within skew", token: iss.Token(t, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(time.Minute).Unix() })), role: auth.RoleOwner},
		{name: "expired", token: iss.Token(t, claims(func(c jwt.MapClaims) { c["exp"] = now.Add(-3 * time.Minute).Unix() })), reason: "the token has expired"},
		{name: "not yet valid", token: iss.Token(t, claims(func(c jwt.MapClaims) { c["nbf"] = now.Add(3 * time.Minute).Unix() })), reason: "the token is not valid yet"},
		{name: "issued in the future", token: iss.Token(t, claims(func(c jwt.MapClaims) { c["iat"] = now.Add(time.Hour).Unix() })), reason: "issued in the future"},
		{name: "no expiry", token: iss.Token(t, claims(func(c jwt.MapClaims) { delete(c, "exp") })), reason: "lacks a required claim"},
		{name: "wrong audience", token: iss.Token(t, claims(func(c jwt.MapClaims) { c["aud"] = "api://other" })), reason: "another audience"},
		{name: "no audience", token: iss.Token(t, claims(func(c jwt.MapClaims) { delete(c, "aud") })), reason: "lacks a required claim"},
		{name: "wrong issuer", token: iss.Token(t, claims(func(c jwt.MapClaims) { c["iss"] = "https://evil.example" })), reason: "another issuer"},
		{name: "wrong key", token: iss.ForeignToken(t, "key-1", claims(nil)), reason: "signature does not verify"},
		{name: "symmetric algorithm", token: hmac(), reason: "signature does not verify"},
		{name: "malformed", token: "not.a.token", reason: "malformed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := authenticate(a, tc.token)
			if tc.reason != "" {
				wantUnauthorized(t, err, tc.reason)
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			want := auth.Identity{Name: "alice", Role: tc.role, Method: auth.MethodOIDC}
			if id != want {
				t.Errorf("identity %+v, want %+v", id, want)
			}
		})
	}
	if n := iss.KeyFetches(); n != 1 {
		t.Errorf("the keys were fetched %d times, want once", n)
	}
}

// TestKeyRotation checks the issuer's keys are fetched again when a token names a key id they
// lack, at most once per KeysMinInterval, and once they are KeysMaxAge old.
func TestKeyRotation(t *testing.T) {
	iss := authtest.NewIssuer(t)
	c := newClock()
	a := newAuth(t, iss, c, func(oc *auth.OIDCConfig) {
		oc.KeysMinInterval, oc.KeysMaxAge = time.Minute, time.Hour
	})
	token := func() string {
		cl := iss.Claims("svc", "Azure Digital Twins Data Reader")
		cl["exp"] = c.Now().Add(24 * time.Hour).Unix()
		return iss.Token(t, cl)
	}
	accept := func(tok string, fetches int) {
		t.Helper()
		if _, err := authenticate(a, tok); err != nil {
			t.Fatalf("Authenticate: %v", err)
		}
		if n := iss.KeyFetches(); n != fetches {
			t.Errorf("the keys were fetched %d times, want %d", n, fetches)
		}
	}
	accept(token(), 1)
	accept(token(), 1)

	// A new key is fetched when a token names it.
	c.Advance(2 * time.Minute)
	iss.Rotate(t, "key-2")
	accept(token(), 2)

	// A made-up key id right after makes no fetch: the last was less than a minute ago.
	cl := iss.Claims("mallory", "Azure Digital Twins Data Owner")
	_, err := authenticate(a, iss.ForeignToken(t, "key-made-up", cl))
	wantUnauthorized(t, err, `signing key "key-made-up" is not among the issuer's keys, which are fetched again at most every 1m0s`)
	if n := iss.KeyFetches(); n != 2 {
		t.Errorf("a made-up key id made %d fetches, want none", n-2)
	}
	// So a key rotated in now waits for the minute to pass.
	iss.Rotate(t, "key-3")
	_, err = authenticate(a, token())
	wantUnauthorized(t, err, `"key-3" is not among the issuer's keys`)
	c.Advance(time.Minute)
	accept(token(), 3)

	// Once made, a fetch that finds no such key says so.
	c.Advance(time.Minute)
	_, err = authenticate(a, iss.ForeignToken(t, "key-made-up", cl))
	wantUnauthorized(t, err, `signing key "key-made-up" is not among the issuer's keys`)
	if n := iss.KeyFetches(); n != 4 {
		t.Errorf("%d fetches, want 4", n)
	}

	// Keys an hour old are fetched again, though the token's key is known.
	c.Advance(time.Hour)
	accept(token(), 5)
	accept(token(), 5)
}

// TestDiscovery checks the keys come from the JWKS document discovery names, or from the
// configured one without discovery, and that a failing discovery refuses tokens with the
// reason.
func TestDiscovery(t *testing.T) {
	iss := authtest.NewIssuer(t)
	c := newClock()

	// The configured JWKS URL: no discovery, so the issuer need not serve one.
	a := newAuth(t, iss, c, func(oc *auth.OIDCConfig) {
		oc.Issuer, oc.JWKSURL = "https://login.example.com/tenant/", iss.URL+"/keys"
	})
	cl := iss.Claims("svc", "Azure Digital Twins Data Reader")
	cl["iss"] = "https://login.example.com/tenant/"
	if _, err := authenticate(a, iss.Token(t, cl)); err != nil {
		t.Errorf("a token verified by the configured JWKS document: %v", err)
	}

	// An issuer whose discovery document is missing.
	a = newAuth(t, iss, c, func(oc *auth.OIDCConfig) { oc.Issuer = iss.URL + "/missing" })
	cl["iss"] = iss.URL + "/missing"
	_, err := authenticate(a, iss.Token(t, cl))
	wantUnauthorized(t, err, "the issuer's keys cannot be fetched: discovery: GET "+iss.URL+"/missing/.well-known/openid-configuration: 404")
	// The next token within the interval makes no request, and says why it is refused.
	_, err = authenticate(a, iss.Token(t, cl))
	wantUnauthorized(t, err, "the issuer's keys cannot be fetched (they are tried again at most every 30s): discovery: GET ")
}

func TestAuthenticateHeader(t *testing.T) {
	iss := authtest.NewIssuer(t)
	a := newAuth(t, iss, newClock(), nil)
	for _, tc := range []struct{ header, reason string }{
		{"", "carries no credential"},
		{"Basic dXNlcjpwYXNz", `must be "Bearer <token or API key>"`},
		{"Bearer", `must be "Bearer <token or API key>"`},
		{"Bearer ", `must be "Bearer <token or API key>"`},
		{"Bearer tfk_short", "the API key is malformed"},
	} {
		r := httptest.NewRequest(http.MethodGet, "/models", nil)
		if tc.header != "" {
			r.Header.Set("Authorization", tc.header)
		}
		_, err := a.Authenticate(r)
		wantUnauthorized(t, err, tc.reason)
	}

	// The scheme is case-insensitive.
	r := httptest.NewRequest(http.MethodGet, "/models", nil)
	r.Header.Set("Authorization", "bearer "+iss.Token(t, iss.Claims("bob", "Azure Digital Twins Data Reader")))
	if id, err := a.Authenticate(r); err != nil || id.Role != auth.RoleReader {
		t.Errorf("lower-case bearer: %+v, %v", id, err)
	}

	// Without an issuer, only keys are accepted.
	keysOnly, err := auth.New(auth.Config{Required: true, WriteError: writeError}, newKeys(t, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = authenticate(keysOnly, iss.Token(t, iss.Claims("bob", "Azure Digital Twins Data Reader")))
	wantUnauthorized(t, err, "no OpenID Connect issuer is configured")
}

func TestRoleClaims(t *testing.T) {
	iss := authtest.NewIssuer(t)
	for _, tc := range []struct {
		name   string
		edit   func(*auth.OIDCConfig)
		claims jwt.MapClaims
		want   auth.Identity
	}{
		{
			name: "Keycloak realm roles",
			edit: func(oc *auth.OIDCConfig) {
				oc.RoleClaim = "realm_access.roles"
				oc.Roles = map[string]auth.Role{"twins-admin": auth.RoleAdmin}
			},
			claims: jwt.MapClaims{"preferred_username": "kc-user", "realm_access": map[string]any{"roles": []string{"offline_access", "twins-admin"}}},
			want:   auth.Identity{Name: "kc-user", Role: auth.RoleAdmin, Method: auth.MethodOIDC},
		},
		{
			name: "namespaced claim with dots",
			edit: func(oc *auth.OIDCConfig) {
				oc.RoleClaim = "https://twinflow.example/roles"
				oc.Roles = map[string]auth.Role{"reader": auth.RoleReader}
			},
			claims: jwt.MapClaims{"email": "a@example.com", "https://twinflow.example/roles": []string{"reader"}},
			want:   auth.Identity{Name: "a@example.com", Role: auth.RoleReader, Method: auth.MethodOIDC},
		},
		{
			name: "scopes as a space-separated string",
			edit: func(oc *auth.OIDCConfig) {
				oc.RoleClaim = "scope"
				oc.Roles = map[string]auth.Role{"twins.write": auth.RoleOwner, "twins.read": auth.RoleReader}
			},
			claims: jwt.MapClaims{"azp": "client-1", "scope": "openid twins.read twins.write"},
			want:   auth.Identity{Name: "client-1", Role: auth.RoleOwner, Method: auth.MethodOIDC},
		},
		{
			name:   "ADT role name as a single string",
			claims: jwt.MapClaims{"roles": "Azure Digital Twins Data Owner"},
			want:   auth.Identity{Name: "svc", Role: auth.RoleOwner, Method: auth.MethodOIDC},
		},
		{
			name:   "the name claim",
			edit:   func(oc *auth.OIDCConfig) { oc.NameClaim = "oid" },
			claims: jwt.MapClaims{"oid": "0000-1111", "roles": []string{"Azure Digital Twins Data Reader"}},
			want:   auth.Identity{Name: "0000-1111", Role: auth.RoleReader, Method: auth.MethodOIDC},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuth(t, iss, newClock(), tc.edit)
			cl := iss.Claims("svc")
			delete(cl, "roles")
			for k, v := range tc.claims {
				cl[k] = v
			}
			id, err := authenticate(a, iss.Token(t, cl))
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if id != tc.want {
				t.Errorf("identity %+v, want %+v", id, tc.want)
			}
		})
	}
}

func TestMiddlewareAndAuthorize(t *testing.T) {
	iss := authtest.NewIssuer(t)
	var logs strings.Builder
	var logMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logs.Write(p)
	}), &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := auth.New(auth.Config{
		Required:   true,
		OIDC:       auth.OIDCConfig{Issuer: iss.URL, Audiences: []string{authtest.Audience}},
		WriteError: writeError,
	}, newKeys(t, nil), logger)
	if err != nil {
		t.Fatal(err)
	}
	var seen auth.Identity
	h := a.Middleware(a.Require(auth.RoleOwner, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = auth.FromContext(r.Context())
		w.WriteHeader(http.StatusNoContent)
	})))
	do := func(cred string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPut, "/digitaltwins/x", nil)
		if cred != "" {
			r.Header.Set("Authorization", "Bearer "+cred)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}

	w := do("")
	if w.Code != 401 || w.Header().Get("WWW-Authenticate") != `Bearer realm="twinflow"` {
		t.Errorf("no credential: %d, WWW-Authenticate %q", w.Code, w.Header().Get("WWW-Authenticate"))
	}
	w = do("garbage")
	if got := w.Header().Get("WWW-Authenticate"); w.Code != 401 || !strings.HasPrefix(got, `Bearer realm="twinflow", error="invalid_token", error_description="The request is not authenticated: the token is malformed.`) {
		t.Errorf("a bad token: %d, WWW-Authenticate %q", w.Code, got)
	}
	w = do(iss.Token(t, iss.Claims("reader-1", "Azure Digital Twins Data Reader")))
	if w.Code != 403 || !strings.Contains(w.Body.String(), "reader-1 (role reader) may not perform this operation, which needs the owner role") {
		t.Errorf("a reader: %d %s", w.Code, w.Body)
	}
	w = do(iss.Token(t, iss.Claims("owner-1", "Azure Digital Twins Data Owner")))
	if w.Code != 204 || seen != (auth.Identity{Name: "owner-1", Role: auth.RoleOwner, Method: auth.MethodOIDC}) {
		t.Errorf("an owner: %d, identity %+v", w.Code, seen)
	}

	logMu.Lock()
	got := logs.String()
	logMu.Unlock()
	for _, want := range []string{
		`level=INFO msg="request refused: not authenticated" method=PUT path=/digitaltwins/x`,
		`level=INFO msg="request refused: role too low" identity=reader-1 auth=oidc role=reader needs=owner method=PUT path=/digitaltwins/x`,
		`level=DEBUG msg="request allowed" identity=owner-1 auth=oidc role=owner method=PUT path=/digitaltwins/x`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("the log lacks %q:\n%s", want, got)
		}
	}
}

// TestAuthenticationOff checks that with authentication off credentials are ignored and every
// request acts as Anonymous, which may do everything.
func TestAuthenticationOff(t *testing.T) {
	a, err := auth.New(auth.Config{WriteError: writeError}, newKeys(t, nil), nil)
	if err != nil {
		t.Fatal(err)
	}
	var seen auth.Identity
	h := a.Middleware(a.Require(auth.RoleAdmin, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen, _ = auth.FromContext(r.Context())
	})))
	r := httptest.NewRequest(http.MethodDelete, "/keys/x", nil)
	r.Header.Set("Authorization", "Bearer x")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	if w.Code != 200 || seen != auth.Anonymous() {
		t.Errorf("%d, identity %+v; want 200 as %+v", w.Code, seen, auth.Anonymous())
	}
}

func TestParseRole(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want auth.Role
		ok   bool
	}{
		{"reader", auth.RoleReader, true},
		{"Owner", auth.RoleOwner, true},
		{"ADMIN", auth.RoleAdmin, true},
		{"none", auth.RoleNone, false},
		{"", auth.RoleNone, false},
		{"root", auth.RoleNone, false},
	} {
		got, err := auth.ParseRole(tc.in)
		if got != tc.want || (err == nil) != tc.ok {
			t.Errorf("ParseRole(%q) = %v, %v; want %v, ok %v", tc.in, got, err, tc.want, tc.ok)
		}
	}
	for _, tc := range []struct {
		have, need auth.Role
		ok         bool
	}{
		{auth.RoleAdmin, auth.RoleOwner, true},
		{auth.RoleOwner, auth.RoleOwner, true},
		{auth.RoleOwner, auth.RoleAdmin, false},
		{auth.RoleReader, auth.RoleOwner, false},
		{auth.RoleNone, auth.RoleReader, false},
	} {
		if got := tc.have.Allows(tc.need); got != tc.ok {
			t.Errorf("%v.Allows(%v) = %v", tc.have, tc.need, got)
		}
	}
}

func TestCheckIssuerURL(t *testing.T) {
	for _, tc := range []struct {
		url string
		ok  bool
	}{
		{"https://login.microsoftonline.com/tenant/v2.0", true},
		{"http://127.0.0.1:5556/dex", true},
		{"http://localhost:8080/realms/twins", true},
		{"http://[::1]:8080", true},
		{"http://keycloak:8080/realms/twins", false},
		{"https://issuer.example/?x=1", false},
		{"/relative", false},
		{"ftp://issuer.example", false},
	} {
		if err := auth.CheckIssuerURL(tc.url); (err == nil) != tc.ok {
			t.Errorf("CheckIssuerURL(%q) = %v, want ok %v", tc.url, err, tc.ok)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestOneFetchForConcurrentTokens checks that tokens arriving together with a key id the
// server lacks share one fetch of the keys, and all wait for it.
func TestOneFetchForConcurrentTokens(t *testing.T) {
	iss := authtest.NewIssuer(t)
	a := newAuth(t, iss, newClock(), nil)
	tok := iss.Token(t, iss.Claims("svc", "Azure Digital Twins Data Reader"))
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	for range 20 {
		wg.Go(func() {
			if _, err := authenticate(a, tok); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Errorf("Authenticate: %v", err)
	}
	if n := iss.KeyFetches(); n != 1 {
		t.Errorf("20 tokens at once fetched the keys %d times, want once", n)
	}
}
