package api

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestParseAPIVersion(t *testing.T) {
	tests := []struct {
		query    string
		wantCode string
		hides    bool
	}{
		{"api-version=2023-10-31", "", false},
		{"api-version=2022-05-31", "", false},
		{"api-version=2023-06-30", "", false},
		{"api-version=2023-02-27-preview", "", false},
		{"api-version=2021-06-30-preview", "", true},
		{"api-version=2020-10-31", "", true},
		{"api-version=2020-05-31-preview", "UnsupportedApiVersion", false},
		{"", "MissingApiVersionParameter", false},
		{"api-version=", "MissingApiVersionParameter", false},
		{"api-version=2024-01-01", "UnsupportedApiVersion", false},
		{"api-version=2023-10-31x", "UnsupportedApiVersion", false},
		{"Api-Version=2023-10-31", "MissingApiVersionParameter", false},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/models?"+tt.query, nil)
			v, err := parseAPIVersion(queryValue(r, "api-version"))
			if code := errorCode(err); code != tt.wantCode {
				t.Fatalf("parseAPIVersion(%q) error code = %q, want %q (err %v)", tt.query, code, tt.wantCode, err)
			}
			if err == nil && v.hidesSourceTime() != tt.hides {
				t.Errorf("%s.hidesSourceTime() = %v, want %v", v, v.hidesSourceTime(), tt.hides)
			}
		})
	}
}

func TestDocumentsForOlderVersions(t *testing.T) {
	const twinIn = `{"$dtId":"t1","$etag":"W/\"e\"","temp":1,"obj":{"a":{"sourceTime":"x"}},` +
		`"comp":{"p":2,"$metadata":{"$lastUpdateTime":"T2","p":{"lastUpdateTime":"T2","sourceTime":"S2"}}},` +
		`"$metadata":{"$model":"dtmi:a;1","$lastUpdateTime":"T1","temp":{"lastUpdateTime":"T1","sourceTime":"S1"},"obj":{"lastUpdateTime":"T1"}}}`
	const componentIn = `{"p":2,"$metadata":{"$lastUpdateTime":"T2","p":{"lastUpdateTime":"T2","sourceTime":"S2"}}}`
	tests := []struct {
		name string
		fn   func(json.RawMessage, apiVersion) (json.RawMessage, error)
		in   string
		ver  apiVersion
		want string
	}{
		{"twin current", twinDoc, twinIn, "2023-10-31", twinIn},
		{"twin 2022-05-31", twinDoc, twinIn, "2022-05-31", twinIn},
		{
			"twin 2020-10-31", twinDoc, twinIn, "2020-10-31",
			`{"$dtId":"t1","$etag":"W/\"e\"","temp":1,"obj":{"a":{"sourceTime":"x"}},` +
				`"comp":{"p":2,"$metadata":{"p":{"lastUpdateTime":"T2"}}},` +
				`"$metadata":{"$model":"dtmi:a;1","temp":{"lastUpdateTime":"T1"},"obj":{"lastUpdateTime":"T1"}}}`,
		},
		{"component current", componentDoc, componentIn, "2023-06-30", componentIn},
		{"component 2021-06-30-preview", componentDoc, componentIn, "2021-06-30-preview", `{"p":2,"$metadata":{"p":{"lastUpdateTime":"T2"}}}`},
		{"component without metadata", componentDoc, `{"p":2}`, "2020-10-31", `{"p":2}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.fn(json.RawMessage(tt.in), tt.ver)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tt.want {
				t.Errorf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestDocumentsForOlderVersionsRejectNonObjects(t *testing.T) {
	for _, in := range []string{`[]`, `"x"`, `{"a":`} {
		if _, err := twinDoc(json.RawMessage(in), "2020-10-31"); err == nil {
			t.Errorf("twinDoc(%s) succeeded, want an error", in)
		}
	}
}

// FuzzTwinDoc checks that rewriting any JSON object for an older api-version yields valid JSON
// that a second rewrite leaves unchanged, and that documents for current versions pass through.
func FuzzTwinDoc(f *testing.F) {
	f.Add(`{"$dtId":"t","a":{"$metadata":{"$lastUpdateTime":"x","p":{"sourceTime":"s"}}},"$metadata":{"$lastUpdateTime":"y","q":{"lastUpdateTime":"z","sourceTime":"s"}}}`)
	f.Add(`{"$metadata":[],"c":{"$metadata":"x"},"d":{"$metadata":{"e":1}}}`)
	f.Add(`{"\u0024metadata":{"\u0024lastUpdateTime":1},"k\"ey":{}}`)
	f.Fuzz(func(t *testing.T, doc string) {
		if !isObject(json.RawMessage(doc)) || !json.Valid([]byte(doc)) {
			return
		}
		if cur, err := twinDoc(json.RawMessage(doc), "2023-10-31"); err != nil || string(cur) != doc {
			t.Fatalf("current version changed %s into %s (%v)", doc, cur, err)
		}
		old, err := twinDoc(json.RawMessage(doc), "2020-10-31")
		if err != nil {
			t.Fatalf("twinDoc(%s): %v", doc, err)
		}
		if !json.Valid(old) {
			t.Fatalf("twinDoc(%s) = %s, not JSON", doc, old)
		}
		again, err := twinDoc(old, "2020-10-31")
		if err != nil || string(again) != string(old) {
			t.Fatalf("second rewrite of %s gave %s (%v)", old, again, err)
		}
	})
}
