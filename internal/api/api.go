// Package api serves the Azure Digital Twins (ADT) data-plane REST API over a twins.Service, so
// ADT's official SDKs and tools work against twinflow unchanged.
//
// One operation table (API.operations) maps Go 1.22 ServeMux patterns to handlers that return errors;
// one translator (API.writeError) turns every error into ADT's error body
// {"error":{"code","message","details"?}} with the code also in the x-ms-error-code header;
// one table (adtErrors) gives each twin.Kind its HTTP status and ADT code.
// Errors that are not a *twin.Error answer 500 InternalServerError and are logged.
//
// Behaviour follows ADT's data plane at api-version 2023-10-31 and earlier. Where ADT leaves a
// choice open, twinflow decides as follows:
//
//   - Every request needs the api-version query parameter: missing is 400
//     MissingApiVersionParameter, an unknown value 400 UnsupportedApiVersion, and so is
//     2020-05-31-preview, whose dialect twinflow does not speak (see apiVersions). Before
//     2022-05-31, responses leave out $metadata.$lastUpdateTime and every sourceTime, as ADT
//     does; patches that write sourceTime are still accepted at those versions.
//   - Unknown paths answer 404 NotFound; a served path asked with another method answers 405
//     MethodNotAllowed with an Allow header. Neither needs an api-version.
//   - Request bodies are limited to Config.MaxBodyBytes (32 KB, ADT's request limit), model
//     uploads to Config.MaxModelBodyBytes (16 MiB), messages pushed to a source to
//     Config.MaxPushBodyBytes (16 MiB); a larger body is 400 LimitExceeded, as ADT answers an
//     oversized twin. An empty or malformed JSON body is 400 InvalidArgument.
//   - A request body must say what it is: PATCH bodies are application/json-patch+json
//     (what the SDKs send) or application/json, messages pushed to a source application/json
//     or application/x-ndjson, every other body application/json, each with optional
//     parameters (a charset must be UTF-8). A body without Content-Type or of any other type
//     is 415 UnsupportedMediaType, so a browser's form or text/plain request, which needs no
//     CORS preflight, cannot act on the API.
//   - Every id in a path (twin, relationship, component, model, route, endpoint, source,
//     mapping, dead letter and job) must be 1 to twin.MaxIDBytes bytes of UTF-8 without
//     control characters or "." and ".." segments (twin.CheckID): 400 InvalidArgument
//     otherwise (EventRouteIdInvalid for route ids and ValidationFailed for job ids, as ADT
//     answers for those). A query string with a malformed percent-escape is 400
//     InvalidArgument.
//   - Guard, in front of the API, refuses paths that are not canonical, oversized headers and
//     bodies that do not arrive in time, with ADT's error body (see Guard).
//   - Lists answer {"nextLink": <absolute URL>|null, "value": [...]}. nextLink repeats the
//     request's URL (scheme from TLS or X-Forwarded-Proto, host from Host) with an opaque
//     continuationToken parameter that also carries the page size. GET /models honours the
//     max-items-per-page header up to Config.ModelPageSize (larger values are clamped, ADT
//     may return fewer items); a value that is not a positive integer is 400 InvalidArgument,
//     as is a continuation token twinflow did not issue. The relationship lists, which have no
//     page-size parameter in ADT, return Config.RelationshipPageSize items a page.
//   - GET /models takes dependenciesFor repeated (as ADT's specification says) or
//     comma-separated (as the JavaScript SDK sends it). Query strings may hold unescaped ";"
//     (DTMIs have one); it is an ordinary character, not a separator.
//   - Telemetry needs the Message-Id header (400 InvalidArgument without it), takes an
//     optional RFC 3339 Telemetry-Source-Time header and a JSON object body. A Message-Id
//     the twin sent before, within the de-duplication window, is answered 204 and not routed.
//   - Rate limits (Config.Throttle) are off unless configured. A request over one is answered
//     429 with Retry-After: QuotaReachedError for queries, as ADT answers, TooManyRequests
//     for the requests on twins.
//   - W3C Trace Context: each request is served in a new span, a child of the span its
//     traceparent header names (or the root of a new trace when that is absent or
//     malformed), which every response names in its traceresponse header. The events the
//     request causes carry that span as their traceparent, and the request's tracestate
//     (when well formed) as their tracestate, so their consumers continue the caller's trace
//     from the span the caller was answered with.
//   - Ids arrive percent-encoded in the path and are used decoded: %2F is a "/" inside an id,
//     not a path separator. Ids are case sensitive.
package api

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"slices"
	"strings"

	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/detector"
	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/job"
	"github.com/twinflow/twinflow/internal/throttle"
	"github.com/twinflow/twinflow/internal/twin"
	"github.com/twinflow/twinflow/internal/twins"
)

// Defaults for Config's zero values.
const (
	// DefaultMaxBodyBytes is ADT's maximum request payload (32 KB).
	DefaultMaxBodyBytes = 32 << 10
	// DefaultMaxModelBodyBytes bounds a POST /models body. ADT allows 250 models of up to 1 MB
	// each in one call; 16 MiB holds any realistic batch (the twin service still enforces both the
	// per-model size and the model count) without letting one request pin 250 MB of memory.
	DefaultMaxModelBodyBytes = 16 << 20
	// DefaultModelPageSize is the page size of GET /models when max-items-per-page is absent,
	// and the largest one it honours (ADT: "Items per page 100").
	DefaultModelPageSize = 100
	// DefaultRelationshipPageSize is the page size of GET .../relationships and
	// .../incomingrelationships. ADT documents no page size for them.
	DefaultRelationshipPageSize = 100
)

// Config configures an API. The zero value of every field selects its default.
type Config struct {
	// MaxBodyBytes limits every request body except POST /models. Default DefaultMaxBodyBytes.
	MaxBodyBytes int64
	// MaxModelBodyBytes limits the body of POST /models. Default DefaultMaxModelBodyBytes.
	MaxModelBodyBytes int64
	// ModelPageSize is the default and largest page size of the models list. Default
	// DefaultModelPageSize.
	ModelPageSize int
	// RelationshipPageSize is the page size of the relationship lists. Default
	// DefaultRelationshipPageSize.
	RelationshipPageSize int
	// Index is the graph index POST /query answers from; without one, /query answers 404.
	Index *graph.Index
	// Delivery serves the event routes and endpoints; without it, their paths answer 404.
	Delivery *Delivery
	// Jobs serves the import and delete jobs, and the uploads of their input files to its
	// directory; without it, their paths answer 404.
	Jobs *job.Runner
	// MaxJobFileBytes limits a file uploaded with PUT /jobs/files/{name}. Default
	// DefaultMaxJobFileBytes.
	MaxJobFileBytes int64
	// Space, when set, is the disk state of the data directory: a job file upload is refused
	// with 507 while it is full, and one that runs out of space tells it.
	Space DiskSpace
	// Ingress serves the sources and mappings; without it, their paths answer 404.
	Ingress *Ingress
	// History serves data history and queries with asOf; without it, the history paths
	// answer 404.
	History *History
	// MaxPushBodyBytes limits the body of POST /sources/{name}/messages. Default
	// DefaultMaxPushBodyBytes.
	MaxPushBodyBytes int64
	// Auth authorizes each operation: the identity its auth.Authenticator.Middleware, in
	// front of the API, authenticated the request as must hold the operation's role. Without
	// it, every request may do everything, as with authentication off.
	Auth *auth.Authenticator
	// Keys serves the API keys; without it, their paths answer 404.
	Keys *auth.Keys
	// Events serves the live event stream, GET /events; without it, the path answers 404.
	Events *Events
	// Detectors serves the anomaly detectors; without it, their paths answer 404.
	Detectors *detector.Service
	// Throttle, when set, limits the rates of queries and of the requests on twins (see
	// throttleClass): a request over a limit is answered 429 with Retry-After. Nil limits
	// nothing.
	Throttle *throttle.Throttle
}

func (c *Config) setDefaults() {
	if c.MaxBodyBytes == 0 {
		c.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if c.MaxModelBodyBytes == 0 {
		c.MaxModelBodyBytes = DefaultMaxModelBodyBytes
	}
	if c.ModelPageSize == 0 {
		c.ModelPageSize = DefaultModelPageSize
	}
	if c.RelationshipPageSize == 0 {
		c.RelationshipPageSize = DefaultRelationshipPageSize
	}
	if c.MaxPushBodyBytes == 0 {
		c.MaxPushBodyBytes = DefaultMaxPushBodyBytes
	}
	if c.MaxJobFileBytes == 0 {
		c.MaxJobFileBytes = DefaultMaxJobFileBytes
	}
}

func (c *Config) validate() error {
	var errs []error
	if c.MaxBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxBodyBytes: must not be negative, got %d", c.MaxBodyBytes))
	}
	if c.MaxModelBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxModelBodyBytes: must not be negative, got %d", c.MaxModelBodyBytes))
	}
	if c.ModelPageSize < 0 {
		errs = append(errs, fmt.Errorf("ModelPageSize: must not be negative, got %d", c.ModelPageSize))
	}
	if c.MaxPushBodyBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxPushBodyBytes: must not be negative, got %d", c.MaxPushBodyBytes))
	}
	if c.MaxJobFileBytes < 0 {
		errs = append(errs, fmt.Errorf("MaxJobFileBytes: must not be negative, got %d", c.MaxJobFileBytes))
	}
	if c.RelationshipPageSize < 0 {
		errs = append(errs, fmt.Errorf("RelationshipPageSize: must not be negative, got %d", c.RelationshipPageSize))
	}
	return errors.Join(errs...)
}

// API is the ADT data-plane HTTP handler. It is safe for concurrent use.
type API struct {
	cfg    Config
	twins  *twins.Service
	logger *slog.Logger
	mux    *http.ServeMux
	// past keeps the graph of the past of the last query with asOf.
	past pastCache
}

// New returns an API serving the twin service svc. It fails if cfg holds an invalid value.
func New(cfg Config, svc *twins.Service, logger *slog.Logger) (*API, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return nil, fmt.Errorf("api config: %w", err)
	}
	if svc == nil {
		return nil, errors.New("api: nil twin service")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	a := &API{cfg: cfg, twins: svc, logger: logger, mux: http.NewServeMux()}
	a.register()
	return a, nil
}

// ServeHTTP serves the whole ADT data-plane operation table. Every response, errors
// included, names the span the request was served in in a traceresponse header, as ADT's do.
func (a *API) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	tr := startTrace(r)
	w.Header().Set("Traceresponse", tr.Parent)
	a.mux.ServeHTTP(w, withTrace(r, tr))
}

// handlerFunc is the shape of every handler: it writes a success response or returns an
// error for writeError to translate. ver is the request's validated api-version.
type handlerFunc func(w http.ResponseWriter, r *http.Request, ver apiVersion) error

// operation is one entry of the operation table: an operation's method, path pattern, the
// least role that may call it, and its handler. Every operation names its role, so none can
// be added without one.
type operation struct {
	method  string
	path    string
	access  auth.Role
	handler handlerFunc
}

// operations is the operation table of models, twins, relationships, telemetry and queries;
// deliveryOperations, jobOperations, historyOperations, ingressOperations and keyOperations
// add event routes, endpoints, jobs, history, sources, mappings and keys (see allOperations).
// The paths of operations missing from them answer 404.
//
// Roles follow ADT's: reads and queries need auth.RoleReader, every other ADT data-plane
// operation auth.RoleOwner; twinflow's own resources (endpoints, sources, mappings, keys)
// need auth.RoleAdmin, but pushing messages to an http source, which writes data as
// telemetry does, needs auth.RoleOwner.
func (a *API) operations() []operation {
	return []operation{
		{http.MethodPost, "/models", auth.RoleOwner, a.addModels},
		{http.MethodGet, "/models", auth.RoleReader, a.listModels},
		{http.MethodGet, "/models/{id}", auth.RoleReader, a.getModel},
		{http.MethodPatch, "/models/{id}", auth.RoleOwner, a.patchModel},
		{http.MethodDelete, "/models/{id}", auth.RoleOwner, a.deleteModel},

		{http.MethodGet, "/digitaltwins/{id}", auth.RoleReader, a.getTwin},
		{http.MethodPut, "/digitaltwins/{id}", auth.RoleOwner, a.putTwin},
		{http.MethodPatch, "/digitaltwins/{id}", auth.RoleOwner, a.patchTwin},
		{http.MethodDelete, "/digitaltwins/{id}", auth.RoleOwner, a.deleteTwin},

		{http.MethodGet, "/digitaltwins/{id}/components/{component}", auth.RoleReader, a.getComponent},
		{http.MethodPatch, "/digitaltwins/{id}/components/{component}", auth.RoleOwner, a.patchComponent},

		{http.MethodGet, "/digitaltwins/{id}/relationships", auth.RoleReader, a.listRelationships},
		{http.MethodGet, "/digitaltwins/{id}/incomingrelationships", auth.RoleReader, a.listIncomingRelationships},
		{http.MethodGet, "/digitaltwins/{id}/relationships/{rel}", auth.RoleReader, a.getRelationship},
		{http.MethodPut, "/digitaltwins/{id}/relationships/{rel}", auth.RoleOwner, a.putRelationship},
		{http.MethodPatch, "/digitaltwins/{id}/relationships/{rel}", auth.RoleOwner, a.patchRelationship},
		{http.MethodDelete, "/digitaltwins/{id}/relationships/{rel}", auth.RoleOwner, a.deleteRelationship},

		{http.MethodPost, "/digitaltwins/{id}/telemetry", auth.RoleOwner, a.sendTelemetry},
		{http.MethodPost, "/digitaltwins/{id}/components/{component}/telemetry", auth.RoleOwner, a.sendComponentTelemetry},
		{http.MethodPost, "/query", auth.RoleReader, a.runQuery},
	}
}

// allOperations is the whole operation table: every group of operations the API's Config
// serves.
func (a *API) allOperations() []operation {
	var ops []operation
	for _, group := range [][]operation{
		a.operations(), a.deliveryOperations(), a.jobOperations(), a.historyOperations(),
		a.ingressOperations(), a.keyOperations(), a.eventOperations(), a.detectorOperations(),
	} {
		ops = append(ops, group...)
	}
	return ops
}

// register installs the operation table on the mux. Each path also gets a method-less pattern that
// answers 405 for the methods it does not serve, and "/" answers 404 for every other path, so
// both carry ADT's error body instead of ServeMux's plain text.
func (a *API) register() {
	allowed := make(map[string][]string)
	var paths []string
	for _, op := range a.allOperations() {
		a.mux.Handle(op.method+" "+op.path, a.serve(op, inputOf(op), throttleClass(op)))
		if _, ok := allowed[op.path]; !ok {
			paths = append(paths, op.path)
		}
		allowed[op.path] = append(allowed[op.path], op.method)
	}
	for _, p := range paths {
		methods := allowed[p]
		if slices.Contains(methods, http.MethodGet) {
			methods = append(methods, http.MethodHead)
		}
		allow := strings.Join(methods, ", ")
		a.mux.HandleFunc(p, func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Allow", allow)
			a.writeError(w, r, methodNotAllowed(r.Method, allow))
		})
	}
	a.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		a.writeError(w, r, pathNotFound(r.URL.EscapedPath()))
	})
}

// serve adapts op's handler to http.Handler: it checks that the request's identity holds
// op's role (see Config.Auth), then the request's input (see input.check) and api-version,
// admits it as a request of class c (see admit), runs the handler and translates the error
// it returns. A panic in the handler is logged with its stack and answered as an internal
// error, so the client gets an ADT body instead of a dropped connection.
func (a *API) serve(op operation, in input, c throttle.Class) http.Handler {
	h := op.handler
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer func() {
			v := recover()
			if v == nil {
				return
			}
			if v == http.ErrAbortHandler { // the handler asked to abort the response: let net/http do it
				panic(v)
			}
			a.writeError(w, r, fmt.Errorf("handler panicked: %v\n%s", v, debug.Stack()))
		}()
		var ver apiVersion
		var err error
		if a.cfg.Auth != nil {
			err = a.cfg.Auth.Authorize(r, op.access)
		}
		if err == nil {
			err = in.check(r)
		}
		if err == nil {
			ver, err = parseAPIVersion(queryValue(r, "api-version"))
		}
		var done func()
		if err == nil {
			done, err = a.admit(w, r, c)
		}
		if err == nil {
			defer done()
			err = h(w, r, ver)
		}
		if err != nil {
			a.writeError(w, r, err)
		}
	})
}

// pathNotFound is the error for a path twinflow does not serve.
func pathNotFound(path string) *twin.Error {
	return &twin.Error{
		Kind:    twin.KindPathNotFound,
		Message: fmt.Sprintf("The requested path %s is not a resource of this service.", path),
	}
}

// methodNotAllowed is the error for a served path asked with a method it does not support.
func methodNotAllowed(method, allow string) *twin.Error {
	return &twin.Error{
		Kind:    twin.KindMethodNotAllowed,
		Message: fmt.Sprintf("The method %s is not allowed on this resource. Allowed methods: %s.", method, allow),
	}
}
