// Package authtest runs a local OpenID Connect issuer for tests: an in-process HTTP server
// with a discovery document and a JWKS document, RSA signing keys that can be rotated and
// withdrawn, and access tokens signed with them, or with keys it does not publish.
package authtest

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// Audience is the audience the ADT SDKs ask tokens for: ADT's resource id.
const Audience = "https://digitaltwins.azure.net"

// Issuer is a running OpenID Connect issuer. Its methods are safe for concurrent use.
type Issuer struct {
	// URL is the issuer: the iss of its tokens, and the base of its discovery document.
	URL string
	srv *httptest.Server

	mu        sync.Mutex
	published []signingKey // the keys the JWKS document lists
	current   signingKey   // the key Token signs with

	keyFetches atomic.Int64
}

// signingKey is an RSA key with its key id.
type signingKey struct {
	kid string
	key *rsa.PrivateKey
}

// NewIssuer starts an issuer on a loopback port, publishing one key, "key-1", which its tokens
// are signed with. It stops when t ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	i := &Issuer{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{
			"issuer":                                i.URL,
			"jwks_uri":                              i.URL + "/keys",
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /keys", func(w http.ResponseWriter, r *http.Request) {
		i.keyFetches.Add(1)
		set := jwkset.NewMemoryStorage()
		i.mu.Lock()
		keys := append([]signingKey(nil), i.published...)
		i.mu.Unlock()
		for _, k := range keys {
			j, err := jwkset.NewJWKFromKey(&k.key.PublicKey, jwkset.JWKOptions{
				Metadata: jwkset.JWKMetadataOptions{KID: k.kid, ALG: jwkset.AlgRS256, USE: jwkset.UseSig},
			})
			if err == nil {
				err = set.KeyWrite(r.Context(), j)
			}
			if err != nil {
				http.Error(w, err.Error(), http.StatusInternalServerError)
				return
			}
		}
		doc, err := set.JSONPublic(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(doc)
	})
	i.srv = httptest.NewServer(mux)
	t.Cleanup(i.srv.Close)
	i.URL = i.srv.URL
	i.current = newKey(t, "key-1")
	i.published = []signingKey{i.current}
	return i
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// newKey generates an RSA key with the key id kid.
func newKey(t testing.TB, kid string) signingKey {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatalf("generate an RSA key: %v", err)
	}
	return signingKey{kid: kid, key: key}
}

// Rotate publishes a new key with the key id kid and signs the tokens from then on with it;
// the keys published before stay published.
func (i *Issuer) Rotate(t testing.TB, kid string) {
	t.Helper()
	k := newKey(t, kid)
	i.mu.Lock()
	defer i.mu.Unlock()
	i.published = append(i.published, k)
	i.current = k
}

// KeyFetches returns how often the JWKS document was fetched.
func (i *Issuer) KeyFetches() int { return int(i.keyFetches.Load()) }

// Claims returns the claims of a token of this issuer for Audience, issued now and valid
// for an hour, for the subject sub with the role claim values roles.
func (i *Issuer) Claims(sub string, roles ...string) jwt.MapClaims {
	now := time.Now()
	return jwt.MapClaims{
		"iss":   i.URL,
		"aud":   Audience,
		"sub":   sub,
		"iat":   now.Unix(),
		"nbf":   now.Unix(),
		"exp":   now.Add(time.Hour).Unix(),
		"roles": roles,
	}
}

// Token signs claims with the issuer's current key, under its key id.
func (i *Issuer) Token(t testing.TB, claims jwt.MapClaims) string {
	t.Helper()
	i.mu.Lock()
	k := i.current
	i.mu.Unlock()
	return sign(t, k, claims)
}

// ForeignToken signs claims with a key the issuer does not publish, under the key id kid
// (which may be that of a key it does publish).
func (i *Issuer) ForeignToken(t testing.TB, kid string, claims jwt.MapClaims) string {
	t.Helper()
	return sign(t, newKey(t, kid), claims)
}

func sign(t testing.TB, k signingKey, claims jwt.MapClaims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.SigningMethodRS256, claims)
	tok.Header["kid"] = k.kid
	s, err := tok.SignedString(k.key)
	if err != nil {
		t.Fatalf("sign a token: %v", err)
	}
	return s
}
