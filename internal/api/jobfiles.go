package api

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/twin"
)

// jobFilePath is the path of the job file uploads.
const jobFilePath = "/jobs/files/{name}"

// DefaultMaxJobFileBytes bounds a job file upload: 1 GiB, an import of millions of twins.
const DefaultMaxJobFileBytes = 1 << 30

// jobFileTypes are the media types a job file is accepted as: ADT's NDJSON import format,
// plain or gzip-compressed.
var jobFileTypes = []string{"application/x-ndjson", "application/octet-stream", "application/gzip"}

// DiskSpace is the disk state of the data directory (reserve.Reserve is one).
type DiskSpace interface {
	// Full reports whether the disk is full.
	Full() bool
	// Exhausted reports whether err, a failed write, says the disk is full, and if it
	// does makes Full true.
	Exhausted(err error) bool
}

// jobFileName is a file name a job file may have: a letter or digit, then letters, digits,
// ".", "_" and "-", 255 bytes at most. Without "/" it cannot leave the jobs directory, and
// without a leading "." it cannot be mistaken for an upload in progress.
var jobFileName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$`)

// putJobFile serves PUT /jobs/files/{name}: the body, an import job's input, is stored as
// the file name in the jobs directory, replacing a file of that name, and the answer is 201
// {"name", "uri", "size"} where uri is the file: URL an import job reads it from. The body
// is written to a hidden temporary file, synced and renamed into place, so a job never sees
// half a file. Bodies over Config.MaxJobFileBytes are 400 LimitExceeded; while the disk is
// full (Config.Space), or when it fills up during the upload, 507 InsufficientStorage.
func (a *API) putJobFile(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	if err := checkJobFileName(name); err != nil {
		return err
	}
	if a.cfg.Space != nil && a.cfg.Space.Full() {
		return diskFull()
	}
	dir := a.cfg.Jobs.Dir()
	tmp, err := os.CreateTemp(dir, "."+name+".upload-*")
	if err != nil {
		return a.jobFileError(fmt.Errorf("create the job file %s: %w", name, err))
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	n, err := io.Copy(tmp, http.MaxBytesReader(w, r.Body, a.cfg.MaxJobFileBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			return twin.LimitExceeded(fmt.Sprintf("The job file is larger than the limit of %d bytes.", a.cfg.MaxJobFileBytes))
		}
		return a.jobFileError(fmt.Errorf("write the job file %s: %w", name, err))
	}
	if n == 0 {
		return twin.ValidationFailed("The job file is empty.")
	}
	if err := tmp.Sync(); err != nil {
		return a.jobFileError(fmt.Errorf("sync the job file %s: %w", name, err))
	}
	if err := tmp.Close(); err != nil {
		return a.jobFileError(fmt.Errorf("close the job file %s: %w", name, err))
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return a.jobFileError(fmt.Errorf("rename the job file %s into place: %w", name, err))
	}
	done = true
	// The rename is durable only once the directory is synced; the answer acknowledges it.
	if err := syncDir(dir); err != nil {
		return a.jobFileError(fmt.Errorf("sync the jobs directory after storing %s: %w", name, err))
	}
	return writeJSON(w, http.StatusCreated, struct {
		Name string `json:"name"`
		URI  string `json:"uri"`
		Size int64  `json:"size"`
	}{name, "file:" + name, n})
}

// checkJobFileName reports a name that jobFileName refuses as 400 ValidationFailed.
func checkJobFileName(name string) error {
	if jobFileName.MatchString(name) {
		return nil
	}
	return twin.ValidationFailed(fmt.Sprintf("The job file name %q is not valid: it must start with a letter or digit and hold only letters, digits, '.', '_' and '-', at most 255 of them.", truncate(name)))
}

// syncDir syncs the directory dir, making the renames inside it durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// getJobFile serves GET /jobs/files/{name}: the file name of the jobs directory, such as an
// import job's output log, as application/x-ndjson; 404 NotFound when there is none.
func (a *API) getJobFile(w http.ResponseWriter, r *http.Request, _ apiVersion) error {
	name := r.PathValue("name")
	if err := checkJobFileName(name); err != nil {
		return err
	}
	f, err := os.Open(filepath.Join(a.cfg.Jobs.Dir(), name))
	if errors.Is(err, os.ErrNotExist) {
		return &twin.Error{Kind: twin.KindPathNotFound, Message: fmt.Sprintf("There is no job file %q in the jobs directory.", name)}
	}
	if err != nil {
		return fmt.Errorf("open the job file %s: %w", name, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return fmt.Errorf("stat the job file %s: %w", name, err)
	}
	if !info.Mode().IsRegular() {
		return &twin.Error{Kind: twin.KindPathNotFound, Message: fmt.Sprintf("There is no job file %q in the jobs directory.", name)}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Content-Length", fmt.Sprint(info.Size()))
	w.WriteHeader(http.StatusOK)
	_, _ = io.Copy(w, f) // a client that went away stops the copy; nothing to answer then
	return nil
}

// jobFileError answers a failed job file write: 507 when the disk is full (which Config.Space
// is told), else err.
func (a *API) jobFileError(err error) error {
	if a.cfg.Space != nil && a.cfg.Space.Exhausted(err) {
		return diskFull()
	}
	return err
}

// diskFull is the answer to a write while the disk is full.
func diskFull() *twin.Error { return storageError(store.ErrFull) }
