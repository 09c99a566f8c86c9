// Package redact keeps the secrets of endpoint and source settings (passwords, keys, tokens,
// connection strings, secret header values, URL query strings) out of what twinflow shows:
// API responses, status (lastError), logs and metrics.
//
// A connector's settings say what is secret by what their Redacted method blanks; Values
// derives the secret values from the settings and their redacted form, and a Scrubber built
// from them replaces each one, wherever it occurs, by Mask: in error messages (Scrubber.Error)
// and in log records (Scrubber.Handler). Restore lets a definition read with GET, its secrets
// blanked, be sent back with PUT without losing them.
//
// Beyond secrets, Scrubber.Error keeps status from telling what answered at an address: an
// error that is not the destination's own answer in its protocol (marked with Shown), such
// as a refused connection, a timeout or a TLS or protocol failure, is shown as Unreachable,
// so that endpoints and sources cannot be used to probe the ports of the network twinflow
// runs in.
package redact

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/url"
	"slices"
	"strings"

	"github.com/twinflow/twinflow/internal/netpolicy"
)

// Mask replaces a secret in text.
const Mask = "***"

// URLMask replaces the password and the query string of a URL (as url.URL.Redacted does).
const URLMask = "xxxxx"

// Unreachable is how Scrubber.Error shows every failure that is not a Shown error: one
// message for a refused connection, a timeout, a reset, a TLS or a protocol failure.
const Unreachable = "endpoint unreachable"

// CertificateRefused is how Scrubber.Error shows a destination's TLS certificate that did not
// verify, without the names and issuers it holds.
const CertificateRefused = "the destination's TLS certificate was not accepted"

// MinSecretLength is the length below which a secret value is not scrubbed from text:
// replacing every occurrence of a one- or two-character value would garble messages
// without hiding anything worth hiding. (Settings still blank such values in what they
// show.)
const MinSecretLength = 4

// Scrubber replaces known secret values with Mask. The zero value and nil scrub nothing.
// It is safe for concurrent use.
type Scrubber struct {
	r *strings.Replacer
}

// NewScrubber returns a scrubber of secrets, each also in its URL-escaped forms. Values
// shorter than MinSecretLength are left alone.
func NewScrubber(secrets ...string) *Scrubber {
	var all []string
	for _, s := range secrets {
		if len(s) < MinSecretLength {
			continue
		}
		all = append(all, s, url.QueryEscape(s), url.PathEscape(s), url.UserPassword("", s).String()[1:])
	}
	if len(all) == 0 {
		return &Scrubber{}
	}
	// At one position the Replacer tries its pairs in order: longer secrets first, so that a
	// secret that holds another is replaced whole.
	slices.SortFunc(all, func(a, b string) int { return len(b) - len(a) })
	all = slices.Compact(all)
	pairs := make([]string, 0, 2*len(all))
	for _, s := range all {
		pairs = append(pairs, s, Mask)
	}
	return &Scrubber{r: strings.NewReplacer(pairs...)}
}

// String returns text with every secret replaced by Mask.
func (s *Scrubber) String(text string) string {
	if s == nil || s.r == nil {
		return text
	}
	return s.r.Replace(text)
}

// shown marks an error whose message may be shown; see Shown.
type shown struct{ err error }

func (e *shown) Error() string { return e.err.Error() }
func (e *shown) Unwrap() error { return e.err }

// Shown marks err as an error whose message status and API responses may show (its
// secrets scrubbed): the destination's own answer in its protocol (an HTTP status, a
// broker's error code or refusal, a refused login), or a problem of the local configuration
// that involves no connection (a TLS file that does not parse). Errors wrapping a Shown
// error count as Shown. A nil err stays nil.
func Shown(err error) error {
	if err == nil {
		return nil
	}
	return &shown{err}
}

// IsShown reports whether err is or wraps a Shown error.
func IsShown(err error) bool {
	var s *shown
	return errors.As(err, &s)
}

// sanitized is an error shown with another message than its own; it unwraps to the
// original, so that its classification (permanent, retry after, ...) still holds.
type sanitized struct {
	msg string
	err error
}

func (e *sanitized) Error() string { return e.msg }
func (e *sanitized) Unwrap() error { return e.err }

// Error returns err as status and logs may show it: with its own message, secrets scrubbed,
// if it is Shown; as the refusal of the egress policy if the policy refused the connection;
// as "canceled" if its context was; as CertificateRefused if a TLS certificate did not
// verify; and as Unreachable otherwise. The result wraps err, so
// errors.Is and errors.As still see what err wraps. A nil err stays nil.
func (s *Scrubber) Error(err error) error {
	if err == nil {
		return nil
	}
	var msg string
	switch de, denied := errors.AsType[*netpolicy.DeniedError](err); {
	case IsShown(err):
		msg = s.String(err.Error())
	case denied:
		msg = s.String(de.Error())
	case errors.Is(err, context.Canceled):
		msg = "canceled"
	case isCertificateError(err):
		msg = CertificateRefused
	default:
		msg = Unreachable
	}
	return &sanitized{msg: msg, err: err}
}

// isCertificateError reports whether err is the failure to verify a TLS certificate.
func isCertificateError(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		authority x509.UnknownAuthorityError
		hostname  x509.HostnameError
		invalid   x509.CertificateInvalidError
	)
	return errors.As(err, &verify) || errors.As(err, &authority) || errors.As(err, &hostname) || errors.As(err, &invalid)
}

// Values returns the secret values of settings: wherever the JSON of shown (the settings as
// their Redacted method shows them) differs from the JSON of settings, the value of
// settings, and within it a URL's password and query string (with each query value), and a
// connection string's keys and signatures (SharedAccessKey=...). Both must encode as JSON
// objects (connector settings are JSON-tagged structs).
func Values(settings, shown any) []string {
	a, errA := toTree(settings)
	b, errB := toTree(shown)
	if errA != nil || errB != nil {
		return nil
	}
	var out []string
	walkDiff(a, b, func(v string) { out = append(out, expand(v)...) })
	return out
}

// toTree returns the JSON tree of v.
func toTree(v any) (any, error) {
	raw, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	var t any
	return t, json.Unmarshal(raw, &t)
}

// walkDiff calls f with each non-empty string of a that differs from b at the same place.
func walkDiff(a, b any, f func(string)) {
	switch a := a.(type) {
	case map[string]any:
		bm, _ := b.(map[string]any)
		for k, v := range a {
			walkDiff(v, bm[k], f)
		}
	case []any:
		bs, _ := b.([]any)
		for i, v := range a {
			var w any
			if i < len(bs) {
				w = bs[i]
			}
			walkDiff(v, w, f)
		}
	case string:
		if bs, ok := b.(string); a != "" && (!ok || bs != a) {
			f(a)
		}
	}
}

// expand returns a secret value with the parts of it that may appear alone.
func expand(v string) []string {
	out := []string{v}
	if u, err := url.Parse(v); err == nil && u.Host != "" {
		if p, ok := u.User.Password(); ok {
			out = append(out, p)
		}
		if u.RawQuery != "" {
			out = append(out, u.RawQuery)
			for _, vs := range u.Query() {
				out = append(out, vs...)
			}
		}
	}
	if strings.Contains(v, "=") {
		for part := range strings.SplitSeq(v, ";") {
			k, val, ok := strings.Cut(part, "=")
			if !ok {
				continue
			}
			switch k = strings.ToLower(strings.TrimSpace(k)); {
			case k == "sharedaccesskeyname":
			case strings.Contains(k, "key"), strings.Contains(k, "signature"), strings.Contains(k, "password"),
				strings.Contains(k, "secret"), strings.Contains(k, "token"):
				out = append(out, strings.TrimSpace(val))
			}
		}
	}
	return out
}

// URL returns s, a URL, with its password and its query string (which often carries a key
// or a signature) replaced by URLMask; an unparsable s is shown as "(unparsable URL)".
func URL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		return "(unparsable URL)"
	}
	if u.RawQuery != "" {
		u.RawQuery = URLMask
	}
	return u.Redacted()
}

// URLs returns s, URLs separated by commas, each redacted as URL does.
func URLs(s string) string {
	parts := strings.Split(s, ",")
	for i, p := range parts {
		if t := strings.TrimSpace(p); t != "" {
			parts[i] = URL(t)
		}
	}
	return strings.Join(parts, ",")
}

// Restore puts stored secrets back into next, a definition as sent with PUT (a JSON
// object), where it carries them as GET showed them: every string of next that equals the
// string of shown (the stored definition as GET shows it) at the same place, where shown
// blanked a secret (it holds Mask or URLMask) and stored (the stored definition) holds
// another, non-empty value, is replaced by the stored value; and in a URL whose password or
// query string is URLMask where shown has URLMask too, the stored password or query string
// is put back. It returns the paths of the values it restored ("sasl.password",
// "headers.Authorization"), in no particular order.
func Restore(next, stored, shown map[string]any) []string {
	var paths []string
	restoreIn(next, stored, shown, "", &paths)
	return paths
}

func restoreIn(next, stored, shown map[string]any, prefix string, paths *[]string) {
	for k, v := range next {
		path := k
		if prefix != "" {
			path = prefix + "." + k
		}
		switch v := v.(type) {
		case map[string]any:
			sm, _ := stored[k].(map[string]any)
			hm, _ := shown[k].(map[string]any)
			if sm != nil && hm != nil {
				restoreIn(v, sm, hm, path, paths)
			}
		case string:
			st, _ := stored[k].(string)
			sh, _ := shown[k].(string)
			if st == "" || st == sh || !(strings.Contains(sh, Mask) || strings.Contains(sh, URLMask)) {
				continue
			}
			if v == sh {
				next[k] = st
				*paths = append(*paths, path)
			} else if r, ok := restoreURL(v, st, sh); ok {
				next[k] = r
				*paths = append(*paths, path)
			}
		}
	}
}

// restoreURL puts the stored password and query string back into the URL next where it has
// URLMask in their place, as shown has.
func restoreURL(next, stored, shown string) (string, bool) {
	nu, err1 := url.Parse(next)
	su, err2 := url.Parse(stored)
	hu, err3 := url.Parse(shown)
	if err1 != nil || err2 != nil || err3 != nil || nu.Host == "" {
		return "", false
	}
	done := false
	np, nok := nu.User.Password()
	hp, hok := hu.User.Password()
	if sp, sok := su.User.Password(); nok && hok && sok && np == URLMask && hp == URLMask {
		nu.User = url.UserPassword(nu.User.Username(), sp)
		done = true
	}
	if nu.RawQuery == URLMask && hu.RawQuery == URLMask && su.RawQuery != "" {
		nu.RawQuery = su.RawQuery
		done = true
	}
	return nu.String(), done
}
