package sqlite

import (
	"testing"

	"github.com/twinflow/twinflow/internal/store/storetest"
)

func TestDeliveryContract(t *testing.T) {
	storetest.RunDelivery(t, func(t *testing.T) storetest.DeliveryStore {
		return open(t, Config{Dir: t.TempDir(), NoSync: true})
	})
}
