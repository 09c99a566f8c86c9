package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// Collection is a collection of named resources that are listed, read, put and deleted
// whole: "endpoints", "eventroutes", "sources" or "mappings".
type Collection string

// The collections of named resources.
const (
	Endpoints   Collection = "endpoints"
	EventRoutes Collection = "eventroutes"
	Sources     Collection = "sources"
	Mappings    Collection = "mappings"
)

// ListResources returns every resource of the collection.
func (c *Client) ListResources(ctx context.Context, coll Collection) ([]json.RawMessage, error) {
	return c.listAll(ctx, request{method: http.MethodGet, path: "/" + string(coll)})
}

// GetResource returns the resource name of the collection.
func (c *Client) GetResource(ctx context.Context, coll Collection, name string) (json.RawMessage, error) {
	var out json.RawMessage
	_, err := c.send(ctx, request{method: http.MethodGet, path: "/" + string(coll) + "/" + seg(name)}, &out)
	return out, err
}

// PutResource creates or replaces the resource name of the collection with body, the JSON
// object its PUT takes, and returns what the server answered (null when it answered no
// body, as PUT /eventroutes does).
func (c *Client) PutResource(ctx context.Context, coll Collection, name string, body json.RawMessage) (json.RawMessage, error) {
	resp, err := c.do(ctx, c.http, request{method: http.MethodPut, path: "/" + string(coll) + "/" + seg(name), body: mustBody(body)})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read the answer to PUT %s/%s: %w", coll, name, err)
	}
	if len(b) == 0 {
		return json.RawMessage("null"), nil
	}
	return b, nil
}

// DeleteResource deletes the resource name of the collection.
func (c *Client) DeleteResource(ctx context.Context, coll Collection, name string) error {
	_, err := c.send(ctx, request{method: http.MethodDelete, path: "/" + string(coll) + "/" + seg(name)}, nil)
	return err
}

// DeadLetter is a dead letter of an endpoint (with the event) or of a source (with the
// message); the fields of the other kind are left empty.
type DeadLetter struct {
	ID       string          `json:"id"`
	Sequence uint64          `json:"sequence,omitempty"`
	Reason   string          `json:"reason"`
	Attempts int             `json:"attempts"`
	Time     string          `json:"time"`
	Event    json.RawMessage `json:"event,omitempty"`
	Message  json.RawMessage `json:"message,omitempty"`
}

// ListDeadLetters returns the dead letters of the endpoint or source name (coll is
// Endpoints or Sources), oldest first.
func (c *Client) ListDeadLetters(ctx context.Context, coll Collection, name string) ([]DeadLetter, error) {
	items, err := c.listAll(ctx, request{method: http.MethodGet, path: "/" + string(coll) + "/" + seg(name) + "/deadletters"})
	if err != nil {
		return nil, err
	}
	out := make([]DeadLetter, len(items))
	for i, it := range items {
		if err := json.Unmarshal(it, &out[i]); err != nil {
			return nil, fmt.Errorf("read a dead letter: %w", err)
		}
	}
	return out, nil
}

// RedriveDeadLetter sends the dead letter id of the endpoint or source name again (coll is
// Endpoints or Sources). For an endpoint the server accepts it and its relay sends it
// between batches; for a source, it answers the message's new result, which is returned.
func (c *Client) RedriveDeadLetter(ctx context.Context, coll Collection, name, id string) (json.RawMessage, error) {
	resp, err := c.do(ctx, c.http, request{method: http.MethodPost,
		path: "/" + string(coll) + "/" + seg(name) + "/deadletters/" + seg(id) + "/redrive"})
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("read the answer to the redrive: %w", err)
	}
	return b, nil
}

// ImportJob is ADT's import job with twinflow's progress.
type ImportJob struct {
	ID            string       `json:"id"`
	InputBlobURI  string       `json:"inputBlobUri"`
	OutputBlobURI string       `json:"outputBlobUri"`
	Status        string       `json:"status"`
	Error         *ErrorDetail `json:"error,omitempty"`
	Progress      struct {
		Section       string `json:"section"`
		Models        int    `json:"models"`
		Twins         int    `json:"twins"`
		Relationships int    `json:"relationships"`
		FailedLines   int    `json:"failedLines"`
	} `json:"progress"`
}

// Finished reports whether the job has ended: succeeded, failed or cancelled.
func (j ImportJob) Finished() bool {
	switch j.Status {
	case "succeeded", "failed", "cancelled":
		return true
	}
	return false
}

// UploadJobFile stores the bytes of r as the file name in the server's jobs directory with
// PUT /jobs/files/{name}, replacing a file of that name, and returns the file: URL an
// import job reads it from. size, when not negative, is sent as the Content-Length.
func (c *Client) UploadJobFile(ctx context.Context, name string, r io.Reader, size int64) (string, error) {
	resp, err := c.do(ctx, c.http, request{method: http.MethodPut, path: "/jobs/files/" + seg(name),
		body: r, size: size, ctype: "application/x-ndjson"})
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var out struct {
		URI string `json:"uri"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		return "", fmt.Errorf("read the answer to the upload of %s: %w", name, err)
	}
	return out.URI, nil
}

// JobFile returns the content of the file name in the server's jobs directory, such as an
// import job's output log. The caller closes it.
func (c *Client) JobFile(ctx context.Context, name string) (io.ReadCloser, error) {
	resp, err := c.do(ctx, c.http, request{method: http.MethodGet, path: "/jobs/files/" + seg(name)})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// CreateImportJob creates the import job id, reading input and writing its log to output
// (file: or https: URLs the server may use).
func (c *Client) CreateImportJob(ctx context.Context, id, input, output string) (ImportJob, error) {
	body, err := jsonBody(map[string]string{"inputBlobUri": input, "outputBlobUri": output})
	if err != nil {
		return ImportJob{}, err
	}
	var j ImportJob
	_, err = c.send(ctx, request{method: http.MethodPut, path: "/jobs/imports/" + seg(id), body: body}, &j)
	return j, err
}

// GetImportJob returns the import job id.
func (c *Client) GetImportJob(ctx context.Context, id string) (ImportJob, error) {
	var j ImportJob
	_, err := c.send(ctx, request{method: http.MethodGet, path: "/jobs/imports/" + seg(id)}, &j)
	return j, err
}

// HistoryRow is one change of a property in a twin's history.
type HistoryRow struct {
	Key                string          `json:"key"`
	TimeStamp          string          `json:"timeStamp"`
	SourceTimeStamp    *string         `json:"sourceTimeStamp"`
	Value              json.RawMessage `json:"value"`
	Action             string          `json:"action"`
	RelationshipID     string          `json:"relationshipId,omitempty"`
	RelationshipTarget string          `json:"relationshipTarget,omitempty"`
}

// TwinHistory returns the changes of the property of the twin id (of every property when
// property is empty) between from and to (either zero for no bound), oldest first.
func (c *Client) TwinHistory(ctx context.Context, id, property string, from, to time.Time) ([]HistoryRow, error) {
	q := timeRange(from, to)
	if property != "" {
		q.Set("property", property)
	}
	var out []HistoryRow
	err := c.list(ctx, request{method: http.MethodGet, path: "/digitaltwins/" + seg(id) + "/history", query: q},
		func(items []json.RawMessage) error {
			for _, it := range items {
				var row HistoryRow
				if err := json.Unmarshal(it, &row); err != nil {
					return fmt.Errorf("read a history row: %w", err)
				}
				out = append(out, row)
			}
			return nil
		})
	return out, err
}

// LifecycleRow is one creation or deletion of a twin, or of a relationship it is the source
// of, in its lifecycle history.
type LifecycleRow struct {
	// Kind is "twin" or "relationship".
	Kind      string `json:"kind"`
	Action    string `json:"action"`
	TimeStamp string `json:"timeStamp"`
	// ModelID is set for twin rows; RelationshipID, RelationshipName and TargetID for
	// relationship rows.
	ModelID          string `json:"modelId,omitempty"`
	RelationshipID   string `json:"relationshipId,omitempty"`
	RelationshipName string `json:"relationshipName,omitempty"`
	TargetID         string `json:"targetId,omitempty"`
}

// TwinLifecycle returns the creations and deletions of the twin id and of the relationships
// it is the source of between from and to (either zero for no bound), oldest first.
func (c *Client) TwinLifecycle(ctx context.Context, id string, from, to time.Time) ([]LifecycleRow, error) {
	var out []LifecycleRow
	err := c.list(ctx, request{method: http.MethodGet, path: "/digitaltwins/" + seg(id) + "/lifecycle", query: timeRange(from, to)},
		func(items []json.RawMessage) error {
			for _, it := range items {
				var row LifecycleRow
				if err := json.Unmarshal(it, &row); err != nil {
					return fmt.Errorf("read a lifecycle row: %w", err)
				}
				out = append(out, row)
			}
			return nil
		})
	return out, err
}

// timeRange returns the from and to parameters of a history read; zero times are left out.
func timeRange(from, to time.Time) url.Values {
	q := url.Values{}
	if !from.IsZero() {
		q.Set("from", from.UTC().Format(time.RFC3339Nano))
	}
	if !to.IsZero() {
		q.Set("to", to.UTC().Format(time.RFC3339Nano))
	}
	return q
}

// HistoryQuery sends body, a POST /history/query request (query, property, from, to,
// interval, aggregates), and returns every series of the answer: each next page is the same
// body POSTed to the nextLink of the page before.
func (c *Client) HistoryQuery(ctx context.Context, body json.RawMessage) ([]json.RawMessage, error) {
	var all []json.RawMessage
	r := request{method: http.MethodPost, path: "/history/query"}
	u := c.url(r)
	for {
		r.body = mustBody(body)
		resp, err := c.doURL(ctx, c.http, r, u)
		if err != nil {
			return nil, err
		}
		var out page
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("read the answer to the history query: %w", err)
		}
		all = append(all, out.Value...)
		if out.NextLink == nil || *out.NextLink == "" {
			return all, nil
		}
		u = *out.NextLink
	}
}
