package ingress

import (
	"context"
	"testing"
	"time"
)

func TestBackoff(t *testing.T) {
	b := Backoff{Min: 100 * time.Millisecond, Max: time.Second}
	// Each wait lies in the upper half of 100 ms, 200 ms, 400 ms, 800 ms, then 1 s for ever.
	for i, upper := range []time.Duration{100, 200, 400, 800, 1000, 1000} {
		upper *= time.Millisecond
		if d := b.Next(); d < upper/2 || d > upper {
			t.Errorf("wait %d = %v, want within [%v, %v]", i, d, upper/2, upper)
		}
	}
	b.Reset()
	if d := b.Next(); d > 100*time.Millisecond {
		t.Errorf("wait after Reset = %v, want at most 100ms", d)
	}
	var zero Backoff
	if d := zero.Next(); d < DefaultMinBackoff/2 || d > DefaultMinBackoff {
		t.Errorf("first wait of a zero Backoff = %v, want within [%v, %v]", d, DefaultMinBackoff/2, DefaultMinBackoff)
	}
}

func TestBackoffWaitEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	b := Backoff{Min: time.Hour, Max: time.Hour}
	if b.Wait(ctx) {
		t.Error("Wait on an ended context = true, want false")
	}
	b = Backoff{Min: time.Millisecond, Max: time.Millisecond}
	if !b.Wait(context.Background()) {
		t.Error("Wait = false, want true")
	}
}
