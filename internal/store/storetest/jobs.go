package storetest

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"testing"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/store"
)

// JobStore is a store that also keeps bulk jobs.
type JobStore interface {
	store.Store
	store.Jobs
}

// RunJobs runs the contract suite of store.Jobs, opening a fresh empty store with open for each
// subtest and closing it afterwards.
func RunJobs(t *testing.T, open func(t *testing.T) JobStore) {
	tests := []testCase[JobStore]{
		{"Jobs", testJobs},
		{"JobCommitsWithItsChanges", testJobCommitsWithChanges},
	}
	runCases(t, open, tests)
}

func job(kind, id, doc string) store.Job {
	return store.Job{Kind: kind, ID: id, Doc: json.RawMessage(doc)}
}

func jobIDs(js []store.Job) []string {
	var ids []string
	for _, j := range js {
		ids = append(ids, j.ID)
	}
	return ids
}

func updateJobs(t *testing.T, s JobStore, fn func(store.JobWriter) error) {
	t.Helper()
	if err := s.UpdateJobs(context.Background(), fn); err != nil {
		t.Fatalf("UpdateJobs: %v", err)
	}
}

func viewJobs(t *testing.T, s JobStore, fn func(store.JobReader) error) {
	t.Helper()
	if err := s.ViewJobs(context.Background(), fn); err != nil {
		t.Fatalf("ViewJobs: %v", err)
	}
}

func testJobs(t *testing.T, s JobStore) {
	updateJobs(t, s, func(w store.JobWriter) error {
		for _, j := range []store.Job{
			job("import", "b", `{"n":1}`), job("import", "a", `{"n":2}`), job("import", "c", `{"n":3}`),
			job("delete", "a", `{"n":4}`),
		} {
			if err := w.PutJob(j); err != nil {
				return err
			}
		}
		// The writer reads its own job writes.
		got, err := w.Job("import", "b")
		if err != nil || !equalJSON(got.Doc, []byte(`{"n":1}`)) {
			t.Errorf("Job(import, b) inside the Update = %+v, %v", got, err)
		}
		return nil
	})
	updateJobs(t, s, func(w store.JobWriter) error {
		if err := w.PutJob(job("import", "b", `{"n":5}`)); err != nil {
			return err
		}
		if err := w.DeleteJob("import", "c"); err != nil {
			return err
		}
		wantNotFound(t, "DeleteJob of a missing job", w.DeleteJob("import", "c"))
		wantNotFound(t, "DeleteJob of a job of another kind", w.DeleteJob("delete", "b"))
		return nil
	})
	viewJobs(t, s, func(r store.JobReader) error {
		got, err := r.Job("import", "b")
		if err != nil {
			return err
		}
		if got.Kind != "import" || got.ID != "b" || !equalJSON(got.Doc, []byte(`{"n":5}`)) {
			t.Errorf("Job(import, b) = %+v, want the replaced document", got)
		}
		if got, err := r.Job("delete", "a"); err != nil || !equalJSON(got.Doc, []byte(`{"n":4}`)) {
			t.Errorf("Job(delete, a) = %+v, %v: ids are per kind", got, err)
		}
		_, err = r.Job("import", "c")
		wantNotFound(t, "Job after DeleteJob", err)
		_, err = r.Job("delete", "b")
		wantNotFound(t, "Job of another kind", err)
		for _, tc := range []struct {
			kind, after string
			limit       int
			want        []string
		}{
			{"import", "", 0, []string{"a", "b"}},
			{"import", "", 1, []string{"a"}},
			{"import", "a", 5, []string{"b"}},
			{"delete", "", 0, []string{"a"}},
			{"other", "", 0, nil},
		} {
			js, err := r.Jobs(tc.kind, tc.after, tc.limit)
			if err != nil {
				return err
			}
			if ids := jobIDs(js); !slices.Equal(ids, tc.want) {
				t.Errorf("Jobs(%q, %q, %d) = %v, want %v", tc.kind, tc.after, tc.limit, ids, tc.want)
			}
		}
		return nil
	})
}

// testJobCommitsWithChanges checks that a job's update and the twins and events written with
// it commit or roll back together.
func testJobCommitsWithChanges(t *testing.T, s JobStore) {
	errAbort := errors.New("abort")
	err := s.UpdateJobs(context.Background(), func(w store.JobWriter) error {
		if err := w.PutJob(job("import", "j", `{"done":1}`)); err != nil {
			return err
		}
		if err := w.CreateTwin(twin("t1", `{}`)); err != nil {
			return err
		}
		if err := w.Emit(about("1", event.TwinCreate, "t1")); err != nil {
			return err
		}
		return errAbort
	})
	if !errors.Is(err, errAbort) {
		t.Fatalf("UpdateJobs = %v, want the fn's error", err)
	}
	viewJobs(t, s, func(r store.JobReader) error {
		_, err := r.Job("import", "j")
		wantNotFound(t, "Job of a rolled back Update", err)
		return nil
	})
	view(t, s, func(r store.Reader) error {
		_, err := r.Twin("t1")
		wantNotFound(t, "Twin of a rolled back job Update", err)
		return nil
	})
	if last := s.Log().Last(); last != 0 {
		t.Errorf("log holds %d records after a rolled back job Update", last)
	}

	updateJobs(t, s, func(w store.JobWriter) error {
		return errors.Join(w.PutJob(job("import", "j", `{"done":1}`)), w.CreateTwin(twin("t1", `{}`)),
			w.Emit(about("1", event.TwinCreate, "t1")))
	})
	viewJobs(t, s, func(r store.JobReader) error {
		_, err := r.Job("import", "j")
		return err
	})
	view(t, s, func(r store.Reader) error {
		_, err := r.Twin("t1")
		return err
	})
	if last := s.Log().Last(); last != 1 {
		t.Errorf("log holds %d records, want 1", last)
	}
}
