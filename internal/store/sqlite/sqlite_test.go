package sqlite

import (
	"io"
	"log/slog"
	"testing"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/storetest"
)

// open opens a store in dir, failing the test on error.
func open(t testing.TB, cfg Config) *Store {
	t.Helper()
	s, err := Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	return s
}

func TestContract(t *testing.T) {
	storetest.Run(t, func(t *testing.T) store.Store {
		return open(t, Config{Dir: t.TempDir()})
	})
}
