package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/google/uuid"

	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twin"
)

// ImportConfig configures the import benchmark. Zero fields take the defaults in brackets.
type ImportConfig struct {
	// Dir is where the temporary data directories go [os.TempDir()].
	Dir string
	// Keep leaves the data directories in place instead of removing them.
	Keep bool
	// Twins is the number of twins imported, each with a relationship to the next
	// [1,000,000].
	Twins int
	// PatchTwins is the number of twins the PATCH load patches [10,000].
	PatchTwins int
	// PatchRate is the number of PATCHes sent per second, answered or not [500].
	PatchRate int
	// PatchConns is the number of keep-alive connections the PATCHes go on, one request in
	// flight on each [16].
	PatchConns int
	// Baseline is how long the PATCH load runs alone, before the import [10s].
	Baseline time.Duration
	// CeilingBatch is the number of rows per transaction of the SQLite ceiling [10,000].
	CeilingBatch int
}

func (c ImportConfig) withDefaults() ImportConfig {
	if c.Dir == "" {
		c.Dir = os.TempDir()
	}
	if c.Twins <= 0 {
		c.Twins = 1_000_000
	}
	if c.PatchTwins <= 0 {
		c.PatchTwins = 10_000
	}
	if c.PatchRate <= 0 {
		c.PatchRate = 500
	}
	if c.PatchConns <= 0 {
		c.PatchConns = 16
	}
	if c.Baseline <= 0 {
		c.Baseline = 10 * time.Second
	}
	if c.CeilingBatch <= 0 {
		c.CeilingBatch = 10_000
	}
	return c
}

// SteadyLoad is what a fixed-rate PATCH load measured.
type SteadyLoad struct {
	// Sent counts the PATCHes sent, Patches those acknowledged with 204 and Failed the others.
	// Late counts those handed to a connection more than lateAfter after their due time.
	Sent, Patches, Failed, Late int
	// Latency is that of the acknowledged PATCHes, from writing the request to reading the
	// whole response.
	Latency Latencies
	Elapsed time.Duration
}

func (l SteadyLoad) String() string {
	return fmt.Sprintf("%s (%d acknowledged in %v, %d failed, %d late)", l.Latency, l.Patches, l.Elapsed.Round(time.Millisecond), l.Failed, l.Late)
}

// ImportResult is what the import benchmark measured.
type ImportResult struct {
	Twins, Relationships int
	// FileBytes is the size of the NDJSON input.
	FileBytes int64
	// Elapsed is the time from the PUT of the job to the first poll that found it succeeded
	// (polled every 100 ms); JobElapsed the job's own, from createdDateTime to
	// finishedDateTime.
	Elapsed, JobElapsed time.Duration
	// CPU is the CPU time this process (the server and the PATCH load) used during the
	// import, Store what the store's write path did meanwhile.
	CPU   time.Duration
	Store store.Stats
	// Alone is the PATCH load before the import, During the same load while it ran.
	Alone, During SteadyLoad
	// Ceiling is the SQLite ceiling for the same rows, measured in the same run, and
	// CeilingCPU the CPU time it took.
	Ceiling    sqlite.CeilingResult
	CeilingCPU time.Duration
	// Counted is what queries counted after the import: twins and relationships.
	CountedTwins, CountedRelationships int
}

// RowsPerSecond returns the twins and relationships imported per second, by the job's own
// times.
func (r ImportResult) RowsPerSecond() float64 {
	if r.JobElapsed <= 0 {
		return 0
	}
	return float64(r.Twins+r.Relationships) / r.JobElapsed.Seconds()
}

// Table writes the result as a short table. Its row "import job" starts with the rate as
// plain digits followed by " rows/s", which scripts read.
func (r ImportResult) Table(w io.Writer) error {
	rate, ceil := r.RowsPerSecond(), r.Ceiling.WritesPerSecond()
	ratio := "n/a"
	if ceil > 0 {
		ratio = fmt.Sprintf("%.1f%%", 100*rate/ceil)
	}
	rows := r.Twins + r.Relationships
	return table(w, [][2]string{
		{"input", fmt.Sprintf("%d twins of %d properties and %d relationships, NDJSON, %.1f MiB", r.Twins, numProperties, r.Relationships, float64(r.FileBytes)/(1<<20))},
		{"import job", fmt.Sprintf("%.0f rows/s (%d rows in %v by the job's times, %v from PUT to seen succeeded)",
			rate, rows, r.JobElapsed.Round(time.Millisecond), r.Elapsed.Round(time.Millisecond))},
		{"group commit", groupCommit(r.Store)},
		{"CPU per row", cpuPer(r.CPU, rows, "rows", "server and PATCH load")},
		{"SQLite ceiling", fmt.Sprintf("%.0f rows/s (the same twin, relationship and log rows, %d per transaction, WAL fdatasync'd beside the next transaction: %d in %v)",
			ceil, r.Ceiling.Batch, r.Ceiling.Writes, r.Ceiling.Elapsed.Round(time.Millisecond))},
		{"ceiling CPU per row", cpuPer(r.CeilingCPU, r.Ceiling.Writes, "rows", "SQLite, its driver and the row generator")},
		{"import / ceiling", ratio},
		{"PATCH alone", r.Alone.String()},
		{"PATCH during import", r.During.String()},
		{"counted after", fmt.Sprintf("%d twins, %d relationships (queries, including the PATCH load's twins)", r.CountedTwins, r.CountedRelationships)},
	})
}

// importID names imported twin i.
func importID(i int) string { return fmt.Sprintf("imp-%07d", i) }

// Import runs the import benchmark: it writes an NDJSON file of the benchmark model, Twins
// twins of it and a relationship from each to the next into the jobs directory of an
// in-process server over a durable store in a fresh data directory; it runs a fixed-rate
// PATCH load against PatchTwins other twins for Baseline, then imports the file with an
// import job while the same load runs on, and checks with queries that everything arrived.
// Then, with the server stopped, it measures the SQLite ceiling (sqlite.InsertCeiling) for the
// same rows: the twins and relationships as the import stores them, with their Create events.
func Import(ctx context.Context, cfg ImportConfig, logger *slog.Logger) (res ImportResult, err error) {
	cfg = cfg.withDefaults()
	res = ImportResult{Twins: cfg.Twins, Relationships: cfg.Twins}
	dir, err := os.MkdirTemp(cfg.Dir, "twinflow-bench-import-")
	if err != nil {
		return res, fmt.Errorf("create bench directory: %w", err)
	}
	if !cfg.Keep {
		defer os.RemoveAll(dir)
	}
	jobsDir := filepath.Join(dir, "jobs")
	if err := os.MkdirAll(jobsDir, 0o750); err != nil {
		return res, fmt.Errorf("create jobs directory: %w", err)
	}
	logger.Info("writing the input", slog.Int("twins", cfg.Twins))
	if res.FileBytes, err = writeImportFile(filepath.Join(jobsDir, "import.ndjson"), cfg.Twins); err != nil {
		return res, err
	}

	serviceID, err := runImport(ctx, cfg, dir, logger, &res)
	if err != nil {
		return res, err
	}

	logger.Info("measuring the SQLite ceiling", slog.Int("rows", 2*cfg.Twins))
	rows := importRows(ctx, cfg.Twins, serviceID)
	cpu0, cpuOK := processCPU()
	res.Ceiling, err = sqlite.InsertCeiling(ctx, sqlite.InsertCeilingConfig{
		Dir: filepath.Join(dir, "ceiling"), Rows: 2 * cfg.Twins, Batch: cfg.CeilingBatch,
		Next: func() sqlite.InsertRow { return <-rows },
	}, logger)
	if cpu1, ok := processCPU(); ok && cpuOK {
		res.CeilingCPU = cpu1 - cpu0
	}
	if err != nil {
		return res, fmt.Errorf("measure the SQLite ceiling: %w", err)
	}
	return res, nil
}

// runImport starts the server, runs the PATCH load alone and then during the import, and
// fills in res. It returns the server's service id.
func runImport(ctx context.Context, cfg ImportConfig, dir string, logger *slog.Logger, res *ImportResult) (serviceID string, err error) {
	srv, stop, err := serve(ctx, config.Config{
		Server: config.Server{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "server")},
		Jobs:   config.Jobs{Dir: filepath.Join(dir, "jobs")},
	}, logger)
	if err != nil {
		return "", err
	}
	defer stopServer(stop, &err)
	base := srv.URL()
	if err := setUpTwins(ctx, base, cfg.PatchTwins, logger); err != nil {
		return "", err
	}

	logger.Info("patching alone", slog.Int("rate", cfg.PatchRate), slog.Duration("duration", cfg.Baseline))
	loadCtx, stopLoad := context.WithTimeout(ctx, cfg.Baseline)
	res.Alone, err = steadyLoad(loadCtx, srv.Addr().String(), cfg)
	stopLoad()
	if err != nil {
		return "", err
	}

	logger.Info("importing while patching", slog.Int("twins", cfg.Twins), slog.Int("relationships", cfg.Twins))
	client := httpClient(2)
	defer client.CloseIdleConnections()
	jobURL := base + "/jobs/imports/bench?api-version=" + apiVersion
	body := []byte(`{"inputBlobUri": "file:import.ndjson", "outputBlobUri": "file:import.log"}`)

	loadCtx, stopLoad = context.WithCancel(ctx)
	defer stopLoad()
	type loadOutcome struct {
		load SteadyLoad
		err  error
	}
	during := make(chan loadOutcome, 1)
	go func() {
		l, err := steadyLoad(loadCtx, srv.Addr().String(), cfg)
		during <- loadOutcome{l, err}
	}()
	before := srv.StoreStats()
	cpu0, cpuOK := processCPU()
	start := time.Now()
	if err := sendOK(ctx, client, http.MethodPut, jobURL, "application/json", body, http.StatusCreated); err != nil {
		return "", fmt.Errorf("create the import job: %w", err)
	}
	j, err := waitImport(ctx, client, jobURL, logger)
	res.Elapsed = time.Since(start)
	if cpu1, ok := processCPU(); ok && cpuOK {
		res.CPU = cpu1 - cpu0
	}
	res.Store = statsSince(before, srv.StoreStats())
	stopLoad()
	out := <-during
	if err != nil {
		return "", err
	}
	if out.err != nil {
		return "", fmt.Errorf("PATCH load during the import: %w", out.err)
	}
	res.During = out.load
	if j.Status != "succeeded" {
		return "", fmt.Errorf("the import job ended %s: %+v", j.Status, j)
	}
	if j.Progress.Twins != cfg.Twins || j.Progress.Relationships != cfg.Twins {
		return "", fmt.Errorf("the import job imported %d twins and %d relationships, want %d of each", j.Progress.Twins, j.Progress.Relationships, cfg.Twins)
	}
	created, err1 := time.Parse(time.RFC3339Nano, j.Created)
	finished, err2 := time.Parse(time.RFC3339Nano, j.Finished)
	if err := errors.Join(err1, err2); err != nil {
		return "", fmt.Errorf("read the job's times: %w", err)
	}
	res.JobElapsed = finished.Sub(created)

	if res.CountedTwins, err = count(ctx, client, base, "SELECT COUNT() FROM DIGITALTWINS"); err != nil {
		return "", err
	}
	if res.CountedRelationships, err = count(ctx, client, base, "SELECT COUNT() FROM RELATIONSHIPS"); err != nil {
		return "", err
	}
	if res.CountedTwins != cfg.Twins+cfg.PatchTwins || res.CountedRelationships != cfg.Twins {
		return "", fmt.Errorf("queries count %d twins and %d relationships after the import", res.CountedTwins, res.CountedRelationships)
	}
	return srv.ServiceID(), nil
}

// importJob is the part of an import job the benchmark reads.
type importJob struct {
	Status   string `json:"status"`
	Created  string `json:"createdDateTime"`
	Finished string `json:"finishedDateTime"`
	Progress struct {
		Section       string `json:"section"`
		Twins         int    `json:"twins"`
		Relationships int    `json:"relationships"`
		FailedLines   int    `json:"failedLines"`
	} `json:"progress"`
	Error *struct{ Code, Message string } `json:"error"`
}

// waitImport polls the job at url every 100 ms until it finished, logging its progress every
// 10 s.
func waitImport(ctx context.Context, c *http.Client, url string, logger *slog.Logger) (importJob, error) {
	lastLog := time.Now()
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if err != nil {
			return importJob{}, err
		}
		resp, err := c.Do(req)
		if err != nil {
			return importJob{}, fmt.Errorf("get the import job: %w", err)
		}
		var j importJob
		err = json.NewDecoder(resp.Body).Decode(&j)
		resp.Body.Close()
		if err != nil {
			return importJob{}, fmt.Errorf("read the import job: %w", err)
		}
		switch j.Status {
		case "succeeded", "failed", "cancelled":
			return j, nil
		}
		if time.Since(lastLog) > 10*time.Second {
			logger.Info("importing", slog.String("section", j.Progress.Section), slog.Int("twins", j.Progress.Twins),
				slog.Int("relationships", j.Progress.Relationships))
			lastLog = time.Now()
		}
		select {
		case <-ctx.Done():
			return importJob{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// count runs a COUNT query and returns its count.
func count(ctx context.Context, c *http.Client, base, q string) (int, error) {
	body, _ := json.Marshal(map[string]string{"query": q})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/query?api-version="+apiVersion, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("query %q: %w", q, err)
	}
	defer resp.Body.Close()
	var page struct {
		Value []struct {
			Count int `json:"COUNT"`
		} `json:"value"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil || len(page.Value) != 1 {
		return 0, fmt.Errorf("query %q: status %d, %v", q, resp.StatusCode, err)
	}
	return page.Value[0].Count, nil
}

// writeImportFile writes an import file of the benchmark model, twins 0..n-1 (importID) and a
// relationship "next" from each to the next (the last to the first) to path, and returns its
// size.
func writeImportFile(path string, n int) (int64, error) {
	f, err := os.Create(path)
	if err != nil {
		return 0, fmt.Errorf("create the input: %w", err)
	}
	w := bufio.NewWriterSize(f, 1<<20)
	model, err := modelDefinition()
	if err != nil {
		f.Close()
		return 0, fmt.Errorf("encode model: %w", err)
	}
	w.WriteString(`{"Section": "Header"}` + "\n" + `{"fileVersion": "1.0.0", "author": "twinflow bench", "organization": "twinflow"}` + "\n")
	w.WriteString(`{"Section": "Models"}` + "\n")
	w.Write(model)
	w.WriteString("\n" + `{"Section": "Twins"}` + "\n")
	var line []byte
	for i := range n {
		line = appendTwinLine(line[:0], i)
		w.Write(line)
	}
	w.WriteString(`{"Section": "Relationships"}` + "\n")
	for i := range n {
		line = append(line[:0], `{"$dtId":"`...)
		line = append(line, importID(i)...)
		line = append(line, `","$relationshipId":"next","$targetId":"`...)
		line = append(line, importID((i+1)%n)...)
		line = append(line, `","$relationshipName":"next"}`+"\n"...)
		w.Write(line)
	}
	err = w.Flush()
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, fmt.Errorf("write the input: %w", err)
	}
	info, err := os.Stat(path)
	if err != nil {
		return 0, err
	}
	return info.Size(), nil
}

// appendTwinLine appends the import line of twin i: the body twinBody(i) with its $dtId.
func appendTwinLine(b []byte, i int) []byte {
	b = append(b, `{"$dtId":"`...)
	b = append(b, importID(i)...)
	b = append(b, `","$metadata":{"$model":"`+modelID+`"}`...)
	for p := range numProperties {
		b = append(b, `,"`...)
		b = append(b, propName(p)...)
		b = append(b, `":`...)
		switch v := propValue(p, i+p).(type) {
		case float64:
			b = strconv.AppendFloat(b, v, 'g', -1, 64)
		case int:
			b = strconv.AppendInt(b, int64(v), 10)
		case string:
			b = strconv.AppendQuote(b, v)
		case bool:
			b = strconv.AppendBool(b, v)
		}
	}
	return append(b, "}\n"...)
}

// importRows returns a channel of the rows an import of writeImportFile's file stores, in
// the order it stores them: each twin's document as the twin service builds it with its
// Twin.Create event, then each relationship with its Relationship.Create event. A goroutine
// builds them ahead, so that the ceiling's writer only receives them; it stops once all were
// sent or ctx ends.
func importRows(ctx context.Context, n int, serviceID string) <-chan sqlite.InsertRow {
	rows := make(chan sqlite.InsertRow, 8192)
	noComponents := func(string) bool { return false }
	go func() {
		defer close(rows)
		now := twin.FormatTime(time.Now())
		send := func(r sqlite.InsertRow) bool {
			select {
			case rows <- r:
				return true
			case <-ctx.Done():
				return false
			}
		}
		for i := range n {
			etag := twin.NewETag()
			doc, err := twin.NewDocument(importID(i), etag, twinBody(i), noComponents, now)
			if err != nil {
				return
			}
			enc, err := twin.Encode(doc)
			if err != nil {
				return
			}
			t := store.Twin{ID: importID(i), ModelID: modelID, ETag: etag, Doc: enc}
			if !send(sqlite.InsertRow{Twin: &t, Event: createEvent(event.TwinCreate, t.ID, now, serviceID, enc)}) {
				return
			}
		}
		for i := range n {
			etag := twin.NewETag()
			src, dst := importID(i), importID((i+1)%n)
			doc, err := twin.EncodeRelationship(src, "next", "next", dst, etag, nil)
			if err != nil {
				return
			}
			r := store.Relationship{SourceID: src, ID: "next", Name: "next", TargetID: dst, ETag: etag, Doc: doc}
			ev := createEvent(event.RelationshipCreate, event.RelationshipSubject(src, "next"), now, serviceID, doc)
			if !send(sqlite.InsertRow{Relationship: &r, Event: ev}) {
				return
			}
		}
	}()
	return rows
}

// createEvent is a Create event as the twin service emits it for a request without a trace.
func createEvent(typ, subject, now, serviceID string, data []byte) event.Event {
	return event.Event{
		ID: uuid.NewString(), Source: serviceID, SpecVersion: event.SpecVersion, Type: typ, Subject: subject,
		Time: now, DataContentType: "application/json", TraceParent: newTraceParent(), Data: data,
	}
}

// steadyLoad sends cfg.PatchRate PATCHes a second of random properties of random twins
// among the first cfg.PatchTwins, each handed to the next free of cfg.PatchConns keep-alive
// connections, until ctx ends; then it waits for those in flight and returns what it
// measured.
func steadyLoad(ctx context.Context, addr string, cfg ImportConfig) (SteadyLoad, error) {
	conns := make([]*patchClient, cfg.PatchConns)
	for i := range conns {
		pc, err := dialPatchClient(context.WithoutCancel(ctx), addr)
		if err != nil {
			for _, pc := range conns[:i] {
				pc.conn.Close()
			}
			return SteadyLoad{}, err
		}
		conns[i] = pc
	}
	var (
		mu     sync.Mutex
		lats   []time.Duration
		failed int
		errs   []error
		wg     sync.WaitGroup
		jobs   = make(chan []byte)
	)
	for _, pc := range conns {
		wg.Go(func() {
			defer pc.conn.Close()
			for body := range jobs {
				id := twinID(rand.N(cfg.PatchTwins))
				t0 := time.Now()
				status, err := pc.patch(id, body)
				d := time.Since(t0)
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, fmt.Errorf("PATCH twin %s: %w", id, err))
				case status == http.StatusNoContent:
					lats = append(lats, d)
				default:
					failed++
				}
				mu.Unlock()
				if err != nil {
					return
				}
			}
		})
	}
	bodies := make([][]byte, bodiesPerClient)
	for i := range bodies {
		bodies[i] = patchBody(1+rand.N(3), i)
	}
	start := time.Now()
	interval := time.Second / time.Duration(cfg.PatchRate)
	sent, late := 0, 0
send:
	for {
		due := start.Add(time.Duration(sent) * interval)
		select {
		case <-time.After(time.Until(due)):
		case <-ctx.Done():
			break send
		}
		select {
		case jobs <- bodies[sent%len(bodies)]:
		case <-ctx.Done():
			break send
		}
		sent++
		if time.Since(due) > lateAfter {
			late++
		}
	}
	close(jobs)
	wg.Wait()
	elapsed := time.Since(start)
	slices.Sort(lats)
	return SteadyLoad{Sent: sent, Patches: len(lats), Failed: failed, Late: late, Latency: summarize(lats), Elapsed: elapsed}, errors.Join(errs...)
}
