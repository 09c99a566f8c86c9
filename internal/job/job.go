// Package job runs ADT's bulk jobs: imports of models, twins and relationships from an
// NDJSON file, and deletes of the whole graph. Jobs run in the background, one at a time, and
// survive restarts.
//
// # Imports
//
// An import reads ADT's import format (see Reader), plain or gzip-compressed, from a file:
// URL under the jobs directory or an https: URL whose host is allowed, and writes ADT's output
// log: one NDJSON line per event of the job, Info lines as sections start and end and Error
// lines naming the line of the input that failed and why.
//
// Twins and relationships go through the twin service's bulk writes (twins.Service): they are
// validated as the API validates them, created or replaced as PUT does, and emit the same
// Twin.Create, Twin.Update, Relationship.Create and Relationship.Update events, so event
// routes, the change log and the graph index see an import as they see the API's writes.
// (ADT documents lifecycle notifications for every twin and relationship created or deleted,
// without an exception for jobs; twinflow follows that.) An import is written in
// transactions of up to a few thousand lines, sized so that each holds the store's single
// writer for about Config.ChunkTime, one at a time: the API's writes that arrive meanwhile
// share the group commit of the import's transaction, and the import's next transaction
// queues behind them, so that they wait for at most one. The next transaction is gathered
// while the previous one is written, and the lines are validated on all CPUs but one, which
// is left to the store's writer and the API.
//
// Every transaction also records where in the input the job got to (section, line, byte
// offset and the size of the output log), so after a crash or a restart the job goes on from
// exactly there: nothing is imported twice or skipped, and the output log is cut back to what
// it held at that point before the job writes on. Models are written in dependency order, and
// a model stored already with an equal definition is skipped, so a job that stopped inside
// the Models section reads it again.
//
// Failures: the input is checked line by line as it is imported. At the first line that
// fails (it does not parse, its twin does not validate against its model, its relationship's
// twins are missing, ...), the job stops writing: everything before that line is imported,
// nothing from it on. It still reads on to the end of the input and checks every other line
// on its own, so that the output log lists every line that fails and why, and then ends
// failed. ADT does not roll a failed import back; neither does twinflow. As imports replace
// what exists, running the corrected file again completes it. A Models section is written
// all or none: when one of its models fails, none is written.
//
// Cancelling an import stops it after the transaction in flight; what was imported stays.
//
// # Deletes
//
// A delete job deletes every relationship, twin and model, emitting the Relationship.Delete
// and Twin.Delete events the API's deletes emit, in transactions sized as an import's, and
// nothing else (routes, endpoints and jobs stay). It is idempotent, so after a restart it
// simply goes on. It fails when it runs past its timeout, leaving what it did not delete.
package job

import (
	"encoding/json"
	"fmt"
	"time"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// Kind tells imports from deletes.
type Kind string

// The kinds of job, as the store keeps them.
const (
	KindImport Kind = "import"
	KindDelete Kind = "delete"
)

// Status is where a job is in its life, with ADT's names.
type Status string

// The statuses of a job. A delete job is never cancelling or cancelled.
const (
	StatusNotStarted Status = "notstarted"
	StatusRunning    Status = "running"
	StatusFailed     Status = "failed"
	StatusSucceeded  Status = "succeeded"
	StatusCancelling Status = "cancelling"
	StatusCancelled  Status = "cancelled"
)

// Finished reports whether a job with the status is over.
func (s Status) Finished() bool {
	return s == StatusFailed || s == StatusSucceeded || s == StatusCancelled
}

// Job is a bulk job as stored and reported.
type Job struct {
	Kind Kind   `json:"kind"`
	ID   string `json:"id"`
	// Input and Output are the import's inputBlobUri and outputBlobUri.
	Input  string `json:"input,omitempty"`
	Output string `json:"output,omitempty"`
	Status Status `json:"status"`
	// Created is when the job was created, LastAction when it last changed anything,
	// Finished when it ended (zero until then), Purge when it will be forgotten.
	Created    time.Time `json:"created"`
	LastAction time.Time `json:"lastAction,omitzero"`
	Finished   time.Time `json:"finished,omitzero"`
	Purge      time.Time `json:"purge"`
	// Error is why a failed job failed.
	Error *Error `json:"error,omitempty"`
	// Progress counts what the job did.
	Progress Progress `json:"progress"`
	// Timeout bounds a delete job's run, from Created.
	Timeout time.Duration `json:"timeout,omitempty"`
	// TraceParent is the W3C traceparent of the request that created the job; the events
	// the job emits carry it.
	TraceParent string `json:"traceparent,omitempty"`
	// At is how far an import got in its input, with the size of its output log then.
	At       Position `json:"at"`
	LogBytes int64    `json:"logBytes,omitempty"`
}

// Progress counts what a job did: what it imported or deleted, and for an import, the lines
// that failed and the section it is in.
type Progress struct {
	Section       string `json:"section,omitempty"`
	Models        int    `json:"models"`
	Twins         int    `json:"twins"`
	Relationships int    `json:"relationships"`
	FailedLines   int    `json:"failedLines,omitempty"`
}

// Error is why a job failed: a twin.Kind, by name, and a message.
type Error struct {
	Kind    string `json:"kind"`
	Message string `json:"message"`
}

// newError describes a job failure of kind.
func newError(kind twin.Kind, msg string) *Error {
	return &Error{Kind: kind.String(), Message: msg}
}

// TwinError returns the failure as a *twin.Error, for the API to render.
func (e *Error) TwinError() *twin.Error {
	for _, k := range twin.Kinds() {
		if k.String() == e.Kind {
			return &twin.Error{Kind: k, Message: e.Message}
		}
	}
	return &twin.Error{Kind: twin.KindInternal, Message: e.Message}
}

// retention is how long a job is kept after its last action (ADT: 30 days).
const retention = 30 * 24 * time.Hour

// touch records that the job acted at now.
func (j *Job) touch(now time.Time) {
	j.LastAction = now
	j.Purge = now.Add(retention)
}

// encode returns the stored form of j.
func (j *Job) encode() (store.Job, error) {
	doc, err := json.Marshal(j)
	if err != nil {
		return store.Job{}, fmt.Errorf("encode %s job %q: %w", j.Kind, j.ID, err)
	}
	return store.Job{Kind: string(j.Kind), ID: j.ID, Doc: doc}, nil
}

// decode reads a stored job.
func decode(sj store.Job) (Job, error) {
	var j Job
	if err := json.Unmarshal(sj.Doc, &j); err != nil {
		return Job{}, fmt.Errorf("decode %s job %q: %w", sj.Kind, sj.ID, err)
	}
	return j, nil
}

// get reads job kind/id from r.
func get(r store.JobReader, kind Kind, id string) (Job, error) {
	sj, err := r.Job(string(kind), id)
	if err != nil {
		return Job{}, err
	}
	return decode(sj)
}

// put stores j in w.
func put(w store.JobWriter, j *Job) error {
	sj, err := j.encode()
	if err != nil {
		return err
	}
	return w.PutJob(sj)
}
