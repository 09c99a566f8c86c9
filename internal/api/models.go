package api

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/twinflow/twinflow/internal/twin"
	"github.com/twinflow/twinflow/internal/twins"
)

// uploadTimeLayout is how ADT writes a model's uploadTime: seven fractional digits and a
// numeric offset ("2023-01-09T22:12:23.8116059+00:00").
const uploadTimeLayout = "2006-01-02T15:04:05.0000000-07:00"

// modelJSON is ADT's DigitalTwinsModelData. Empty language maps are sent as {}, as ADT does;
// Model is present only when the request asked for includeModelDefinition.
type modelJSON struct {
	ID             string            `json:"id"`
	DisplayName    map[string]string `json:"displayName"`
	Description    map[string]string `json:"description"`
	UploadTime     string            `json:"uploadTime"`
	Decommissioned bool              `json:"decommissioned"`
	Model          json.RawMessage   `json:"model,omitempty"`
}

func toModelJSON(m twins.ModelData, withDefinition bool) modelJSON {
	out := modelJSON{
		ID:             m.ID,
		DisplayName:    m.DisplayName,
		Description:    m.Description,
		UploadTime:     m.UploadTime.UTC().Format(uploadTimeLayout),
		Decommissioned: m.Decommissioned,
	}
	if out.DisplayName == nil {
		out.DisplayName = map[string]string{}
	}
	if out.Description == nil {
		out.Description = map[string]string{}
	}
	if withDefinition {
		out.Model = m.Definition
	}
	return out
}

// includeDefinition reads the includeModelDefinition query parameter (default false).
func includeDefinition(r *http.Request) (bool, error) {
	raw := query(r).Get("includeModelDefinition")
	if raw == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(raw)
	if err != nil {
		return false, twin.InvalidArgument("The includeModelDefinition parameter must be true or false, got '" + raw + "'.")
	}
	return b, nil
}

// dependenciesFor returns the model ids of the dependenciesFor query parameter. ADT's
// specification repeats the parameter once per id (dependenciesFor=a&dependenciesFor=b), while
// the JavaScript SDK sends one comma-separated value (dependenciesFor=a,b); both are accepted,
// since a DTMI cannot hold a comma.
func dependenciesFor(r *http.Request) []string {
	var ids []string
	for _, v := range query(r)["dependenciesFor"] {
		for id := range strings.SplitSeq(v, ",") {
			if id = strings.TrimSpace(id); id != "" {
				ids = append(ids, id)
			}
		}
	}
	return ids
}

// addModels serves POST /models (M1): 201 with the uploaded models, without definitions.
func (a *API) addModels(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	body, err := readJSON(w, r, a.cfg.MaxModelBodyBytes)
	if err != nil {
		return err
	}
	added, err := a.twins.AddModels(r.Context(), body)
	if err != nil {
		return err
	}
	out := make([]modelJSON, len(added))
	for i, m := range added {
		out[i] = toModelJSON(m, false)
	}
	return writeJSON(w, http.StatusCreated, out)
}

// listModels serves GET /models (M2), paged by max-items-per-page (at most ModelPageSize).
func (a *API) listModels(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	withDef, err := includeDefinition(r)
	if err != nil {
		return err
	}
	c, err := parseCursor(r)
	if err != nil {
		return err
	}
	// A continued listing keeps the page size of its first request; the token is the client's
	// to forge, so its size is held to the same bound as the header's.
	limit := min(c.Limit, a.cfg.ModelPageSize)
	if limit == 0 {
		if limit, err = pageSize(r, a.cfg.ModelPageSize, a.cfg.ModelPageSize); err != nil {
			return err
		}
	}
	models, next, err := a.twins.ListModels(r.Context(), dependenciesFor(r), c.After, limit)
	if err != nil {
		return err
	}
	out := page[modelJSON]{Value: make([]modelJSON, len(models)), NextLink: nextLink(r, next, limit)}
	for i, m := range models {
		out.Value[i] = toModelJSON(m, withDef)
	}
	return writeJSON(w, http.StatusOK, out)
}

// getModel serves GET /models/{id} (M3).
func (a *API) getModel(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	withDef, err := includeDefinition(r)
	if err != nil {
		return err
	}
	m, err := a.twins.Model(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toModelJSON(m, withDef))
}

// patchModel serves PATCH /models/{id} (M4): 204.
func (a *API) patchModel(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	patch, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	if err := a.twins.PatchModel(r.Context(), r.PathValue("id"), patch); err != nil {
		return err
	}
	writeNoContent(w, "")
	return nil
}

// deleteModel serves DELETE /models/{id} (M5): 204.
func (a *API) deleteModel(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	if err := a.twins.DeleteModel(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	writeNoContent(w, "")
	return nil
}
