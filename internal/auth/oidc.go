package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Defaults of OIDCConfig's zero fields.
const (
	// DefaultClockSkew is how far the clocks of the issuer and the server may disagree: a
	// token is accepted this long before its nbf and after its exp.
	DefaultClockSkew = time.Minute
	// DefaultRoleClaim is the claim roles are read from: Entra ID's app roles, and the
	// claim Keycloak, Auth0 and Dex are commonly told to put roles in.
	DefaultRoleClaim = "roles"
	// DefaultKeysMaxAge is how long the issuer's keys are used before they are fetched
	// again, so that a key the issuer withdrew stops being accepted.
	DefaultKeysMaxAge = time.Hour
	// DefaultKeysMinInterval is the least time between two fetches of the issuer's keys: a
	// token naming a key id the server does not hold makes it fetch them again (the issuer
	// rotated its keys), but tokens with made-up key ids must not make it hammer the issuer.
	DefaultKeysMinInterval = 30 * time.Second
)

// DefaultRoles returns the mapping of role claim values used when OIDCConfig.Roles is empty:
// the names of ADT's roles, as an issuer's role claim may carry them, to twinflow's roles.
func DefaultRoles() map[string]Role {
	return map[string]Role{
		"Azure Digital Twins Data Owner":  RoleOwner,
		"Azure Digital Twins Data Reader": RoleReader,
	}
}

// defaultNameClaims are the claims tried in turn for an identity's name in the log when
// OIDCConfig.NameClaim is empty: a user's name, then an application's id, then the subject.
var defaultNameClaims = []string{"preferred_username", "upn", "email", "appid", "azp", "client_id", "sub"}

// signingMethods are the JWT algorithms accepted: the asymmetric ones, so that no token can be
// signed with a key the issuer publishes.
var signingMethods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// OIDCConfig says which OpenID Connect access tokens are accepted and what role each grants.
//
// The issuer's discovery document (Issuer + "/.well-known/openid-configuration") names its
// JWKS document, whose keys verify the tokens' signatures. Both are fetched when the first
// token arrives, the keys again when a token names a key id they lack (at most once per
// KeysMinInterval) and once they are KeysMaxAge old. A token is accepted when its signature
// verifies with one of them, its iss is Issuer, its aud one of Audiences, it has an exp, and
// the time is within its nbf, iat and exp give or take ClockSkew.
type OIDCConfig struct {
	// Issuer is the iss of accepted tokens, such as
	// https://login.microsoftonline.com/<tenant>/v2.0 or https://keycloak/realms/<realm>.
	Issuer string
	// Audiences are the accepted aud values; a token must name one. Required.
	Audiences []string
	// JWKSURL, when set, is the JWKS document's URL, and discovery is skipped.
	JWKSURL string
	// ClockSkew is the clock skew allowed; 0 means DefaultClockSkew.
	ClockSkew time.Duration
	// RoleClaim names the claim holding the token's roles, a string or an array of strings:
	// a top-level claim ("roles", or "https://example.com/roles"), else a path of nested
	// objects separated by dots ("realm_access.roles"). Empty means DefaultRoleClaim.
	RoleClaim string
	// Roles maps role claim values to roles; a token gets the highest role of its values.
	// A string value that is not mapped is also taken as a space-separated list (as OAuth
	// scopes are). Empty means DefaultRoles(). A token without a mapped value authenticates
	// with RoleNone, and every operation refuses it with 403.
	Roles map[string]Role
	// NameClaim names the claim that names the identity in the log; empty tries
	// preferred_username, upn, email, appid, azp, client_id and sub in turn.
	NameClaim string
	// KeysMaxAge and KeysMinInterval bound how often the issuer's keys are fetched; 0 means
	// DefaultKeysMaxAge and DefaultKeysMinInterval.
	KeysMaxAge      time.Duration
	KeysMinInterval time.Duration
	// HTTPClient fetches the discovery and JWKS documents; nil means a client with a
	// 10-second timeout.
	HTTPClient *http.Client
}

// verifier verifies access tokens of one issuer.
type verifier struct {
	cfg    OIDCConfig
	keys   *keySet
	parser *jwt.Parser
}

// newVerifier returns the verifier of cfg's tokens, on the clock now.
func newVerifier(cfg OIDCConfig, now func() time.Time, logger *slog.Logger) (*verifier, error) {
	if len(cfg.Audiences) == 0 {
		return nil, errors.New("OIDC: no audience: tokens must name one")
	}
	if err := CheckIssuerURL(cfg.Issuer); err != nil {
		return nil, fmt.Errorf("OIDC issuer: %w", err)
	}
	if cfg.JWKSURL != "" {
		if err := CheckIssuerURL(cfg.JWKSURL); err != nil {
			return nil, fmt.Errorf("OIDC JWKS URL: %w", err)
		}
	}
	if cfg.ClockSkew == 0 {
		cfg.ClockSkew = DefaultClockSkew
	}
	if cfg.RoleClaim == "" {
		cfg.RoleClaim = DefaultRoleClaim
	}
	if len(cfg.Roles) == 0 {
		cfg.Roles = DefaultRoles()
	}
	if cfg.KeysMaxAge == 0 {
		cfg.KeysMaxAge = DefaultKeysMaxAge
	}
	if cfg.KeysMinInterval == 0 {
		cfg.KeysMinInterval = DefaultKeysMinInterval
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 10 * time.Second}
	}
	return &verifier{
		cfg:  cfg,
		keys: newKeySet(cfg, now, logger),
		parser: jwt.NewParser(
			jwt.WithValidMethods(signingMethods),
			jwt.WithIssuer(cfg.Issuer),
			jwt.WithAudience(cfg.Audiences...),
			jwt.WithExpirationRequired(),
			jwt.WithIssuedAt(),
			jwt.WithLeeway(cfg.ClockSkew),
			jwt.WithTimeFunc(now),
		),
	}, nil
}

// CheckIssuerURL reports whether s may be an issuer's or a JWKS document's URL: https, or
// http to a loopback host (a local issuer for development and tests), with a host and
// without query or fragment.
func CheckIssuerURL(s string) error {
	u, err := url.Parse(s)
	switch {
	case err != nil:
		return err
	case u.Host == "" || u.RawQuery != "" || u.Fragment != "":
		return fmt.Errorf("%q is not an absolute URL without query or fragment", s)
	case u.Scheme == "https":
		return nil
	case u.Scheme == "http" && isLoopbackHost(u.Hostname()):
		return nil
	default:
		return fmt.Errorf("%q must be https (http only to a loopback host)", s)
	}
}

// verify returns the identity the access token raw proves.
func (v *verifier) verify(ctx context.Context, raw string) (Identity, error) {
	claims := jwt.MapClaims{}
	_, err := v.parser.ParseWithClaims(raw, claims, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		return v.keys.key(ctx, kid, t.Method.Alg())
	})
	if err != nil {
		return Identity{}, unauthorized(tokenProblem(err, v.cfg))
	}
	return Identity{Name: v.name(claims), Role: v.role(claims), Method: MethodOIDC}, nil
}

// tokenProblem says what is wrong with a token jwt refused with err.
func tokenProblem(err error, cfg OIDCConfig) error {
	switch {
	case errors.Is(err, jwt.ErrTokenMalformed):
		return errors.New("the token is malformed")
	case errors.Is(err, jwt.ErrTokenExpired):
		return errors.New("the token has expired")
	case errors.Is(err, jwt.ErrTokenNotValidYet):
		return errors.New("the token is not valid yet")
	case errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return errors.New("the token was issued in the future")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return fmt.Errorf("the token is for another audience (accepted: %s)", strings.Join(cfg.Audiences, ", "))
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return fmt.Errorf("the token is from another issuer (accepted: %s)", cfg.Issuer)
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return errors.New("the token lacks a required claim (exp, iss or aud)")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return errors.New("the token's signature does not verify")
	case errors.Is(err, jwt.ErrTokenUnverifiable):
		var ke *keyError
		if errors.As(err, &ke) {
			return ke
		}
		return errors.New("the token cannot be verified: " + err.Error())
	default:
		return errors.New("the token is not valid")
	}
}

// role returns the highest role the token's role claim values map to, RoleNone for none.
func (v *verifier) role(claims jwt.MapClaims) Role {
	best := RoleNone
	consider := func(value string) {
		if r, ok := v.cfg.Roles[value]; ok {
			best = max(best, r)
			return
		}
		for _, f := range strings.Fields(value) {
			if r, ok := v.cfg.Roles[f]; ok {
				best = max(best, r)
			}
		}
	}
	switch c := claim(claims, v.cfg.RoleClaim).(type) {
	case string:
		consider(c)
	case []any:
		for _, e := range c {
			if s, ok := e.(string); ok {
				consider(s)
			}
		}
	}
	return best
}

// name returns the identity's name for the log.
func (v *verifier) name(claims jwt.MapClaims) string {
	names := defaultNameClaims
	if v.cfg.NameClaim != "" {
		names = []string{v.cfg.NameClaim}
	}
	for _, n := range names {
		if s, ok := claim(claims, n).(string); ok && s != "" {
			return s
		}
	}
	return "(unnamed token)"
}

// claim returns the claim name: a top-level claim of that name, else the value at the path
// of nested objects name's dot-separated parts make; nil when there is neither.
func claim(claims jwt.MapClaims, name string) any {
	if v, ok := claims[name]; ok {
		return v
	}
	var cur any = map[string]any(claims)
	for part := range strings.SplitSeq(name, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil
		}
		cur = m[part]
	}
	return cur
}

// isLoopbackHost reports whether host is localhost or a loopback IP address.
func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
