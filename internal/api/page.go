package api

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/twinflow/twinflow/internal/twin"
)

// continuationParam is the query parameter nextLink carries the continuation in.
const continuationParam = "continuationToken"

// page is ADT's paged list body, members in the order ADT sends them. NextLink is null on
// the last page.
type page[T any] struct {
	NextLink *string `json:"nextLink"`
	Value    []T     `json:"value"`
}

// cursor is where a list continues: the twin service's opaque position and the page size the first
// request chose, so a client that does not resend max-items-per-page keeps its page size.
type cursor struct {
	After string `json:"a"`
	Limit int    `json:"n"`
}

// parseCursor returns the request's continuation; the zero cursor when there is none. A token
// that twinflow did not issue is 400 InvalidArgument.
func parseCursor(r *http.Request) (cursor, error) {
	tok := query(r).Get(continuationParam)
	if tok == "" {
		return cursor{}, nil
	}
	var c cursor
	raw, err := base64.RawURLEncoding.DecodeString(tok)
	if err == nil {
		err = json.Unmarshal(raw, &c)
	}
	if err != nil || c.After == "" || c.Limit < 0 {
		return cursor{}, twin.InvalidArgument("The continuation token is not valid. Use the nextLink of the previous page as it was returned.")
	}
	return c, nil
}

// nextLink returns the absolute URL of the page after the current one: the request's own URL
// (see baseURL) with the continuation set. It returns nil when after is empty, which marks
// the last page.
func nextLink(r *http.Request, after string, limit int) *string {
	if after == "" {
		return nil
	}
	raw, _ := json.Marshal(cursor{After: after, Limit: limit})
	q := query(r)
	q.Set(continuationParam, base64.RawURLEncoding.EncodeToString(raw))
	link := baseURL(r) + r.URL.EscapedPath() + "?" + q.Encode()
	return &link
}

// baseURL returns the scheme and host a client reached the server at: https when the
// connection is TLS or a proxy says so in X-Forwarded-Proto, and the request's Host.
func baseURL(r *http.Request) string {
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	} else if p := r.Header.Get("X-Forwarded-Proto"); p != "" {
		scheme = strings.ToLower(strings.TrimSpace(strings.Split(p, ",")[0]))
	}
	return scheme + "://" + r.Host
}

// pageSize returns the page size a list request asks for in the max-items-per-page header:
// def when absent, at most max. A value that is not a positive integer is 400 InvalidArgument.
func pageSize(r *http.Request, def, max int) (int, error) {
	h := r.Header.Get("max-items-per-page")
	if h == "" {
		return def, nil
	}
	n, err := strconv.Atoi(strings.TrimSpace(h))
	if err != nil || n < 1 {
		return 0, twin.InvalidArgument("The max-items-per-page header must be a positive integer, got '" + h + "'.")
	}
	return min(n, max), nil
}
