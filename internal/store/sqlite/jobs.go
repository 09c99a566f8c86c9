package sqlite

import (
	"context"
	"database/sql"
	"fmt"

	"github.com/twinflow/twinflow/internal/store"
)

// Jobs (store.Jobs) live in the table of schema version 4. A job is written once per chunk of
// the work it does, so, like delivery state, its statements are not kept prepared.

var _ store.Jobs = (*Store)(nil)

// ViewJobs implements store.Jobs: fn reads one read transaction, as View does.
func (s *Store) ViewJobs(ctx context.Context, fn func(store.JobReader) error) error {
	if !s.enter(&s.active) {
		return store.ErrClosed
	}
	defer s.active.Done()
	tx, err := s.rdb.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return fmt.Errorf("begin jobs view: %w", err)
	}
	// A read transaction has nothing to commit; rolling back just ends it.
	defer func() { _ = tx.Rollback() }()
	return fn(&jobReader{deliveryReader{ctx: ctx, q: tx}})
}

// UpdateJobs implements store.Jobs. fn runs on the writer goroutine like any Update's fn,
// inside its own savepoint of a group-committed transaction, and its job, twin and event
// writes commit together or not at all.
func (s *Store) UpdateJobs(ctx context.Context, fn func(store.JobWriter) error) error {
	return s.Update(ctx, func(store.Writer) error {
		return fn(&jobWriter{writer: &s.w, jobReader: jobReader{deliveryReader{ctx: s.w.ctx, q: s.conn}}})
	})
}

// jobReader implements store.JobReader. It runs its queries as the delivery reader does.
type jobReader struct {
	d deliveryReader
}

var _ store.JobReader = (*jobReader)(nil)

const jobColumns = "kind, id, doc"

func scanJob(sc scanner) (store.Job, error) {
	var (
		j   store.Job
		doc []byte
	)
	if err := sc.Scan(&j.Kind, &j.ID, &doc); err != nil {
		return store.Job{}, err
	}
	j.Doc = doc
	return j, nil
}

// Job implements store.JobReader.
func (r *jobReader) Job(kind, id string) (store.Job, error) {
	return deliveryOne(&r.d, fmt.Sprintf("%s job %q", kind, id), scanJob,
		"SELECT "+jobColumns+" FROM jobs WHERE kind = ? AND id = ?", kind, id)
}

// Jobs implements store.JobReader.
func (r *jobReader) Jobs(kind, after string, limit int) ([]store.Job, error) {
	return deliveryList(&r.d, kind+" jobs", scanJob,
		"SELECT "+jobColumns+" FROM jobs WHERE kind = ? AND id > ? ORDER BY id LIMIT ?", kind, after, noLimit(limit))
}

// jobWriter implements store.JobWriter on the writer goroutine: the writer's own methods for
// twins, relationships, models and events, and job changes inside the same savepoint.
type jobWriter struct {
	*writer
	jobReader
}

var _ store.JobWriter = (*jobWriter)(nil)

// changes returns the writer of job changes: they run inside the fn's savepoint, and their
// errors are storage failures that also break the batch, as the delivery writer's do.
func (j *jobWriter) changes() *deliveryWriter {
	return &deliveryWriter{deliveryReader: j.d, w: j.writer}
}

// PutJob implements store.JobWriter.
func (j *jobWriter) PutJob(job store.Job) error {
	_, err := j.changes().exec("INSERT INTO jobs ("+jobColumns+") VALUES (?, ?, ?)"+
		" ON CONFLICT (kind, id) DO UPDATE SET doc = excluded.doc", job.Kind, job.ID, []byte(job.Doc))
	if err != nil {
		return fmt.Errorf("put %s job %q: %w", job.Kind, job.ID, err)
	}
	return nil
}

// DeleteJob implements store.JobWriter.
func (j *jobWriter) DeleteJob(kind, id string) error {
	return j.changes().change(fmt.Sprintf("delete %s job %q", kind, id), "DELETE FROM jobs WHERE kind = ? AND id = ?", kind, id)
}
