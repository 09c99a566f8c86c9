package api

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/detector"
	"github.com/twinflow/twinflow/internal/endpoint"
	"github.com/twinflow/twinflow/internal/eventroute"
	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/job"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

// wantAccess is the role every operation needs, by "METHOD path": ADT's Data Reader for reads
// and queries, Data Owner for the rest of ADT's data plane (and pushing messages to a
// source), the administrator for twinflow's own resources. Every operation must be listed,
// so that a new one cannot slip in with a role nobody chose.
var wantAccess = map[string]auth.Role{
	"POST /models":        auth.RoleOwner,
	"GET /models":         auth.RoleReader,
	"GET /models/{id}":    auth.RoleReader,
	"PATCH /models/{id}":  auth.RoleOwner,
	"DELETE /models/{id}": auth.RoleOwner,

	"GET /digitaltwins/{id}":                                   auth.RoleReader,
	"PUT /digitaltwins/{id}":                                   auth.RoleOwner,
	"PATCH /digitaltwins/{id}":                                 auth.RoleOwner,
	"DELETE /digitaltwins/{id}":                                auth.RoleOwner,
	"GET /digitaltwins/{id}/components/{component}":            auth.RoleReader,
	"PATCH /digitaltwins/{id}/components/{component}":          auth.RoleOwner,
	"GET /digitaltwins/{id}/relationships":                     auth.RoleReader,
	"GET /digitaltwins/{id}/incomingrelationships":             auth.RoleReader,
	"GET /digitaltwins/{id}/relationships/{rel}":               auth.RoleReader,
	"PUT /digitaltwins/{id}/relationships/{rel}":               auth.RoleOwner,
	"PATCH /digitaltwins/{id}/relationships/{rel}":             auth.RoleOwner,
	"DELETE /digitaltwins/{id}/relationships/{rel}":            auth.RoleOwner,
	"POST /digitaltwins/{id}/telemetry":                        auth.RoleOwner,
	"POST /digitaltwins/{id}/components/{component}/telemetry": auth.RoleOwner,
	"POST /query": auth.RoleReader,

	"GET /eventroutes":         auth.RoleReader,
	"GET /eventroutes/{id}":    auth.RoleReader,
	"PUT /eventroutes/{id}":    auth.RoleOwner,
	"DELETE /eventroutes/{id}": auth.RoleOwner,

	"GET /jobs/imports":              auth.RoleReader,
	"PUT /jobs/imports/{id}":         auth.RoleOwner,
	"GET /jobs/imports/{id}":         auth.RoleReader,
	"DELETE /jobs/imports/{id}":      auth.RoleOwner,
	"POST /jobs/imports/{id}/cancel": auth.RoleOwner,
	"PUT /jobs/files/{name}":         auth.RoleOwner,
	"GET /jobs/files/{name}":         auth.RoleOwner,
	"POST /jobs/deletions":           auth.RoleOwner,
	"GET /jobs/deletions":            auth.RoleReader,
	"GET /jobs/deletions/{id}":       auth.RoleReader,

	"GET /digitaltwins/{id}/history":                     auth.RoleReader,
	"GET /digitaltwins/{id}/relationships/{rel}/history": auth.RoleReader,
	"GET /digitaltwins/{id}/lifecycle":                   auth.RoleReader,
	"GET /digitaltwins/{id}/anomalies":                   auth.RoleReader,
	"POST /history/query":                                auth.RoleReader,
	"GET /history/status":                                auth.RoleReader,

	"GET /endpoints":                                  auth.RoleAdmin,
	"GET /endpoints/{name}":                           auth.RoleAdmin,
	"PUT /endpoints/{name}":                           auth.RoleAdmin,
	"DELETE /endpoints/{name}":                        auth.RoleAdmin,
	"POST /endpoints/{name}/replay":                   auth.RoleAdmin,
	"GET /endpoints/{name}/deadletters":               auth.RoleAdmin,
	"GET /endpoints/{name}/deadletters/{id}":          auth.RoleAdmin,
	"DELETE /endpoints/{name}/deadletters/{id}":       auth.RoleAdmin,
	"POST /endpoints/{name}/deadletters/{id}/redrive": auth.RoleAdmin,
	"GET /sources":                                    auth.RoleAdmin,
	"GET /sources/{name}":                             auth.RoleAdmin,
	"PUT /sources/{name}":                             auth.RoleAdmin,
	"DELETE /sources/{name}":                          auth.RoleAdmin,
	"POST /sources/{name}/messages":                   auth.RoleOwner,
	"GET /sources/{name}/deadletters":                 auth.RoleAdmin,
	"GET /sources/{name}/deadletters/{id}":            auth.RoleAdmin,
	"DELETE /sources/{name}/deadletters/{id}":         auth.RoleAdmin,
	"POST /sources/{name}/deadletters/{id}/redrive":   auth.RoleAdmin,
	"GET /mappings":                                   auth.RoleAdmin,
	"GET /mappings/{name}":                            auth.RoleAdmin,
	"PUT /mappings/{name}":                            auth.RoleAdmin,
	"DELETE /mappings/{name}":                         auth.RoleAdmin,
	"POST /mappings/{name}/test":                      auth.RoleAdmin,
	"GET /keys":                                       auth.RoleAdmin,
	"POST /keys":                                      auth.RoleAdmin,
	"GET /keys/{id}":                                  auth.RoleAdmin,
	"DELETE /keys/{id}":                               auth.RoleAdmin,

	"GET /detectors":                  auth.RoleReader,
	"GET /detectors/{name}":           auth.RoleReader,
	"PUT /detectors/{name}":           auth.RoleOwner,
	"DELETE /detectors/{name}":        auth.RoleOwner,
	"POST /detectors/{name}/backtest": auth.RoleReader,
}

// TestOperationRoles checks every operation of the table, with every group configured,
// needs the role wantAccess gives it, and wantAccess names no operation the table lacks.
func TestOperationRoles(t *testing.T) {
	a := &API{cfg: Config{Delivery: &Delivery{}, Jobs: &job.Runner{}, Ingress: &Ingress{}, History: &History{}, Keys: &auth.Keys{}, Detectors: &detector.Service{}}}
	seen := map[string]bool{}
	for _, op := range a.allOperations() {
		key := op.method + " " + op.path
		seen[key] = true
		want, ok := wantAccess[key]
		switch {
		case !ok:
			t.Errorf("%s is not in wantAccess: choose the role it needs", key)
		case op.access != want:
			t.Errorf("%s needs %v, want %v", key, op.access, want)
		}
	}
	for key := range wantAccess {
		if !seen[key] {
			t.Errorf("wantAccess lists %s, which the operation table lacks", key)
		}
	}
}

// TestRolesOnEveryOperation sends every operation of an API with authentication required as
// each of no credential, a reader's, an owner's and an administrator's API key, and checks the
// answer: 401 Unauthorized without a credential, 403 Forbidden with ADT's error body for a
// role below the operation's, and neither for a role that suffices (the operation then runs,
// and answers whatever its made-up ids and empty bodies earn).
func TestRolesOnEveryOperation(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	st, err := sqlite.Open(sqlite.Config{Dir: t.TempDir(), NoSync: true}, logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	svc, err := twins.New(twins.Config{ServiceID: testHost}, st, logger)
	if err != nil {
		t.Fatal(err)
	}
	idx, err := graph.New(context.Background(), graph.Config{}, st, svc.Models, logger)
	if err != nil {
		t.Fatal(err)
	}
	routes, err := eventroute.New(context.Background(), eventroute.Config{}, st)
	if err != nil {
		t.Fatal(err)
	}
	endpoints, err := endpoint.New(endpoint.Config{}, map[string]endpoint.Kind{}, st, routes, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	jobs, err := job.New(job.Config{Dir: t.TempDir(), SpoolDir: t.TempDir(), ErrorCode: ErrorCode}, st, svc, job.IndexGraph(idx), logger)
	if err != nil {
		t.Fatal(err)
	}
	detectors, err := detector.New(detector.Config{}, st, idx, nil, nil, logger)
	if err != nil {
		t.Fatal(err)
	}
	keys := auth.NewKeys(st, nil)
	authn, err := auth.New(auth.Config{Required: true, WriteError: WriteError}, keys, logger)
	if err != nil {
		t.Fatal(err)
	}
	a, err := New(Config{
		Index:     idx,
		Delivery:  &Delivery{Routes: routes, Endpoints: endpoints},
		Jobs:      jobs,
		Ingress:   &Ingress{Sources: runSources(t, st, svc, logger)},
		Auth:      authn,
		Keys:      keys,
		Detectors: detectors,
	}, svc, logger)
	if err != nil {
		t.Fatal(err)
	}
	h := Guard(GuardConfig{}, authn.Middleware(a))

	creds := map[auth.Role]string{}
	for _, role := range []auth.Role{auth.RoleReader, auth.RoleOwner, auth.RoleAdmin} {
		text, _, err := keys.Create(context.Background(), role.String()+"-key", role, time.Time{})
		if err != nil {
			t.Fatal(err)
		}
		creds[role] = text
	}

	for _, op := range a.allOperations() {
		path := op.path
		for _, p := range []string{"{id}", "{component}", "{rel}", "{name}"} {
			path = strings.ReplaceAll(path, p, "x")
		}
		for _, role := range []auth.Role{auth.RoleNone, auth.RoleReader, auth.RoleOwner, auth.RoleAdmin} {
			body, media := "", ""
			switch op.method {
			case http.MethodPatch:
				body, media = "[]", "application/json-patch+json"
			case http.MethodPost, http.MethodPut:
				body, media = "{}", "application/json"
			}
			r := httptest.NewRequest(op.method, path+"?api-version=2023-10-31", strings.NewReader(body))
			if media != "" {
				r.Header.Set("Content-Type", media)
			}
			if role != auth.RoleNone {
				r.Header.Set("Authorization", "Bearer "+creds[role])
			}
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			var got struct {
				Error struct{ Code, Message string } `json:"error"`
			}
			_ = json.Unmarshal(w.Body.Bytes(), &got)
			name := op.method + " " + op.path + " as " + role.String()
			switch {
			case role == auth.RoleNone:
				if w.Code != http.StatusUnauthorized || got.Error.Code != "Unauthorized" || w.Header().Get("WWW-Authenticate") == "" {
					t.Errorf("%s: %d %s, want 401 Unauthorized with a challenge", name, w.Code, w.Body)
				}
			case !role.Allows(op.access):
				want := "needs the " + op.access.String() + " role"
				if w.Code != http.StatusForbidden || got.Error.Code != "Forbidden" || w.Header().Get("x-ms-error-code") != "Forbidden" ||
					!strings.Contains(got.Error.Message, want) {
					t.Errorf("%s: %d %s, want 403 Forbidden saying it %s", name, w.Code, w.Body, want)
				}
			default:
				if w.Code == http.StatusUnauthorized || w.Code == http.StatusForbidden {
					t.Errorf("%s: %d %s, want the operation to run", name, w.Code, w.Body)
				}
			}
		}
	}
}
