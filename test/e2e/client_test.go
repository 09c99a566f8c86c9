package e2e_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// apiVersion is the ADT api-version the tests speak.
const apiVersion = "2023-10-31"

// client speaks ADT REST to one twinflow server.
type client struct {
	base string
	http *http.Client
}

func newClient(base string, conns int) *client {
	return &client{
		base: base,
		http: &http.Client{
			Timeout: 30 * time.Second,
			Transport: &http.Transport{
				MaxIdleConns:        conns,
				MaxIdleConnsPerHost: conns,
				IdleConnTimeout:     30 * time.Second,
			},
		},
	}
}

// response is what a request returned.
type response struct {
	status int
	etag   string
	header http.Header
	body   []byte
}

// do sends one request with a JSON body (nil for none) and the given extra headers, as
// name/value pairs. A transport error is returned as is: the request may or may not have been
// carried out.
func (c *client) do(ctx context.Context, method, path string, body any, header ...string) (response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return response{}, fmt.Errorf("encode body: %w", err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.url(path), rd)
	if err != nil {
		return response{}, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
		if method == http.MethodPatch {
			req.Header.Set("Content-Type", "application/json-patch+json")
		}
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, fmt.Errorf("read %s %s response: %w", method, path, err)
	}
	return response{status: resp.StatusCode, etag: resp.Header.Get("ETag"), header: resp.Header, body: b}, nil
}

// url returns the URL of path, with the api-version added: path is relative to the server
// (it may have a query string), or an absolute URL the server gave, such as a nextLink,
// used as it is.
func (c *client) url(path string) string {
	switch {
	case strings.HasPrefix(path, "http://"), strings.HasPrefix(path, "https://"):
		return path
	case strings.Contains(path, "?"):
		return c.base + path + "&api-version=" + apiVersion
	}
	return c.base + path + "?api-version=" + apiVersion
}

// must sends a request that has to succeed with status want and returns its response.
func (c *client) must(t testing.TB, method, path string, body any, want int) response {
	t.Helper()
	resp, err := c.do(t.Context(), method, path, body)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	if resp.status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.status, want, resp.body)
	}
	return resp
}

// twinPath and relPath build escaped resource paths.
func twinPath(id string) string { return "/digitaltwins/" + url.PathEscape(id) }

func relPath(source, id string) string {
	return twinPath(source) + "/relationships/" + url.PathEscape(id)
}

// sensorModel is the model every end-to-end twin uses: one integer property and a
// relationship to other sensors carrying a weight.
var sensorModel = map[string]any{
	"@id":      "dtmi:twinflow:e2e:Sensor;1",
	"@type":    "Interface",
	"@context": "dtmi:dtdl:context;2",
	"contents": []any{
		map[string]any{"@type": "Property", "name": "value", "schema": "integer", "writable": true},
		map[string]any{"@type": "Property", "name": "label", "schema": "string", "writable": true},
		map[string]any{
			"@type":  "Relationship",
			"name":   "feeds",
			"target": "dtmi:twinflow:e2e:Sensor;1",
			"properties": []any{
				map[string]any{"@type": "Property", "name": "weight", "schema": "integer", "writable": true},
			},
		},
	},
}

// sensorTwin returns the body of a PUT creating a sensor twin.
func sensorTwin(value int) map[string]any {
	return map[string]any{
		"$metadata": map[string]any{"$model": "dtmi:twinflow:e2e:Sensor;1"},
		"value":     value,
	}
}

// twinDoc is the part of a twin the tests look at.
type twinDoc struct {
	ID    string `json:"$dtId"`
	ETag  string `json:"$etag"`
	Value int    `json:"value"`
}

// relDoc is the part of a relationship the tests look at.
type relDoc struct {
	ID     string `json:"$relationshipId"`
	ETag   string `json:"$etag"`
	Source string `json:"$sourceId"`
	Target string `json:"$targetId"`
	Weight int    `json:"weight"`
}

// query runs an ADT query to the end, following continuation tokens, and decodes every row
// into a new T.
func query[T any](t *testing.T, c *client, q string) []T {
	t.Helper()
	var rows []T
	body := map[string]any{"query": q}
	for {
		resp := c.must(t, http.MethodPost, "/query", body, http.StatusOK)
		var page struct {
			Value             []T     `json:"value"`
			ContinuationToken *string `json:"continuationToken"`
		}
		if err := json.Unmarshal(resp.body, &page); err != nil {
			t.Fatalf("decode query page of %q: %v", q, err)
		}
		rows = append(rows, page.Value...)
		if page.ContinuationToken == nil {
			return rows
		}
		body = map[string]any{"continuationToken": *page.ContinuationToken}
	}
}
