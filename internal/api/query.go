package api

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/jsontext"
	qlang "github.com/twinflow/twinflow/internal/query"
	"github.com/twinflow/twinflow/internal/twin"
)

// Query paging: the page size when max-items-per-page is absent, and the largest honoured
// (ADT's 2023 limit; larger values are clamped).
const (
	DefaultQueryPageSize = 100
	MaxQueryPageSize     = 1000
)

// QueryTimeout bounds the work of one query page, as ADT's 60-second query timeout does. A
// page that runs longer is 400 TimeoutError (ADT lists TimeoutError under 400).
const QueryTimeout = 60 * time.Second

// queryToken is the content of a query continuation token: the query text and where its
// next page begins. Tokens are base64url JSON; they are opaque to clients and hold no
// secrets, since they only repeat what the client sent.
type queryToken struct {
	Query    string `json:"q"`
	AsOf     string `json:"t,omitempty"`
	Slot     int    `json:"s,omitempty"`
	Skip     int    `json:"k,omitempty"`
	Returned int    `json:"n,omitempty"`
}

// queryBody is the body of POST /query and the shape of its response.
type queryRequest struct {
	Query             *string `json:"query"`
	ContinuationToken *string `json:"continuationToken"`
	// AsOf, an RFC 3339 time, asks for the graph as it stood then, from data history.
	AsOf *string `json:"asOf"`
}

// runQuery serves POST /query (Q1): one page of the query's results from the graph index,
// as {"value": [rows...], "continuationToken": "<token>" | null}.
//
// The body holds the query, or the continuationToken of the previous page (which then
// carries the query). max-items-per-page sets the page size (default 100, at most 1,000). A
// query the language refuses is 400 SqlQueryError with ADT's message form; a token twinflow
// did not issue is 400 BadRequest; a page that takes longer than QueryTimeout is 400
// TimeoutError.
//
// With "asOf" (an RFC 3339 time) in the body, the query is answered on the graph as it stood
// then, rebuilt from data history: 400 when history is off or asOf is older than its
// retention. Its continuation tokens carry asOf.
//
// The query-charge header reports the page's cost in query units, by this model: 1 for the
// page, plus 0.001 per candidate twin, relationship or JOIN/MATCH row the WHERE clause was
// evaluated on, plus 0.01 per row returned, rounded to two decimals. Queries the indexes
// serve ($dtId, IS_OF_MODEL, anchored JOIN and MATCH) examine fewer candidates and so cost
// less, as in ADT, where cost grows with query complexity and result size.
func (a *API) runQuery(w http.ResponseWriter, r *http.Request, ver apiVersion) error {
	idx := a.cfg.Index
	if idx == nil {
		return pathNotFound(r.URL.EscapedPath())
	}
	raw, err := readJSON(w, r, a.cfg.MaxBodyBytes)
	if err != nil {
		return err
	}
	var req queryRequest
	if err := json.Unmarshal(raw, &req); err != nil {
		return badRequest("The request body must be {\"query\": \"...\"} or {\"continuationToken\": \"...\"}.")
	}
	size, err := pageSize(r, DefaultQueryPageSize, MaxQueryPageSize)
	if err != nil {
		return err
	}
	var tok queryToken
	switch {
	case req.ContinuationToken != nil && *req.ContinuationToken != "":
		if tok, err = parseQueryToken(*req.ContinuationToken); err != nil {
			return err
		}
	case req.Query != nil:
		tok.Query = *req.Query
		if req.AsOf != nil {
			tok.AsOf = *req.AsOf
		}
	default:
		return badRequest("The request body must hold a query or a continuationToken.")
	}
	p, err := qlang.Prepare(tok.Query)
	if err != nil {
		var qe *qlang.Error
		if errors.As(err, &qe) && req.ContinuationToken != nil && *req.ContinuationToken != "" {
			return invalidToken()
		}
		return &twin.Error{Kind: twin.KindQueryInvalid, Message: err.Error()}
	}
	ctx, cancel := context.WithTimeout(r.Context(), QueryTimeout)
	defer cancel()
	if tok.AsOf != "" {
		if idx, err = a.pastIndex(ctx, tok.AsOf); err != nil {
			return err
		}
	}
	var page qlang.Page
	err = idx.Read(ctx, func(ir *graph.Reader) error {
		var err error
		page, err = p.Run(ctx, ir, qlang.Cursor{Slot: tok.Slot, Skip: tok.Skip, Returned: tok.Returned}, size)
		return err
	})
	if errors.Is(err, context.DeadlineExceeded) && r.Context().Err() == nil {
		return &twin.Error{Kind: twin.KindTimeout,
			Message: fmt.Sprintf("The query did not finish within %v. Narrow it with a $dtId or IS_OF_MODEL filter, or lower max-items-per-page.", QueryTimeout)}
	}
	if err != nil {
		return fmt.Errorf("run query: %w", err)
	}
	return writeQueryPage(w, p, page, tok, ver)
}

// writeQueryPage writes the page with its continuation token and charge.
func writeQueryPage(w http.ResponseWriter, p *qlang.Prepared, page qlang.Page, tok queryToken, ver apiVersion) error {
	rows := page.Rows
	if ver.hidesSourceTime() {
		if err := rewriteRows(rows, p, ver); err != nil {
			return err
		}
	}
	var next *string
	if c := page.Next; c != nil {
		b, err := json.Marshal(queryToken{Query: tok.Query, AsOf: tok.AsOf, Slot: c.Slot, Skip: c.Skip, Returned: c.Returned})
		if err != nil {
			return fmt.Errorf("encode continuation token: %w", err)
		}
		s := base64.RawURLEncoding.EncodeToString(b)
		next = &s
	}
	charge := 1 + 0.001*float64(page.Examined) + 0.01*float64(len(page.Rows))
	w.Header().Set("query-charge", strconv.FormatFloat(charge, 'f', 2, 64))
	writeRaw(w, http.StatusOK, appendQueryPage(nil, rows, next))
	return nil
}

// appendQueryPage appends the body of a page of rows to b: {"value": rows,
// "continuationToken": next or null}. The rows are the query engine's, compact JSON already,
// and go out as they are: encoding/json would scan and compact every byte of them again.
func appendQueryPage(b []byte, rows []json.RawMessage, next *string) []byte {
	n := len(`{"value":[],"continuationToken":null}`) + len(rows)
	for _, r := range rows {
		n += len(r)
	}
	if next != nil {
		n += len(*next) + 2
	}
	b = slices.Grow(b, n)
	b = append(b, `{"value":[`...)
	for i, r := range rows {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, r...)
	}
	b = append(b, `],"continuationToken":`...)
	if next == nil {
		b = append(b, "null"...)
	} else {
		b = jsontext.AppendString(b, *next)
	}
	return append(b, '}')
}

// rewriteRows rewrites the twin documents in rows, in place, as version ver shows them: the
// rows themselves for SELECT *, the projected twins otherwise.
func rewriteRows(rows []json.RawMessage, p *qlang.Prepared, ver apiVersion) error {
	if p.TwinDocuments() {
		for i, row := range rows {
			doc, err := twinDoc(row, ver)
			if err != nil {
				return err
			}
			rows[i] = doc
		}
		return nil
	}
	keys := p.TwinColumns()
	if len(keys) == 0 {
		return nil
	}
	for i, row := range rows {
		doc, err := rewriteObject(row, func(o object) (object, error) {
			for j, m := range o {
				if !slices.Contains(keys, m.key) || !isObject(m.value) {
					continue
				}
				tw, err := twinDoc(m.value, ver)
				if err != nil {
					return nil, err
				}
				o[j].value = tw
			}
			return o, nil
		})
		if err != nil {
			return err
		}
		rows[i] = doc
	}
	return nil
}

// parseQueryToken decodes a continuation token twinflow issued.
func parseQueryToken(s string) (queryToken, error) {
	var tok queryToken
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err == nil {
		err = json.Unmarshal(raw, &tok)
	}
	if err != nil || tok.Query == "" || tok.Slot < 0 || tok.Skip < 0 || tok.Returned < 0 {
		return queryToken{}, invalidToken()
	}
	return tok, nil
}

func invalidToken() *twin.Error {
	return badRequest("The continuation token is not valid. Send the continuationToken of the previous page as it was returned.")
}

func badRequest(msg string) *twin.Error {
	return &twin.Error{Kind: twin.KindBadRequest, Message: msg}
}
