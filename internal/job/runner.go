package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
	"github.com/twinflow/twinflow/internal/twins"
)

// Delete job timeouts (ADT: 12 hours by default, between 15 minutes and 24 hours).
const (
	DefaultDeleteTimeout = 12 * time.Hour
	MinDeleteTimeout     = 15 * time.Minute
	MaxDeleteTimeout     = 24 * time.Hour
)

// DefaultFullWait is Config.FullWait's default.
const DefaultFullWait = 10 * time.Second

// DefaultChunkTime is Config.ChunkTime's default. With the group commit and fsync that
// follow, a PATCH that arrives while an import runs waits for about twice this (twinflow
// bench import).
const DefaultChunkTime = 10 * time.Millisecond

// Config configures a Runner.
type Config struct {
	// Dir is the jobs directory: imports read and write file: URLs of files in it. Empty
	// refuses file: URLs.
	Dir string
	// SpoolDir keeps the output logs of imports whose output is an https: URL; required.
	SpoolDir string
	// AllowedHosts are the hosts https: URLs of imports may name ("host" or "host:port").
	AllowedHosts []string
	// HTTPClient reads and writes https: URLs; nil means one without a time limit (inputs
	// are large), but with the transport's connection timeouts.
	HTTPClient *http.Client
	// ChunkTime is about how long each transaction of a job may hold the store's single
	// writer, during which the API's writes wait; 0 means DefaultChunkTime.
	ChunkTime time.Duration
	// FullWait is how long a job that stopped because the disk is full waits before it tries
	// to go on; 0 means DefaultFullWait.
	FullWait time.Duration
	// ErrorCode gives the ADT error code and message of an error, for the output log;
	// required (the API's table has them).
	ErrorCode func(error) (code, message string)
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Store is what jobs need of the store: the graph and its jobs, in shared transactions.
type Store interface {
	store.Store
	store.Jobs
}

// Graph tells relationship validation about the twins stored so far.
type Graph interface {
	// ViewTwins calls fn with a view of every twin committed before the call.
	ViewTwins(ctx context.Context, fn func(twins.TwinView) error) error
}

// Runner creates, runs and reports bulk jobs. Its methods are safe for concurrent use; Run
// runs the jobs, one at a time in the order they were created.
type Runner struct {
	cfg    Config
	st     Store
	svc    *twins.Service
	graph  Graph
	logger *slog.Logger
	locs   locations
	// wake tells Run that a job was created.
	wake chan struct{}

	// mu guards current, the job Run is running, and its cancel.
	mu      sync.Mutex
	current struct {
		kind   Kind
		id     string
		cancel context.CancelCauseFunc
	}
}

// errCancelled is the cause of the context of a job whose cancel was asked for.
var errCancelled = errors.New("job cancelled")

// New returns a Runner of jobs over st, writing through svc and validating relationships
// against g.
func New(cfg Config, st Store, svc *twins.Service, g Graph, logger *slog.Logger) (*Runner, error) {
	if st == nil || svc == nil || g == nil {
		return nil, errors.New("job runner: a store, a twin service and a graph are required")
	}
	if cfg.ErrorCode == nil || cfg.SpoolDir == "" {
		return nil, errors.New("job runner: ErrorCode and SpoolDir are required")
	}
	if cfg.ChunkTime <= 0 {
		cfg.ChunkTime = DefaultChunkTime
	}
	if cfg.FullWait <= 0 {
		cfg.FullWait = DefaultFullWait
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{}
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	r := &Runner{cfg: cfg, st: st, svc: svc, graph: g, logger: logger, wake: make(chan struct{}, 1)}
	r.locs = locations{hosts: cfg.AllowedHosts, http: cfg.HTTPClient}
	if cfg.Dir != "" {
		dir, err := filepath.Abs(cfg.Dir)
		if err == nil {
			dir, err = filepath.EvalSymlinks(dir)
		}
		if err != nil {
			return nil, fmt.Errorf("job runner: jobs directory %s: %w", cfg.Dir, err)
		}
		r.locs.dir = dir
	}
	return r, nil
}

// Dir returns the jobs directory, absolute and with symbolic links resolved; empty when
// file: URLs are refused.
func (r *Runner) Dir() string { return r.locs.dir }

// maxIDLength bounds a job id.
const maxIDLength = 256

// checkID checks a job id: 1 to 256 characters, none of them a control character.
func checkID(kind Kind, id string) error {
	if id == "" || len(id) > maxIDLength || strings.ContainsFunc(id, unicode.IsControl) {
		return twin.ValidationFailed(fmt.Sprintf("The %s job id %q is not valid: use 1 to %d characters, none of them control characters.", kind, id, maxIDLength))
	}
	return nil
}

// NotFound is the error for a job that does not exist: ImportJobNotFound or
// DeleteJobNotFound.
func NotFound(kind Kind, id string) *twin.Error {
	if kind == KindImport {
		return &twin.Error{Kind: twin.KindImportJobNotFound, Message: fmt.Sprintf(
			"There is no import job with the id %s. Check the id with the ImportJobs_List API.", id)}
	}
	return &twin.Error{Kind: twin.KindDeleteJobNotFound, Message: fmt.Sprintf(
		"There is no delete job with the id %s. Check the id with the DeleteJobs_List API.", id)}
}

// CreateImport creates import id of input into the graph, its log going to output, and
// returns it, not started. traceParent is the creating request's traceparent. The URLs
// must be a file: URL of a file in the jobs directory (output: of a file that may be
// created there) or an https: URL on an allowed host (ValidationFailed). An id in use is
// ValidationFailed; while another job has not finished, JobLimitReached.
func (r *Runner) CreateImport(ctx context.Context, id, input, output, traceParent string) (Job, error) {
	if err := checkID(KindImport, id); err != nil {
		return Job{}, err
	}
	in, err := r.locs.resolve("inputBlobUri", input)
	if err != nil {
		return Job{}, err
	}
	out, err := r.locs.resolve("outputBlobUri", output)
	if err != nil {
		return Job{}, err
	}
	if in == out {
		return Job{}, invalid("the outputBlobUri is the inputBlobUri.")
	}
	now := r.cfg.Now().UTC()
	j := Job{Kind: KindImport, ID: id, Input: input, Output: output, Status: StatusNotStarted, Created: now, TraceParent: traceParent}
	j.touch(now)
	return j, r.create(ctx, &j)
}

// CreateDelete creates delete job id, which deletes every model, twin and relationship, and
// returns it, not started. timeout bounds its run (0 means DefaultDeleteTimeout; it must be
// within MinDeleteTimeout and MaxDeleteTimeout: ValidationFailed). An id in use is
// ValidationFailed; while another job has not finished, JobLimitReached.
func (r *Runner) CreateDelete(ctx context.Context, id string, timeout time.Duration, traceParent string) (Job, error) {
	if err := checkID(KindDelete, id); err != nil {
		return Job{}, err
	}
	if timeout == 0 {
		timeout = DefaultDeleteTimeout
	}
	if timeout < MinDeleteTimeout || timeout > MaxDeleteTimeout {
		return Job{}, twin.ValidationFailed(fmt.Sprintf("The timeout of a delete job must be between %d and %d minutes, got %d.",
			int(MinDeleteTimeout.Minutes()), int(MaxDeleteTimeout.Minutes()), int(timeout.Minutes())))
	}
	now := r.cfg.Now().UTC()
	j := Job{Kind: KindDelete, ID: id, Status: StatusNotStarted, Created: now, Timeout: timeout, TraceParent: traceParent}
	j.touch(now)
	return j, r.create(ctx, &j)
}

// create stores the new job j unless its id is taken or another job has not finished, and
// wakes Run.
func (r *Runner) create(ctx context.Context, j *Job) error {
	err := r.st.UpdateJobs(ctx, func(w store.JobWriter) error {
		_, err := w.Job(string(j.Kind), j.ID)
		if err == nil {
			if j.Kind == KindDelete {
				return twin.ValidationFailed("Operation-Id already exists: there is a delete job with the id " + j.ID + ".")
			}
			return twin.ValidationFailed(fmt.Sprintf("There is an import job with the id %s already. Delete it to use the id again.", j.ID))
		}
		if !errors.Is(err, store.ErrNotFound) {
			return err
		}
		busy, err := unfinished(w)
		if err != nil {
			return err
		}
		if busy != nil {
			advice := "Wait for it to finish."
			if busy.Kind == KindImport {
				advice = "Wait for it to finish, or cancel it."
			}
			return &twin.Error{Kind: twin.KindJobLimitReached, Message: fmt.Sprintf(
				"The %s job %s has not finished; one bulk job at a time can run. %s", busy.Kind, busy.ID, advice)}
		}
		return put(w, j)
	})
	if err != nil {
		return err
	}
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return nil
}

// unfinished returns the oldest job that has not finished, nil when there is none.
func unfinished(rd store.JobReader) (*Job, error) {
	var oldest *Job
	for _, kind := range []Kind{KindImport, KindDelete} {
		all, err := rd.Jobs(string(kind), "", 0)
		if err != nil {
			return nil, err
		}
		for _, sj := range all {
			j, err := decode(sj)
			if err != nil {
				return nil, err
			}
			if !j.Status.Finished() && (oldest == nil || j.Created.Before(oldest.Created)) {
				oldest = &j
			}
		}
	}
	return oldest, nil
}

// Get returns job kind/id: ImportJobNotFound or DeleteJobNotFound when there is none.
func (r *Runner) Get(ctx context.Context, kind Kind, id string) (Job, error) {
	var j Job
	err := r.st.ViewJobs(ctx, func(rd store.JobReader) error {
		var err error
		j, err = get(rd, kind, id)
		if errors.Is(err, store.ErrNotFound) {
			return NotFound(kind, id)
		}
		return err
	})
	return j, err
}

// List returns up to limit jobs of kind by id, after the id after, and the id to pass as
// after for the next page, "" at the end.
func (r *Runner) List(ctx context.Context, kind Kind, after string, limit int) ([]Job, string, error) {
	var out []Job
	err := r.st.ViewJobs(ctx, func(rd store.JobReader) error {
		all, err := rd.Jobs(string(kind), after, limit+1)
		if err != nil {
			return err
		}
		for _, sj := range all {
			j, err := decode(sj)
			if err != nil {
				return err
			}
			out = append(out, j)
		}
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	if len(out) > limit {
		out = out[:limit]
		return out, out[limit-1].ID, nil
	}
	return out, "", nil
}

// CancelImport asks import id to stop: a job that has not finished becomes cancelling, and
// cancelled once it stopped, after the transaction in flight; nothing is rolled back. It
// returns the job. A finished job is ValidationFailed.
func (r *Runner) CancelImport(ctx context.Context, id string) (Job, error) {
	var j Job
	err := r.st.UpdateJobs(ctx, func(w store.JobWriter) error {
		var err error
		j, err = get(w, KindImport, id)
		if errors.Is(err, store.ErrNotFound) {
			return NotFound(KindImport, id)
		}
		if err != nil {
			return err
		}
		switch j.Status {
		case StatusCancelling:
			return nil
		case StatusNotStarted, StatusRunning:
			j.Status = StatusCancelling
			j.touch(r.cfg.Now().UTC())
			return put(w, &j)
		}
		return twin.ValidationFailed(fmt.Sprintf("The import job %s has finished (%s); only a job that has not can be cancelled.", id, j.Status))
	})
	if err != nil {
		return Job{}, err
	}
	r.mu.Lock()
	if r.current.kind == KindImport && r.current.id == id {
		r.current.cancel(errCancelled)
	}
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	return j, nil
}

// DeleteImport forgets import id, so that its id can be used again; it does not undo what it
// imported. A job that has not finished is ValidationFailed: cancel it first.
func (r *Runner) DeleteImport(ctx context.Context, id string) error {
	return r.st.UpdateJobs(ctx, func(w store.JobWriter) error {
		j, err := get(w, KindImport, id)
		if errors.Is(err, store.ErrNotFound) {
			return NotFound(KindImport, id)
		}
		if err != nil {
			return err
		}
		if !j.Status.Finished() {
			return twin.ValidationFailed(fmt.Sprintf("The import job %s has not finished (%s). Cancel it, and delete it once it is cancelled.", id, j.Status))
		}
		return w.DeleteJob(string(KindImport), id)
	})
}

// purgeInterval is how often Run forgets jobs past their purge time.
const purgeInterval = time.Hour

// Run runs jobs until ctx ends: first those a previous run left unfinished (going on where
// they stopped), then each job as it is created, one at a time in creation order. It also
// forgets finished jobs once their purge time has passed. It returns nil when ctx ends, with
// the job it was running left to go on at the next start, or the error that stopped it
// reading jobs; a store that is unavailable (store.ErrUnavailable) does not stop it, it
// reads again after a pause.
//
// A job does not fail because the disk is full: it stops where it got to, as at a restart,
// and Run tries to go on with it every Config.FullWait, which succeeds once the store takes
// writes again.
func (r *Runner) Run(ctx context.Context) error {
	purge := time.NewTicker(purgeInterval)
	defer purge.Stop()
	if err := r.purge(ctx); err != nil && !r.waitForStore(ctx, err) {
		return err
	}
	for {
		var next *Job
		err := r.st.ViewJobs(ctx, func(rd store.JobReader) error {
			var err error
			next, err = unfinished(rd)
			return err
		})
		if ctx.Err() != nil {
			return nil
		}
		if err != nil {
			err = fmt.Errorf("find jobs to run: %w", err)
			if r.waitForStore(ctx, err) {
				continue
			}
			return err
		}
		if next != nil {
			if r.run(ctx, next) {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(r.cfg.FullWait):
				}
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case <-r.wake:
		case <-purge.C:
			if err := r.purge(ctx); err != nil && !r.waitForStore(ctx, err) {
				return err
			}
		}
	}
}

// storePause is how long Run waits before it reads a store that was unavailable again.
const storePause = time.Second

// waitForStore reports whether err says that the store's database is out of reach
// (store.ErrUnavailable), and then waits storePause, or until ctx ends, before Run reads it
// again.
func (r *Runner) waitForStore(ctx context.Context, err error) bool {
	if !errors.Is(err, store.ErrUnavailable) {
		return false
	}
	r.logger.Warn("jobs: the store is unavailable; retrying", "retry_in", storePause, "err", err)
	select {
	case <-ctx.Done():
	case <-time.After(storePause):
	}
	return true
}

// purge forgets the finished jobs whose purge time has passed.
func (r *Runner) purge(ctx context.Context) error {
	now := r.cfg.Now()
	err := r.st.UpdateJobs(ctx, func(w store.JobWriter) error {
		for _, kind := range []Kind{KindImport, KindDelete} {
			all, err := w.Jobs(string(kind), "", 0)
			if err != nil {
				return err
			}
			for _, sj := range all {
				j, err := decode(sj)
				if err != nil {
					return err
				}
				if j.Status.Finished() && now.After(j.Purge) {
					if err := w.DeleteJob(sj.Kind, sj.ID); err != nil {
						return err
					}
				}
			}
		}
		return nil
	})
	switch {
	case err == nil || ctx.Err() != nil:
	case errors.Is(err, store.ErrFull):
		// Purging deletes, which a full disk allows, but the commit it shared may have
		// failed; the next purge tries again.
		r.logger.Warn("cannot purge old jobs: the disk is full", slog.Any("error", err))
	default:
		return fmt.Errorf("purge old jobs: %w", err)
	}
	return nil
}

// run runs job j to its end, or until ctx ends. It reports whether j stopped because the
// disk is full, and is to go on later.
func (r *Runner) run(ctx context.Context, j *Job) (full bool) {
	jobCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	r.mu.Lock()
	r.current.kind, r.current.id, r.current.cancel = j.Kind, j.ID, cancel
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		r.current.kind, r.current.id, r.current.cancel = "", "", nil
		r.mu.Unlock()
	}()

	log := r.logger.With(slog.String("job", string(j.Kind)), slog.String("id", j.ID))
	if j.Status == StatusCancelling {
		return r.end(ctx, j, StatusCancelled, nil, log)
	}
	if j.Status == StatusNotStarted {
		if err := r.update(ctx, j, func(cur *Job) {
			if cur.Status == StatusNotStarted {
				cur.Status = StatusRunning
			}
		}); err != nil {
			log.Error("cannot start job", slog.Any("error", err))
			return errors.Is(err, store.ErrFull)
		}
		if j.Status == StatusCancelling {
			return r.end(ctx, j, StatusCancelled, nil, log)
		}
	}
	log.Info("job running", slog.Any("at", j.At))
	start := time.Now()
	var failure *Error
	switch j.Kind {
	case KindImport:
		failure = r.runImport(jobCtx, j, log)
	case KindDelete:
		failure = r.runDelete(jobCtx, j, log)
	}
	switch {
	case ctx.Err() != nil:
		log.Info("job stopped; it goes on at the next start", slog.Any("at", j.At))
	case errors.Is(context.Cause(jobCtx), errCancelled):
		return r.end(ctx, j, StatusCancelled, nil, log)
	case failure != nil && failure.Kind == twin.KindInsufficientStorage.String():
		log.Warn("job stopped: the disk is full; it goes on where it stopped once space is freed",
			slog.Any("at", j.At), slog.String("error", failure.Message))
		return true
	case failure != nil:
		log.Warn("job failed", slog.String("error", failure.Message), slog.Duration("took", time.Since(start)))
		return r.end(ctx, j, StatusFailed, failure, log)
	default:
		log.Info("job succeeded", slog.Any("progress", j.Progress), slog.Duration("took", time.Since(start)))
		return r.end(ctx, j, StatusSucceeded, nil, log)
	}
	return false
}

// end records that j finished with status. It reports whether that failed because the disk
// is full: the job then stays unfinished, to end again later.
func (r *Runner) end(ctx context.Context, j *Job, status Status, failure *Error, log *slog.Logger) (full bool) {
	err := r.update(ctx, j, func(cur *Job) {
		cur.Status, cur.Error = status, failure
		cur.Finished = cur.LastAction
	})
	if err != nil {
		log.Error("cannot record the end of the job", slog.Any("error", err))
	}
	return errors.Is(err, store.ErrFull)
}

// update applies change to the stored state of j, which has acted now (LastAction, as change
// sees it), and stores it, leaving j as stored.
func (r *Runner) update(ctx context.Context, j *Job, change func(*Job)) error {
	return r.st.UpdateJobs(ctx, func(w store.JobWriter) error {
		cur, err := get(w, j.Kind, j.ID)
		if err != nil {
			return err
		}
		cur.touch(r.cfg.Now().UTC())
		change(&cur)
		if err := put(w, &cur); err != nil {
			return err
		}
		*j = cur
		return nil
	})
}

// failInternal describes a failure of the job's own machinery (storage, I/O); that of a full
// disk when the disk is full (see diskFull).
func failInternal(err error) *Error {
	if errors.Is(err, store.ErrFull) {
		return diskFull(err)
	}
	return newError(twin.KindInternal, "The job stopped on an internal error: "+err.Error())
}

// diskFull describes a job that stopped because the disk is full. Run does not record it as
// the job's failure: the job goes on once space is freed.
func diskFull(err error) *Error {
	return newError(twin.KindInsufficientStorage, "The job stopped because the disk is full: "+err.Error())
}

// trace returns the job's trace context for the events it emits.
func (j *Job) trace() twins.Trace { return twins.Trace{Parent: j.TraceParent} }
