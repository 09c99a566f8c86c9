package history

import (
	"testing"
	"time"
)

// TestPruneIntervalDefault checks that a short retention is pruned every tenth of it, and
// others hourly.
func TestPruneIntervalDefault(t *testing.T) {
	tests := []struct {
		retention, set, want time.Duration
	}{
		{retention: 0, want: DefaultPruneInterval},
		{retention: -1, want: DefaultPruneInterval},
		{retention: 30 * 24 * time.Hour, want: DefaultPruneInterval},
		{retention: 5 * time.Minute, want: 30 * time.Second},
		{retention: 2 * time.Second, want: time.Second},
		{retention: 5 * time.Minute, set: time.Minute, want: time.Minute},
	}
	for _, tt := range tests {
		cfg, err := Config{Retention: tt.retention, PruneInterval: tt.set}.withDefaults()
		if err != nil {
			t.Fatal(err)
		}
		if cfg.PruneInterval != tt.want {
			t.Errorf("retention %v, pruneInterval %v: the interval is %v, want %v", tt.retention, tt.set, cfg.PruneInterval, tt.want)
		}
	}
}
