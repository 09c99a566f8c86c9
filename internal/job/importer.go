package job

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
	"github.com/twinflow/twinflow/internal/twins"
)

// importer runs one import job (see the package documentation) on the job's goroutine. While
// the Twins or the Relationships section is read, that section's committer goroutine uses the
// fields below (but stop) and the output log instead; the job's goroutine uses them again
// once the section's sink finished, which waits for the committer.
type importer struct {
	r   *Runner
	job *Job
	log *outputLog
	// failed is set at the first line that fails: from then on nothing is written, and the
	// lines are only checked. failedLines counts the lines that failed.
	failed      bool
	failedLines int
	// pending holds the twins checked after the first failure, by id with their models,
	// so that the relationships after them are checked against them.
	pending map[string]string
	// chunk is the number of lines a transaction takes, adapted to Config.ChunkTime.
	chunk int
	// stop holds the failure that ends the job early, a storage or I/O error. A section's
	// committer sets it while the job's goroutine reads.
	stop atomic.Pointer[error]
}

// setStop records the failure that ends the job early, unless one is recorded already.
func (im *importer) setStop(err error) {
	im.stop.CompareAndSwap(nil, &err)
}

// stopped returns the failure that ends the job early, nil when there is none.
func (im *importer) stopped() error {
	if p := im.stop.Load(); p != nil {
		return *p
	}
	return nil
}

// remember records a twin that was checked but, after a failure, not written, so that the
// relationships after it are checked against it.
func (im *importer) remember(t twins.ImportTwin) {
	if im.pending == nil {
		im.pending = make(map[string]string)
	}
	im.pending[t.ID()] = t.ModelID()
}

// Bounds of the lines one transaction takes, and the size of the batches the prepare
// workers take.
const (
	minChunk   = 64
	firstChunk = 512
	maxChunk   = 16384
	batchLines = 256
)

// runImport runs import j until it ends or ctx does, and returns why it failed (nil when it
// succeeded, was cancelled or stopped with ctx).
func (r *Runner) runImport(ctx context.Context, j *Job, lg *slog.Logger) *Error {
	in, err := r.locs.resolve("inputBlobUri", j.Input)
	if err != nil {
		return jobError(err)
	}
	out, err := r.locs.resolve("outputBlobUri", j.Output)
	if err != nil {
		return jobError(err)
	}
	log, err := openLog(out, r.cfg.SpoolDir, j.ID, j.LogBytes, r.cfg.Now, r.cfg.ErrorCode, r.cfg.HTTPClient)
	if err != nil {
		return logUnwritable(j.Output, err)
	}
	defer func() {
		if err := log.close(); err != nil {
			lg.Warn("cannot close the output log", slog.Any("error", err))
		}
	}()
	im := &importer{r: r, job: j, log: log, chunk: firstChunk}
	failure := im.run(ctx, in)

	status := "Succeeded"
	switch {
	case errors.Is(context.Cause(ctx), errCancelled):
		status = "Cancelled"
	case ctx.Err() != nil:
		return nil // the job goes on at the next start, where it stopped
	case failure != nil && failure.Kind == twin.KindInsufficientStorage.String():
		return failure // the job goes on where it stopped once space is freed
	case failure != nil:
		status = "Failed"
	}
	err = log.info("", status)
	if err == nil {
		// The job is over, cancelled or not: its log still goes out.
		pubCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
		err = log.publish(pubCtx)
		cancel()
	}
	if err != nil && failure == nil {
		failure = logUnwritable(j.Output, err)
	}
	if im.failedLines > 0 {
		if err := r.update(context.WithoutCancel(ctx), j, func(cur *Job) { cur.Progress.FailedLines = im.failedLines }); err != nil {
			lg.Error("cannot record the failed lines", slog.Any("error", err))
		}
	}
	return failure
}

// logUnwritable is the failure of a job whose output log cannot be written: that of a full
// disk (see diskFull) when it is the cause.
func logUnwritable(output string, err error) *Error {
	if errors.Is(err, store.ErrFull) {
		return diskFull(err)
	}
	return newError(twin.KindBadRequest, fmt.Sprintf("The output log %s cannot be written: %v", output, err))
}

// jobError turns the error of a job's request check into the job's failure.
func jobError(err error) *Error {
	var te *twin.Error
	if errors.As(err, &te) {
		return &Error{Kind: te.Kind.String(), Message: te.Message}
	}
	return failInternal(err)
}

// run reads the input from where the job got to, importing it section by section, and
// returns why the job failed.
func (im *importer) run(ctx context.Context, in location) *Error {
	j := im.job
	if j.LogBytes == 0 {
		if err := im.log.info("", "Started"); err != nil {
			return failInternal(err)
		}
		if err := im.log.publish(ctx); err != nil {
			return logUnwritable(j.Output, err)
		}
	}
	rc, err := im.r.locs.open(ctx, in, j.At.Offset)
	if err != nil {
		if ctx.Err() != nil {
			return nil
		}
		return newError(twin.KindBadRequest, fmt.Sprintf("The input %s cannot be read: %v", j.Input, err))
	}
	defer rc.Close()

	rd := NewReader(rc, j.At)
	section := j.At.Section
	sink := im.sinkFor(ctx, section)
	var readErr error
	for readErr == nil && ctx.Err() == nil && im.stopped() == nil {
		var line Line
		line, readErr = rd.Next()
		if readErr != nil {
			break
		}
		if line.At.Section != section {
			im.endSection(ctx, section, sink)
			section = line.At.Section
			if section != SectionHeader {
				im.logInfo(section, "Started")
			}
			sink = im.sinkFor(ctx, section)
		}
		sink.add(line)
	}
	var syntax *SyntaxError
	switch {
	case ctx.Err() != nil || im.stopped() != nil:
		sink.finish()
	case errors.Is(readErr, io.EOF):
		im.endSection(ctx, section, sink)
	case errors.As(readErr, &syntax):
		// The section's own lines are done with; the error is the file's.
		im.endSection(ctx, section, sink)
		im.lineFailed("", syntax.Line, twin.ValidationFailed("The input is not a valid import file: "+syntax.Msg+"."))
	default:
		sink.finish()
		return newError(twin.KindBadRequest, fmt.Sprintf("The input %s cannot be read: %v", j.Input, readErr))
	}
	switch {
	case im.stopped() != nil:
		return failInternal(im.stopped())
	case ctx.Err() != nil:
		return nil
	case im.failed:
		lines := fmt.Sprintf("%d lines of the input failed", im.failedLines)
		if im.failedLines == 1 {
			lines = "1 line of the input failed"
		}
		return newError(twin.KindValidationFailed, lines+"; the output log "+j.Output+
			" lists each with the reason. What came before the first of them was imported.")
	}
	return nil
}

// sink takes the lines of one section.
type sink interface {
	// add takes the next line of the section. Its data is valid only during the call.
	add(line Line)
	// finish waits until every line taken is done with.
	finish()
}

// sinkFor returns the sink of section's lines.
func (im *importer) sinkFor(ctx context.Context, section string) sink {
	switch section {
	case SectionHeader:
		return &headerSink{im: im}
	case SectionModels:
		return &modelSink{ctx: ctx, im: im}
	case SectionTwins, SectionRelationships:
		return newRowSink(ctx, im, section)
	}
	return nopSink{}
}

// nopSink is the sink before the first section, which has no lines.
type nopSink struct{}

func (nopSink) add(Line) {}
func (nopSink) finish()  {}

// endSection finishes section's sink and logs how the section went.
func (im *importer) endSection(ctx context.Context, section string, s sink) {
	before := im.failedLines
	s.finish()
	if section == "" || section == SectionHeader || ctx.Err() != nil || im.stopped() != nil {
		return
	}
	status := "Succeeded"
	if im.failedLines > before {
		status = "Failed"
	}
	im.logInfo(section, status)
}

// logInfo logs a status line; an output log that cannot be written stops the job.
func (im *importer) logInfo(section, status string) {
	if err := im.log.info(section, status); err != nil {
		im.setStop(err)
	}
}

// lineFailed logs why line of section failed, and stops writing.
func (im *importer) lineFailed(section string, line int, err error) {
	im.failed = true
	im.failedLines++
	if lerr := im.log.failure(section, line, err); lerr != nil {
		im.setStop(lerr)
	}
}

// commitAt records, in a transaction of its own, that the job got to at with the progress
// change makes. The output log is made durable first, so that the size recorded is there to
// cut back to.
func (im *importer) commitAt(ctx context.Context, at Position, change func(*Progress)) error {
	if err := im.log.sync(); err != nil {
		return err
	}
	logBytes := im.log.size
	expect := im.job.At
	var updated Job
	err := im.r.st.UpdateJobs(ctx, func(w store.JobWriter) error {
		cur, err := get(w, KindImport, im.job.ID)
		if err != nil {
			return err
		}
		if cur.At != expect {
			return fmt.Errorf("the job is at %+v, not %+v as the import expects", cur.At, expect)
		}
		cur.At, cur.LogBytes, cur.Progress.Section = at, logBytes, at.Section
		change(&cur.Progress)
		cur.touch(im.r.cfg.Now().UTC())
		updated = cur
		return put(w, &cur)
	})
	if err == nil {
		*im.job = updated
	}
	return err
}

// headerSink checks the Header section: JSON objects, one with the fileVersion 1.0.0.
type headerSink struct {
	im      *importer
	version bool
	last    int
}

func (h *headerSink) add(l Line) {
	h.last = l.At.Line
	var hdr map[string]any
	if l.TooLong || json.Unmarshal(l.Data, &hdr) != nil || hdr == nil {
		h.im.lineFailed(SectionHeader, l.At.Line, twin.ValidationFailed("The header line is not a JSON object."))
		return
	}
	v, ok := hdr["fileVersion"]
	if !ok {
		return
	}
	h.version = true
	if v != "1.0.0" {
		h.im.lineFailed(SectionHeader, l.At.Line, twin.ValidationFailed(fmt.Sprintf("The fileVersion %v is not supported; the only file version is 1.0.0.", v)))
	}
}

func (h *headerSink) finish() {
	if !h.version {
		h.im.lineFailed(SectionHeader, h.last, twin.ValidationFailed(`The Header section has no {"fileVersion": "1.0.0"} line.`))
	}
}

// modelSink takes the Models section whole, and imports it once it ended (see commit).
type modelSink struct {
	ctx   context.Context
	im    *importer
	items []json.RawMessage
	lines []Line
}

func (m *modelSink) add(l Line) {
	if l.TooLong {
		m.im.lineFailed(SectionModels, l.At.Line, twin.LimitExceeded(fmt.Sprintf("The line is longer than %d bytes.", MaxLineBytes)))
		return
	}
	m.items = append(m.items, json.RawMessage(bytes.Clone(l.Data)))
	l.Data = nil
	m.lines = append(m.lines, l)
}

// finish imports the section's models, all or none, and records the end of the section
// (whose status line endSection writes after; should the job stop in between, it writes it
// when it goes on). After a failure the models are only checked: a transaction that refuses
// makes ImportModels check without writing.
func (m *modelSink) finish() {
	im, ctx := m.im, m.ctx
	if len(m.lines) == 0 || ctx.Err() != nil || im.stopped() != nil {
		return
	}
	tx := func(ctx context.Context, fn func(store.Writer) error) error {
		return im.r.st.UpdateJobs(ctx, func(w store.JobWriter) error { return fn(w) })
	}
	if im.failed {
		tx = func(context.Context, func(store.Writer) error) error { return errChecking }
	}
	added, refused, err := im.r.svc.ImportModels(ctx, m.items, tx)
	switch {
	case errors.Is(err, errChecking):
	case err != nil:
		if ctx.Err() == nil {
			im.setStop(err)
		}
		return
	}
	for _, rf := range refused {
		line := m.lines[0].At.Line - 1 // the section line
		if rf.Item >= 0 {
			line = m.lines[rf.Item].At.Line
		}
		im.lineFailed(SectionModels, line, rf.Err)
	}
	if im.failed {
		return
	}
	if err := im.commitAt(ctx, m.lines[len(m.lines)-1].At, func(p *Progress) { p.Models += added }); err != nil && ctx.Err() == nil {
		im.setStop(err)
	}
}

// errChecking is what the transaction of a check that must not write returns.
var errChecking = errors.New("the import only checks its models")
