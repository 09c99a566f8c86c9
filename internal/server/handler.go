package server

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/twinflow/twinflow/internal/api"
	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/ui"
)

// handler mounts the health endpoints and the explorer in front of the API and wraps
// everything in the access log and api.Guard, which sees every request before the mux can
// clean its path. The host check and authentication guard the API and /metrics, which needs
// the reader role (the API checks each operation's own role); the health endpoints answer
// whatever the Host and without credentials, since they tell nothing and probes (Kubernetes'
// among them) name the server by its address and carry none. The explorer's page (GET /) and
// assets (GET /ui/...) pass the host check but need no credential: they hold no data, and the
// page asks the user for one when the API answers 401.
func (s *Server) handler(guard api.GuardConfig, hosts hostCheck, explorer http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", handleHealthz)
	mux.HandleFunc("GET /readyz", s.handleReadyz)
	mux.Handle("GET /{$}", hosts.wrap(explorer))
	mux.Handle("GET "+ui.AssetPrefix, hosts.wrap(explorer))
	metrics := promhttp.HandlerFor(s.delivery.metrics, promhttp.HandlerOpts{})
	mux.Handle("GET /metrics", hosts.wrap(s.auth.Middleware(s.auth.Require(auth.RoleReader, metrics))))
	mux.Handle("/", hosts.wrap(s.auth.Middleware(http.HandlerFunc(s.serveAPI))))
	return accessLog(s.logger, api.Guard(guard, mux))
}

// serveAPI hands the request to the API once Run has built it. Before that it answers 503
// with Retry-After and ADT's error body; the API's own translator cannot, as there is no API
// yet.
func (s *Server) serveAPI(w http.ResponseWriter, r *http.Request) {
	if b := s.built.Load(); b != nil {
		b.api.ServeHTTP(w, r)
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Retry-After", "1")
	w.Header().Set("x-ms-error-code", "ServiceUnavailable")
	w.WriteHeader(http.StatusServiceUnavailable)
	w.Write([]byte(`{"error":{"code":"ServiceUnavailable","message":"twinflow is starting: the graph index is being built. Retry shortly."}}` + "\n"))
}

// handleHealthz answers 200 {"status":"ok"} while the process serves HTTP at all.
func handleHealthz(w http.ResponseWriter, _ *http.Request) {
	writeStatus(w, http.StatusOK, health{Status: "ok"})
}

// handleReadyz answers 200 {"status":"ready"} while the server serves with its store open, its
// sources have started and its graph index has caught up with the change log since the start
// (see ready), and it can write (see unwritable); before that and once shutdown has begun,
// 503 {"status":"not ready"}, with the reason when it cannot write:
// {"status":"not ready","reason":"the disk is full; ..."}. Either way it names this node
// (NodeID) and the leases it holds, the work it owns among the nodes sharing the store:
// {"status":"ready","node":"localhost:8080#1f2e3d4c","leases":["endpoint/hook","history"]}.
func (s *Server) handleReadyz(w http.ResponseWriter, _ *http.Request) {
	ls := s.leases.held()
	if reason := s.unwritable(); reason != "" {
		writeStatus(w, http.StatusServiceUnavailable, health{Status: "not ready", Reason: reason, Node: s.NodeID(), Leases: ls})
		return
	}
	if !s.ready() {
		writeStatus(w, http.StatusServiceUnavailable, health{Status: "not ready", Node: s.NodeID(), Leases: ls})
		return
	}
	writeStatus(w, http.StatusOK, health{Status: "ready", Node: s.NodeID(), Leases: ls})
}

// health is the body of a health check.
type health struct {
	Status string `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Node and Leases are /readyz's: this node's id and the names of the leases it
	// holds, absent when it holds none.
	Node   string   `json:"node,omitempty"`
	Leases []string `json:"leases,omitempty"`
}

// writeStatus answers a health check with body.
func writeStatus(w http.ResponseWriter, code int, body health) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body) // strings only: cannot fail
}

// accessLog logs one line per request at debug level. When debug logging is off it costs one
// Enabled check per request.
func accessLog(logger *slog.Logger, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !logger.Enabled(r.Context(), slog.LevelDebug) {
			next.ServeHTTP(w, r)
			return
		}
		start := time.Now()
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		next.ServeHTTP(rec, r)
		logger.LogAttrs(r.Context(), slog.LevelDebug, "request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", rec.status),
			slog.Int64("bytes", rec.bytes),
			slog.Duration("duration", time.Since(start)),
			slog.String("remote", r.RemoteAddr))
	})
}

// statusRecorder remembers the status code and body size a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	status      int
	bytes       int64
	wroteHeader bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.wroteHeader {
		r.status, r.wroteHeader = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(p []byte) (int, error) {
	r.wroteHeader = true
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }
