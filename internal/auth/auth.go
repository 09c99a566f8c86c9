// Package auth authenticates requests and authorizes them by role.
//
// A request is authenticated by its Authorization header, "Bearer <credential>", where the
// credential is either an OpenID Connect access token (a JWT, verified against the keys its
// issuer publishes; see OIDCConfig) or an API key of twinflow's own (see Keys). Either gives
// an Identity: a name for the log, a Role and the Method that proved it. Roles are ADT's Data
// Reader and Data Owner and twinflow's administrator (see Role); each operation of the API
// names the least role it needs, and Authorize checks it.
//
// Authenticator.Middleware is the one middleware: in front of every handler but the health
// endpoints it authenticates the request, answers 401 Unauthorized with ADT's error body and a
// WWW-Authenticate challenge when it carries no credential the server accepts, and hands the
// Identity on in the request's context. Authenticator.Authorize, called with the role the
// operation needs once the request is routed, answers 403 Forbidden when the identity lacks
// it. Every decision is logged with the identity: refusals at info level, grants at debug.
//
// With authentication off (Config.Required false), requests are not authenticated at all:
// credentials are ignored, and every request acts as Anonymous(), which holds every role.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/twin"
)

// Method says how an identity was proven.
type Method string

// The methods.
const (
	// MethodNone is the method of Anonymous: authentication is off.
	MethodNone Method = "none"
	// MethodOIDC is an OpenID Connect access token.
	MethodOIDC Method = "oidc"
	// MethodKey is an API key.
	MethodKey Method = "key"
)

// Identity is who a request acts as.
type Identity struct {
	// Name names the identity in the log: a token's name claim, or an API key's name and id.
	Name string
	Role Role
	// Method is how the identity was proven.
	Method Method
}

// Anonymous returns the identity of every request while authentication is off: it holds
// every role.
func Anonymous() Identity { return Identity{Name: "anonymous", Role: RoleAdmin, Method: MethodNone} }

// identityKey is the context key of a request's Identity.
type identityKey struct{}

// FromContext returns the identity Middleware authenticated the request of ctx as; ok is
// false when no Middleware saw it.
func FromContext(ctx context.Context) (id Identity, ok bool) {
	id, ok = ctx.Value(identityKey{}).(Identity)
	return id, ok
}

// Config configures an Authenticator.
type Config struct {
	// Required turns authentication on: every request must carry a credential the server
	// accepts. Off, no request is authenticated and all act as Anonymous.
	Required bool
	// OIDC, when its Issuer is set, accepts access tokens of that issuer.
	OIDC OIDCConfig
	// WriteError answers a refused request with the error's status and ADT error body (the
	// server passes api.WriteError). Required.
	WriteError func(http.ResponseWriter, *twin.Error)
	// Now is the clock tokens and keys are checked against; nil means time.Now.
	Now func() time.Time
}

// Authenticator authenticates requests and authorizes them by role. It is safe for concurrent
// use.
type Authenticator struct {
	required   bool
	oidc       *verifier
	keys       *Keys
	writeError func(http.ResponseWriter, *twin.Error)
	logger     *slog.Logger
}

// New returns an Authenticator that accepts the API keys of keys and, when cfg.OIDC.Issuer is
// set, that issuer's access tokens. It contacts no issuer: discovery and the issuer's keys are
// fetched when the first token arrives (see OIDCConfig).
func New(cfg Config, keys *Keys, logger *slog.Logger) (*Authenticator, error) {
	if cfg.WriteError == nil {
		return nil, errors.New("auth: no WriteError")
	}
	if keys == nil {
		return nil, errors.New("auth: no keys")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &Authenticator{required: cfg.Required, keys: keys, writeError: cfg.WriteError, logger: logger}
	if cfg.OIDC.Issuer != "" {
		v, err := newVerifier(cfg.OIDC, cfg.Now, logger)
		if err != nil {
			return nil, fmt.Errorf("auth: %w", err)
		}
		a.oidc = v
	}
	return a, nil
}

// Required reports whether requests are authenticated.
func (a *Authenticator) Required() bool { return a.required }

// Authenticate returns the identity the request's credential proves. It fails with a
// *twin.Error of KindUnauthorized when the request carries no credential, or one that is
// malformed, expired, not yet valid, for another audience or issuer, badly signed, unknown
// or revoked. With authentication off it returns Anonymous.
func (a *Authenticator) Authenticate(r *http.Request) (Identity, error) {
	if !a.required {
		return Anonymous(), nil
	}
	h := r.Header.Get("Authorization")
	if h == "" {
		return Identity{}, unauthorized(errNoCredential)
	}
	scheme, cred, ok := strings.Cut(h, " ")
	cred = strings.TrimSpace(cred)
	if !ok || !strings.EqualFold(scheme, "Bearer") || cred == "" {
		return Identity{}, unauthorized(errors.New(`the Authorization header must be "Bearer <token or API key>"`))
	}
	switch {
	case strings.HasPrefix(cred, KeyPrefix):
		return a.keys.verify(r.Context(), cred)
	case a.oidc != nil:
		return a.oidc.verify(r.Context(), cred)
	default:
		return Identity{}, unauthorized(errors.New("the credential is not an API key, and no OpenID Connect issuer is configured to accept tokens"))
	}
}

// errNoCredential is the reason of a request without an Authorization header.
var errNoCredential = errors.New("the request carries no credential: send an access token or an API key as Authorization: Bearer <credential>")

// unauthorized is the error of a request whose credential the server does not accept, for
// the reason err.
func unauthorized(err error) *twin.Error {
	return &twin.Error{Kind: twin.KindUnauthorized, Message: "The request is not authenticated: " + err.Error() + "."}
}

// Middleware authenticates each request before next sees it (see Authenticate), and hands
// next the request with its Identity in the context (see FromContext). A request that fails
// is answered 401 Unauthorized with the error's ADT body and a WWW-Authenticate challenge
// (RFC 6750: error="invalid_token" when a credential was sent), and logged with the reason.
func (a *Authenticator) Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := a.Authenticate(r)
		if err != nil {
			var te *twin.Error
			if !errors.As(err, &te) {
				a.logger.ErrorContext(r.Context(), "cannot check a credential", "method", r.Method, "path", r.URL.Path, "err", err)
				a.writeError(w, &twin.Error{Kind: twin.KindInternal, Message: "The service could not check the request's credential. Retry the request; if it keeps failing, check the server log."})
				return
			}
			challenge := `Bearer realm="twinflow"`
			if r.Header.Get("Authorization") != "" {
				challenge += `, error="invalid_token", error_description="` + challengeText(te.Message) + `"`
			}
			w.Header().Set("WWW-Authenticate", challenge)
			a.logger.LogAttrs(r.Context(), slog.LevelInfo, "request refused: not authenticated",
				slog.String("method", r.Method), slog.String("path", r.URL.Path),
				slog.String("remote", r.RemoteAddr), slog.String("reason", te.Message))
			a.writeError(w, te)
			return
		}
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), identityKey{}, id)))
	})
}

// challengeText returns s as an error_description may hold it (RFC 6750, 3): printable ASCII
// without double quotes or backslashes; a double quote becomes a single one, any other
// character outside it "?".
func challengeText(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '"':
			return '\''
		case r < 0x20 || r > 0x7e || r == '\\':
			return '?'
		}
		return r
	}, s)
}

// Authorize checks that the identity Middleware authenticated r as holds need, and logs the
// decision with the identity. It returns nil, or a *twin.Error of KindForbidden, or of
// KindUnauthorized when authentication is on and no Middleware saw r. With authentication
// off it allows everything and logs nothing: there is no identity to decide on.
func (a *Authenticator) Authorize(r *http.Request, need Role) error {
	if !a.required {
		return nil
	}
	id, ok := FromContext(r.Context())
	if !ok {
		a.logger.ErrorContext(r.Context(), "request refused: it was not authenticated", "method", r.Method, "path", r.URL.Path)
		return unauthorized(errNoCredential)
	}
	if !id.Role.Allows(need) {
		a.logger.LogAttrs(r.Context(), slog.LevelInfo, "request refused: role too low",
			slog.String("identity", id.Name), slog.String("auth", string(id.Method)), slog.String("role", id.Role.String()),
			slog.String("needs", need.String()), slog.String("method", r.Method), slog.String("path", r.URL.Path))
		return &twin.Error{Kind: twin.KindForbidden, Message: fmt.Sprintf(
			"Forbidden: %s (role %s) may not perform this operation, which needs the %s role.", id.Name, id.Role, need)}
	}
	a.logger.LogAttrs(r.Context(), slog.LevelDebug, "request allowed",
		slog.String("identity", id.Name), slog.String("auth", string(id.Method)), slog.String("role", id.Role.String()),
		slog.String("method", r.Method), slog.String("path", r.URL.Path))
	return nil
}

// Require returns next behind Authorize with need, for handlers outside the API's operation
// table (such as /metrics); a refusal is answered with its ADT error body.
func (a *Authenticator) Require(need Role, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := a.Authorize(r, need); err != nil {
			var te *twin.Error
			errors.As(err, &te)
			a.writeError(w, te)
			return
		}
		next.ServeHTTP(w, r)
	})
}
