package api

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/job"
	"github.com/twinflow/twinflow/internal/twin"
)

// DefaultJobPageSize is the page size of the job lists when max-items-per-page is absent, and
// the largest one they honour.
const DefaultJobPageSize = 100

// jobOperations are ADT's jobs operations (J1–J5, D1–D3), none when Config.Jobs is nil.
//
// Where ADT leaves a choice open, twinflow decides as follows: a job that does not exist is
// 404 ImportJobNotFound (or DeleteJobNotFound) for every operation on it, cancel and delete
// included; a job that has not finished cannot be deleted (400 ValidationFailed: cancel it
// first); cancelling a finished job is 400 ValidationFailed. Jobs carry a "progress" object
// of twinflow's own beside ADT's fields.
func (a *API) jobOperations() []operation {
	if a.cfg.Jobs == nil {
		return nil
	}
	return []operation{
		{http.MethodGet, "/jobs/imports", auth.RoleReader, a.listImportJobs},
		{http.MethodPut, "/jobs/imports/{id}", auth.RoleOwner, a.putImportJob},
		{http.MethodGet, "/jobs/imports/{id}", auth.RoleReader, a.getImportJob},
		{http.MethodDelete, "/jobs/imports/{id}", auth.RoleOwner, a.deleteImportJob},
		{http.MethodPost, "/jobs/imports/{id}/cancel", auth.RoleOwner, a.cancelImportJob},
		{http.MethodPost, "/jobs/deletions", auth.RoleOwner, a.postDeleteJob},
		{http.MethodGet, "/jobs/deletions", auth.RoleReader, a.listDeleteJobs},
		{http.MethodGet, "/jobs/deletions/{id}", auth.RoleReader, a.getDeleteJob},
		{http.MethodPut, jobFilePath, auth.RoleOwner, a.putJobFile},
		{http.MethodGet, jobFilePath, auth.RoleOwner, a.getJobFile},
	}
}

// jobTimeLayout is the time format of ADT's job examples: seven fractional digits and the
// offset, which is always +00:00.
const jobTimeLayout = "2006-01-02T15:04:05.0000000-07:00"

// jobTime formats t as a job time, nil for the zero time.
func jobTime(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	s := t.UTC().Format(jobTimeLayout)
	return &s
}

// jobProgressJSON is twinflow's progress of a job.
type jobProgressJSON struct {
	Section       string `json:"section,omitempty"`
	Models        int    `json:"models"`
	Twins         int    `json:"twins"`
	Relationships int    `json:"relationships"`
	FailedLines   int    `json:"failedLines,omitempty"`
}

// importJobJSON is ADT's ImportJob, in the field order of ADT's examples.
type importJobJSON struct {
	ID                 string          `json:"id"`
	InputBlobURI       string          `json:"inputBlobUri"`
	OutputBlobURI      string          `json:"outputBlobUri"`
	CreatedDateTime    *string         `json:"createdDateTime"`
	LastActionDateTime *string         `json:"lastActionDateTime,omitempty"`
	FinishedDateTime   *string         `json:"finishedDateTime,omitempty"`
	PurgeDateTime      *string         `json:"purgeDateTime,omitempty"`
	Status             job.Status      `json:"status"`
	Error              *errorJSON      `json:"error,omitempty"`
	Progress           jobProgressJSON `json:"progress"`
}

// deleteJobJSON is ADT's DeleteJob, in the field order of ADT's example.
type deleteJobJSON struct {
	ID               string          `json:"id"`
	CreatedDateTime  *string         `json:"createdDateTime"`
	FinishedDateTime *string         `json:"finishedDateTime,omitempty"`
	PurgeDateTime    *string         `json:"purgeDateTime,omitempty"`
	Status           job.Status      `json:"status"`
	Error            *errorJSON      `json:"error,omitempty"`
	Progress         jobProgressJSON `json:"progress"`
}

// jobErrorJSON renders why a job failed, nil when it did not.
func jobErrorJSON(j job.Job) *errorJSON {
	if j.Error == nil {
		return nil
	}
	e := toErrorJSON(*j.Error.TwinError())
	return &e
}

func importJob(j job.Job) importJobJSON {
	return importJobJSON{
		ID: j.ID, InputBlobURI: j.Input, OutputBlobURI: j.Output,
		CreatedDateTime: jobTime(j.Created), LastActionDateTime: jobTime(j.LastAction),
		FinishedDateTime: jobTime(j.Finished), PurgeDateTime: jobTime(j.Purge),
		Status: j.Status, Error: jobErrorJSON(j), Progress: jobProgressJSON(j.Progress),
	}
}

func deleteJob(j job.Job) deleteJobJSON {
	return deleteJobJSON{
		ID: j.ID, CreatedDateTime: jobTime(j.Created), FinishedDateTime: jobTime(j.Finished),
		PurgeDateTime: jobTime(j.Purge), Status: j.Status, Error: jobErrorJSON(j), Progress: jobProgressJSON(j.Progress),
	}
}

// listJobs serves a job list (J1, D2), paged by max-items-per-page.
func listJobs[T any](a *API, w http.ResponseWriter, r *http.Request, kind job.Kind, render func(job.Job) T) error {
	c, err := parseCursor(r)
	if err != nil {
		return err
	}
	limit := min(c.Limit, DefaultJobPageSize)
	if limit == 0 {
		if limit, err = pageSize(r, DefaultJobPageSize, DefaultJobPageSize); err != nil {
			return err
		}
	}
	jobs, next, err := a.cfg.Jobs.List(r.Context(), kind, c.After, limit)
	if err != nil {
		return err
	}
	out := page[T]{Value: make([]T, len(jobs)), NextLink: nextLink(r, next, limit)}
	for i, j := range jobs {
		out.Value[i] = render(j)
	}
	return writeJSON(w, http.StatusOK, out)
}

// listImportJobs serves GET /jobs/imports (J1).
func (a *API) listImportJobs(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	return listJobs(a, w, r, job.KindImport, importJob)
}

// putImportJob serves PUT /jobs/imports/{id} (J2): 201 with the job, not started yet. The
// body's inputBlobUri and outputBlobUri are required; its read-only fields are ignored.
func (a *API) putImportJob(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	body, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var in struct {
		InputBlobURI  *string `json:"inputBlobUri"`
		OutputBlobURI *string `json:"outputBlobUri"`
	}
	if err := json.Unmarshal(body, &in); err != nil {
		return twin.ValidationFailed("The import job must be a JSON object with the strings inputBlobUri and outputBlobUri.")
	}
	if in.InputBlobURI == nil || in.OutputBlobURI == nil {
		return twin.ValidationFailed("The import job must have both inputBlobUri and outputBlobUri.")
	}
	j, err := a.cfg.Jobs.CreateImport(r.Context(), r.PathValue("id"), *in.InputBlobURI, *in.OutputBlobURI, trace(r).Parent)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, importJob(j))
}

// getImportJob serves GET /jobs/imports/{id} (J3).
func (a *API) getImportJob(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	j, err := a.cfg.Jobs.Get(r.Context(), job.KindImport, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, importJob(j))
}

// deleteImportJob serves DELETE /jobs/imports/{id} (J4): 204 once the id is free again.
func (a *API) deleteImportJob(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	if err := a.cfg.Jobs.DeleteImport(r.Context(), r.PathValue("id")); err != nil {
		return err
	}
	writeNoContent(w, "")
	return nil
}

// cancelImportJob serves POST /jobs/imports/{id}/cancel (J5): 200 with the job, cancelling
// until it stopped.
func (a *API) cancelImportJob(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	j, err := a.cfg.Jobs.CancelImport(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, importJob(j))
}

// postDeleteJob serves POST /jobs/deletions (D1): 202 with the job, not started yet, and
// its URL in Operation-Location and its id in Operation-Id. The operation-id header, when
// given, is the job's id; timeoutInMinutes bounds its run.
func (a *API) postDeleteJob(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	id := r.Header.Get("Operation-Id")
	if id == "" {
		id = uuid.NewString()
	}
	var timeout time.Duration
	if v := queryValue(r, "timeoutInMinutes"); v != "" {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 32)
		if err != nil {
			return twin.ValidationFailed("The timeoutInMinutes parameter must be an integer, got '" + v + "'.")
		}
		timeout = time.Duration(n) * time.Minute
	}
	j, err := a.cfg.Jobs.CreateDelete(r.Context(), id, timeout, trace(r).Parent)
	if err != nil {
		return err
	}
	loc := baseURL(r) + "/jobs/deletions/" + url.PathEscape(id) + "?api-version=" + url.QueryEscape(queryValue(r, "api-version"))
	w.Header().Set("Operation-Location", loc)
	w.Header().Set("Operation-Id", id)
	return writeJSON(w, http.StatusAccepted, deleteJob(j))
}

// listDeleteJobs serves GET /jobs/deletions (D2).
func (a *API) listDeleteJobs(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	return listJobs(a, w, r, job.KindDelete, deleteJob)
}

// getDeleteJob serves GET /jobs/deletions/{id} (D3).
func (a *API) getDeleteJob(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	j, err := a.cfg.Jobs.Get(r.Context(), job.KindDelete, r.PathValue("id"))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, deleteJob(j))
}
