package api

import (
	"net/http"
	"time"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/event/cloudevents"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
	"github.com/twinflow/twinflow/internal/twins"
)

// getTwin serves GET /digitaltwins/{id} (T1): the twin and its ETag.
func (a *API) getTwin(w http.ResponseWriter, r *http.Request, ver apiVersion) error {
	t, err := a.twins.Twin(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeTwin(w, t, ver)
}

// writeTwin answers 200 with t, shaped for ver, and its ETag.
func writeTwin(w http.ResponseWriter, t store.Twin, ver apiVersion) error {
	doc, err := twinDoc(t.Doc, ver)
	if err != nil {
		return err
	}
	w.Header().Set("ETag", t.ETag)
	writeRaw(w, http.StatusOK, doc)
	return nil
}

// putTwin serves PUT /digitaltwins/{id} (T2): 200 with the stored twin and its ETag, whether
// it was created or replaced.
func (a *API) putTwin(w http.ResponseWriter, r *http.Request, ver apiVersion) error {
	body, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	t, err := a.twins.PutTwin(r.Context(), r.PathValue("id"), body, r.Header.Get("If-None-Match"), trace(r))
	if err != nil {
		return err
	}
	return writeTwin(w, t, ver)
}

// patchTwin serves PATCH /digitaltwins/{id} (T3): 204 with the new ETag.
func (a *API) patchTwin(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	patch, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	etag, err := a.twins.PatchTwin(r.Context(), r.PathValue("id"), patch, r.Header.Get("If-Match"), trace(r))
	if err != nil {
		return err
	}
	writeNoContent(w, etag)
	return nil
}

// deleteTwin serves DELETE /digitaltwins/{id} (T4): 204.
func (a *API) deleteTwin(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	if err := a.twins.DeleteTwin(r.Context(), r.PathValue("id"), r.Header.Get("If-Match"), trace(r)); err != nil {
		return err
	}
	writeNoContent(w, "")
	return nil
}

// getComponent serves GET /digitaltwins/{id}/components/{component} (C1): the component and
// its twin's ETag.
func (a *API) getComponent(w http.ResponseWriter, r *http.Request, ver apiVersion) error {
	doc, etag, err := a.twins.Component(r.Context(), r.PathValue("id"), r.PathValue("component"))
	if err != nil {
		return err
	}
	if doc, err = componentDoc(doc, ver); err != nil {
		return err
	}
	w.Header().Set("ETag", etag)
	writeRaw(w, http.StatusOK, doc)
	return nil
}

// patchComponent serves PATCH /digitaltwins/{id}/components/{component} (C2): 204 with the
// twin's new ETag.
func (a *API) patchComponent(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	patch, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	etag, err := a.twins.PatchComponent(r.Context(), r.PathValue("id"), r.PathValue("component"), patch, r.Header.Get("If-Match"), trace(r))
	if err != nil {
		return err
	}
	writeNoContent(w, etag)
	return nil
}

// sendTelemetry serves POST /digitaltwins/{id}/telemetry (E1): 204.
func (a *API) sendTelemetry(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	return a.telemetry(w, r, "")
}

// sendComponentTelemetry serves POST /digitaltwins/{id}/components/{component}/telemetry
// (E2): 204.
func (a *API) sendComponentTelemetry(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	return a.telemetry(w, r, r.PathValue("component"))
}

// telemetry sends the request's telemetry from the twin, or from its component when component
// is not empty. The Message-Id header is required; Telemetry-Source-Time, when present, must
// be an RFC 3339 time. The hop count of a request from one of twinflow's own endpoints comes
// in the Twinflow-Hops header, or the ce-twinflowhops attribute of a binary-mode CloudEvent.
// A message the twin sent before (see twins.Service.SendTelemetry) is answered 204 too, and
// not routed again.
func (a *API) telemetry(w http.ResponseWriter, r *http.Request, component string) error {
	msgID := r.Header.Get("Message-Id")
	if msgID == "" {
		return twin.InvalidArgument("The Message-Id header is required. Please provide a message id that is unique for this twin.")
	}
	sourceTime := r.Header.Get("Telemetry-Source-Time")
	if sourceTime != "" {
		if _, err := time.Parse(time.RFC3339Nano, sourceTime); err != nil {
			return twin.InvalidArgument("The Telemetry-Source-Time header must be an RFC 3339 timestamp, got '" + sourceTime + "'.")
		}
	}
	body, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	if !isObject(body) {
		return twin.InvalidArgument("The telemetry payload must be a JSON object.")
	}
	m := twins.Telemetry{
		TwinID: r.PathValue("id"), Component: component, MessageID: msgID, SourceTime: sourceTime, Body: body,
		Hops: cloudevents.Hops(map[string]string{
			event.HopsHeader: r.Header.Get(event.HopsHeader), "ce-" + event.HopsAttribute: r.Header.Get("ce-" + event.HopsAttribute),
		}),
	}
	// A duplicate is acknowledged as the first was, as ADT does.
	if _, err := a.twins.SendTelemetry(r.Context(), m, trace(r)); err != nil {
		return err
	}
	writeNoContent(w, "")
	return nil
}
