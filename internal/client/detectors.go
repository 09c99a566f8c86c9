package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
)

// Detectors is the collection of anomaly detectors, listed, read, put and deleted whole
// with the resource methods (ListResources, GetResource, PutResource, DeleteResource).
const Detectors Collection = "detectors"

// BacktestQuery selects the series a backtest scores: one property of one twin, the points
// whose changes committed between From and To (either zero for no bound).
type BacktestQuery struct {
	TwinID   string
	Property string
	From, To time.Time
	// PageSize, when positive, is the max-items-per-page of each request; else the
	// server's default.
	PageSize int
}

// ScoredPoint is one point of a backtest: the value of the series at Time, its score in
// [0, 1], whether it is an anomaly, and the kind of test that scored it.
type ScoredPoint struct {
	Time    string  `json:"time"`
	Value   float64 `json:"value"`
	Score   float64 `json:"score"`
	Anomaly bool    `json:"anomaly"`
	Kind    string  `json:"kind,omitempty"`
}

// Backtest scores the series q selects with the detector name over data history (POST
// /detectors/{name}/backtest), oldest point first. It sends the request again with each
// continuationToken the server answers, calling fn with each page's points as it arrives,
// and stops at fn's first error, which it returns.
func (c *Client) Backtest(ctx context.Context, name string, q BacktestQuery, fn func([]ScoredPoint) error) error {
	body := map[string]string{"twinId": q.TwinID, "property": q.Property}
	if !q.From.IsZero() {
		body["from"] = q.From.UTC().Format(time.RFC3339Nano)
	}
	if !q.To.IsZero() {
		body["to"] = q.To.UTC().Format(time.RFC3339Nano)
	}
	var header http.Header
	if q.PageSize > 0 {
		header = http.Header{"Max-Items-Per-Page": {strconv.Itoa(q.PageSize)}}
	}
	for {
		rd, err := jsonBody(body)
		if err != nil {
			return err
		}
		var out struct {
			Value             []ScoredPoint `json:"value"`
			ContinuationToken *string       `json:"continuationToken"`
		}
		if _, err := c.send(ctx, request{method: http.MethodPost, path: "/detectors/" + seg(name) + "/backtest",
			header: header, body: rd}, &out); err != nil {
			return err
		}
		if err := fn(out.Value); err != nil {
			return err
		}
		if out.ContinuationToken == nil || *out.ContinuationToken == "" {
			return nil
		}
		body["continuationToken"] = *out.ContinuationToken
	}
}

// Anomaly is one anomaly a detector raised on a property of a twin, as data history keeps
// it: TimeStamp is the point's time.
type Anomaly struct {
	TimeStamp string  `json:"timeStamp"`
	Property  string  `json:"property"`
	Value     float64 `json:"value"`
	Score     float64 `json:"score"`
	Kind      string  `json:"kind"`
	Detector  string  `json:"detector"`
}

// TwinAnomalies returns the anomalies detectors raised on the properties of the twin id, of
// the detector when it is not empty, whose points' times fall between from and to (either
// zero for no bound), in the order they were raised (GET /digitaltwins/{id}/anomalies).
func (c *Client) TwinAnomalies(ctx context.Context, id, detector string, from, to time.Time) ([]Anomaly, error) {
	q := timeRange(from, to)
	if detector != "" {
		q.Set("detector", detector)
	}
	var out []Anomaly
	err := c.list(ctx, request{method: http.MethodGet, path: "/digitaltwins/" + seg(id) + "/anomalies", query: q},
		func(items []json.RawMessage) error {
			for _, it := range items {
				var a Anomaly
				if err := json.Unmarshal(it, &a); err != nil {
					return fmt.Errorf("read an anomaly: %w", err)
				}
				out = append(out, a)
			}
			return nil
		})
	return out, err
}
