package api

import (
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"

	"github.com/twinflow/twinflow/internal/throttle"
	"github.com/twinflow/twinflow/internal/twin"
)

// throttleClass returns the class of op's requests for Config.Throttle: queries, and the
// reads, writes and telemetry of twins, components and relationships. The other resources
// (models, routes, endpoints, sources, mappings, jobs, history) are not limited.
func throttleClass(op operation) throttle.Class {
	switch {
	case op.path == "/query":
		return throttle.Query
	case !strings.HasPrefix(op.path, "/digitaltwins/") || strings.HasSuffix(op.path, "/history") || strings.HasSuffix(op.path, "/lifecycle") ||
		strings.HasSuffix(op.path, "/anomalies"):
		return throttle.Unlimited
	case strings.HasSuffix(op.path, "/telemetry"):
		return throttle.Telemetry
	case op.method == http.MethodGet:
		return throttle.Read
	}
	return throttle.Write
}

// admit asks Config.Throttle whether r, of class c, may run now: the returned function ends
// the request's turn, and must be called once it is answered. A refused request gets 429 with
// Retry-After (whole seconds, at least 1), set here, and ADT's error: QuotaReachedError for a
// query, as ADT answers, TooManyRequests otherwise.
func (a *API) admit(w http.ResponseWriter, r *http.Request, c throttle.Class) (func(), error) {
	if a.cfg.Throttle == nil || c == throttle.Unlimited {
		return func() {}, nil
	}
	twinID := ""
	if c != throttle.Query {
		twinID = r.PathValue("id")
	}
	done, refused := a.cfg.Throttle.Admit(c, twinID)
	if refused == nil {
		return done, nil
	}
	secs := max(1, int(math.Ceil(refused.RetryAfter.Seconds())))
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	if c == throttle.Query {
		return nil, &twin.Error{Kind: twin.KindQuotaReached, Message: fmt.Sprintf(
			"Queries are coming faster than this instance allows (limits.%s). Retry after %d seconds.", refused.Limit, secs)}
	}
	what := "this instance allows"
	if refused.Limit == "twinWritesPerSecond" || refused.Limit == "maxOutstandingPerTwin" {
		what = "the twin " + twinID + " allows"
	}
	return nil, &twin.Error{Kind: twin.KindTooManyRequests, Message: fmt.Sprintf(
		"Requests are coming faster than %s (limits.%s). Retry after %d seconds.", what, refused.Limit, secs)}
}
