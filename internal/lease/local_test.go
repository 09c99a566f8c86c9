package lease_test

import (
	"sync"
	"testing"

	"github.com/twinflow/twinflow/internal/lease"
	"github.com/twinflow/twinflow/internal/lease/leasetest"
)

// openLocal is a leasetest.Opener of Local tables.
func openLocal() leasetest.Opener {
	var mu sync.Mutex
	tables := map[[2]string]*lease.Local{}
	return func(t testing.TB, key string) lease.Table {
		mu.Lock()
		defer mu.Unlock()
		k := [2]string{t.Name(), key}
		l, ok := tables[k]
		if !ok {
			l = &lease.Local{}
			tables[k] = l
		}
		return l
	}
}

func TestLocal(t *testing.T) { leasetest.Run(t, openLocal()) }

func TestKeeperLocal(t *testing.T) { leasetest.RunKeeper(t, openLocal()) }

func BenchmarkLocal(b *testing.B) { leasetest.Bench(b, openLocal()) }
