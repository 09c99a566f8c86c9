package postgres

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5"

	"github.com/twinflow/twinflow/internal/store"
)

// Jobs (store.Jobs): a job is written once per chunk of the work it does, in the same
// transaction as that chunk.

var _ store.Jobs = (*Store)(nil)

// ViewJobs implements store.Jobs: fn reads one snapshot, as View does.
func (s *Store) ViewJobs(ctx context.Context, fn func(store.JobReader) error) error {
	return s.view(ctx, "jobs view", func(tx pgx.Tx) error {
		return fn(&jobReader{q: txQuerier{ctx: ctx, tx: tx}})
	})
}

// UpdateJobs implements store.Jobs. fn runs on the writer goroutine like any Update's fn,
// inside its own savepoint of a group-committed transaction, and its job, twin and event
// writes commit together or not at all.
func (s *Store) UpdateJobs(ctx context.Context, fn func(store.JobWriter) error) error {
	return s.update(ctx, func(store.Writer) error {
		return fn(&jobWriter{writer: &s.w, jobReader: jobReader{q: &s.w}})
	})
}

// jobReader implements store.JobReader over q.
type jobReader struct {
	q querier
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
	return one(r.q, fmt.Sprintf("%s job %q", kind, id), scanJob,
		"SELECT "+jobColumns+" FROM jobs WHERE kind = $1 AND id = $2", kind, id)
}

// Jobs implements store.JobReader.
func (r *jobReader) Jobs(kind, after string, n int) ([]store.Job, error) {
	return list(r.q, kind+" jobs", scanJob,
		"SELECT "+jobColumns+" FROM jobs WHERE kind = $1 AND id > $2 ORDER BY id LIMIT $3", kind, after, limit(n))
}

// jobWriter implements store.JobWriter on the writer goroutine: the writer's own methods for
// twins, relationships, models and events, and job changes inside the same savepoint.
type jobWriter struct {
	*writer
	jobReader
}

var _ store.JobWriter = (*jobWriter)(nil)

// PutJob implements store.JobWriter.
func (j *jobWriter) PutJob(job store.Job) error {
	err := j.put("INSERT INTO jobs ("+jobColumns+") VALUES ($1, $2, $3)"+
		" ON CONFLICT (kind, id) DO UPDATE SET doc = excluded.doc", job.Kind, job.ID, blob(job.Doc))
	if err != nil {
		return fmt.Errorf("put %s job %q: %w", job.Kind, job.ID, err)
	}
	return nil
}

// DeleteJob implements store.JobWriter.
func (j *jobWriter) DeleteJob(kind, id string) error {
	return j.change(fmt.Sprintf("delete %s job %q", kind, id), "DELETE FROM jobs WHERE kind = $1 AND id = $2", kind, id)
}
