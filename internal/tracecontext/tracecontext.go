// Package tracecontext implements what twinflow needs of W3C Trace Context
// (https://www.w3.org/TR/trace-context/): reading the traceparent and tracestate a request
// carries, starting the span twinflow handles the request in as a child of the caller's span
// (or as the root of a new trace), and writing that span as a traceparent or traceresponse
// value. It records no spans itself; the spans it starts are carried on to the events a
// request causes, so their consumers continue the caller's trace.
package tracecontext

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
)

// Span is the trace context of one span, as a version-00 traceparent holds it. The zero Span
// is not valid.
type Span struct {
	TraceID [16]byte
	SpanID  [8]byte
	// Flags are the trace flags; bit 0 is sampled.
	Flags byte
}

// traceParentLen is the length of a version-00 traceparent.
const traceParentLen = 55

// ParseParent parses a traceparent header value as the specification tells a receiver to: a
// version-00 value must be exactly version-traceid-parentid-flags in lower-case hex; a value
// of a later version is read for the version-00 fields it starts with, which must be followed
// by the end or a "-". Version ff, an all-zero trace id and an all-zero parent id are invalid.
// It reports false for an invalid value.
func ParseParent(s string) (Span, bool) {
	var sp Span
	if len(s) < traceParentLen || s[2] != '-' || s[35] != '-' || s[52] != '-' {
		return sp, false
	}
	var ver [1]byte
	if !decodeHex(ver[:], s[0:2]) || ver[0] == 0xff {
		return sp, false
	}
	if (ver[0] == 0 && len(s) != traceParentLen) || (len(s) > traceParentLen && s[traceParentLen] != '-') {
		return sp, false
	}
	var flags [1]byte
	if !decodeHex(sp.TraceID[:], s[3:35]) || !decodeHex(sp.SpanID[:], s[36:52]) || !decodeHex(flags[:], s[53:55]) {
		return sp, false
	}
	sp.Flags = flags[0]
	if sp.TraceID == [16]byte{} || sp.SpanID == [8]byte{} {
		return sp, false
	}
	return sp, true
}

// decodeHex decodes the lower-case hex digits src into dst, which must hold len(src)/2 bytes.
func decodeHex(dst []byte, src string) bool {
	for i := 0; i < len(src); i++ {
		if c := src[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	_, err := hex.Decode(dst, []byte(src))
	return err == nil
}

// New returns the root span of a new trace, with random ids and the sampled flag set.
func New() Span {
	var b [24]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails
	sp := Span{Flags: 0x01}
	copy(sp.TraceID[:], b[:16])
	copy(sp.SpanID[:], b[16:])
	return sp
}

// Child returns a new span of sp's trace whose parent is sp: the same trace id and flags, and
// a random span id of its own.
func (sp Span) Child() Span {
	c := sp
	for c.SpanID == sp.SpanID || c.SpanID == [8]byte{} {
		_, _ = rand.Read(c.SpanID[:]) // crypto/rand.Read never fails
	}
	return c
}

// String returns sp as a version-00 traceparent (or traceresponse) value.
func (sp Span) String() string {
	var b [traceParentLen]byte
	copy(b[:], "00-")
	hex.Encode(b[3:35], sp.TraceID[:])
	b[35] = '-'
	hex.Encode(b[36:52], sp.SpanID[:])
	b[52] = '-'
	hex.Encode(b[53:55], []byte{sp.Flags})
	return string(b[:])
}

// Limits of a tracestate list, from the specification.
const (
	maxStateMembers  = 32
	maxStateKeyLen   = 256
	maxStateValueLen = 256
)

// ParseState checks a tracestate value: the values of all of a request's tracestate header
// lines joined with ",". It returns the list with its empty members dropped and the optional
// white space around members removed, or false when a member is malformed (a key or value
// outside the specification's grammar), a key repeats or there are more than 32 members; the
// specification tells a receiver not to pass such a tracestate on. An empty list is "".
func ParseState(s string) (string, bool) {
	var members []string
	seen := map[string]bool{}
	for m := range strings.SplitSeq(s, ",") {
		m = strings.Trim(m, " \t")
		if m == "" {
			continue
		}
		key, value, ok := strings.Cut(m, "=")
		if !ok || !validStateKey(key) || !validStateValue(value) || seen[key] {
			return "", false
		}
		seen[key] = true
		members = append(members, m)
	}
	if len(members) > maxStateMembers {
		return "", false
	}
	return strings.Join(members, ","), true
}

// validStateKey reports whether key is a simple key (lcalpha 0*255(lcalpha / DIGIT / "_" /
// "-" / "*" / "/")) or a multi-tenant key (tenant@system, with a tenant of up to 241 such
// characters that may start with a digit, and a system of up to 14 that starts with a letter).
func validStateKey(key string) bool {
	tenant, system, multi := strings.Cut(key, "@")
	if !multi {
		return len(key) <= maxStateKeyLen && isStateKeyPart(key, false)
	}
	return len(tenant) <= 241 && isStateKeyPart(tenant, true) && len(system) <= 14 && isStateKeyPart(system, false)
}

// isStateKeyPart reports whether s is a non-empty run of key characters whose first is a
// lower-case letter, or a digit too when digitFirst.
func isStateKeyPart(s string, digitFirst bool) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z':
		case c >= '0' && c <= '9':
			if i == 0 && !digitFirst {
				return false
			}
		case c == '_' || c == '-' || c == '*' || c == '/':
			if i == 0 {
				return false
			}
		default:
			return false
		}
	}
	return true
}

// validStateValue reports whether v is 1 to 256 printable ASCII characters other than ","
// and "=", not ending in a space.
func validStateValue(v string) bool {
	if v == "" || len(v) > maxStateValueLen || v[len(v)-1] == ' ' {
		return false
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 || c > 0x7e || c == ',' || c == '=' {
			return false
		}
	}
	return true
}
