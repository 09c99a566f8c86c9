package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/ingress/runner"
	"github.com/twinflow/twinflow/internal/loopguard"
	"github.com/twinflow/twinflow/internal/source"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// DefaultMaxPushBodyBytes bounds the body of POST /sources/{name}/messages: a batch of
// messages, each of which the source's own limit bounds (256 KiB by default).
const DefaultMaxPushBodyBytes = 16 << 20

// Ingress is what the source and mapping resources are served from. With a nil
// Config.Ingress those paths are not served.
//
// twinflow's own resources, in the style of the endpoints (api-version required, ADT error
// bodies, secrets never shown):
//
//	GET    /sources                                     list
//	PUT    /sources/{name}                              create (201) or replace (200): {"sourceType": ..., settings}
//	GET    /sources/{name}                              the source with its status ($events: propagation)
//	DELETE /sources/{name}                              204; 409 SourceInUse while mappings read it
//	POST   /sources/{name}/messages                     http sources: push messages, answered once applied
//	GET    /sources/{name}/deadletters                  paged by max-items-per-page
//	GET    /sources/{name}/deadletters/{id}
//	DELETE /sources/{name}/deadletters/{id}             204
//	POST   /sources/{name}/deadletters/{id}/redrive     200 with what became of the message
//	GET    /mappings                                    list
//	PUT    /mappings/{name}                             create (201) or replace (200); 400 when it does not compile
//	GET    /mappings/{name}
//	DELETE /mappings/{name}                             204
//	POST   /mappings/{name}/test                        {"message": {...}}: a dry run, nothing applied
type Ingress struct {
	Sources *source.Registry
}

// ingressOperations are the source and mapping operations, none when Config.Ingress is nil.
func (a *API) ingressOperations() []operation {
	if a.cfg.Ingress == nil {
		return nil
	}
	return []operation{
		{http.MethodGet, "/sources", auth.RoleAdmin, a.listSources},
		{http.MethodGet, "/sources/{name}", auth.RoleAdmin, a.getSource},
		{http.MethodPut, "/sources/{name}", auth.RoleAdmin, a.putSource},
		{http.MethodDelete, "/sources/{name}", auth.RoleAdmin, a.deleteSource},
		{http.MethodPost, pushPath, auth.RoleOwner, a.pushMessages},
		{http.MethodGet, "/sources/{name}/deadletters", auth.RoleAdmin, a.listSourceDeadLetters},
		{http.MethodGet, "/sources/{name}/deadletters/{id}", auth.RoleAdmin, a.getSourceDeadLetter},
		{http.MethodDelete, "/sources/{name}/deadletters/{id}", auth.RoleAdmin, a.deleteSourceDeadLetter},
		{http.MethodPost, "/sources/{name}/deadletters/{id}/redrive", auth.RoleAdmin, a.redriveSourceDeadLetter},
		{http.MethodGet, "/mappings", auth.RoleAdmin, a.listMappings},
		{http.MethodGet, "/mappings/{name}", auth.RoleAdmin, a.getMapping},
		{http.MethodPut, "/mappings/{name}", auth.RoleAdmin, a.putMapping},
		{http.MethodDelete, "/mappings/{name}", auth.RoleAdmin, a.deleteMapping},
		{http.MethodPost, "/mappings/{name}/test", auth.RoleAdmin, a.testMapping},
	}
}

// sourceStatusJSON is a source's status.
type sourceStatusJSON struct {
	State         string `json:"state"`
	Received      uint64 `json:"received"`
	Applied       uint64 `json:"applied"`
	Duplicates    uint64 `json:"duplicates"`
	Failed        uint64 `json:"failed"`
	DeadLettered  uint64 `json:"deadLettered"`
	DeadLetters   int    `json:"deadLetters"`
	Unsettled     int    `json:"unsettled"`
	Lag           *int64 `json:"lag,omitempty"`
	LastError     string `json:"lastError,omitempty"`
	LastErrorTime string `json:"lastErrorTime,omitempty"`
	// Owner is the service id of the node that consumes the source; absent while none does
	// and for an http source, which every node takes pushes for.
	Owner string `json:"owner,omitempty"`
}

// sourceJSON renders a source: its name, creation time and status beside its redacted
// definition.
func (a *API) sourceJSON(r *http.Request, src source.Source) (map[string]any, error) {
	out := src.Definition.Redacted()
	out["name"] = src.Name
	if !src.Created.IsZero() {
		out["createdTime"] = src.Created.UTC().Format(time.RFC3339Nano)
	}
	st, err := a.cfg.Ingress.Sources.Status(r.Context(), src.Name)
	if err != nil {
		return nil, err
	}
	s := sourceStatusJSON{
		State: string(st.State), Received: st.Received, Applied: st.Applied, Duplicates: st.Duplicates,
		Failed: st.Failed, DeadLettered: st.DeadLettered, DeadLetters: st.DeadLetters, Unsettled: st.Unsettled,
		LastError: st.LastError, Owner: st.Owner,
	}
	if st.LagKnown {
		s.Lag = &st.Lag
	}
	if !st.LastErrorTime.IsZero() {
		s.LastErrorTime = st.LastErrorTime.UTC().Format(time.RFC3339Nano)
	}
	out["status"] = s
	return out, nil
}

// listSources serves GET /sources: every source, on one page.
func (a *API) listSources(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	srcs, err := a.cfg.Ingress.Sources.List(r.Context())
	if err != nil {
		return err
	}
	out := page[map[string]any]{Value: make([]map[string]any, len(srcs))}
	for i, src := range srcs {
		if out.Value[i], err = a.sourceJSON(r, src); err != nil {
			return err
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// getSource serves GET /sources/{name}.
func (a *API) getSource(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	src, err := a.cfg.Ingress.Sources.Get(r.Context(), name)
	if err != nil {
		return sourceError(name, err)
	}
	out, err := a.sourceJSON(r, src)
	if err != nil {
		return sourceError(name, err)
	}
	return writeJSON(w, http.StatusOK, out)
}

// putSource serves PUT /sources/{name}: 201 when created, 200 when replaced, with the source
// as GET shows it.
func (a *API) putSource(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	body, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	created, err := a.cfg.Ingress.Sources.Put(r.Context(), name, body)
	if err != nil {
		return sourceError(name, err)
	}
	src, err := a.cfg.Ingress.Sources.Get(r.Context(), name)
	if err != nil {
		return sourceError(name, err)
	}
	out, err := a.sourceJSON(r, src)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return writeJSON(w, status, out)
}

// deleteSource serves DELETE /sources/{name}.
func (a *API) deleteSource(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	if err := a.cfg.Ingress.Sources.Delete(r.Context(), name); err != nil {
		return sourceError(name, err)
	}
	writeNoContent(w, "")
	return nil
}

// outcomeJSON is what became of one message.
type outcomeJSON struct {
	Status     string `json:"status"`
	Changes    *int   `json:"changes,omitempty"`
	Reason     string `json:"reason,omitempty"`
	DeadLetter string `json:"deadLetter,omitempty"`
}

func toOutcomeJSON(o runner.Outcome) outcomeJSON {
	out := outcomeJSON{Status: string(o.Result), Reason: o.Reason}
	switch o.Result {
	case runner.Applied:
		out.Changes = &o.Changes
	case runner.DeadLettered:
		out.DeadLetter = strconv.FormatUint(o.DeadLetter, 10)
	case runner.Failed:
		out.Reason = "The message could not be applied now; send it again."
		if errors.Is(o.Err, runner.ErrNotRunning) {
			out.Reason = "The source stopped before the message was applied; send it again."
		}
	}
	return out
}

// pushMessages serves POST /sources/{name}/messages for http sources: the body is one
// message, a JSON array of messages or NDJSON (see source.ReadMessages). It answers 200 once
// every message is settled, with {"results": [...]}, one per message in order: applied (with
// the number of twin changes), duplicate, deadLettered (with the reason and the dead
// letter's id) or failed (send it again).
func (a *API) pushMessages(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	limit := a.cfg.MaxPushBodyBytes
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return twin.LimitExceeded(fmt.Sprintf("The request body is larger than the limit of %d bytes.", limit))
		}
		return fmt.Errorf("read request body: %w", err)
	}
	outcomes, err := a.cfg.Ingress.Sources.Push(r.Context(), name, body, r.Header)
	if err != nil {
		return sourceError(name, err)
	}
	out := struct {
		Results []outcomeJSON `json:"results"`
	}{Results: make([]outcomeJSON, len(outcomes))}
	for i, o := range outcomes {
		out.Results[i] = toOutcomeJSON(o)
	}
	return writeJSON(w, http.StatusOK, out)
}

// sourceDeadLetterJSON is a source's dead letter: the message with why and when it was given
// up on.
type sourceDeadLetterJSON struct {
	ID       string      `json:"id"`
	Reason   string      `json:"reason"`
	Attempts int         `json:"attempts"`
	Time     string      `json:"time"`
	Message  messageJSON `json:"message"`
}

// messageJSON is a message as the API shows it. Its body is shown as the JSON value it is,
// else as text (bodyText) when it is UTF-8, else in base64 (bodyBase64).
type messageJSON struct {
	ID         string            `json:"id,omitempty"`
	Topic      string            `json:"topic,omitempty"`
	Key        string            `json:"key,omitempty"`
	Headers    map[string]string `json:"headers,omitempty"`
	Time       string            `json:"time,omitempty"`
	Body       json.RawMessage   `json:"body,omitempty"`
	BodyText   *string           `json:"bodyText,omitempty"`
	BodyBase64 []byte            `json:"bodyBase64,omitempty"`
}

func toSourceDeadLetterJSON(d store.SourceDeadLetter) sourceDeadLetterJSON {
	m := d.Message
	mj := messageJSON{ID: m.ID, Topic: m.Topic, Key: m.Key, Headers: m.Headers}
	if !m.Time.IsZero() {
		mj.Time = m.Time.UTC().Format(time.RFC3339Nano)
	}
	switch body := bytes.TrimSpace(m.Body); {
	case len(body) > 0 && json.Valid(body):
		mj.Body = body
	case utf8.Valid(m.Body):
		text := string(m.Body)
		mj.BodyText = &text
	default:
		mj.BodyBase64 = m.Body
	}
	return sourceDeadLetterJSON{
		ID: strconv.FormatUint(d.ID, 10), Reason: d.Reason, Attempts: d.Attempts,
		Time: d.Time.UTC().Format(time.RFC3339Nano), Message: mj,
	}
}

// listSourceDeadLetters serves GET /sources/{name}/deadletters, oldest first.
func (a *API) listSourceDeadLetters(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
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
	dls, err := a.cfg.Ingress.Sources.DeadLetters(r.Context(), name, after, limit+1)
	if err != nil {
		return sourceError(name, err)
	}
	next := ""
	if len(dls) > limit {
		dls = dls[:limit]
		next = strconv.FormatUint(dls[limit-1].ID, 10)
	}
	out := page[sourceDeadLetterJSON]{Value: make([]sourceDeadLetterJSON, len(dls)), NextLink: nextLink(r, next, limit)}
	for i, d := range dls {
		out.Value[i] = toSourceDeadLetterJSON(d)
	}
	return writeJSON(w, http.StatusOK, out)
}

func sourceDeadLetterNotFound(r *http.Request) *twin.Error {
	return &twin.Error{Kind: twin.KindDeadLetterNotFound,
		Message: "There is no dead letter " + r.PathValue("id") + " of source " + r.PathValue("name") + "."}
}

// sourceDeadLetterID returns the request's dead letter id; one that is not a number names no
// dead letter.
func sourceDeadLetterID(r *http.Request) (uint64, error) {
	id, err := strconv.ParseUint(r.PathValue("id"), 10, 64)
	if err != nil {
		return 0, sourceDeadLetterNotFound(r)
	}
	return id, nil
}

// getSourceDeadLetter serves GET /sources/{name}/deadletters/{id}.
func (a *API) getSourceDeadLetter(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	id, err := sourceDeadLetterID(r)
	if err != nil {
		return err
	}
	d, err := a.cfg.Ingress.Sources.DeadLetter(r.Context(), r.PathValue("name"), id)
	if errors.Is(err, store.ErrNotFound) {
		return sourceDeadLetterNotFound(r)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, toSourceDeadLetterJSON(d))
}

// deleteSourceDeadLetter serves DELETE /sources/{name}/deadletters/{id}.
func (a *API) deleteSourceDeadLetter(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	id, err := sourceDeadLetterID(r)
	if err != nil {
		return err
	}
	err = a.cfg.Ingress.Sources.DeleteDeadLetter(r.Context(), r.PathValue("name"), id)
	if errors.Is(err, store.ErrNotFound) {
		return sourceDeadLetterNotFound(r)
	}
	if err != nil {
		return err
	}
	writeNoContent(w, "")
	return nil
}

// redriveSourceDeadLetter serves POST /sources/{name}/deadletters/{id}/redrive: the message
// is applied again, with the source's mappings as they are now, and the answer tells what
// became of it (a message that fails again is a new dead letter).
func (a *API) redriveSourceDeadLetter(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	id, err := sourceDeadLetterID(r)
	if err != nil {
		return err
	}
	name := r.PathValue("name")
	o, err := a.cfg.Ingress.Sources.Redrive(r.Context(), name, id)
	if errors.Is(err, store.ErrNotFound) {
		return sourceDeadLetterNotFound(r)
	}
	if err != nil {
		return sourceError(name, err)
	}
	return writeJSON(w, http.StatusOK, toOutcomeJSON(o))
}

// mappingJSON renders a mapping: its definition as given, with its name and creation time.
func mappingJSON(mp source.Mapping) (map[string]any, error) {
	out := map[string]any{}
	if err := json.Unmarshal(mp.Definition, &out); err != nil {
		return nil, fmt.Errorf("decode stored mapping %q: %w", mp.Name, err)
	}
	out["name"] = mp.Name
	out["createdTime"] = mp.Created.UTC().Format(time.RFC3339Nano)
	return out, nil
}

// listMappings serves GET /mappings: every mapping, on one page.
func (a *API) listMappings(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	mps, err := a.cfg.Ingress.Sources.Mappings(r.Context())
	if err != nil {
		return err
	}
	out := page[map[string]any]{Value: make([]map[string]any, len(mps))}
	for i, mp := range mps {
		if out.Value[i], err = mappingJSON(mp); err != nil {
			return err
		}
	}
	return writeJSON(w, http.StatusOK, out)
}

// getMapping serves GET /mappings/{name}.
func (a *API) getMapping(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	mp, err := a.cfg.Ingress.Sources.GetMapping(r.Context(), name)
	if err != nil {
		return mappingError(name, err)
	}
	out, err := mappingJSON(mp)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, out)
}

// putMapping serves PUT /mappings/{name}: 201 when created, 200 when replaced, with the
// mapping as GET shows it. A definition that does not compile, or names a source that does not
// exist, is 400 InvalidArgument with one detail per problem.
func (a *API) putMapping(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	body, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	created, err := a.cfg.Ingress.Sources.PutMapping(r.Context(), name, body)
	if err != nil {
		return mappingError(name, err)
	}
	mp, err := a.cfg.Ingress.Sources.GetMapping(r.Context(), name)
	if err != nil {
		return mappingError(name, err)
	}
	out, err := mappingJSON(mp)
	if err != nil {
		return err
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	return writeJSON(w, status, out)
}

// deleteMapping serves DELETE /mappings/{name}.
func (a *API) deleteMapping(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	if err := a.cfg.Ingress.Sources.DeleteMapping(r.Context(), name); err != nil {
		return mappingError(name, err)
	}
	writeNoContent(w, "")
	return nil
}

// testMapping serves POST /mappings/{name}/test: a dry run of the mapping on
// {"message": {"body": <JSON>, "topic", "key", "headers", "id", "time"}} against the twins
// as they are. It answers {"result": ...}, what the mapping would change, and applies
// nothing; a message the mapping fails on is 400 InvalidArgument with the reason.
func (a *API) testMapping(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	body, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var in struct {
		Message *source.TestMessage `json:"message"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&in); err != nil || in.Message == nil {
		return twin.InvalidArgument(`A mapping test takes {"message": {"body": <JSON>, "topic": "...", "key": "...", "headers": {...}, "id": "...", "time": "<RFC 3339>"}}; only body is required.`)
	}
	if len(in.Message.Body) == 0 {
		return twin.InvalidArgument("The test message needs a body.")
	}
	res, err := a.cfg.Ingress.Sources.DryRun(r.Context(), name, *in.Message)
	switch {
	case errors.Is(err, store.ErrNotFound), errors.Is(err, source.ErrMappingInvalid):
		return mappingError(name, err)
	case errors.Is(err, r.Context().Err()) && r.Context().Err() != nil:
		return err
	case err != nil:
		return twin.InvalidArgument("The mapping fails on the message: " + err.Error())
	}
	return writeJSON(w, http.StatusOK, map[string]any{"result": res})
}

// detailed is InvalidArgument msg with one detail per line of what err says after sentinel.
func detailed(msg string, err, sentinel error) *twin.Error {
	e := twin.InvalidArgument(msg)
	for _, line := range strings.Split(unwrapMessage(err, sentinel), "\n") {
		e.Details = append(e.Details, twin.Error{Kind: twin.KindInvalidArgument, Message: line})
	}
	return e
}

// sourceError translates the source registry's errors about source name.
func sourceError(name string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &twin.Error{Kind: twin.KindSourceNotFound, Message: "There is no source named " + name + "."}
	case errors.Is(err, source.ErrInvalid):
		return detailed("The source definition is invalid.", err, source.ErrInvalid)
	case errors.Is(err, source.ErrNameInvalid):
		return twin.InvalidArgument("The source name " + name + " is invalid: use 1 to 64 letters, digits, '-' or '_'.")
	case errors.Is(err, source.ErrInUse):
		return &twin.Error{Kind: twin.KindSourceInUse,
			Message: "The source " + name + " is in use: " + unwrapMessage(err, source.ErrInUse) + ". Delete its mappings first."}
	case errors.Is(err, source.ErrNotRunning):
		return &twin.Error{Kind: twin.KindSourceNotRunning,
			Message: "The source " + name + " is not running; see its status. Retry once it runs."}
	case errors.Is(err, source.ErrNotHTTP):
		return twin.OperationNotAllowed("Only sources of type http take messages through the API: " + unwrapMessage(err, source.ErrNotHTTP) + ".")
	case errors.Is(err, source.ErrBadPush):
		return twin.InvalidArgument("The request holds no messages: " + unwrapMessage(err, source.ErrBadPush) + ".")
	case errors.Is(err, loopguard.ErrFeedsSource):
		return feedsSource(err)
	}
	return err
}

// mappingError translates the source registry's errors about mapping name.
func mappingError(name string, err error) error {
	switch {
	case errors.Is(err, store.ErrNotFound):
		return &twin.Error{Kind: twin.KindMappingNotFound, Message: "There is no mapping named " + name + "."}
	case errors.Is(err, source.ErrMappingInvalid):
		return detailed("The mapping definition is invalid.", err, source.ErrMappingInvalid)
	case errors.Is(err, source.ErrNoSuchSource):
		return twin.InvalidArgument("The mapping reads the source " + unwrapMessage(err, source.ErrNoSuchSource) +
			", which does not exist. Create the source first, or read $events for twinflow's own change events.")
	case errors.Is(err, source.ErrNameInvalid):
		return twin.InvalidArgument("The mapping name " + name + " is invalid: use 1 to 64 letters, digits, '-' or '_'.")
	}
	return err
}
