package api

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/twin"
)

// keyOperations are the API key operations, none when Config.Keys is nil. Keys are twinflow's
// own resource, in the style of the endpoints (api-version required, ADT error bodies); only
// administrators may use them:
//
//	GET    /keys         list: every key's description, never its secret
//	POST   /keys         create (201): {"role": "reader"|"owner"|"admin", "name"?, "expiresTime"? | "expiresIn"?};
//	                     the answer carries the key's text, once
//	GET    /keys/{id}    one key's description
//	DELETE /keys/{id}    revoke (204); 404 KeyNotFound for a key that does not exist
func (a *API) keyOperations() []operation {
	if a.cfg.Keys == nil {
		return nil
	}
	return []operation{
		{http.MethodGet, "/keys", auth.RoleAdmin, a.listKeys},
		{http.MethodPost, "/keys", auth.RoleAdmin, a.createKey},
		{http.MethodGet, "/keys/{id}", auth.RoleAdmin, a.getKey},
		{http.MethodDelete, "/keys/{id}", auth.RoleAdmin, a.revokeKey},
	}
}

// keyJSON is an API key's description, and its text when it was just made.
type keyJSON struct {
	ID          string `json:"id"`
	Name        string `json:"name"`
	Role        string `json:"role"`
	CreatedTime string `json:"createdTime"`
	ExpiresTime string `json:"expiresTime,omitempty"`
	// Expired is true once the key is no longer accepted.
	Expired bool `json:"expired"`
	// Key is the key's text, which the server shows once, when it makes the key.
	Key string `json:"key,omitempty"`
}

func toKeyJSON(k auth.Key, now time.Time) keyJSON {
	out := keyJSON{ID: k.ID, Name: k.Name, Role: k.Role.String(), CreatedTime: k.Created.UTC().Format(time.RFC3339Nano), Expired: k.Expired(now)}
	if !k.Expires.IsZero() {
		out.ExpiresTime = k.Expires.UTC().Format(time.RFC3339Nano)
	}
	return out
}

// listKeys serves GET /keys: every key, ordered by id, in one page.
func (a *API) listKeys(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	keys, err := a.cfg.Keys.List(r.Context())
	if err != nil {
		return err
	}
	now := a.cfg.Keys.Now()
	out := page[keyJSON]{Value: make([]keyJSON, len(keys))}
	for i, k := range keys {
		out.Value[i] = toKeyJSON(k, now)
	}
	return writeJSON(w, http.StatusOK, out)
}

// createKey serves POST /keys. The body names the key's role and, optionally, its name and
// when it expires: at expiresTime (RFC 3339) or expiresIn (a Go duration such as "720h")
// from now, not both; without either it never expires.
func (a *API) createKey(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	body, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var in struct {
		Name        string `json:"name"`
		Role        string `json:"role"`
		ExpiresTime string `json:"expiresTime"`
		ExpiresIn   string `json:"expiresIn"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil {
		return twin.InvalidArgument("A key is {\"role\": \"reader\", \"owner\" or \"admin\", \"name\": ..., \"expiresTime\": <RFC 3339> or \"expiresIn\": <duration such as \"720h\">}: " + err.Error() + ".")
	}
	role, err := auth.ParseRole(in.Role)
	if err != nil {
		return twin.InvalidArgument("The key's role " + err.Error() + ".")
	}
	var expires time.Time
	switch {
	case in.ExpiresTime != "" && in.ExpiresIn != "":
		return twin.InvalidArgument("A key takes expiresTime or expiresIn, not both.")
	case in.ExpiresTime != "":
		if expires, err = time.Parse(time.RFC3339Nano, in.ExpiresTime); err != nil {
			return twin.InvalidArgument("expiresTime " + strconv.Quote(in.ExpiresTime) + " is not an RFC 3339 time.")
		}
	case in.ExpiresIn != "":
		d, err := time.ParseDuration(in.ExpiresIn)
		if err != nil || d <= 0 {
			return twin.InvalidArgument("expiresIn " + strconv.Quote(in.ExpiresIn) + " is not a positive duration such as \"720h\".")
		}
		expires = a.cfg.Keys.Now().Add(d)
	}
	text, key, err := a.cfg.Keys.Create(r.Context(), in.Name, role, expires)
	if err != nil {
		return err
	}
	out := toKeyJSON(key, a.cfg.Keys.Now())
	out.Key = text
	w.Header().Set("Cache-Control", "no-store")
	return writeJSON(w, http.StatusCreated, out)
}

// getKey serves GET /keys/{id}.
func (a *API) getKey(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	key, err := a.cfg.Keys.Get(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toKeyJSON(key, a.cfg.Keys.Now()))
}

// revokeKey serves DELETE /keys/{id}: the key is refused from then on.
func (a *API) revokeKey(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	if err := a.cfg.Keys.Revoke(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	writeNoContent(w, "")
	return nil
}
