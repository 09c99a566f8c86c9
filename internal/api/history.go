package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twinflow/twinflow/internal/auth"
	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/jsontext"
	qlang "github.com/twinflow/twinflow/internal/query"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// History paging: the page size of the history lists when max-items-per-page is absent, and
// the largest honoured.
const (
	DefaultHistoryPageSize = 1000
	MaxHistoryPageSize     = 10000
	// MaxHistorySeries bounds the twins one POST /history/query answers for.
	MaxHistorySeries = 10000
	// MaxHistoryBuckets bounds the buckets of one series: (to - from) / interval.
	MaxHistoryBuckets = 100000
)

// History serves data history. Without it (Config.History nil), its paths answer 404 and a
// query with asOf is 400.
type History struct {
	// Store holds the history rows.
	Store history.Store
	// Retention is how long rows are kept; an asOf older than it is refused. Zero keeps all.
	Retention time.Duration
	// Status reports the history writer's progress for GET /history/status.
	Status func(ctx context.Context) (HistoryStatus, error)
	// Models returns the current model set, for IS_OF_MODEL in queries of the past.
	Models func() *dtdl.ModelSet
	// Changes, if set, tells when a graph of the past read before may have changed, so the
	// pages of a query with asOf after its first reuse the graph it read (see pastCache).
	Changes PastChanges
}

// PastChanges tells whether history changed a past it told (history.Writer is one).
type PastChanges interface {
	// Mark returns a mark of the changes so far.
	Mark() uint64
	// PastChanged reports whether the history's graph at t may differ from what it was
	// when mark was taken.
	PastChanged(mark uint64, t time.Time) bool
}

// pastCacheIdle is how long the graph of the past a query read is kept for its next page.
const pastCacheIdle = 2 * time.Minute

// pastCache keeps the graph of the past the last query with asOf read, while history has not
// changed it and the models are the same, for the pages after the first, which would
// otherwise rebuild it each; it lets it go after pastCacheIdle unused. It is safe for
// concurrent use.
type pastCache struct {
	mu     sync.Mutex
	at     time.Time
	models *dtdl.ModelSet
	mark   uint64
	idx    *graph.Index
	expire *time.Timer
}

// get returns the graph kept for at and models, if it is still valid.
func (c *pastCache) get(changes PastChanges, at time.Time, models *dtdl.ModelSet) *graph.Index {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idx == nil || !c.at.Equal(at) || c.models != models || changes.PastChanged(c.mark, at) {
		return nil
	}
	c.expire.Reset(pastCacheIdle)
	return c.idx
}

// put keeps idx, read at at after mark was taken.
func (c *pastCache) put(at time.Time, models *dtdl.ModelSet, mark uint64, idx *graph.Index) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.at, c.models, c.mark, c.idx = at, models, mark, idx
	if c.expire == nil {
		c.expire = time.AfterFunc(pastCacheIdle, func() {
			c.mu.Lock()
			defer c.mu.Unlock()
			c.idx, c.models = nil, nil
		})
		return
	}
	c.expire.Reset(pastCacheIdle)
}

// HistoryStatus is the body of GET /history/status.
type HistoryStatus struct {
	// Cursor is the change log Seq through which history is written; Last the newest Seq.
	Cursor uint64 `json:"cursor"`
	Last   uint64 `json:"last"`
	// LagEvents is Last - Cursor; LagSeconds how long ago the oldest record not yet written
	// was committed, 0 when none waits.
	LagEvents  uint64  `json:"lagEvents"`
	LagSeconds float64 `json:"lagSeconds"`
	// Tables maps each table's name to its row count; Bytes is the store's size.
	Tables map[string]int64 `json:"tables"`
	Bytes  int64            `json:"bytes"`
	// Retention is the retention in effect, in Go duration form ("720h0m0s").
	Retention string `json:"retention"`
	// RolledUpTo is the watermark of the hourly roll-ups that POST /history/query reads
	// whole hours from: the rows before it are rolled up. Absent while none is.
	RolledUpTo string `json:"rolledUpTo,omitempty"`
	// CheckpointedTo is how far the checkpoints that queries with asOf start from go: every
	// checkpoint due before it is built. Absent while none is, and for a store without
	// checkpoints (PostgreSQL).
	CheckpointedTo string `json:"checkpointedTo,omitempty"`
	// LastError is the writer's last failure to read the log or write, while it lasts.
	LastError string `json:"lastError,omitempty"`
	// Owner is the service id of the node that writes history kept in PostgreSQL, which the
	// nodes share, absent while none does and for history in the data directory, which
	// each node writes. The other nodes answer with the cursor the history store holds.
	Owner string `json:"owner,omitempty"`
}

func (a *API) historyOperations() []operation {
	if a.cfg.History == nil {
		return nil
	}
	return []operation{
		{http.MethodGet, "/digitaltwins/{id}/history", auth.RoleReader, a.twinHistory},
		{http.MethodGet, "/digitaltwins/{id}/relationships/{rel}/history", auth.RoleReader, a.relationshipHistory},
		{http.MethodGet, "/digitaltwins/{id}/lifecycle", auth.RoleReader, a.twinLifecycle},
		{http.MethodGet, "/digitaltwins/{id}/anomalies", auth.RoleReader, a.twinAnomalies},
		{http.MethodPost, "/history/query", auth.RoleReader, a.historyQuery},
		{http.MethodGet, "/history/status", auth.RoleReader, a.historyStatus},
	}
}

// historyRow is one change as the history lists show it.
type historyRow struct {
	Key                string          `json:"key"`
	TimeStamp          string          `json:"timeStamp"`
	SourceTimeStamp    *string         `json:"sourceTimeStamp"`
	Value              json.RawMessage `json:"value"`
	Action             string          `json:"action"`
	RelationshipID     string          `json:"relationshipId,omitempty"`
	RelationshipTarget string          `json:"relationshipTarget,omitempty"`
}

// twinHistory serves GET /digitaltwins/{id}/history: the changes of the twin's properties
// (of one, with property=P) in time order, from=/to= (RFC 3339) bounding their time. History
// outlives the twin, and an unknown twin or property has an empty history, as ADX answers.
func (a *API) twinHistory(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	return a.listHistory(w, r, history.Selection{ID: r.PathValue("id")})
}

// relationshipHistory serves GET /digitaltwins/{id}/relationships/{rel}/history: the
// changes of the relationship's properties, as twinHistory.
func (a *API) relationshipHistory(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	return a.listHistory(w, r, history.Selection{ID: r.PathValue("id"), RelationshipID: r.PathValue("rel")})
}

func (a *API) listHistory(w http.ResponseWriter, r *http.Request, sel history.Selection) error {
	q := query(r)
	var err error
	sel.Key = q.Get("property")
	if sel.From, err = timeParam(q.Get("from"), "from"); err != nil {
		return err
	}
	if sel.To, err = timeParam(q.Get("to"), "to"); err != nil {
		return err
	}
	if !sel.From.IsZero() && !sel.To.IsZero() && !sel.From.Before(sel.To) {
		return twin.InvalidArgument(fmt.Sprintf("from (%s) must be before to (%s).", q.Get("from"), q.Get("to")))
	}
	c, err := parseCursor(r)
	if err != nil {
		return err
	}
	size, err := pageSize(r, DefaultHistoryPageSize, MaxHistoryPageSize)
	if err != nil {
		return err
	}
	if c.Limit > 0 {
		size = c.Limit
	}
	sel.After, sel.Limit = c.After, size+1
	out := page[historyRow]{Value: []historyRow{}}
	var last history.PropertyEvent
	for row, err := range a.cfg.History.Store.Select(r.Context(), sel) {
		if errors.Is(err, history.ErrBadContinuation) {
			return twin.InvalidArgument("The continuation token is not valid. Use the nextLink of the previous page as it was returned.")
		}
		if err != nil {
			return fmt.Errorf("read the history of %q: %w", sel.ID, err)
		}
		if len(out.Value) == size {
			out.NextLink = nextLink(r, history.Continuation(last), size)
			break
		}
		out.Value = append(out.Value, historyRowOf(row))
		last = row
	}
	return writeJSON(w, http.StatusOK, out)
}

// lifecycleRow is one creation or deletion of a twin, or of a relationship it is the source
// of, as GET /digitaltwins/{id}/lifecycle lists it.
type lifecycleRow struct {
	// Kind is "twin" or "relationship".
	Kind      string `json:"kind"`
	Action    string `json:"action"`
	TimeStamp string `json:"timeStamp"`
	// ModelID is the twin's model; set for twin rows.
	ModelID string `json:"modelId,omitempty"`
	// RelationshipID, RelationshipName and TargetID are set for relationship rows.
	RelationshipID   string `json:"relationshipId,omitempty"`
	RelationshipName string `json:"relationshipName,omitempty"`
	TargetID         string `json:"targetId,omitempty"`
}

// seqWindow is what a history read paged by log position asks: from=/to= (RFC 3339) bounding
// the rows' time, and the page: the log position to continue after (0 on the first page) and
// the page size.
type seqWindow struct {
	From, To time.Time
	After    uint64
	Size     int
}

// parseSeqWindow reads a seqWindow from r's from=, to=, max-items-per-page and continuation
// token, with 400s for bad ones.
func parseSeqWindow(r *http.Request) (seqWindow, error) {
	q := query(r)
	var (
		win seqWindow
		err error
	)
	if win.From, err = timeParam(q.Get("from"), "from"); err != nil {
		return win, err
	}
	if win.To, err = timeParam(q.Get("to"), "to"); err != nil {
		return win, err
	}
	if !win.From.IsZero() && !win.To.IsZero() && !win.From.Before(win.To) {
		return win, twin.InvalidArgument(fmt.Sprintf("from (%s) must be before to (%s).", q.Get("from"), q.Get("to")))
	}
	c, err := parseCursor(r)
	if err != nil {
		return win, err
	}
	if win.Size, err = pageSize(r, DefaultHistoryPageSize, MaxHistoryPageSize); err != nil {
		return win, err
	}
	if c.After != "" {
		if win.After, err = strconv.ParseUint(c.After, 10, 64); err != nil {
			return win, twin.InvalidArgument("The continuation token is not valid. Use the nextLink of the previous page as it was returned.")
		}
		win.Size = c.Limit
	}
	return win, nil
}

// writeSeqPage writes the page of rows, read with a limit of win.Size+1, each shown by show:
// a row beyond win.Size means another page, which starts after the last shown row's log
// position seq(row).
func writeSeqPage[R, V any](w http.ResponseWriter, r *http.Request, win seqWindow, rows []R, seq func(R) uint64, show func(R) V) error {
	out := page[V]{Value: make([]V, 0, min(len(rows), win.Size))}
	for _, row := range rows {
		if len(out.Value) == win.Size {
			out.NextLink = nextLink(r, strconv.FormatUint(seq(rows[win.Size-1]), 10), win.Size)
			break
		}
		out.Value = append(out.Value, show(row))
	}
	return writeJSON(w, http.StatusOK, out)
}

// twinLifecycle serves GET /digitaltwins/{id}/lifecycle: the creations and deletions of the
// twin and of the relationships it is the source of, from the lifecycle tables, in the
// order they happened, from=/to= (RFC 3339) bounding their time. As every history, it
// outlives the twin; an unknown twin has an empty one.
func (a *API) twinLifecycle(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	win, err := parseSeqWindow(r)
	if err != nil {
		return err
	}
	events, err := a.cfg.History.Store.Lifecycle(r.Context(), history.LifecycleSelection{
		ID: r.PathValue("id"), From: win.From, To: win.To, After: win.After, Limit: win.Size + 1})
	if err != nil {
		return err
	}
	return writeSeqPage(w, r, win, events, history.LifecycleEvent.Seq, lifecycleRowOf)
}

// anomalyRow is one anomaly as GET /digitaltwins/{id}/anomalies shows it.
type anomalyRow struct {
	TimeStamp string  `json:"timeStamp"`
	Property  string  `json:"property"`
	Value     float64 `json:"value"`
	Score     float64 `json:"score"`
	Kind      string  `json:"kind"`
	Detector  string  `json:"detector"`
}

// twinAnomalies serves GET /digitaltwins/{id}/anomalies: the anomalies detectors raised on
// the twin's properties, in the order they were raised, from=/to= (RFC 3339) bounding the
// points' time and detector=D keeping one detector's.
func (a *API) twinAnomalies(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	win, err := parseSeqWindow(r)
	if err != nil {
		return err
	}
	rows, err := a.cfg.History.Store.Anomalies(r.Context(), history.AnomalySelection{
		ID: r.PathValue("id"), Detector: query(r).Get("detector"), From: win.From, To: win.To, After: win.After, Limit: win.Size + 1})
	if err != nil {
		return err
	}
	return writeSeqPage(w, r, win, rows, func(e history.AnomalyEvent) uint64 { return e.Seq }, func(e history.AnomalyEvent) anomalyRow {
		return anomalyRow{TimeStamp: formatTime(e.TimeStamp), Property: e.Key, Value: e.Value,
			Score: e.Score, Kind: e.Kind, Detector: e.Detector}
	})
}

func lifecycleRowOf(e history.LifecycleEvent) lifecycleRow {
	if t := e.Twin; t != nil {
		return lifecycleRow{Kind: "twin", Action: t.Action, TimeStamp: formatTime(t.TimeStamp), ModelID: t.ModelID}
	}
	rel := e.Relationship
	return lifecycleRow{
		Kind: "relationship", Action: rel.Action, TimeStamp: formatTime(rel.TimeStamp),
		RelationshipID: rel.RelationshipID, RelationshipName: rel.Name, TargetID: rel.Target,
	}
}

func historyRowOf(e history.PropertyEvent) historyRow {
	row := historyRow{
		Key: e.Key, TimeStamp: formatTime(e.TimeStamp), Value: e.Value, Action: e.Action,
		RelationshipID: e.RelationshipID, RelationshipTarget: e.RelationshipTarget,
	}
	if !e.SourceTimeStamp.IsZero() {
		s := formatTime(e.SourceTimeStamp)
		row.SourceTimeStamp = &s
	}
	if row.Value == nil {
		row.Value = json.RawMessage("null")
	}
	return row
}

// formatTime writes t as ADT writes times: UTC, RFC 3339 with seven fractional digits.
func formatTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.0000000Z") }

// timeParam parses an RFC 3339 time parameter; empty is the zero time.
func timeParam(s, name string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, twin.InvalidArgument(fmt.Sprintf("%s %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z.", name, s))
	}
	return t, nil
}

// historyQueryRequest is the body of POST /history/query.
type historyQueryRequest struct {
	Query      string   `json:"query"`
	Property   string   `json:"property"`
	From       string   `json:"from"`
	To         string   `json:"to"`
	Interval   string   `json:"interval"`
	Aggregates []string `json:"aggregates"`
}

// historyAggregates are the aggregates POST /history/query computes, in their order in a
// bucket.
var historyAggregates = []string{"avg", "min", "max", "count", "first", "last"}

// historyQuery serves POST /history/query: an ADT query that projects twins (or their
// $dtId) picks the twins, and each gets a series of buckets of interval width over
// [from, to) with the aggregates asked for of its property's numeric values. Buckets are
// aligned as Data Explorer's bin() aligns them, from the Unix epoch, so the first and last
// may be cut by from and to; a bucket's time is its aligned start. Buckets without
// values are left out; twins without any, too. Series come in the order the query returns
// the twins, one page of max-items-per-page series (100 by default) at a time; nextLink
// names the next page, to be POSTed the same body.
func (a *API) historyQuery(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	idx := a.cfg.Index
	if idx == nil {
		return pathNotFound(r.URL.EscapedPath())
	}
	raw, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var req historyQueryRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return twin.InvalidArgument("The request body must be {\"query\", \"property\", \"from\", \"to\", \"interval\", \"aggregates\"}: " + err.Error())
	}
	agg, err := req.aggregation()
	if err != nil {
		return err
	}
	aggregates := req.Aggregates
	if len(aggregates) == 0 {
		aggregates = []string{"avg"}
	}
	for _, name := range aggregates {
		if !slices.Contains(historyAggregates, name) {
			return twin.InvalidArgument(fmt.Sprintf("Unknown aggregate %q; the aggregates are %q.", name, historyAggregates))
		}
	}
	agg.NoEdges = !slices.Contains(aggregates, "first") && !slices.Contains(aggregates, "last")
	ids, err := a.queryTwinIDs(r.Context(), idx, req.Query)
	if err != nil {
		return err
	}
	c, err := parseCursor(r)
	if err != nil {
		return err
	}
	size, err := pageSize(r, DefaultQueryPageSize, MaxQueryPageSize)
	if err != nil {
		return err
	}
	skip := 0
	if c.After != "" {
		if skip, err = strconv.Atoi(c.After); err != nil || skip < 0 {
			return twin.InvalidArgument("The continuation token is not valid. Use the nextLink of the previous page as it was returned.")
		}
		size = c.Limit
	}
	out := page[historySeries]{Value: []historySeries{}}
	for skip < len(ids) && len(out.Value) < size {
		// Ask for a page's worth of twins at a time; twins without values make no series.
		end := min(len(ids), skip+size-len(out.Value))
		agg.IDs = ids[skip:end]
		buckets, err := a.cfg.History.Store.Aggregate(r.Context(), agg)
		if err != nil {
			return fmt.Errorf("aggregate the history of %q: %w", req.Property, err)
		}
		out.Value = append(out.Value, seriesOf(agg.IDs, buckets, aggregates)...)
		skip = end
	}
	if skip < len(ids) {
		out.NextLink = nextLink(r, strconv.Itoa(skip), size)
	}
	return writeJSON(w, http.StatusOK, out)
}

// aggregation checks the request's property and times.
func (req historyQueryRequest) aggregation() (history.Aggregation, error) {
	var agg history.Aggregation
	if req.Query == "" {
		return agg, twin.InvalidArgument("The query is required: an ADT query whose one projection is a twin collection or its $dtId.")
	}
	if req.Property == "" {
		return agg, twin.InvalidArgument("The property is required.")
	}
	agg.Key = req.Property
	var err error
	if agg.From, err = timeParam(req.From, "from"); err != nil {
		return agg, err
	}
	if agg.To, err = timeParam(req.To, "to"); err != nil {
		return agg, err
	}
	if agg.From.IsZero() || agg.To.IsZero() || !agg.From.Before(agg.To) {
		return agg, twin.InvalidArgument("from and to are required, with from before to.")
	}
	if agg.Interval, err = parseInterval(req.Interval); err != nil {
		return agg, err
	}
	if n := agg.To.Sub(agg.From) / agg.Interval; n > MaxHistoryBuckets {
		return agg, twin.InvalidArgument(fmt.Sprintf("The interval %s makes %d buckets between from and to; the limit is %d.", req.Interval, n, MaxHistoryBuckets))
	}
	return agg, nil
}

// isoDuration matches the ISO 8601 durations of fixed length: weeks, days, hours, minutes
// and seconds (years and months vary in length).
var isoDuration = regexp.MustCompile(`^P(?:(\d+)W)?(?:(\d+)D)?(?:T(?:(\d+)H)?(?:(\d+)M)?(?:(\d+(?:\.\d+)?)S)?)?$`)

// parseInterval parses a bucket width: an ISO 8601 duration such as PT1H or P1D, or a Go
// duration such as 15m. It must be positive.
func parseInterval(s string) (time.Duration, error) {
	bad := twin.InvalidArgument(fmt.Sprintf("The interval %q is not a positive duration such as PT1H, PT15M or P1D.", s))
	if s == "" {
		return 0, bad
	}
	if m := isoDuration.FindStringSubmatch(s); m != nil && s != "P" && s != "PT" {
		var d float64
		for i, unit := range []time.Duration{7 * 24 * time.Hour, 24 * time.Hour, time.Hour, time.Minute, time.Second} {
			if m[i+1] == "" {
				continue
			}
			v, err := strconv.ParseFloat(m[i+1], 64)
			if err != nil {
				return 0, bad
			}
			d += v * float64(unit)
		}
		if d < 1 || d > math.MaxInt64 {
			return 0, bad
		}
		return time.Duration(d), nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d <= 0 {
		return 0, bad
	}
	return d, nil
}

// historySeries is one twin's buckets in the answer of POST /history/query.
type historySeries struct {
	ID     string           `json:"id"`
	Series []map[string]any `json:"series"`
}

// seriesOf groups buckets by twin, in the order of ids, keeping the aggregates asked for.
func seriesOf(ids []string, buckets []history.Bucket, aggregates []string) []historySeries {
	byID := make(map[string][]history.Bucket)
	for _, b := range buckets {
		byID[b.ID] = append(byID[b.ID], b)
	}
	var out []historySeries
	for _, id := range ids {
		bs := byID[id]
		if len(bs) == 0 {
			continue
		}
		slices.SortFunc(bs, func(x, y history.Bucket) int { return x.Start.Compare(y.Start) })
		s := historySeries{ID: id, Series: make([]map[string]any, len(bs))}
		for i, b := range bs {
			m := map[string]any{"time": formatTime(b.Start)}
			for _, name := range aggregates {
				switch name {
				case "avg":
					m[name] = b.Avg
				case "min":
					m[name] = b.Min
				case "max":
					m[name] = b.Max
				case "count":
					m[name] = b.Count
				case "first":
					m[name] = b.First
				case "last":
					m[name] = b.Last
				}
			}
			s.Series[i] = m
		}
		out = append(out, s)
	}
	return out
}

// queryTwinIDs runs text on idx to its end and returns the twin ids it projects, each once,
// in the order returned. The query must have one projection: a twin collection (or SELECT *
// of twins) or a string such as T.$dtId.
func (a *API) queryTwinIDs(ctx context.Context, idx *graph.Index, text string) ([]string, error) {
	p, err := qlang.Prepare(text)
	if err != nil {
		return nil, &twin.Error{Kind: twin.KindQueryInvalid, Message: err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	var (
		ids  []string
		seen = make(map[string]bool)
		cur  qlang.Cursor
	)
	for {
		var page qlang.Page
		err := idx.Read(ctx, func(ir *graph.Reader) error {
			var err error
			page, err = p.Run(ctx, ir, cur, MaxQueryPageSize)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("run query: %w", err)
		}
		for _, row := range page.Rows {
			id, ok := projectedTwinID(row)
			if !ok {
				return nil, twin.InvalidArgument("The query must have one projection, a twin collection or its $dtId, such as SELECT T FROM DIGITALTWINS T or SELECT T.$dtId FROM DIGITALTWINS T.")
			}
			if !seen[id] {
				seen[id] = true
				ids = append(ids, id)
			}
			if len(ids) > MaxHistorySeries {
				return nil, twin.InvalidArgument(fmt.Sprintf("The query selects more than %d twins; narrow it.", MaxHistorySeries))
			}
		}
		if page.Next == nil {
			return ids, nil
		}
		cur = *page.Next
	}
}

// projectedTwinID returns the twin id a query row projects: the $dtId of a twin document,
// of the one twin member, or the one string member.
func projectedTwinID(row json.RawMessage) (string, bool) {
	var obj map[string]json.RawMessage
	if json.Unmarshal(row, &obj) != nil {
		return "", false
	}
	if id, ok := stringMember(obj, "$dtId"); ok {
		return id, true
	}
	if len(obj) != 1 {
		return "", false
	}
	for _, v := range obj {
		var s string
		if json.Unmarshal(v, &s) == nil {
			return s, true
		}
		var inner map[string]json.RawMessage
		if json.Unmarshal(v, &inner) == nil {
			return stringMember(inner, "$dtId")
		}
	}
	return "", false
}

func stringMember(obj map[string]json.RawMessage, name string) (string, bool) {
	raw, ok := obj[name]
	if !ok {
		return "", false
	}
	var s string
	if json.Unmarshal(raw, &s) != nil {
		return "", false
	}
	return s, true
}

// historyStatus serves GET /history/status.
func (a *API) historyStatus(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	st, err := a.cfg.History.Status(r.Context())
	if err != nil {
		return fmt.Errorf("read history status: %w", err)
	}
	return writeJSON(w, http.StatusOK, st)
}

// pastIndex returns a static graph index of the graph as history tells it stood at asOf,
// or a 400 when history is off or asOf is older than its retention.
func (a *API) pastIndex(ctx context.Context, asOf string) (*graph.Index, error) {
	h := a.cfg.History
	if h == nil {
		return nil, badRequest("asOf needs data history, which is off on this server.")
	}
	t, err := time.Parse(time.RFC3339Nano, asOf)
	if err != nil {
		return nil, badRequest(fmt.Sprintf("asOf %q is not an RFC 3339 time such as 2026-01-02T15:04:05Z.", asOf))
	}
	if h.Retention > 0 && t.Before(time.Now().Add(-h.Retention)) {
		return nil, badRequest(fmt.Sprintf("asOf %s is older than the history's retention of %v.", asOf, h.Retention))
	}
	var models *dtdl.ModelSet
	if h.Models != nil {
		models = h.Models()
	}
	var mark uint64
	if h.Changes != nil {
		if idx := a.past.get(h.Changes, t, models); idx != nil {
			return idx, nil
		}
		mark = h.Changes.Mark()
	}
	past, err := h.Store.Past(ctx, t)
	if err != nil {
		return nil, fmt.Errorf("read the graph as of %s: %w", asOf, err)
	}
	idx, err := graph.NewStatic(ctx, graph.Config{}, pastScanner{past}, len(past.Twins), func() *dtdl.ModelSet { return models }, a.logger)
	if err != nil {
		return nil, err
	}
	if h.Changes != nil {
		a.past.put(t, models, mark, idx)
	}
	return idx, nil
}

// pastScanner yields the twins and relationships of a history.Past as stored documents:
// each property object with the document's own members put in front, as
// {"$dtId":...,"$metadata":{"$model":...},<properties>}.
type pastScanner struct{ past history.Past }

func (s pastScanner) ScanTwins() iter.Seq2[store.Twin, error] {
	return func(yield func(store.Twin, error) bool) {
		for _, t := range s.past.Twins {
			doc := make([]byte, 0, len(t.ID)+len(t.ModelID)+len(t.Properties)+40)
			doc = append(doc, `{"$dtId":`...)
			doc = jsontext.AppendString(doc, t.ID)
			doc = append(doc, `,"$metadata":{"$model":`...)
			doc = jsontext.AppendString(doc, t.ModelID)
			doc = appendMembers(append(doc, '}'), t.Properties)
			if !yield(store.Twin{ID: t.ID, ModelID: t.ModelID, Doc: doc}, nil) {
				return
			}
		}
	}
}

func (s pastScanner) ScanRelationships() iter.Seq2[store.Relationship, error] {
	return func(yield func(store.Relationship, error) bool) {
		for _, r := range s.past.Relationships {
			doc := make([]byte, 0, len(r.ID)+len(r.Name)+len(r.SourceID)+len(r.TargetID)+len(r.Properties)+80)
			doc = append(doc, `{"$relationshipId":`...)
			doc = jsontext.AppendString(doc, r.ID)
			doc = append(doc, `,"$relationshipName":`...)
			doc = jsontext.AppendString(doc, r.Name)
			doc = append(doc, `,"$sourceId":`...)
			doc = jsontext.AppendString(doc, r.SourceID)
			doc = append(doc, `,"$targetId":`...)
			doc = jsontext.AppendString(doc, r.TargetID)
			doc = appendMembers(doc, r.Properties)
			rel := store.Relationship{SourceID: r.SourceID, ID: r.ID, Name: r.Name, TargetID: r.TargetID, Doc: doc}
			if !yield(rel, nil) {
				return
			}
		}
	}
}

// appendMembers closes doc, a JSON object left open after a member, with the members of
// props, a compact JSON object.
func appendMembers(doc, props []byte) []byte {
	if len(props) > 2 {
		doc = append(append(doc, ','), props[1:len(props)-1]...)
	}
	return append(doc, '}')
}
