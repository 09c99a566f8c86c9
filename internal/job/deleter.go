package job

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// runDelete runs delete job j until it ends or ctx does, and returns why it failed (nil when
// it succeeded or stopped with ctx). It deletes twins with their relationships in chunks sized
// like an import's, then the models; each chunk records the job's progress. It is
// idempotent: after a restart it simply goes on with what is left. It fails once it runs past
// j.Created plus j.Timeout.
func (r *Runner) runDelete(ctx context.Context, j *Job, lg *slog.Logger) *Error {
	// The timeout runs from the job's creation, by the job's clock, across restarts.
	left := j.Timeout - r.cfg.Now().Sub(j.Created)
	ctx, cancel := context.WithTimeoutCause(ctx, left, errTimedOut)
	defer cancel()
	timedOut := func() *Error {
		if errors.Is(context.Cause(ctx), errTimedOut) {
			return newError(twin.KindTimeout, fmt.Sprintf(
				"The delete job did not finish within its timeout of %d minutes; what it had not deleted yet is left.", int(j.Timeout.Minutes())))
		}
		return nil
	}

	budget := firstChunk
	tr := j.trace()
	for {
		var (
			more bool
			took time.Duration
			n    int
		)
		err := r.st.UpdateJobs(ctx, func(w store.JobWriter) error {
			start := time.Now()
			cur, err := get(w, KindDelete, j.ID)
			if err != nil {
				return err
			}
			counts, left, err := r.svc.DeleteGraphChunk(w, budget, tr)
			if err != nil {
				return err
			}
			more, n = left, counts.Twins+counts.Relationships
			cur.Progress.Twins += counts.Twins
			cur.Progress.Relationships += counts.Relationships
			cur.Progress.Section = SectionTwins
			cur.touch(r.cfg.Now().UTC())
			took = time.Since(start)
			if err := put(w, &cur); err != nil {
				return err
			}
			*j = cur
			return nil
		})
		if err != nil {
			if f := timedOut(); f != nil {
				return f
			}
			if ctx.Err() != nil {
				return nil
			}
			return failInternal(err)
		}
		if n >= minChunk/2 && took > 0 {
			budget = min(max((budget+int(float64(n)*float64(r.cfg.ChunkTime)/float64(took)))/2, minChunk), maxChunk)
		}
		if !more {
			break
		}
	}

	tx := func(ctx context.Context, fn func(store.Writer) error) error {
		return r.st.UpdateJobs(ctx, func(w store.JobWriter) error {
			cur, err := get(w, KindDelete, j.ID)
			if err != nil {
				return err
			}
			if err := fn(w); err != nil {
				return err
			}
			cur.Progress.Section = SectionModels
			cur.touch(r.cfg.Now().UTC())
			if err := put(w, &cur); err != nil {
				return err
			}
			*j = cur
			return nil
		})
	}
	models, err := r.svc.DeleteAllModels(ctx, tx)
	if err == nil {
		err = r.update(ctx, j, func(cur *Job) { cur.Progress.Models += models })
	}
	if err != nil {
		if f := timedOut(); f != nil {
			return f
		}
		if ctx.Err() != nil {
			return nil
		}
		return failInternal(err)
	}
	lg.Info("graph deleted", slog.Any("progress", j.Progress))
	return nil
}

// errTimedOut is the cause of the context of a delete job past its timeout.
var errTimedOut = errors.New("delete job timed out")
