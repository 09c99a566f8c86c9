package api

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/auth"
)

// TestKeysAPI creates, lists, reads and revokes API keys through the API, and checks that
// definitions it refuses leave no key behind.
func TestKeysAPI(t *testing.T) {
	logger := testLogger(t)
	st, svc := openService(t, logger)
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	keys := auth.NewKeys(st, func() time.Time { return now })
	e := serve(t, Config{Keys: keys}, st, svc, logger)

	created := decode[map[string]any](t, e.must(e.do(http.MethodPost, "/keys",
		`{"name": "ingest", "role": "owner"}`), http.StatusCreated, ""))
	text, _ := created["key"].(string)
	id, _ := created["id"].(string)
	if !strings.HasPrefix(text, auth.KeyPrefix+id+"_") || created["role"] != "owner" || created["name"] != "ingest" ||
		created["createdTime"] != "2026-01-02T03:04:05Z" || created["expired"] != false || created["expiresTime"] != nil {
		t.Errorf("created key: %v", created)
	}
	brief := decode[map[string]any](t, e.must(e.do(http.MethodPost, "/keys",
		`{"role": "reader", "expiresIn": "1h"}`), http.StatusCreated, ""))
	if brief["expiresTime"] != "2026-01-02T04:04:05Z" || brief["name"] != "" {
		t.Errorf("key expiring in an hour: %v", brief)
	}
	e.must(e.do(http.MethodPost, "/keys", `{"role": "admin", "expiresTime": "2027-01-01T00:00:00+01:00"}`), http.StatusCreated, "")

	list := decode[page[map[string]any]](t, e.must(e.do(http.MethodGet, "/keys", ""), http.StatusOK, ""))
	if len(list.Value) != 3 || list.NextLink != nil {
		t.Fatalf("list: %+v", list)
	}
	for _, k := range list.Value {
		if _, ok := k["key"]; ok {
			t.Errorf("the list shows a key's text: %v", k)
		}
	}

	got := decode[map[string]any](t, e.must(e.do(http.MethodGet, "/keys/"+id, ""), http.StatusOK, ""))
	if got["id"] != id || got["role"] != "owner" || got["key"] != nil {
		t.Errorf("GET /keys/%s: %v", id, got)
	}
	now = now.Add(time.Hour)
	got = decode[map[string]any](t, e.must(e.do(http.MethodGet, "/keys/"+brief["id"].(string), ""), http.StatusOK, ""))
	if got["expired"] != true {
		t.Errorf("a key an hour past its expiry: %v", got)
	}

	e.must(e.do(http.MethodDelete, "/keys/"+id, ""), http.StatusNoContent, "")
	e.must(e.do(http.MethodDelete, "/keys/"+id, ""), http.StatusNotFound, "KeyNotFound")
	e.must(e.do(http.MethodGet, "/keys/"+id, ""), http.StatusNotFound, "KeyNotFound")
	e.must(e.do(http.MethodGet, "/keys/..", ""), http.StatusBadRequest, "InvalidArgument")

	for _, body := range []string{
		`{}`,
		`{"role": "root"}`,
		`{"role": "none"}`,
		`{"role": "owner", "expires": "1h"}`,
		`{"role": "owner", "expiresIn": "1h", "expiresTime": "2030-01-01T00:00:00Z"}`,
		`{"role": "owner", "expiresIn": "-1h"}`,
		`{"role": "owner", "expiresIn": "soon"}`,
		`{"role": "owner", "expiresTime": "tomorrow"}`,
		`{"role": "owner", "expiresTime": "2020-01-01T00:00:00Z"}`,
		`{"role": "owner", "name": "` + strings.Repeat("n", 129) + `"}`,
		`[]`,
	} {
		e.must(e.do(http.MethodPost, "/keys", body), http.StatusBadRequest, "InvalidArgument")
	}
	if list := decode[page[map[string]any]](t, e.do(http.MethodGet, "/keys", "")); len(list.Value) != 2 {
		t.Errorf("refused and revoked keys changed the list: %d keys, want 2", len(list.Value))
	}
}
