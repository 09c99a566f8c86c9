package client

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
)

// Model is ADT's DigitalTwinsModelData. Model holds the definition only when it was asked
// for.
type Model struct {
	ID             string            `json:"id"`
	DisplayName    map[string]string `json:"displayName,omitempty"`
	Description    map[string]string `json:"description,omitempty"`
	UploadTime     string            `json:"uploadTime,omitempty"`
	Decommissioned bool              `json:"decommissioned"`
	Model          json.RawMessage   `json:"model,omitempty"`
}

// AddModels uploads the interfaces in one POST /models: all of them are added, or none.
// Each must be a DTDL interface; the ones it depends on must be among them or already on the
// server.
func (c *Client) AddModels(ctx context.Context, models []json.RawMessage) ([]Model, error) {
	body, err := jsonBody(models)
	if err != nil {
		return nil, err
	}
	var out []Model
	_, err = c.send(ctx, request{method: http.MethodPost, path: "/models", body: body}, &out)
	return out, err
}

// ListModels returns every model on the server, with their definitions when definitions is
// set.
func (c *Client) ListModels(ctx context.Context, definitions bool) ([]Model, error) {
	r := request{method: http.MethodGet, path: "/models", header: http.Header{"Max-Items-Per-Page": {"100"}}}
	if definitions {
		r.query = url.Values{"includeModelDefinition": {"true"}}
	}
	var out []Model
	err := c.list(ctx, r, func(items []json.RawMessage) error {
		for _, it := range items {
			var m Model
			if err := json.Unmarshal(it, &m); err != nil {
				return fmt.Errorf("read a model of the list: %w", err)
			}
			out = append(out, m)
		}
		return nil
	})
	return out, err
}

// GetModel returns the model id, with its definition.
func (c *Client) GetModel(ctx context.Context, id string) (Model, error) {
	var m Model
	_, err := c.send(ctx, request{method: http.MethodGet, path: "/models/" + seg(id),
		query: url.Values{"includeModelDefinition": {"true"}}}, &m)
	return m, err
}

// DecommissionModel marks the model id decommissioned: no new twin may use it.
func (c *Client) DecommissionModel(ctx context.Context, id string) error {
	body, _ := jsonBody(json.RawMessage(`[{"op": "replace", "path": "/decommissioned", "value": true}]`))
	_, err := c.send(ctx, request{method: http.MethodPatch, path: "/models/" + seg(id), body: body,
		ctype: "application/json-patch+json"}, nil)
	return err
}

// DeleteModel deletes the model id, which no other model may depend on.
func (c *Client) DeleteModel(ctx context.Context, id string) error {
	_, err := c.send(ctx, request{method: http.MethodDelete, path: "/models/" + seg(id)}, nil)
	return err
}

// GetTwin returns the twin id as the server shows it.
func (c *Client) GetTwin(ctx context.Context, id string) (json.RawMessage, error) {
	var out json.RawMessage
	_, err := c.send(ctx, request{method: http.MethodGet, path: "/digitaltwins/" + seg(id)}, &out)
	return out, err
}

// PutTwin creates or replaces the twin id with body, a twin document ($metadata.$model and
// property values), and returns the twin the server stored.
func (c *Client) PutTwin(ctx context.Context, id string, body json.RawMessage) (json.RawMessage, error) {
	var out json.RawMessage
	_, err := c.send(ctx, request{method: http.MethodPut, path: "/digitaltwins/" + seg(id), body: mustBody(body)}, &out)
	return out, err
}

// PatchTwin applies the JSON Patch patch to the twin id and returns its new ETag. A
// non-empty ifMatch makes the patch conditional on the twin's current ETag (412 when it
// differs).
func (c *Client) PatchTwin(ctx context.Context, id string, patch json.RawMessage, ifMatch string) (string, error) {
	r := request{method: http.MethodPatch, path: "/digitaltwins/" + seg(id), body: mustBody(patch), ctype: "application/json-patch+json"}
	if ifMatch != "" {
		r.header = http.Header{"If-Match": {ifMatch}}
	}
	h, err := c.send(ctx, r, nil)
	if err != nil {
		return "", err
	}
	return h.Get("ETag"), nil
}

// DeleteTwin deletes the twin id, which must have no relationships.
func (c *Client) DeleteTwin(ctx context.Context, id string) error {
	_, err := c.send(ctx, request{method: http.MethodDelete, path: "/digitaltwins/" + seg(id)}, nil)
	return err
}

// ListRelationships returns the relationships from the twin id, or, with incoming, those
// to it (ADT's IncomingRelationship shape).
func (c *Client) ListRelationships(ctx context.Context, id string, incoming bool) ([]json.RawMessage, error) {
	p := "/digitaltwins/" + seg(id) + "/relationships"
	if incoming {
		p = "/digitaltwins/" + seg(id) + "/incomingrelationships"
	}
	return c.listAll(ctx, request{method: http.MethodGet, path: p})
}

// PutRelationship creates or replaces the relationship relID of the twin src with body
// ($targetId, $relationshipName and property values) and returns what the server stored.
func (c *Client) PutRelationship(ctx context.Context, src, relID string, body json.RawMessage) (json.RawMessage, error) {
	var out json.RawMessage
	_, err := c.send(ctx, request{method: http.MethodPut, path: "/digitaltwins/" + seg(src) + "/relationships/" + seg(relID),
		body: mustBody(body)}, &out)
	return out, err
}

// DeleteRelationship deletes the relationship relID of the twin src.
func (c *Client) DeleteRelationship(ctx context.Context, src, relID string) error {
	_, err := c.send(ctx, request{method: http.MethodDelete, path: "/digitaltwins/" + seg(src) + "/relationships/" + seg(relID)}, nil)
	return err
}

// Query runs the ADT query q and calls fn with each page of result rows, following the
// continuation token until the last page or fn's first error, which it returns. pageSize,
// when positive, is sent as max-items-per-page.
func (c *Client) Query(ctx context.Context, q string, pageSize int, fn func(rows []json.RawMessage) error) error {
	in := map[string]string{"query": q}
	for {
		body, err := jsonBody(in)
		if err != nil {
			return err
		}
		r := request{method: http.MethodPost, path: "/query", body: body}
		if pageSize > 0 {
			r.header = http.Header{"Max-Items-Per-Page": {strconv.Itoa(pageSize)}}
		}
		var out struct {
			Value             []json.RawMessage `json:"value"`
			ContinuationToken *string           `json:"continuationToken"`
		}
		if _, err := c.send(ctx, r, &out); err != nil {
			return err
		}
		if err := fn(out.Value); err != nil {
			return err
		}
		if out.ContinuationToken == nil || *out.ContinuationToken == "" {
			return nil
		}
		in = map[string]string{"continuationToken": *out.ContinuationToken}
	}
}

// mustBody is the reader of a JSON body the caller already holds.
func mustBody(b json.RawMessage) io.Reader { return bytes.NewReader(b) }
