package sqlite

import (
	"testing"

	"github.com/twinflow/twinflow/internal/store/storetest"
)

func TestKeysContract(t *testing.T) {
	storetest.RunKeys(t, func(t *testing.T) storetest.KeyStore {
		return open(t, Config{Dir: t.TempDir(), NoSync: true})
	})
}
