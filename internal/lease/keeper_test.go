package lease_test

import (
	"log/slog"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/lease"
)

func TestNewConfig(t *testing.T) {
	logger := slog.New(slog.DiscardHandler)
	for _, cfg := range []lease.Config{
		{},
		{Holder: "node-a", TTL: time.Microsecond},
		{Holder: "node-a", TTL: -time.Second},
		{Holder: "node-a", Retry: -time.Second},
	} {
		if _, err := lease.New(cfg, &lease.Local{}, logger); err == nil {
			t.Errorf("New(%+v) succeeded, want an error", cfg)
		}
	}
	if _, err := lease.New(lease.Config{Holder: "node-a"}, &lease.Local{}, logger); err != nil {
		t.Errorf("New with defaults: %v", err)
	}
}
