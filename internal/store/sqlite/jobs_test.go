package sqlite

import (
	"testing"

	"github.com/twinflow/twinflow/internal/store/storetest"
)

func TestJobsContract(t *testing.T) {
	storetest.RunJobs(t, func(t *testing.T) storetest.JobStore {
		return open(t, Config{Dir: t.TempDir(), NoSync: true})
	})
}
