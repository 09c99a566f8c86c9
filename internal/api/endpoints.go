package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/endpoint"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/eventroute"
	"github.com/twinflow/twinflow/internal/loopguard"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// Delivery is what the event route and endpoint resources are served from. With a nil
// Config.Delivery those paths are not served.
//
// Beside ADT's event routes (ER1–ER4), twinflow serves its own endpoint resources in the same
// style (api-version required, ADT error bodies):
//
//	GET    /endpoints                                    list (secrets never shown)
//	PUT    /endpoints/{name}                             create (201) or replace (200); the body is
//	                                                     twinflow's definition or ADT's (endpoint.Parse)
//	GET    /endpoints/{name}                             the endpoint with its status
//	DELETE /endpoints/{name}                             204; 409 EndpointInUse while routes use it
//	POST   /endpoints/{name}/replay                      {"fromSequence": n} or {"fromTime": RFC 3339}: 202
//	GET    /endpoints/{name}/deadletters                 paged by max-items-per-page
//	GET    /endpoints/{name}/deadletters/{id}
//	DELETE /endpoints/{name}/deadletters/{id}            204
//	POST   /endpoints/{name}/deadletters/{id}/redrive    202; the dead letter goes once delivered
type Delivery struct {
	Routes    *eventroute.Table
	Endpoints *endpoint.Registry
}

// DefaultDeadLetterPageSize is the page size of the dead letter list when max-items-per-page
// is absent, and the largest one it honours.
const DefaultDeadLetterPageSize = 100

// deliveryOperations are the event route and endpoint operations, none when Config.Delivery is nil.
func (a *API) deliveryOperations() []operation {
	if a.cfg.Delivery == nil {
		return nil
	}
	return append(a.eventRouteOperations(),
		operation{http.MethodGet, "/endpoints", auth.RoleAdmin, a.listEndpoints},
		operation{http.MethodGet, "/endpoints/{name}", auth.RoleAdmin, a.getEndpoint},
		operation{http.MethodPut, "/endpoints/{name}", auth.RoleAdmin, a.putEndpoint},
		operation{http.MethodDelete, "/endpoints/{name}", auth.RoleAdmin, a.deleteEndpoint},
		operation{http.MethodPost, "/endpoints/{name}/replay", auth.RoleAdmin, a.replayEndpoint},
		operation{http.MethodGet, "/endpoints/{name}/deadletters", auth.RoleAdmin, a.listDeadLetters},
		operation{http.MethodGet, "/endpoints/{name}/deadletters/{id}", auth.RoleAdmin, a.getDeadLetter},
		operation{http.MethodDelete, "/endpoints/{name}/deadletters/{id}", auth.RoleAdmin, a.deleteDeadLetter},
		operation{http.MethodPost, "/endpoints/{name}/deadletters/{id}/redrive", auth.RoleAdmin, a.redriveDeadLetter},
	)
}

// endpointStatusJSON is an endpoint's delivery status.
type endpointStatusJSON struct {
	State         string  `json:"state"`
	Cursor        uint64  `json:"cursor"`
	LagEvents     uint64  `json:"lagEvents"`
	LagSeconds    float64 `json:"lagSeconds"`
	Attempts      int     `json:"attempts"`
	DeadLetters   int     `json:"deadLetters"`
	LastError     string  `json:"lastError,omitempty"`
	LastErrorTime string  `json:"lastErrorTime,omitempty"`
	// Owner is the service id of the node that delivers to the endpoint, absent while none
	// does.
	Owner string `json:"owner,omitempty"`
}

// endpointJSON renders an endpoint: its name, creation time and status beside its redacted
// definition.
func (a *API) endpointJSON(r *http.Request, ep endpoint.Endpoint) (map[string]any, error) {
	out := ep.Definition.Redacted()
	out["name"] = ep.Name
	out["createdTime"] = ep.Created.UTC().Format(time.RFC3339Nano)
	st, err := a.cfg.Delivery.Endpoints.Status(r.Context(), ep.Name)
	if err != nil {
		return nil, err
	}
	s := endpointStatusJSON{
		State: st.State, Cursor: st.Cursor, LagEvents: st.LagEvents, LagSeconds: st.LagSeconds,
		Attempts: st.Attempts, DeadLetters: st.DeadLetters, LastError: st.LastError, Owner: st.Owner,
	}
	if !st.LastErrorTime.IsZero() {
		s.LastErrorTime = st.LastErrorTime.UTC().Format(time.RFC3339Nano)
	}
	out["status"] = s
	return out, nil
}

// listEndpoints serves GET /endpoints: every endpoint, on one page.
func (a *API) listEndpoints(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	eps, err := a.cfg.Delivery.Endpoints.List(r.Context())
	if err != nil {
		return err
	}
	out := page[map[string]any]{Value: make([]map[string]any, len(eps))}
	for i, ep := range eps {
		if out.Value[i], err = a.endpointJSON(r, ep); err != nil {
			return err
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// getEndpoint serves GET /endpoints/{name}.
func (a *API) getEndpoint(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	ep, err := a.cfg.Delivery.Endpoints.Get(r.Context(), name)
	if err != nil {
		return endpointError(name, err)
	}
	out, err := a.endpointJSON(r, ep)
	if err != nil {
		return endpointError(name, err)
	}
	return writeJSON(w, http.StatusOK, out)
}

// putEndpoint serves PUT /endpoints/{name}: 201 when created, 200 when replaced, with the
// endpoint as GET shows it.
func (a *API) putEndpoint(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	body, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	created, err := a.cfg.Delivery.Endpoints.Put(r.Context(), name, body)
	if err != nil {
		return endpointError(name, err)
	}
	ep, err := a.cfg.Delivery.Endpoints.Get(r.Context(), name)
	if err != nil {
		return endpointError(name, err)
	}
	out, err := a.endpointJSON(r, ep)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return writeJSON(w, status, out)
}

// deleteEndpoint serves DELETE /endpoints/{name}.
func (a *API) deleteEndpoint(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	if err := a.cfg.Delivery.Endpoints.Delete(r.Context(), name); err != nil {
		return endpointError(name, err)
	}
	writeNoContent(w, "")
	return nil
}

// replayEndpoint serves POST /endpoints/{name}/replay: the body names where to start,
// {"fromSequence": n} (a change log sequence number) or {"fromTime": "<RFC 3339>"}. It
// answers 202 with {"fromSequence": n}, the first record delivered again.
func (a *API) replayEndpoint(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	body, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var in struct {
		FromSequence *uint64 `json:"fromSequence"`
		FromTime     *string `json:"fromTime"`
	}
	if err := json.Unmarshal(body, &in); err != nil || (in.FromSequence == nil) == (in.FromTime == nil) {
		return twin.InvalidArgument("A replay needs exactly one of fromSequence (a non-negative integer) and fromTime (an RFC 3339 time).")
	}
	from := uint64(0)
	if in.FromSequence != nil {
		from = max(*in.FromSequence, 1)
		err = a.cfg.Delivery.Endpoints.Replay(r.Context(), name, from)
	} else {
		t, perr := time.Parse(time.RFC3339Nano, *in.FromTime)
		if perr != nil {
			return twin.InvalidArgument("fromTime " + strconv.Quote(*in.FromTime) + " is not an RFC 3339 time.")
		}
		from, err = a.cfg.Delivery.Endpoints.ReplayFrom(r.Context(), name, t)
	}
	if err != nil {
		return endpointError(name, err)
	}
	return writeJSON(w, http.StatusAccepted, map[string]uint64{"fromSequence": from})
}

// deadLetterJSON is a dead letter: the event in structured CloudEvents JSON with why and
// when it was given up on.
type deadLetterJSON struct {
	ID       string      `json:"id"`
	Sequence uint64      `json:"sequence"`
	Reason   string      `json:"reason"`
	Attempts int         `json:"attempts"`
	Time     string      `json:"time"`
	Event    event.Event `json:"event"`
}

func toDeadLetterJSON(d store.DeadLetter) deadLetterJSON {
	return deadLetterJSON{
		ID: strconv.FormatUint(d.ID, 10), Sequence: d.Seq, Reason: d.Reason, Attempts: d.Attempts,
		Time: d.Time.UTC().Format(time.RFC3339Nano), Event: d.Event,
	}
}

// listDeadLetters serves GET /endpoints/{name}/deadletters, oldest first.
func (a *API) listDeadLetters(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	c, err := parseCursor(r)
	if err != nil {
		return err
	}
	limit := min(c.Limit, DefaultDeadLetterPageSize)
	if limit == 0 {
		if limit, err = pageSize(r, DefaultDeadLetterPageSize, DefaultDeadLetterPageSize); err != nil {
			return err
		}
	}
	var after uint64
	if c.After != "" {
		if after, err = strconv.ParseUint(c.After, 10, 64); err != nil {
			return twin.InvalidArgument("The continuation token is not valid. Use the nextLink of the previous page as it was returned.")
		}
	}
	dls, err := a.cfg.Delivery.Endpoints.DeadLetters(r.Context(), name, after, limit+1)
	if err != nil {
		return endpointError(name, err)
	}
	next := ""
	if len(dls) > limit {
		dls = dls[:limit]
		next = strconv.FormatUint(dls[limit-1].ID, 10)
	}
	out := page[deadLetterJSON]{Value: make([]deadLetterJSON, len(dls)), NextLink: nextLink(r, next, limit)}
	for i, d := range dls {
		out.Value[i] = toDeadLetterJSON(d)
	}
	return writeJSON(w, http.StatusOK, out)
}

// deadLetterID returns the request's dead letter id; one that is not a number names no dead
// letter.
func deadLetterID(r *http.Request) (uint64, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, deadLetterNotFound(r)
	}
	return id, nil
}

func deadLetterNotFound(r *http.Request) *twin.Error {
	return &twin.Error{Kind: twin.KindDeadLetterNotFound,
		Message: "There is no dead letter " + r.PathValue("id") + " of endpoint " + r.PathValue("name") + "."}
}

// getDeadLetter serves GET /endpoints/{name}/deadletters/{id}.
func (a *API) getDeadLetter(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	id, err := deadLetterID(r)
	if err != nil {
		return err
	}
	d, err := a.cfg.Delivery.Endpoints.DeadLetter(r.Context(), r.PathValue("name"), id)
	if errors.Is(err, store.ErrNotFound) {
		return deadLetterNotFound(r)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toDeadLetterJSON(d))
}

// deleteDeadLetter serves DELETE /endpoints/{name}/deadletters/{id}.
func (a *API) deleteDeadLetter(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	id, err := deadLetterID(r)
	if err != nil {
		return err
	}
	err = a.cfg.Delivery.Endpoints.DeleteDeadLetter(r.Context(), r.PathValue("name"), id)
	if errors.Is(err, store.ErrNotFound) {
		return deadLetterNotFound(r)
	}
	if err != nil {
		return err
	}
	writeNoContent(w, "")
	return nil
}

// redriveDeadLetter serves POST /endpoints/{name}/deadletters/{id}/redrive: 202, and the
// endpoint's relay sends the event again between batches.
func (a *API) redriveDeadLetter(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	id, err := deadLetterID(r)
	if err != nil {
		return err
	}
	err = a.cfg.Delivery.Endpoints.Redrive(r.Context(), r.PathValue("name"), id)
	if errors.Is(err, store.ErrNotFound) {
		return deadLetterNotFound(r)
	}
	if errors.Is(err, endpoint.ErrStandby) {
		return endpointError(r.PathValue("name"), err)
	}
	if err != nil {
		return err
	}
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// endpointError translates the endpoint registry's errors.
func endpointError(name string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &twin.Error{Kind: twin.KindEndpointNotFound,
			Message: "There is no endpoint named " + name + "."}
	case errors.Is(err, endpoint.ErrInvalid):
		e := twin.InvalidArgument("The endpoint definition is invalid.")
		for _, line := range strings.Split(unwrapMessage(err, endpoint.ErrInvalid), "\n") {
			e.Details = append(e.Details, twin.Error{Kind: twin.KindInvalidArgument, Message: line})
		}
		return e
	case errors.Is(err, endpoint.ErrNameInvalid):
		return twin.InvalidArgument("The endpoint name " + name + " is invalid: use 1 to 64 letters, digits, '-' or '_'.")
	case errors.Is(err, endpoint.ErrLimitExceeded):
		return twin.LimitExceeded("The maximum number of endpoints has been reached: " +
			unwrapMessage(err, endpoint.ErrLimitExceeded) + ".")
	case errors.Is(err, endpoint.ErrInUse):
		return &twin.Error{Kind: twin.KindEndpointInUse,
			Message: "The endpoint " + name + " is in use: " + unwrapMessage(err, endpoint.ErrInUse) + ". Delete its routes first."}
	case errors.Is(err, endpoint.ErrValidationFailed):
		return &twin.Error{Kind: twin.KindEndpointValidationFailed,
			Message: "The endpoint did not pass validation: " + unwrapMessage(err, endpoint.ErrValidationFailed) + "."}
	case errors.Is(err, loopguard.ErrFeedsSource):
		return feedsSource(err)
	case errors.Is(err, endpoint.ErrStandby):
		return twin.OperationNotAllowed("The endpoint " + name + " is delivered by another node, " +
			unwrapMessage(err, endpoint.ErrStandby) + ": send the request to that node.")
	}
	return err
}

// feedsSource is the error of a route, endpoint or source that loopguard refuses: 400
// OperationNotAllowed, with what would feed what.
func feedsSource(err error) *twin.Error {
	return twin.OperationNotAllowed("An event route would feed a source of this instance: " + unwrapMessage(err, loopguard.ErrFeedsSource) + ".")
}
