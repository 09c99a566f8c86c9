package sqlite

import (
	"testing"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/storetest"
)

func TestScanContract(t *testing.T) {
	storetest.RunScan(t, func(t *testing.T) store.Store { return open(t, Config{Dir: t.TempDir()}) })
}
