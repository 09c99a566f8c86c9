package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/detector"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// DefaultDetectorPageSize is the page size of GET /detectors when max-items-per-page is
// absent, and the largest one it honours.
const DefaultDetectorPageSize = 100

// detectorOperations are twinflow's anomaly detector resources, none when Config.Detectors
// is nil. Their roles are those of event routes: reads need auth.RoleReader, changes
// auth.RoleOwner.
//
//	GET    /detectors                      list, paged by max-items-per-page
//	PUT    /detectors/{name}               create (201) or replace (200); 400 InvalidArgument with one detail per problem
//	GET    /detectors/{name}               the definition with createdTime and status
//	DELETE /detectors/{name}               204
//	POST   /detectors/{name}/backtest      {"twinId", "property", "from", "to", "continuationToken"}: scores over data history
func (a *API) detectorOperations() []operation {
	if a.cfg.Detectors == nil {
		return nil
	}
	return []operation{
		{http.MethodGet, "/detectors", auth.RoleReader, a.listDetectors},
		{http.MethodGet, "/detectors/{name}", auth.RoleReader, a.getDetector},
		{http.MethodPut, "/detectors/{name}", auth.RoleOwner, a.putDetector},
		{http.MethodDelete, "/detectors/{name}", auth.RoleOwner, a.deleteDetector},
		{http.MethodPost, "/detectors/{name}/backtest", auth.RoleReader, a.backtestDetector},
	}
}

// detectorStatusJSON is a detector's status.
type detectorStatusJSON struct {
	State     string `json:"state"`
	Twins     int    `json:"twins"`
	Points    uint64 `json:"points"`
	Anomalies uint64 `json:"anomalies"`
	// RebuiltSeries and Rebuilt count the series whose models were rebuilt from data
	// history and the points replayed to rebuild them.
	RebuiltSeries uint64  `json:"rebuiltSeries"`
	Rebuilt       uint64  `json:"rebuilt"`
	LagRecords    int64   `json:"lagRecords"`
	LagSeconds    float64 `json:"lagSeconds"`
	LastError     string  `json:"lastError,omitempty"`
}

// detectorJSON is a detector as the API shows it.
type detectorJSON struct {
	Name        string             `json:"name"`
	Twins       string             `json:"twins"`
	Properties  []string           `json:"properties"`
	Method      string             `json:"method"`
	Sensitivity float64            `json:"sensitivity"`
	WarmUp      int                `json:"warmUp"`
	Peers       bool               `json:"peers"`
	CreatedTime string             `json:"createdTime"`
	Status      detectorStatusJSON `json:"status"`
}

func toDetectorJSON(d detector.Detector) detectorJSON {
	st := d.Status
	return detectorJSON{
		Name: d.Name, Twins: d.Definition.Twins, Properties: d.Definition.Properties, Method: string(d.Definition.Method),
		Sensitivity: d.Definition.Sensitivity, WarmUp: d.Definition.WarmUp, Peers: d.Definition.Peers,
		CreatedTime: d.Created.UTC().Format(time.RFC3339Nano),
		Status: detectorStatusJSON{
			State: st.State, Twins: st.Twins, Points: st.Points, Anomalies: st.Anomalies,
			RebuiltSeries: st.RebuiltSeries, Rebuilt: st.Rebuilt,
			LagRecords: st.LagRecords, LagSeconds: st.LagSeconds, LastError: st.LastError,
		},
	}
}

// listDetectors serves GET /detectors, paged by max-items-per-page.
func (a *API) listDetectors(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	c, err := parseCursor(r)
	if err != nil {
		return err
	}
	limit := min(c.Limit, DefaultDetectorPageSize)
	if limit == 0 {
		if limit, err = pageSize(r, DefaultDetectorPageSize, DefaultDetectorPageSize); err != nil {
			return err
		}
	}
	// One more than the page tells whether another page follows.
	ds, err := a.cfg.Detectors.List(r.Context(), c.After, limit+1)
	if err != nil {
		return err
	}
	next := ""
	if len(ds) > limit {
		ds = ds[:limit]
		next = ds[limit-1].Name
	}
	out := page[detectorJSON]{Value: make([]detectorJSON, len(ds)), NextLink: nextLink(r, next, limit)}
	for i, d := range ds {
		out.Value[i] = toDetectorJSON(d)
	}
	return writeJSON(w, http.StatusOK, out)
}

// getDetector serves GET /detectors/{name}.
func (a *API) getDetector(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	d, err := a.cfg.Detectors.Get(r.Context(), name)
	if err != nil {
		return detectorError(name, err)
	}
	return writeJSON(w, http.StatusOK, toDetectorJSON(d))
}

// putDetector serves PUT /detectors/{name}: 201 when created, 200 when replaced, with the
// detector as GET shows it.
func (a *API) putDetector(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	body, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	created, err := a.cfg.Detectors.Put(r.Context(), name, body)
	if err != nil {
		return detectorError(name, err)
	}
	d, err := a.cfg.Detectors.Get(r.Context(), name)
	if err != nil {
		return detectorError(name, err)
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return writeJSON(w, status, toDetectorJSON(d))
}

// deleteDetector serves DELETE /detectors/{name}.
func (a *API) deleteDetector(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	if err := a.cfg.Detectors.Delete(r.Context(), name); err != nil {
		return detectorError(name, err)
	}
	writeNoContent(w, "")
	return nil
}

// scoredJSON is one point of a backtest.
type scoredJSON struct {
	Time    string  `json:"time"`
	Value   float64 `json:"value"`
	Score   float64 `json:"score"`
	Anomaly bool    `json:"anomaly"`
	Kind    string  `json:"kind,omitempty"`
}

// backtestDetector serves POST /detectors/{name}/backtest: one page of the scores of a
// series over data history, paged by max-items-per-page and by the continuationToken sent
// back in the next request's body.
func (a *API) backtestDetector(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	body, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var in struct {
		TwinID            string `json:"twinId"`
		Property          string `json:"property"`
		From              string `json:"from"`
		To                string `json:"to"`
		ContinuationToken string `json:"continuationToken"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return twin.InvalidArgument("The backtest must be a JSON object with the strings twinId, property, and optionally from, to (RFC 3339) and continuationToken.")
	}
	q := detector.BacktestQuery{TwinID: in.TwinID, Property: in.Property, Token: in.ContinuationToken}
	for _, b := range []struct {
		name, text string
		t          *time.Time
	}{{"from", in.From, &q.From}, {"to", in.To, &q.To}} {
		if b.text == "" {
			continue
		}
		if *b.t, err = time.Parse(time.RFC3339Nano, b.text); err != nil {
			return twin.InvalidArgument("The backtest's " + b.name + " " + b.text + " is not an RFC 3339 time.")
		}
	}
	if q.Max, err = pageSize(r, detector.DefaultBacktestPage, 10*detector.DefaultBacktestPage); err != nil {
		return err
	}
	p, err := a.cfg.Detectors.Backtest(r.Context(), name, q)
	if err != nil {
		return detectorError(name, err)
	}
	out := struct {
		Value             []scoredJSON `json:"value"`
		ContinuationToken *string      `json:"continuationToken"`
	}{Value: make([]scoredJSON, len(p.Points))}
	for i, s := range p.Points {
		out.Value[i] = scoredJSON{Time: s.Time.Format(time.RFC3339Nano), Value: s.Value, Score: s.Score, Anomaly: s.Anomaly, Kind: s.Kind.String()}
	}
	if p.Token != "" {
		out.ContinuationToken = &p.Token
	}
	return writeJSON(w, http.StatusOK, out)
}

// detectorError translates the detector service's errors about detector name.
func detectorError(name string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &twin.Error{Kind: twin.KindDetectorNotFound, Message: "There is no detector named " + name + "."}
	case errors.Is(err, detector.ErrInvalid):
		return detailed("The detector definition is invalid.", err, detector.ErrInvalid)
	case errors.Is(err, detector.ErrNameInvalid):
		return twin.InvalidArgument("The detector name " + name + " is invalid: use 1 to 64 letters, digits, '-' or '_'.")
	case errors.Is(err, detector.ErrBacktestInvalid):
		return twin.InvalidArgument("The backtest is invalid: " + unwrapMessage(err, detector.ErrBacktestInvalid) + ".")
	case errors.Is(err, detector.ErrNoHistory):
		return twin.OperationNotAllowed("A backtest reads data history, which is off on this server.")
	}
	return err
}
