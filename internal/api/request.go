package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/twinflow/twinflow/internal/tracecontext"
	"github.com/twinflow/twinflow/internal/twin"
	"github.com/twinflow/twinflow/internal/twins"
)

// query parses the request's query string. Unlike url.ParseQuery it keeps ";" as an ordinary
// character, because DTMIs contain one ("dependenciesFor=dtmi:example:Room;1" arrives
// unescaped from hand-written requests) and url.ParseQuery drops such pairs. A pair that does
// not unescape is dropped; the API refuses such requests before their handlers run (see
// checkQuery).
func query(r *http.Request) url.Values {
	q := url.Values{}
	for pair := range strings.SplitSeq(r.URL.RawQuery, "&") {
		if pair == "" {
			continue
		}
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(rawKey)
		if err != nil {
			continue
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			continue
		}
		q[key] = append(q[key], value)
	}
	return q
}

// queryValue returns the first value of key in the request's query string, as query(r).Get
// would, without decoding the other pairs.
func queryValue(r *http.Request, key string) string {
	for pair := range strings.SplitSeq(r.URL.RawQuery, "&") {
		rawKey, rawValue, _ := strings.Cut(pair, "=")
		if k, err := url.QueryUnescape(rawKey); err != nil || k != key {
			continue
		}
		if v, err := url.QueryUnescape(rawValue); err == nil {
			return v
		}
	}
	return ""
}

// readJSON reads the request body, at most limit bytes of it, and checks that it is JSON.
// A larger body is 400 LimitExceeded, the status and code ADT gives a twin over its size limit
// (so a client sees one answer whichever layer finds the body too big); an empty or malformed
// body is 400 InvalidArgument.
func readJSON(w http.ResponseWriter, r *http.Request, limit int64) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return nil, twin.LimitExceeded(fmt.Sprintf("The request body is larger than the limit of %d bytes.", limit))
		}
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if len(body) == 0 {
		return nil, twin.InvalidArgument("The request body is empty. Please provide a valid JSON document.")
	}
	if !json.Valid(body) {
		return nil, twin.InvalidArgument("The request body is not valid JSON. Please provide a valid JSON document.")
	}
	return body, nil
}

// traceKey is the context key of a request's twins.Trace.
type traceKey struct{}

// startTrace starts the span twinflow serves r in, following W3C Trace Context: a child of the
// span of r's traceparent header (same trace id and flags, a new span id), or the root of a
// new trace when r has no traceparent, several, or a malformed one. The request's tracestate
// goes with it when the traceparent is valid and the tracestate well formed; otherwise it is
// dropped, as the specification asks.
//
// ADT's recorded traceresponses have the request's trace id and a new span id, and the sampled
// flag set even when the request's was clear. twinflow keeps the caller's flags instead: it
// records no spans of its own, and the events carry the span on, so the caller's sampling
// decision holds for their consumers.
func startTrace(r *http.Request) twins.Trace {
	// Canonical keys: nothing to rewrite per request.
	parents := r.Header.Values("Traceparent")
	var parent tracecontext.Span
	ok := len(parents) == 1
	if ok {
		parent, ok = tracecontext.ParseParent(parents[0])
	}
	if !ok {
		return twins.Trace{Parent: tracecontext.New().String()}
	}
	tr := twins.Trace{Parent: parent.Child().String()}
	if states := r.Header.Values("Tracestate"); len(states) > 0 {
		tr.State, _ = tracecontext.ParseState(strings.Join(states, ","))
	}
	return tr
}

// withTrace returns r with tr as its trace, for trace.
func withTrace(r *http.Request, tr twins.Trace) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), traceKey{}, tr))
}

// trace returns the trace context ServeHTTP started for r, which the events r causes carry. A
// request that did not come through ServeHTTP has none; the twin service then starts a new
// trace.
func trace(r *http.Request) twins.Trace {
	tr, _ := r.Context().Value(traceKey{}).(twins.Trace)
	return tr
}
