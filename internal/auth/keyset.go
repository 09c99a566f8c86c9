package auth

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// maxDocumentBytes bounds the discovery and JWKS documents read from an issuer.
const maxDocumentBytes = 1 << 20

// fetchTimeout bounds one fetch of the issuer's documents, whatever the HTTP client's own
// timeout.
const fetchTimeout = 30 * time.Second

// keySet is an issuer's signing keys as its JWKS document last listed them. It fetches the
// document when a token arrives and it holds no keys, holds none the token's key id names, or
// holds keys older than maxAge; never twice within minInterval, so that tokens naming made-up
// key ids cannot make it hammer the issuer. One fetch runs at a time: requests that need its
// result wait for it, the others go on with the keys held. It starts no goroutine.
type keySet struct {
	cfg    OIDCConfig
	now    func() time.Time
	logger *slog.Logger

	mu sync.Mutex
	// jwksURL is the JWKS document's URL: the configured one, or the discovered one once
	// discovery succeeded.
	jwksURL string
	keys    []jwkset.JWK
	// fetched is when keys were fetched; attempted when the last fetch started.
	fetched, attempted time.Time
	// fetching is closed when the fetch under way ends; nil while none is.
	fetching chan struct{}
	// lastErr is why the last fetch failed, nil after one succeeded.
	lastErr error
}

// keyError says why no key of the issuer verifies a token.
type keyError struct{ reason string }

func (e *keyError) Error() string { return e.reason }

func newKeySet(cfg OIDCConfig, now func() time.Time, logger *slog.Logger) *keySet {
	return &keySet{cfg: cfg, now: now, logger: logger, jwksURL: cfg.JWKSURL}
}

// key returns the key that verifies a token signed with alg under the key id kid (a
// jwt.VerificationKeySet of every key that fits alg when kid is empty), fetching the keys as
// the keySet's rules say. It fails with a *keyError.
func (k *keySet) key(ctx context.Context, kid, alg string) (any, error) {
	now := k.now()
	k.mu.Lock()
	found := match(k.keys, kid, alg)
	stale := k.fetched.IsZero() || now.Sub(k.fetched) >= k.cfg.KeysMaxAge
	switch {
	case len(found) > 0 && !stale:
		k.mu.Unlock()
		return verificationKey(found), nil
	case k.fetching != nil && len(found) > 0:
		// The keys are being fetched again because they are old: until they arrive, the old
		// ones serve.
		k.mu.Unlock()
		return verificationKey(found), nil
	case k.fetching != nil:
		ch := k.fetching
		k.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return nil, &keyError{"the request ended while the issuer's keys were fetched"}
		}
		k.mu.Lock()
		found = match(k.keys, kid, alg)
		err := k.lastErr
		k.mu.Unlock()
		return k.result(found, kid, err)
	case !k.attempted.IsZero() && now.Sub(k.attempted) < k.cfg.KeysMinInterval:
		lastErr := k.lastErr
		k.mu.Unlock()
		switch {
		case len(found) > 0:
			return verificationKey(found), nil
		case lastErr != nil:
			return nil, &keyError{fmt.Sprintf("the issuer's keys cannot be fetched (they are tried again at most every %v): %v",
				k.cfg.KeysMinInterval, lastErr)}
		default:
			return nil, &keyError{fmt.Sprintf("the token's signing key %q is not among the issuer's keys, which are fetched again at most every %v",
				kid, k.cfg.KeysMinInterval)}
		}
	}
	ch := make(chan struct{})
	k.fetching, k.attempted = ch, now
	jwksURL := k.jwksURL
	k.mu.Unlock()

	keys, discovered, err := k.fetch(ctx, jwksURL)
	k.mu.Lock()
	if discovered != "" {
		k.jwksURL = discovered
	}
	if err == nil {
		k.keys, k.fetched = keys, now
	} else {
		k.logger.Warn("cannot fetch the OpenID Connect issuer's keys", slog.String("issuer", k.cfg.Issuer), slog.Any("error", err))
	}
	k.lastErr = err
	k.fetching = nil
	close(ch)
	found = match(k.keys, kid, alg)
	k.mu.Unlock()
	return k.result(found, kid, err)
}

// result is key's answer once a fetch has ended with err: the keys found, else why none is.
// Keys held from before a failed fetch still serve.
func (k *keySet) result(found []jwkset.JWK, kid string, err error) (any, error) {
	switch {
	case len(found) > 0:
		return verificationKey(found), nil
	case err != nil:
		return nil, &keyError{"the issuer's keys cannot be fetched: " + err.Error()}
	default:
		return nil, &keyError{fmt.Sprintf("the token's signing key %q is not among the issuer's keys", kid)}
	}
}

// verificationKey returns the one key of found, or all of them as a jwt.VerificationKeySet,
// which jwt tries in turn.
func verificationKey(found []jwkset.JWK) any {
	if len(found) == 1 {
		return found[0].Key()
	}
	set := jwt.VerificationKeySet{}
	for _, j := range found {
		set.Keys = append(set.Keys, j.Key())
	}
	return set
}

// match returns the keys that may verify a token signed with alg under the key id kid: the
// key with that id, or every key when kid is empty, unless its own alg is another.
func match(keys []jwkset.JWK, kid, alg string) []jwkset.JWK {
	var out []jwkset.JWK
	for _, j := range keys {
		m := j.Marshal()
		if (kid != "" && m.KID != kid) || (m.ALG != "" && m.ALG.String() != alg) {
			continue
		}
		out = append(out, j)
	}
	return out
}

// fetch reads the issuer's signing keys from its JWKS document at jwksURL, first discovering
// the URL from the issuer's discovery document when jwksURL is empty; discovered is the URL
// discovery found, empty when there was none. The fetch outlives ctx's cancellation (other
// requests may be waiting for it) but not fetchTimeout.
func (k *keySet) fetch(ctx context.Context, jwksURL string) (keys []jwkset.JWK, discovered string, err error) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), fetchTimeout)
	defer cancel()
	if jwksURL == "" {
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		discovery := strings.TrimSuffix(k.cfg.Issuer, "/") + "/.well-known/openid-configuration"
		if err := k.get(ctx, discovery, &doc); err != nil {
			return nil, "", fmt.Errorf("discovery: %w", err)
		}
		if doc.Issuer != k.cfg.Issuer {
			return nil, "", fmt.Errorf("discovery: %s names the issuer %q, not %q", discovery, doc.Issuer, k.cfg.Issuer)
		}
		if err := CheckIssuerURL(doc.JWKSURI); err != nil {
			return nil, "", fmt.Errorf("discovery: %s: jwks_uri: %w", discovery, err)
		}
		jwksURL, discovered = doc.JWKSURI, doc.JWKSURI
	}
	var set jwkset.JWKSMarshal
	if err := k.get(ctx, jwksURL, &set); err != nil {
		return nil, discovered, fmt.Errorf("keys: %w", err)
	}
	for _, m := range set.Keys {
		if m.USE != "" && m.USE != jwkset.UseSig {
			continue
		}
		j, err := jwkset.NewJWKFromMarshal(m, jwkset.JWKMarshalOptions{}, jwkset.JWKValidateOptions{})
		if err != nil {
			k.logger.Debug("skipping a key of the OpenID Connect issuer", slog.String("kid", m.KID), slog.Any("error", err))
			continue
		}
		keys = append(keys, j)
	}
	if len(keys) == 0 {
		return nil, discovered, fmt.Errorf("keys: %s holds no signing key twinflow can use", jwksURL)
	}
	return keys, discovered, nil
}

// get decodes the JSON document at u into v.
func (k *keySet) get(ctx context.Context, u string, v any) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.cfg.HTTPClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", u, resp.Status)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxDocumentBytes+1))
	if err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	if len(body) > maxDocumentBytes {
		return fmt.Errorf("GET %s: the document is larger than %d bytes", u, maxDocumentBytes)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return fmt.Errorf("GET %s: %w", u, err)
	}
	return nil
}
