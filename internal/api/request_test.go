package api

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"

	"github.com/twinflow/twinflow/internal/twin"
)

// errorCode returns the ADT code of err, "" for nil and "<not ADT>" for other errors.
func errorCode(err error) string {
	if err == nil {
		return ""
	}
	var te *twin.Error
	if !errors.As(err, &te) {
		return "<not ADT>"
	}
	return adtErrors[te.Kind].code
}

func TestPageSize(t *testing.T) {
	tests := []struct {
		header   string
		want     int
		wantCode string
	}{
		{"", 100, ""},
		{"1", 1, ""},
		{" 7 ", 7, ""},
		{"100", 100, ""},
		{"1000", 100, ""},
		{"0", 0, "InvalidArgument"},
		{"-3", 0, "InvalidArgument"},
		{"ten", 0, "InvalidArgument"},
		{"1.5", 0, "InvalidArgument"},
	}
	for _, tt := range tests {
		r := httptest.NewRequest(http.MethodGet, "/models", nil)
		if tt.header != "" {
			r.Header.Set("max-items-per-page", tt.header)
		}
		got, err := pageSize(r, 100, 100)
		if code := errorCode(err); code != tt.wantCode || got != tt.want {
			t.Errorf("pageSize(%q) = %d, %q; want %d, %q", tt.header, got, code, tt.want, tt.wantCode)
		}
	}
}

func TestNextLinkRoundTrip(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "http://twins.example/digitaltwins/a%2Fb/relationships?api-version=2023-10-31&relationshipName=has", nil)
	r.Header.Set("X-Forwarded-Proto", "https, http")
	link := nextLink(r, "src\x00rel 1", 5)
	if link == nil {
		t.Fatal("nextLink = nil, want a link")
	}
	u, err := url.Parse(*link)
	if err != nil {
		t.Fatal(err)
	}
	if u.Scheme != "https" || u.Host != "twins.example" || u.EscapedPath() != "/digitaltwins/a%2Fb/relationships" {
		t.Errorf("nextLink = %s, want https://twins.example/digitaltwins/a%%2Fb/relationships?...", *link)
	}
	if q := u.Query(); q.Get("api-version") != "2023-10-31" || q.Get("relationshipName") != "has" {
		t.Errorf("nextLink %s lost the request's query parameters", *link)
	}
	next := httptest.NewRequest(http.MethodGet, *link, nil)
	c, err := parseCursor(next)
	if err != nil {
		t.Fatal(err)
	}
	if c != (cursor{After: "src\x00rel 1", Limit: 5}) {
		t.Errorf("parseCursor(nextLink) = %+v, want the cursor nextLink encoded", c)
	}
	if nextLink(r, "", 5) != nil {
		t.Error("nextLink with no continuation is not nil")
	}
}

func TestParseCursorRejectsForeignTokens(t *testing.T) {
	for _, tok := range []string{"abc", "e30", "!!", "eyJhIjoiIn0"} {
		r := httptest.NewRequest(http.MethodGet, "/models?continuationToken="+tok, nil)
		if _, err := parseCursor(r); errorCode(err) != "InvalidArgument" {
			t.Errorf("parseCursor(%q) error = %v, want InvalidArgument", tok, err)
		}
	}
}

func TestQueryValue(t *testing.T) {
	// queryValue reads the first value query would give, for keys present, absent, escaped
	// or in pairs that do not unescape.
	for _, raw := range []string{
		"", "a=1", "a=1&a=2", "b=1&a=2", "a", "a=", "&&a=1&", "%61=1", "a=%zz&a=2", "%zz=1&a=3",
		"a=x+y%20z", "a=dtmi:ex:Room;1", "a+b=1", "a=1=2",
	} {
		r := httptest.NewRequest(http.MethodGet, "/models?"+raw, nil)
		for _, key := range []string{"a", "a b", "b", "c"} {
			if got, want := queryValue(r, key), query(r).Get(key); got != want {
				t.Errorf("queryValue(%q, %q) = %q; query gives %q", raw, key, got, want)
			}
		}
	}
}
