// Package bench measures twinflow end to end: PATCH throughput and latency over real HTTP
// against a durable store, next to the store's ceiling for the same rows (sqlite.Ceiling) and
// the cost of bare HTTP on the same machine; the time from a
// PATCH to its event at a broker; and the time and memory a restart takes with many twins
// stored.
//
// Each benchmark runs against a fresh data directory and removes it afterwards unless told to
// keep it. Results are plain values with a Table method, so callers decide where they go.
package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/server"
)

// apiVersion is the ADT api-version the benchmarks speak.
const apiVersion = "2023-10-31"

// modelID is the benchmark model: numProperties writable properties of mixed schemas, and a
// relationship "next" to another twin of the model.
const modelID = "dtmi:twinflow:bench:Device;1"

// numProperties is the number of properties of the benchmark model.
const numProperties = 10

// modelDefinition returns the benchmark model's DTDL Interface.
func modelDefinition() ([]byte, error) {
	contents := make([]map[string]any, numProperties, numProperties+1)
	for i := range contents {
		contents[i] = map[string]any{
			"@type": "Property", "name": propName(i), "schema": propSchema(i), "writable": true,
		}
	}
	contents = append(contents, map[string]any{"@type": "Relationship", "name": "next", "target": modelID})
	return json.Marshal(map[string]any{
		"@id": modelID, "@type": "Interface", "@context": "dtmi:dtdl:context;2",
		"displayName": "Bench device", "contents": contents,
	})
}

func propName(i int) string { return "p" + strconv.Itoa(i) }

// propSchema cycles through double, integer, string and boolean.
func propSchema(i int) string {
	return [...]string{"double", "integer", "string", "boolean"}[i%4]
}

// propValue returns a value of property i's schema derived from n.
func propValue(i, n int) any {
	switch propSchema(i) {
	case "double":
		return float64(n) / 8
	case "integer":
		return n % 1_000_000
	case "string":
		return "v" + strconv.Itoa(n)
	default:
		return n%2 == 0
	}
}

// twinBody returns a PUT body for a benchmark twin with every property set.
func twinBody(n int) map[string]any {
	body := map[string]any{"$metadata": map[string]any{"$model": modelID}}
	for i := range numProperties {
		body[propName(i)] = propValue(i, n+i)
	}
	return body
}

// twinID names benchmark twin i.
func twinID(i int) string { return fmt.Sprintf("device-%07d", i) }

// httpClient returns a client keeping up to conns connections alive to one host.
func httpClient(conns int) *http.Client {
	return &http.Client{
		Timeout: time.Minute,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			MaxConnsPerHost:     conns,
			IdleConnTimeout:     time.Minute,
		},
	}
}

// send makes one request and drains the response, returning its status.
func send(ctx context.Context, c *http.Client, method, url, contentType string, body []byte) (int, error) {
	var rd io.Reader = http.NoBody
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return 0, err
	}
	if body != nil {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}

// sendOK makes one request that must answer want.
func sendOK(ctx context.Context, c *http.Client, method, url, contentType string, body []byte, want int) error {
	status, err := send(ctx, c, method, url, contentType, body)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, url, err)
	}
	if status != want {
		return fmt.Errorf("%s %s: status %d, want %d", method, url, status, want)
	}
	return nil
}

// waitReady polls base+"/readyz" until it answers 200 or timeout passes.
func waitReady(ctx context.Context, c *http.Client, base string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		status, err := send(ctx, c, http.MethodGet, base+"/readyz", "", nil)
		if err == nil && status == http.StatusOK {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("wait for %s/readyz: status %d, error %v: %w", base, status, err, ctx.Err())
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// percentile returns the p-th percentile (0 < p <= 100) of sorted durations, 0 for none.
func percentile(sorted []time.Duration, p float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(float64(len(sorted))*p/100+0.5) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

// table writes rows of two columns, aligned.
func table(w io.Writer, rows [][2]string) error {
	width := 0
	for _, r := range rows {
		width = max(width, len(r[0]))
	}
	var b strings.Builder
	for _, r := range rows {
		fmt.Fprintf(&b, "  %-*s  %s\n", width, r[0], r[1])
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// serve starts an in-process server with c and runs it in the background until the returned
// stop is called; stop returns what Run returned.
func serve(ctx context.Context, c config.Config, logger *slog.Logger) (srv *server.Server, stop func() error, err error) {
	if srv, err = server.New(server.Config{Config: c}, logger); err != nil {
		return nil, nil, fmt.Errorf("start server: %w", err)
	}
	return srv, runServer(ctx, srv), nil
}

// stopServer calls stop (of serve or runServer) and joins what the server's Run returned to
// *err: the deferred end of a benchmark's server.
func stopServer(stop func() error, err *error) {
	if runErr := stop(); runErr != nil {
		*err = errors.Join(*err, fmt.Errorf("run server: %w", runErr))
	}
}

// runServer runs srv in the background until the returned stop is called; stop returns what
// Run returned.
func runServer(ctx context.Context, srv *server.Server) (stop func() error) {
	runCtx, cancel := context.WithCancel(ctx)
	stopped := make(chan error, 1)
	go func() { stopped <- srv.Run(runCtx) }()
	return func() error {
		cancel()
		return <-stopped
	}
}

// setUpTwins adds the benchmark model and twins 0..n-1 to the server at base.
func setUpTwins(ctx context.Context, base string, n int, logger *slog.Logger) error {
	const workers = 16
	client := httpClient(workers)
	defer client.CloseIdleConnections()
	if err := waitReady(ctx, client, base, time.Minute); err != nil {
		return err
	}
	model, err := modelDefinition()
	if err != nil {
		return fmt.Errorf("encode model: %w", err)
	}
	models := append(append([]byte{'['}, model...), ']')
	if err := sendOK(ctx, client, http.MethodPost, base+"/models?api-version="+apiVersion, "application/json", models, http.StatusCreated); err != nil {
		return fmt.Errorf("add model: %w", err)
	}
	logger.Info("creating twins", slog.Int("twins", n))
	start := time.Now()
	if err := createTwins(ctx, client, base, n, workers); err != nil {
		return err
	}
	logger.Info("created twins", slog.Duration("took", time.Since(start)))
	return nil
}
