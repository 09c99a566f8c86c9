package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/twinflow/twinflow/internal/server"
	"github.com/twinflow/twinflow/internal/store"
)

// patchDetector names the detector of the PATCH benchmark's run with a detector.
const patchDetector = "bench-patch"

// detectorCatchUp is how long the PATCH benchmark waits, after the load, for its detector to
// score every record.
const detectorCatchUp = 2 * time.Minute

// PatchDetectorRun is what the PATCH benchmark measured with a detector scoring the patches.
type PatchDetectorRun struct {
	// Properties are the properties the detector watches, of every twin.
	Properties []string
	// Load, ServerCPU and Store are as PatchResult's, for the run with the detector.
	Load      PatchLoad
	ServerCPU time.Duration
	Store     store.Stats
	// After is the load run once more after the detector was deleted, so that the runs
	// without a detector stand on either side of the run with one, on a machine whose
	// speed drifts.
	After PatchLoad
	// Points counts the points the detector scored of the run's patches. LagAtEnd is the
	// change log records it had not scored when the load ended, and CatchUp how long after
	// that it had scored them all.
	Points   uint64
	LagAtEnd int64
	CatchUp  time.Duration
	// RebuiltSeries and Rebuilt count the series whose models the detector rebuilt from
	// data history during the run, and the points it replayed to rebuild them.
	RebuiltSeries, Rebuilt uint64
	// WarmUp is how long the warm-up took: one patch of every twin's watched properties,
	// before the run, through the detector's scoring of them. The detector is created over
	// twins that already have history, so the first point of each series rebuilds its model
	// from history (WarmUpSeries models, replaying WarmUpRebuilt points); the run then
	// measures a detector whose models are all in memory, as one that has been running is.
	WarmUp                      time.Duration
	WarmUpSeries, WarmUpRebuilt uint64
}

// rows returns the table rows of the run, against the acknowledged patches per second of the
// run without the detector.
func (d PatchDetectorRun) rows(before float64) [][2]string {
	with, after, l := d.Load.PerSecond(), d.After.PerSecond(), d.Load
	cost := "n/a"
	if without := (before + after) / 2; without > 0 {
		cost = fmt.Sprintf("%.3f of the patches/s without it, the mean of before and after (%+.1f%%)", with/without, 100*(with/without-1))
	}
	return [][2]string{
		{"with a detector", fmt.Sprintf("%.0f patches/s acknowledged (%d in %v, %d failed%s; p50 %v  p99 %v)",
			with, l.Patches, l.Elapsed.Round(time.Millisecond), l.Failed, failedBy(l.FailedBy), l.P50.Round(time.Microsecond), l.P99.Round(time.Microsecond))},
		{"without, after it", fmt.Sprintf("%.0f patches/s acknowledged (%d in %v, %d failed%s; the detector deleted)",
			after, d.After.Patches, d.After.Elapsed.Round(time.Millisecond), d.After.Failed, failedBy(d.After.FailedBy))},
		{"detector / none", cost},
		{"server CPU per patch, detector", cpuPerPatch(d.ServerCPU, l.Patches, "the server's process, scoring included")},
		{"group commit, detector", groupCommit(d.Store)},
		{"detector", fmt.Sprintf("%d points scored of %v on every twin; %d records behind when the load ended, all scored %v later",
			d.Points, d.Properties, d.LagAtEnd, d.CatchUp.Round(time.Millisecond))},
		{"rebuilt from history", fmt.Sprintf("%d series' models, replaying %d points of their history",
			d.RebuiltSeries, d.Rebuilt)},
		{"warm-up, before the run", fmt.Sprintf("every twin's %v patched once and scored in %v, rebuilding %d series' models from %d points of history",
			d.Properties, d.WarmUp.Round(time.Millisecond), d.WarmUpSeries, d.WarmUpRebuilt)},
	}
}

// detectorStatus is the part of GET /detectors/{name} the benchmark reads.
type detectorStatus struct {
	Status struct {
		State         string `json:"state"`
		Twins         int    `json:"twins"`
		Points        uint64 `json:"points"`
		RebuiltSeries uint64 `json:"rebuiltSeries"`
		Rebuilt       uint64 `json:"rebuilt"`
		LagRecords    int64  `json:"lagRecords"`
		LastError     string `json:"lastError"`
	} `json:"status"`
}

// runDetectorLoad creates a detector of every twin and each numeric property of the benchmark
// model through the first server, waits until it scores, runs the load again against the
// servers on addrs and waits until the detector scored every record; then it deletes the
// detector and runs the load once more.
func runDetectorLoad(ctx context.Context, cfg PatchConfig, servers []*server.Server, addrs []string, logger *slog.Logger) (PatchDetectorRun, error) {
	var (
		run     PatchDetectorRun
		numeric []int // the indexes of the numeric properties
	)
	for i := range numProperties {
		if s := propSchema(i); s == "double" || s == "integer" {
			run.Properties = append(run.Properties, propName(i))
			numeric = append(numeric, i)
		}
	}
	path := "/detectors/" + patchDetector
	err := (apiClient{http: http.DefaultClient, base: servers[0].URL()}).put(ctx, path,
		map[string]any{"twins": "SELECT * FROM DIGITALTWINS", "properties": run.Properties})
	if err != nil {
		return run, fmt.Errorf("create the detector: %w", err)
	}
	// The node that scores reports the detector running, with every twin selected.
	st, err := waitDetector(ctx, servers, path, time.Minute, func(st detectorStatus) bool { return st.Status.Twins == cfg.Twins })
	if err != nil {
		return run, err
	}
	logger.Info("warming the detector up: every twin patched once")
	warm := time.Now()
	if err := patchEvery(ctx, cfg.Twins, servers[0].URL(), numeric); err != nil {
		return run, fmt.Errorf("warm the detector up: %w", err)
	}
	if st, err = waitDetector(ctx, servers, path, detectorCatchUp, func(st detectorStatus) bool { return st.Status.LagRecords == 0 }); err != nil {
		return run, err
	}
	run.WarmUp = time.Since(warm)
	run.WarmUpSeries, run.WarmUpRebuilt = st.Status.RebuiltSeries, st.Status.Rebuilt
	points, series, rebuilt := st.Status.Points, st.Status.RebuiltSeries, st.Status.Rebuilt
	logger.Info("patching with a detector", slog.Any("properties", run.Properties), slog.Duration("duration", cfg.Duration))
	if run.Load, run.ServerCPU, run.Store, err = measureLoad(ctx, cfg, servers, addrs); err != nil {
		return run, err
	}
	ended := time.Now()
	if st, err = waitDetector(ctx, servers, path, 0, nil); err != nil {
		return run, err
	}
	run.LagAtEnd = st.Status.LagRecords
	if st, err = waitDetector(ctx, servers, path, detectorCatchUp, func(st detectorStatus) bool { return st.Status.LagRecords == 0 }); err != nil {
		return run, err
	}
	run.CatchUp = time.Since(ended)
	if run.LagAtEnd == 0 {
		run.CatchUp = 0
	}
	run.Points = st.Status.Points - points
	run.RebuiltSeries, run.Rebuilt = st.Status.RebuiltSeries-series, st.Status.Rebuilt-rebuilt
	api := apiClient{http: http.DefaultClient, base: servers[0].URL()}
	if err := api.remove(ctx, path); err != nil {
		return run, fmt.Errorf("delete the detector: %w", err)
	}
	logger.Info("patching without the detector again", slog.Duration("duration", cfg.Duration))
	if run.After, _, _, err = measureLoad(ctx, cfg, servers, addrs); err != nil {
		return run, err
	}
	return run, nil
}

// patchEvery patches the properties of the given indexes of each of the first twins twins
// once, through the API at base, from a few clients at a time.
func patchEvery(ctx context.Context, twins int, base string, properties []int) error {
	g, ctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	for i := range twins {
		g.Go(func() error {
			ops := make([]map[string]any, len(properties))
			for j, p := range properties {
				ops[j] = map[string]any{"op": "replace", "path": "/" + propName(p), "value": propValue(p, i+j)}
			}
			body, err := json.Marshal(ops)
			if err != nil {
				return err
			}
			url := base + "/digitaltwins/" + twinID(i) + "?api-version=" + apiVersion
			return sendOK(ctx, http.DefaultClient, http.MethodPatch, url, "application/json-patch+json", body, http.StatusNoContent)
		})
	}
	return g.Wait()
}

// waitDetector polls the detector at path on each server until one reports it running and
// ok (nil: any status) holds, and returns that status; it fails once timeout has passed.
func waitDetector(ctx context.Context, servers []*server.Server, path string, timeout time.Duration, ok func(detectorStatus) bool) (detectorStatus, error) {
	deadline := time.Now().Add(timeout)
	for {
		var last detectorStatus
		for _, srv := range servers {
			var st detectorStatus
			if err := (apiClient{http: http.DefaultClient, base: srv.URL()}).get(ctx, path, &st); err != nil {
				return st, err
			}
			if st.Status.State != "running" {
				continue
			}
			if ok == nil || ok(st) {
				return st, nil
			}
			last = st
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("detector %s: not as awaited after %v: state %q, %d twins, %d records behind, last error %q",
				path, timeout, last.Status.State, last.Status.Twins, last.Status.LagRecords, last.Status.LastError)
		}
		select {
		case <-ctx.Done():
			return last, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}
