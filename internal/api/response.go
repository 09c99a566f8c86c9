package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// contentTypeJSON is the Content-Type of every response body, as ADT sends it.
const contentTypeJSON = "application/json; charset=utf-8"

// errorBody is ADT's error response: {"error": {"code", "message", "details"?}}.
type errorBody struct {
	Error errorJSON `json:"error"`
}

type errorJSON struct {
	Code    string      `json:"code"`
	Message string      `json:"message"`
	Details []errorJSON `json:"details,omitempty"`
}

// adtError is how a twin.Kind goes on the wire: the HTTP status and ADT's error code.
type adtError struct {
	status int
	code   string
}

// adtErrors is the one table from error kinds to HTTP statuses and ADT error codes. Every
// twin.Kind has an entry. The codes of the endpoint, dead letter, source, mapping and key
// kinds are twinflow's own; ADT has no such resources. So are those of the protocol-level
// refusals ADT's front end answers with its own bodies (unknown path or method, media type,
// timeout, header size, host, authentication, role): each is the PascalCase name of its HTTP
// status, the convention of Azure's REST APIs.
var adtErrors = map[twin.Kind]adtError{
	twin.KindTwinNotFound:                     {http.StatusNotFound, "DigitalTwinNotFound"},
	twin.KindTargetTwinNotFound:               {http.StatusNotFound, "TargetTwinNotFound"},
	twin.KindComponentNotFound:                {http.StatusNotFound, "ComponentNotFound"},
	twin.KindRelationshipNotFound:             {http.StatusNotFound, "RelationshipNotFound"},
	twin.KindModelNotFound:                    {http.StatusNotFound, "ModelNotFound"},
	twin.KindModelAlreadyExists:               {http.StatusConflict, "ModelAlreadyExists"},
	twin.KindModelReferencesNotDeleted:        {http.StatusConflict, "ModelReferencesNotDeleted"},
	twin.KindModelReferencesNotDecommissioned: {http.StatusConflict, "ModelReferencesNotDecommissioned"},
	twin.KindModelDecommissioned:              {http.StatusBadRequest, "ModelDecommissioned"},
	twin.KindModelVersionNotSupported:         {http.StatusBadRequest, "ModelVersionNotSupported"},
	twin.KindDTDLParserError:                  {http.StatusBadRequest, "DTDLParserError"},
	twin.KindRelationshipsNotDeleted:          {http.StatusBadRequest, "RelationshipsNotDeleted"},
	twin.KindTwinLimitReached:                 {http.StatusBadRequest, "TwinLimitReached"},
	twin.KindInvalidArgument:                  {http.StatusBadRequest, "InvalidArgument"},
	twin.KindMissingArgument:                  {http.StatusBadRequest, "MissingArgument"},
	twin.KindLimitExceeded:                    {http.StatusBadRequest, "LimitExceeded"},
	twin.KindInvalidRelationship:              {http.StatusBadRequest, "InvalidRelationship"},
	twin.KindOperationNotAllowed:              {http.StatusBadRequest, "OperationNotAllowed"},
	twin.KindJSONPatchInvalid:                 {http.StatusBadRequest, "JsonPatchInvalid"},
	twin.KindPreconditionFailed:               {http.StatusPreconditionFailed, "PreconditionFailed"},
	twin.KindValidationFailed:                 {http.StatusBadRequest, "ValidationFailed"},
	twin.KindBadRequest:                       {http.StatusBadRequest, "BadRequest"},
	twin.KindEventRouteNotFound:               {http.StatusNotFound, "EventRouteNotFound"},
	twin.KindEventRouteEndpointInvalid:        {http.StatusBadRequest, "EventRouteEndpointInvalid"},
	twin.KindEventRouteFilterInvalid:          {http.StatusBadRequest, "EventRouteFilterInvalid"},
	twin.KindEventRouteIDInvalid:              {http.StatusBadRequest, "EventRouteIdInvalid"},
	twin.KindEndpointNotFound:                 {http.StatusNotFound, "EndpointNotFound"},
	twin.KindEndpointInUse:                    {http.StatusConflict, "EndpointInUse"},
	twin.KindEndpointValidationFailed:         {http.StatusBadRequest, "EndpointValidationFailed"},
	twin.KindDeadLetterNotFound:               {http.StatusNotFound, "DeadLetterNotFound"},
	twin.KindImportJobNotFound:                {http.StatusNotFound, "ImportJobNotFound"},
	twin.KindDeleteJobNotFound:                {http.StatusNotFound, "DeleteJobNotFound"},
	twin.KindJobLimitReached:                  {http.StatusBadRequest, "JobLimitReached"},
	twin.KindSourceNotFound:                   {http.StatusNotFound, "SourceNotFound"},
	twin.KindSourceInUse:                      {http.StatusConflict, "SourceInUse"},
	twin.KindSourceNotRunning:                 {http.StatusServiceUnavailable, "SourceNotRunning"},
	twin.KindMappingNotFound:                  {http.StatusNotFound, "MappingNotFound"},
	twin.KindDetectorNotFound:                 {http.StatusNotFound, "DetectorNotFound"},
	twin.KindKeyNotFound:                      {http.StatusNotFound, "KeyNotFound"},
	twin.KindQueryInvalid:                     {http.StatusBadRequest, "SqlQueryError"},
	twin.KindTimeout:                          {http.StatusBadRequest, "TimeoutError"},
	twin.KindQuotaReached:                     {http.StatusTooManyRequests, "QuotaReachedError"},
	twin.KindTooManyRequests:                  {http.StatusTooManyRequests, "TooManyRequests"},
	twin.KindAPIVersionMissing:                {http.StatusBadRequest, "MissingApiVersionParameter"},
	twin.KindAPIVersionUnsupported:            {http.StatusBadRequest, "UnsupportedApiVersion"},
	twin.KindMediaTypeUnsupported:             {http.StatusUnsupportedMediaType, "UnsupportedMediaType"},
	twin.KindRequestTimeout:                   {http.StatusRequestTimeout, "RequestTimeout"},
	twin.KindHeaderTooLarge:                   {http.StatusRequestHeaderFieldsTooLarge, "RequestHeaderFieldsTooLarge"},
	twin.KindHostNotAllowed:                   {http.StatusMisdirectedRequest, "MisdirectedRequest"},
	twin.KindUnauthorized:                     {http.StatusUnauthorized, "Unauthorized"},
	twin.KindForbidden:                        {http.StatusForbidden, "Forbidden"},
	twin.KindMethodNotAllowed:                 {http.StatusMethodNotAllowed, "MethodNotAllowed"},
	twin.KindPathNotFound:                     {http.StatusNotFound, "NotFound"},
	twin.KindInternal:                         {http.StatusInternalServerError, "InternalServerError"},
	twin.KindInsufficientStorage:              {http.StatusInsufficientStorage, "InsufficientStorage"},
	twin.KindServiceUnavailable:               {http.StatusServiceUnavailable, "ServiceUnavailable"},
}

// retryAfter is the Retry-After header, in seconds, of the kinds that a later retry of the
// same request may cure.
var retryAfter = map[twin.Kind]string{
	twin.KindInsufficientStorage: "30",
	twin.KindServiceUnavailable:  "10",
}

// knownKinds reports whether e and each of its details have a kind in adtErrors.
func knownKinds(e *twin.Error) bool {
	if _, ok := adtErrors[e.Kind]; !ok {
		return false
	}
	for i := range e.Details {
		if !knownKinds(&e.Details[i]) {
			return false
		}
	}
	return true
}

// toErrorJSON renders e, whose kinds must all be in adtErrors, as ADT's error object.
func toErrorJSON(e twin.Error) errorJSON {
	out := errorJSON{Code: adtErrors[e.Kind].code, Message: e.Message}
	for _, d := range e.Details {
		out.Details = append(out.Details, toErrorJSON(d))
	}
	return out
}

// internalError is the answer to every failure that is not a *twin.Error. Its cause is
// logged, never sent.
func internalError() *twin.Error {
	return &twin.Error{
		Kind:    twin.KindInternal,
		Message: "The service hit an unexpected error. Retry the request; if it keeps failing, check the server log.",
	}
}

// storageError returns the answer to a write the store could not take: 503
// ServiceUnavailable once the store failed (store.ErrFailed, even when the fsync that failed
// it ran out of space) or while its database cannot be reached (store.ErrUnavailable), 507 InsufficientStorage while the disk is full (store.ErrFull); nil
// for other errors.
func storageError(err error) *twin.Error {
	switch {
	case errors.Is(err, store.ErrFailed):
		return &twin.Error{Kind: twin.KindServiceUnavailable, Message: "The service's storage failed, and the service is " +
			"restarting to recover. Retry shortly."}
	case errors.Is(err, store.ErrUnavailable):
		return &twin.Error{Kind: twin.KindServiceUnavailable, Message: "The service cannot reach its database. Retry " +
			"shortly; a write that failed this way may have been applied, so check its ETag before repeating it."}
	case errors.Is(err, store.ErrFull):
		return &twin.Error{Kind: twin.KindInsufficientStorage, Message: "The service's disk is full: until space is freed " +
			"it accepts reads and deletes only. Retry later, after deleting data or freeing space on the server's disk."}
	}
	return nil
}

// writeError is the one translator from errors to HTTP responses. A *twin.Error anywhere in
// err's chain gives the status, x-ms-error-code header and ADT error body, by adtErrors; a
// write the store could not take gets its answer from storageError; a *twin.Error with a
// kind adtErrors lacks (a bug) and anything else is a 500 with an ADT body whose cause is
// logged (at debug level when the client went away, since then nobody reads the answer and
// nothing failed on the server's side).
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var te *twin.Error
	storage := storageError(err)
	switch {
	case errors.As(err, &te) && knownKinds(te):
	case storage != nil:
		// The store logged the failure once; a request refused for it is no news.
		a.logger.DebugContext(r.Context(), "request refused by the store", "method", r.Method, "path", r.URL.Path, "err", err)
		te = storage
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		a.logger.DebugContext(r.Context(), "request cancelled by client", "method", r.Method, "path", r.URL.Path, "err", err)
		te = internalError()
	default:
		a.logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		te = internalError()
	}
	writeErrorBody(w, te)
}

// WriteError answers e with its status, x-ms-error-code header and ADT error body, as the
// API answers the errors its handlers return; an e with a kind the API does not know (a bug)
// answers 500 InternalServerError. It is for handlers in front of the API (Guard, the
// server's own checks), so that every refusal a client sees has the same shape.
func WriteError(w http.ResponseWriter, e *twin.Error) {
	if !knownKinds(e) {
		e = internalError()
	}
	writeErrorBody(w, e)
}

// writeErrorBody writes e, whose kinds must all be in adtErrors, with its Retry-After when
// its kind has one.
func writeErrorBody(w http.ResponseWriter, e *twin.Error) {
	ae := adtErrors[e.Kind]
	if after, ok := retryAfter[e.Kind]; ok {
		w.Header().Set("Retry-After", after)
	}
	w.Header().Set("x-ms-error-code", ae.code)
	body, _ := encodeJSON(errorBody{Error: toErrorJSON(*e)}) // strings only: cannot fail
	writeRaw(w, ae.status, body)
}

// ErrorCode returns the ADT error code and message of err, as an error response would give
// them, with the messages of its details after its own: for the output logs of import jobs.
// Errors the table does not know are InternalServerError with err's text.
func ErrorCode(err error) (code, message string) {
	var te *twin.Error
	if !errors.As(err, &te) || !knownKinds(te) {
		te = storageError(err)
	}
	if te == nil {
		return adtErrors[twin.KindInternal].code, err.Error()
	}
	msg := te.Message
	for i, d := range te.Details {
		sep := " "
		if i == 0 {
			sep = ": "
			msg = strings.TrimSuffix(msg, ".")
		}
		msg += sep + d.Message
	}
	return adtErrors[te.Kind].code, msg
}

// writeJSON writes v as the JSON response body with the given status. It writes nothing and
// returns the error when v does not encode (a stored document that is not valid JSON), so the
// caller's error reaches writeError and is logged.
func writeJSON(w http.ResponseWriter, status int, v any) error {
	body, err := encodeJSON(v)
	if err != nil {
		return err
	}
	writeRaw(w, status, body)
	return nil
}

// encodeJSON encodes v without escaping HTML characters: nextLinks hold "&", and ADT sends
// them as they are.
func encodeJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, fmt.Errorf("encode response: %w", err)
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}

// writeRaw writes body, which must be JSON, with the given status.
func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", contentTypeJSON)
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// writeNoContent answers 204, with etag as the ETag header when it is not empty.
func writeNoContent(w http.ResponseWriter, etag string) {
	if etag != "" {
		w.Header().Set("ETag", etag)
	}
	w.WriteHeader(http.StatusNoContent)
}
