package api

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// TestADTErrors checks adtErrors gives every kind a status and a code of its own, and that
// each kind answers the status and ADT code twinflow has always sent for it.
func TestADTErrors(t *testing.T) {
	want := map[twin.Kind]adtError{
		twin.KindTwinNotFound:                     {404, "DigitalTwinNotFound"},
		twin.KindTargetTwinNotFound:               {404, "TargetTwinNotFound"},
		twin.KindComponentNotFound:                {404, "ComponentNotFound"},
		twin.KindRelationshipNotFound:             {404, "RelationshipNotFound"},
		twin.KindModelNotFound:                    {404, "ModelNotFound"},
		twin.KindModelAlreadyExists:               {409, "ModelAlreadyExists"},
		twin.KindModelReferencesNotDeleted:        {409, "ModelReferencesNotDeleted"},
		twin.KindModelReferencesNotDecommissioned: {409, "ModelReferencesNotDecommissioned"},
		twin.KindModelDecommissioned:              {400, "ModelDecommissioned"},
		twin.KindModelVersionNotSupported:         {400, "ModelVersionNotSupported"},
		twin.KindDTDLParserError:                  {400, "DTDLParserError"},
		twin.KindRelationshipsNotDeleted:          {400, "RelationshipsNotDeleted"},
		twin.KindTwinLimitReached:                 {400, "TwinLimitReached"},
		twin.KindInvalidArgument:                  {400, "InvalidArgument"},
		twin.KindMissingArgument:                  {400, "MissingArgument"},
		twin.KindLimitExceeded:                    {400, "LimitExceeded"},
		twin.KindInvalidRelationship:              {400, "InvalidRelationship"},
		twin.KindOperationNotAllowed:              {400, "OperationNotAllowed"},
		twin.KindJSONPatchInvalid:                 {400, "JsonPatchInvalid"},
		twin.KindPreconditionFailed:               {412, "PreconditionFailed"},
		twin.KindValidationFailed:                 {400, "ValidationFailed"},
		twin.KindBadRequest:                       {400, "BadRequest"},
		twin.KindEventRouteNotFound:               {404, "EventRouteNotFound"},
		twin.KindEventRouteEndpointInvalid:        {400, "EventRouteEndpointInvalid"},
		twin.KindEventRouteFilterInvalid:          {400, "EventRouteFilterInvalid"},
		twin.KindEventRouteIDInvalid:              {400, "EventRouteIdInvalid"},
		twin.KindEndpointNotFound:                 {404, "EndpointNotFound"},
		twin.KindEndpointInUse:                    {409, "EndpointInUse"},
		twin.KindEndpointValidationFailed:         {400, "EndpointValidationFailed"},
		twin.KindDeadLetterNotFound:               {404, "DeadLetterNotFound"},
		twin.KindImportJobNotFound:                {404, "ImportJobNotFound"},
		twin.KindDeleteJobNotFound:                {404, "DeleteJobNotFound"},
		twin.KindJobLimitReached:                  {400, "JobLimitReached"},
		twin.KindSourceNotFound:                   {404, "SourceNotFound"},
		twin.KindSourceInUse:                      {409, "SourceInUse"},
		twin.KindSourceNotRunning:                 {503, "SourceNotRunning"},
		twin.KindMappingNotFound:                  {404, "MappingNotFound"},
		twin.KindDetectorNotFound:                 {404, "DetectorNotFound"},
		twin.KindKeyNotFound:                      {404, "KeyNotFound"},
		twin.KindQueryInvalid:                     {400, "SqlQueryError"},
		twin.KindTimeout:                          {400, "TimeoutError"},
		twin.KindQuotaReached:                     {429, "QuotaReachedError"},
		twin.KindTooManyRequests:                  {429, "TooManyRequests"},
		twin.KindAPIVersionMissing:                {400, "MissingApiVersionParameter"},
		twin.KindAPIVersionUnsupported:            {400, "UnsupportedApiVersion"},
		twin.KindMediaTypeUnsupported:             {415, "UnsupportedMediaType"},
		twin.KindRequestTimeout:                   {408, "RequestTimeout"},
		twin.KindHeaderTooLarge:                   {431, "RequestHeaderFieldsTooLarge"},
		twin.KindHostNotAllowed:                   {421, "MisdirectedRequest"},
		twin.KindUnauthorized:                     {401, "Unauthorized"},
		twin.KindForbidden:                        {403, "Forbidden"},
		twin.KindMethodNotAllowed:                 {405, "MethodNotAllowed"},
		twin.KindPathNotFound:                     {404, "NotFound"},
		twin.KindInternal:                         {500, "InternalServerError"},
		twin.KindInsufficientStorage:              {507, "InsufficientStorage"},
		twin.KindServiceUnavailable:               {503, "ServiceUnavailable"},
	}
	kinds := twin.Kinds()
	if len(adtErrors) != len(kinds) {
		t.Errorf("adtErrors has %d entries for %d kinds", len(adtErrors), len(kinds))
	}
	codes := map[string]twin.Kind{}
	for _, k := range kinds {
		got, ok := adtErrors[k]
		switch {
		case !ok:
			t.Errorf("%v: no entry in adtErrors", k)
			continue
		case got.code == "" || http.StatusText(got.status) == "" || got.status < 400:
			t.Errorf("%v: status %d code %q", k, got.status, got.code)
		case got != want[k]:
			t.Errorf("%v = %d %s; want %d %s", k, got.status, got.code, want[k].status, want[k].code)
		}
		if prev, ok := codes[got.code]; ok {
			t.Errorf("%v and %v share the code %s", prev, k, got.code)
		}
		codes[got.code] = k
	}
	if _, ok := adtErrors[0]; ok {
		t.Error("the zero Kind has an entry in adtErrors")
	}
}

// TestWriteErrorUnknownKind checks that an error of no known kind, at the top or in its
// details, answers 500 InternalServerError and is logged rather than sent with an empty code.
func TestWriteErrorUnknownKind(t *testing.T) {
	const body = `{"error":{"code":"InternalServerError","message":"The service hit an unexpected error. Retry the request; if it keeps failing, check the server log."}}`
	for _, err := range []*twin.Error{
		{Message: "no kind"},
		{Kind: twin.KindInvalidArgument, Message: "bad detail", Details: []twin.Error{{Message: "no kind"}}},
	} {
		var logs bytes.Buffer
		a := &API{logger: slog.New(slog.NewTextHandler(&logs, nil))}
		w := httptest.NewRecorder()
		a.writeError(w, httptest.NewRequest(http.MethodGet, "/digitaltwins/t1?api-version=2023-10-31", nil), err)
		if w.Code != http.StatusInternalServerError || w.Body.String() != body || w.Header().Get("x-ms-error-code") != "InternalServerError" {
			t.Errorf("%v: got %d %s", err, w.Code, w.Body)
		}
		if !strings.Contains(logs.String(), err.Message) {
			t.Errorf("%v: log %q", err, logs.String())
		}
	}
}

// TestWriteErrorStorage checks the answers to writes the store could not take, however deep
// the store's error is wrapped: 507 InsufficientStorage on a full disk, file writes out of
// space included, and 503 ServiceUnavailable once the store failed, each with Retry-After
// and ADT's error body; import jobs' output logs get the same code.
func TestWriteErrorStorage(t *testing.T) {
	for _, tc := range []struct {
		err        error
		status     int
		code       string
		retryAfter string
	}{
		{fmt.Errorf("patch twin %q: %w", "t1", fmt.Errorf("commit: %w", store.ErrFull)), 507, "InsufficientStorage", "30"},
		{&os.PathError{Op: "write", Path: "jobs/out.ndjson", Err: syscall.ENOSPC}, 507, "InsufficientStorage", "30"},
		{fmt.Errorf("create twin: %w", fmt.Errorf("%w: sync write-ahead log: EIO", store.ErrFailed)), 503, "ServiceUnavailable", "10"},
		// An fsync that failed for lack of space failed the store all the same.
		{fmt.Errorf("%w: sync write-ahead log: %w", store.ErrFailed, &os.PathError{Op: "fdatasync", Err: syscall.ENOSPC}), 503, "ServiceUnavailable", "10"},
	} {
		a := &API{logger: slog.New(slog.DiscardHandler)}
		w := httptest.NewRecorder()
		a.writeError(w, httptest.NewRequest(http.MethodPut, "/digitaltwins/t1?api-version=2023-10-31", nil), tc.err)
		var body struct {
			Error struct{ Code, Message string }
		}
		if err := json.Unmarshal(w.Body.Bytes(), &body); err != nil {
			t.Fatalf("%v: body %s: %v", tc.err, w.Body, err)
		}
		if w.Code != tc.status || body.Error.Code != tc.code || body.Error.Message == "" ||
			w.Header().Get("x-ms-error-code") != tc.code || w.Header().Get("Retry-After") != tc.retryAfter {
			t.Errorf("%v: got %d %v %s, want %d %s with Retry-After %s", tc.err, w.Code, w.Header(), w.Body, tc.status, tc.code, tc.retryAfter)
		}
		if code, msg := ErrorCode(tc.err); code != tc.code || msg != body.Error.Message {
			t.Errorf("ErrorCode(%v) = %s %q, want %s %q", tc.err, code, msg, tc.code, body.Error.Message)
		}
	}
	// Other errors carry no Retry-After.
	w := httptest.NewRecorder()
	writeErrorBody(w, &twin.Error{Kind: twin.KindTwinNotFound, Message: "gone"})
	if got := w.Header().Get("Retry-After"); got != "" {
		t.Errorf("DigitalTwinNotFound has Retry-After %q", got)
	}
}
