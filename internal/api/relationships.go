package api

import (
	"encoding/json"
	"net/http"
	"net/url"
)

// getRelationship serves GET /digitaltwins/{id}/relationships/{rel} (R1): the relationship
// and its ETag.
func (a *API) getRelationship(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	rel, err := a.twins.Relationship(r.Context(), r.PathValue("id"), r.PathValue("rel"))
	if err != nil {
		return err
	}
	w.Header().Set("ETag", rel.ETag)
	writeRaw(w, http.StatusOK, rel.Doc)
	return nil
}

// putRelationship serves PUT /digitaltwins/{id}/relationships/{rel} (R2): 200 with the stored
// relationship and its ETag.
func (a *API) putRelationship(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	body, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	rel, err := a.twins.PutRelationship(r.Context(), r.PathValue("id"), r.PathValue("rel"), body, r.Header.Get("If-None-Match"), trace(r))
	if err != nil {
		return err
	}
	w.Header().Set("ETag", rel.ETag)
	writeRaw(w, http.StatusOK, rel.Doc)
	return nil
}

// patchRelationship serves PATCH /digitaltwins/{id}/relationships/{rel} (R3): 204 with the
// new ETag.
func (a *API) patchRelationship(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	patch, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	etag, err := a.twins.PatchRelationship(r.Context(), r.PathValue("id"), r.PathValue("rel"), patch, r.Header.Get("If-Match"), trace(r))
	if err != nil {
		return err
	}
	writeNoContent(w, etag)
	return nil
}

// deleteRelationship serves DELETE /digitaltwins/{id}/relationships/{rel} (R4): 204.
func (a *API) deleteRelationship(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	if err := a.twins.DeleteRelationship(r.Context(), r.PathValue("id"), r.PathValue("rel"), r.Header.Get("If-Match"), trace(r)); err != nil {
		return err
	}
	writeNoContent(w, "")
	return nil
}

// listRelationships serves GET /digitaltwins/{id}/relationships (R5), optionally only those
// named by the relationshipName query parameter, RelationshipPageSize to a page.
func (a *API) listRelationships(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	c, err := parseCursor(r)
	if err != nil {
		return err
	}
	limit := a.cfg.RelationshipPageSize
	rels, next, err := a.twins.Relationships(r.Context(), r.PathValue("id"), query(r).Get("relationshipName"), c.After, limit)
	if err != nil {
		return err
	}
	out := page[json.RawMessage]{Value: make([]json.RawMessage, len(rels)), NextLink: nextLink(r, next, limit)}
	for i, rel := range rels {
		out.Value[i] = rel.Doc
	}
	return writeJSON(w, http.StatusOK, out)
}

// incomingJSON is ADT's IncomingRelationship. The link is the relationship's own path,
// /digitaltwins/{source}/relationships/{id}, with both ids percent-encoded.
type incomingJSON struct {
	RelationshipID   string `json:"$relationshipId"`
	SourceID         string `json:"$sourceId"`
	RelationshipName string `json:"$relationshipName"`
	RelationshipLink string `json:"$relationshipLink"`
}

// listIncomingRelationships serves GET /digitaltwins/{id}/incomingrelationships (R6),
// RelationshipPageSize to a page.
func (a *API) listIncomingRelationships(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	c, err := parseCursor(r)
	if err != nil {
		return err
	}
	limit := a.cfg.RelationshipPageSize
	rels, next, err := a.twins.IncomingRelationships(r.Context(), r.PathValue("id"), c.After, limit)
	if err != nil {
		return err
	}
	out := page[incomingJSON]{Value: make([]incomingJSON, len(rels)), NextLink: nextLink(r, next, limit)}
	for i, rel := range rels {
		out.Value[i] = incomingJSON{
			RelationshipID:   rel.ID,
			SourceID:         rel.SourceID,
			RelationshipName: rel.Name,
			RelationshipLink: "/digitaltwins/" + url.PathEscape(rel.SourceID) + "/relationships/" + url.PathEscape(rel.ID),
		}
	}
	return writeJSON(w, http.StatusOK, out)
}
