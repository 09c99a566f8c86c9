package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/twinflow/twinflow/internal/throttle"
	"github.com/twinflow/twinflow/internal/twin"
)

func TestWriteError(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		status   int
		body     string
		logged   string
		cancel   bool
		logLevel string
	}{
		{
			name:   "wrapped ADT error",
			err:    fmt.Errorf("get twin %q: %w", "t1", twin.TwinNotFound("t1")),
			status: http.StatusNotFound,
			body:   `{"error":{"code":"DigitalTwinNotFound","message":"There is no digital twin instance that exists with the ID t1. Please verify that the twin id is valid and ensure that the twin is not deleted. See section on querying the twins https://aka.ms/adtv2query."}}`,
		},
		{
			name:   "details",
			err:    twin.ValidationFailed("Invalid twin specified", "first", "second"),
			status: http.StatusBadRequest,
			body:   `{"error":{"code":"ValidationFailed","message":"Invalid twin specified","details":[{"code":"ValidationFailed","message":"first"},{"code":"ValidationFailed","message":"second"}]}}`,
		},
		{
			name:     "internal",
			err:      fmt.Errorf("read twin: %w", errors.New("disk on fire")),
			status:   http.StatusInternalServerError,
			body:     `{"error":{"code":"InternalServerError","message":"The service hit an unexpected error. Retry the request; if it keeps failing, check the server log."}}`,
			logged:   "disk on fire",
			logLevel: "ERROR",
		},
		{
			name:     "client went away",
			err:      fmt.Errorf("read twin: %w", context.Canceled),
			status:   http.StatusInternalServerError,
			body:     `{"error":{"code":"InternalServerError","message":"The service hit an unexpected error. Retry the request; if it keeps failing, check the server log."}}`,
			logged:   "context canceled",
			cancel:   true,
			logLevel: "DEBUG",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			a := &API{logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))}
			r := httptest.NewRequest(http.MethodGet, "/digitaltwins/t1?api-version=2023-10-31", nil)
			if tt.cancel {
				ctx, cancel := context.WithCancel(r.Context())
				cancel()
				r = r.WithContext(ctx)
			}
			w := httptest.NewRecorder()
			a.writeError(w, r, tt.err)
			if w.Code != tt.status || w.Body.String() != tt.body {
				t.Errorf("got %d %s\nwant %d %s", w.Code, w.Body, tt.status, tt.body)
			}
			if ct := w.Header().Get("Content-Type"); ct != contentTypeJSON {
				t.Errorf("Content-Type = %q", ct)
			}
			if code := w.Header().Get("x-ms-error-code"); !strings.Contains(tt.body, `"code":"`+code+`"`) || code == "" {
				t.Errorf("x-ms-error-code = %q, body %s", code, w.Body)
			}
			if tt.logged == "" {
				if logs.Len() != 0 {
					t.Errorf("logged %s for an ADT error", logs.String())
				}
				return
			}
			if !strings.Contains(logs.String(), tt.logged) || !strings.Contains(logs.String(), "level="+tt.logLevel) {
				t.Errorf("log = %q, want %q at %s", logs.String(), tt.logged, tt.logLevel)
			}
		})
	}
}

func TestWriteJSONWritesNothingWhenEncodingFails(t *testing.T) {
	w := httptest.NewRecorder()
	err := writeJSON(w, http.StatusOK, page[json.RawMessage]{Value: []json.RawMessage{json.RawMessage(`{"broken":`)}})
	if err == nil {
		t.Fatal("writeJSON of an invalid document succeeded")
	}
	if w.Body.Len() != 0 || len(w.Header()) != 0 {
		t.Errorf("writeJSON wrote %v %q before failing", w.Header(), w.Body)
	}
	w = httptest.NewRecorder()
	if err := writeJSON(w, http.StatusOK, map[string]string{"nextLink": "http://h/models?a=1&b=<2>"}); err != nil {
		t.Fatal(err)
	}
	if got := w.Body.String(); got != `{"nextLink":"http://h/models?a=1&b=<2>"}` {
		t.Errorf("body = %s, want it unescaped and without a trailing newline", got)
	}
}

func TestServeRecoversPanics(t *testing.T) {
	var logs bytes.Buffer
	a := &API{logger: slog.New(slog.NewTextHandler(&logs, nil))}
	h := a.serve(operation{handler: func(http.ResponseWriter, *http.Request, apiVersion) error { panic("boom") }}, input{}, throttle.Unlimited)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/digitaltwins/t?api-version=2023-10-31", nil))
	if w.Code != http.StatusInternalServerError || w.Header().Get("x-ms-error-code") != "InternalServerError" {
		t.Errorf("after a panic: %d %s", w.Code, w.Body)
	}
	if !strings.Contains(logs.String(), "boom") || !strings.Contains(logs.String(), "goroutine") {
		t.Errorf("log = %q, want the panic and its stack", logs.String())
	}

	abort := a.serve(operation{handler: func(http.ResponseWriter, *http.Request, apiVersion) error { panic(http.ErrAbortHandler) }}, input{}, throttle.Unlimited)
	defer func() {
		if v := recover(); v != http.ErrAbortHandler {
			t.Errorf("recovered %v, want http.ErrAbortHandler passed on", v)
		}
	}()
	abort.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/digitaltwins/t?api-version=2023-10-31", nil))
	t.Error("http.ErrAbortHandler did not propagate")
}
