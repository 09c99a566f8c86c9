package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"

	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/eventroute"
	"github.com/twinflow/twinflow/internal/loopguard"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// DefaultRoutePageSize is the page size of GET /eventroutes when max-items-per-page is absent,
// and the largest one it honours.
const DefaultRoutePageSize = 100

// eventRouteJSON is ADT's EventRoute.
type eventRouteJSON struct {
	ID           string `json:"id"`
	EndpointName string `json:"endpointName"`
	Filter       string `json:"filter"`
}

// eventRouteOperations are the event route operations (ER1–ER4).
func (a *API) eventRouteOperations() []operation {
	return []operation{
		{http.MethodGet, "/eventroutes", auth.RoleReader, a.listEventRoutes},
		{http.MethodGet, "/eventroutes/{id}", auth.RoleReader, a.getEventRoute},
		{http.MethodPut, "/eventroutes/{id}", auth.RoleOwner, a.putEventRoute},
		{http.MethodDelete, "/eventroutes/{id}", auth.RoleOwner, a.deleteEventRoute},
	}
}

// listEventRoutes serves GET /eventroutes (ER1), paged by max-items-per-page.
func (a *API) listEventRoutes(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	c, err := parseCursor(r)
	if err != nil {
		return err
	}
	limit := min(c.Limit, DefaultRoutePageSize)
	if limit == 0 {
		if limit, err = pageSize(r, DefaultRoutePageSize, DefaultRoutePageSize); err != nil {
			return err
		}
	}
	// One more than the page tells whether another page follows.
	routes, err := a.cfg.Delivery.Routes.List(r.Context(), c.After, limit+1)
	if err != nil {
		return err
	}
	next := ""
	if len(routes) > limit {
		routes = routes[:limit]
		next = routes[limit-1].ID
	}
	out := page[eventRouteJSON]{Value: make([]eventRouteJSON, len(routes)), NextLink: nextLink(r, next, limit)}
	for i, rt := range routes {
		out.Value[i] = eventRouteJSON(rt)
	}
	return writeJSON(w, http.StatusOK, out)
}

// getEventRoute serves GET /eventroutes/{id} (ER2).
func (a *API) getEventRoute(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	id := r.PathValue("id")
	rt, err := a.cfg.Delivery.Routes.Get(r.Context(), id)
	if err != nil {
		return routeError(id, err)
	}
	return writeJSON(w, http.StatusOK, eventRouteJSON(rt))
}

// putEventRoute serves PUT /eventroutes/{id} (ER3): 204 once the route is stored and in
// effect. The body's id, if any, is ignored (it is read-only, as in ADT).
func (a *API) putEventRoute(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	id := r.PathValue("id")
	body, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var in struct {
		EndpointName *string `json:"endpointName"`
		Filter       *string `json:"filter"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return twin.InvalidArgument("The event route must be a JSON object with the strings endpointName and filter.")
	}
	if in.EndpointName == nil || *in.EndpointName == "" {
		return endpointInvalid()
	}
	if in.Filter == nil {
		return &twin.Error{Kind: twin.KindEventRouteFilterInvalid,
			Message: "The event route has no filter. Provide a filter such as 'true' to route every event. See event route documentation (https://aka.ms/ADTv2Routes)."}
	}
	err = a.cfg.Delivery.Routes.Put(r.Context(), store.Route{ID: id, EndpointName: *in.EndpointName, Filter: *in.Filter})
	if err != nil {
		return routeError(id, err)
	}
	writeNoContent(w, "")
	return nil
}

// deleteEventRoute serves DELETE /eventroutes/{id} (ER4).
func (a *API) deleteEventRoute(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	id := r.PathValue("id")
	if err := a.cfg.Delivery.Routes.Delete(r.Context(), id); err != nil {
		return routeError(id, err)
	}
	writeNoContent(w, "")
	return nil
}

func endpointInvalid() *twin.Error {
	return &twin.Error{Kind: twin.KindEventRouteEndpointInvalid,
		Message: "The endpoint provided does not exist or is not active. Check that your endpoint is provisioned correctly. See event route documentation (https://aka.ms/ADTv2Routes)."}
}

// routeError translates the route package's errors to ADT's.
func routeError(id string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &twin.Error{Kind: twin.KindEventRouteNotFound,
			Message: "There is no event route with the ID " + id + ". Check the route id with the EventRoutes_List API."}
	case errors.Is(err, eventroute.ErrEndpointInvalid):
		return endpointInvalid()
	case errors.Is(err, eventroute.ErrFilterInvalid):
		return &twin.Error{Kind: twin.KindEventRouteFilterInvalid,
			Message: "The filter provided is invalid: " + unwrapMessage(err, eventroute.ErrFilterInvalid) + ". See event route documentation (https://aka.ms/ADTv2Routes)."}
	case errors.Is(err, eventroute.ErrIDInvalid):
		return &twin.Error{Kind: twin.KindEventRouteIDInvalid,
			Message: "The event route id " + id + " is invalid: use 1 to 64 letters, digits, '-', '_' or '.'."}
	case errors.Is(err, eventroute.ErrLimitExceeded):
		return twin.LimitExceeded("The maximum number of event routes has been reached: " +
			unwrapMessage(err, eventroute.ErrLimitExceeded) + ". Delete a route before adding another.")
	case errors.Is(err, loopguard.ErrFeedsSource):
		return feedsSource(err)
	}
	return err
}

// unwrapMessage returns err's message from the first occurrence of sentinel's message on,
// without it and the ": " after it: the detail the sentinel was wrapped with.
func unwrapMessage(err, sentinel error) string {
	msg, prefix := err.Error(), sentinel.Error()+": "
	if i := strings.Index(msg, prefix); i >= 0 {
		return msg[i+len(prefix):]
	}
	return msg
}
