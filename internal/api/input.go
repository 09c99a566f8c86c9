package api

import (
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/twinflow/twinflow/internal/source"
	"github.com/twinflow/twinflow/internal/twin"
)

// The media types request bodies may have.
const (
	mediaJSON      = "application/json"
	mediaJSONPatch = "application/json-patch+json"
)

// pushPath is the path messages are pushed to an http source on, whose body may also be
// NDJSON.
const pushPath = "/sources/{name}/messages"

// input is what an operation checks in a request before its handler runs: the ids in its
// path and the media types its body may have.
type input struct {
	params []pathParam
	// bodyTypes are the media types a request body may have (without parameters).
	bodyTypes []string
}

// pathParam is a wildcard of an operation's path and what its value names.
type pathParam struct {
	name string    // the wildcard, for PathValue
	what string    // the resource its value names, for messages
	kind twin.Kind // the kind of the error for a value that cannot be an id
}

// inputOf returns what op's requests are checked for. A body of a PATCH is a JSON Patch,
// sent as application/json-patch+json (as ADT's clients do) or as application/json; a body
// pushed to a source is JSON or NDJSON; every other body is JSON. A wildcard value must be
// an id by twin.CheckID, with ADT's error code for the resource: EventRouteIdInvalid for
// route ids, ValidationFailed for job ids, InvalidArgument for the rest.
func inputOf(op operation) input {
	in := input{bodyTypes: []string{mediaJSON}}
	switch {
	case op.method == http.MethodPatch:
		in.bodyTypes = []string{mediaJSONPatch, mediaJSON}
	case op.path == pushPath:
		in.bodyTypes = []string{mediaJSON, source.NDJSON}
	case op.path == jobFilePath:
		in.bodyTypes = jobFileTypes
	}
	segs := strings.Split(op.path, "/")
	for i, s := range segs {
		name, ok := strings.CutPrefix(s, "{")
		if !ok {
			continue
		}
		p := pathParam{name: strings.TrimSuffix(name, "}"), what: "resource", kind: twin.KindInvalidArgument}
		switch segs[i-1] {
		case "digitaltwins":
			p.what = "twin"
		case "relationships":
			p.what = "relationship"
		case "components":
			p.what = "component"
		case "models":
			p.what = "model"
		case "eventroutes":
			p.what, p.kind = "event route", twin.KindEventRouteIDInvalid
		case "imports":
			p.what, p.kind = "import job", twin.KindValidationFailed
		case "deletions":
			p.what, p.kind = "delete job", twin.KindValidationFailed
		case "files":
			p.what, p.kind = "job file", twin.KindValidationFailed
		case "endpoints":
			p.what = "endpoint"
		case "sources":
			p.what = "source"
		case "mappings":
			p.what = "mapping"
		case "keys":
			p.what = "key"
		case "detectors":
			p.what = "detector"
		case "deadletters":
			p.what = "dead letter"
		}
		in.params = append(in.params, p)
	}
	return in
}

// check returns the error r is answered with when its query string, path ids or body media
// type are not acceptable, or nil. The query string comes first: the api-version is read
// from it.
func (in input) check(r *http.Request) error {
	if err := checkQuery(r.URL.RawQuery); err != nil {
		return err
	}
	for _, p := range in.params {
		if err := twin.CheckID(p.kind, p.what, r.PathValue(p.name)); err != nil {
			return err
		}
	}
	return checkMediaType(r, in.bodyTypes)
}

// checkQuery reports a query string with a malformed percent-escape as 400 InvalidArgument,
// rather than let a parameter go missing.
func checkQuery(raw string) error {
	for pair := range strings.SplitSeq(raw, "&") {
		k, v, _ := strings.Cut(pair, "=")
		_, errK := url.QueryUnescape(k)
		_, errV := url.QueryUnescape(v)
		if errK != nil || errV != nil {
			return twin.InvalidArgument(fmt.Sprintf("The query parameter %q has a malformed percent-escape.", truncate(pair)))
		}
	}
	return nil
}

// checkMediaType reports a request body whose Content-Type is missing or not one of types
// as 415 UnsupportedMediaType, so that a browser's form or text/plain request (which needs
// no CORS preflight) cannot act on the API. A charset parameter must be UTF-8, the only
// encoding of JSON; other parameters are ignored. Requests without a body pass: those whose
// Body is nil or http.NoBody, and those of length 0, as an HTTP/2 request without a body
// arrives (its Body is not http.NoBody, but its ContentLength is 0).
func checkMediaType(r *http.Request, types []string) error {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return nil
	}
	ct := r.Header.Get("Content-Type")
	if slices.Contains(types, ct) { // what clients send, without parsing it
		return nil
	}
	mt, params, err := mime.ParseMediaType(ct)
	if err == nil && slices.Contains(types, mt) {
		if cs, ok := params["charset"]; !ok || strings.EqualFold(cs, "utf-8") {
			return nil
		}
	}
	want := strings.Join(types, " or ")
	if ct == "" {
		return &twin.Error{Kind: twin.KindMediaTypeUnsupported, Message: fmt.Sprintf(
			"The request has a body but no Content-Type. Send it as %s.", want)}
	}
	return &twin.Error{Kind: twin.KindMediaTypeUnsupported, Message: fmt.Sprintf(
		"Content-Type %q is not supported here. Send the body as %s, in UTF-8.", truncate(ct), want)}
}

// truncate cuts s to at most 100 bytes for an error message.
func truncate(s string) string {
	if len(s) > 100 {
		return s[:100] + "..."
	}
	return s
}
