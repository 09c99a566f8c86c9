package sqlite

import (
	"testing"

	"github.com/twinflow/twinflow/internal/store/storetest"
)

func TestEgressContract(t *testing.T) {
	storetest.RunEgress(t, func(t *testing.T) storetest.EgressStore {
		return open(t, Config{Dir: t.TempDir(), NoSync: true})
	})
}
