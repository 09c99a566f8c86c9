package sqlite

import (
	"testing"

	"github.com/twinflow/twinflow/internal/store/storetest"
)

func TestDetectorsContract(t *testing.T) {
	storetest.RunDetectors(t, func(t *testing.T) storetest.DetectorStore {
		return open(t, Config{Dir: t.TempDir(), NoSync: true})
	})
}
