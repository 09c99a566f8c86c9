package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

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

func toErrorJSON(e twin.Error) errorJSON {
	out := errorJSON{Code: e.Code, Message: e.Message}
	for _, d := range e.Details {
		out.Details = append(out.Details, toErrorJSON(d))
	}
	return out
}

// internalError is the answer to every failure that is not a *twin.Error. Its cause is
// logged, never sent.
func internalError() *twin.Error {
	return &twin.Error{
		Status:  http.StatusInternalServerError,
		Code:    "InternalServerError",
		Message: "The service hit an unexpected error. Retry the request; if it keeps failing, check the server log.",
	}
}

// writeError is the one translator from errors to HTTP responses. A *twin.Error anywhere in
// err's chain gives the status, x-ms-error-code header and ADT error body; anything else is a
// 500 with an ADT body whose cause is logged (at debug level when the client went away, since
// then nobody reads the answer and nothing failed on the server's side).
func (a *API) writeError(w http.ResponseWriter, r *http.Request, err error) {
	var te *twin.Error
	switch {
	case errors.As(err, &te):
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		a.logger.DebugContext(r.Context(), "request cancelled by client", "method", r.Method, "path", r.URL.Path, "err", err)
		te = internalError()
	default:
		a.logger.ErrorContext(r.Context(), "request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		te = internalError()
	}
	w.Header().Set("x-ms-error-code", te.Code)
	body, _ := encodeJSON(errorBody{Error: toErrorJSON(*te)}) // strings only: cannot fail
	writeRaw(w, te.Status, body)
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
