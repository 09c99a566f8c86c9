package ingresstest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/twinflow/twinflow/internal/ingress"
)

// BenchBody returns the body of the i-th message of a benchmark: a small JSON telemetry
// message, as a device sends.
func BenchBody(i int) []byte {
	return fmt.Appendf(nil, `{"deviceId":"device-%d","seq":%d,"temperature":21.5,"humidity":40}`, i%1000, i)
}

// Consume runs src under a Handler that settles every message at once, until n messages were
// handed over, then stops it and waits for Run to return. Benchmarks of a kind time it against
// the kind's client consuming the same messages directly, with the same settlement.
func Consume(tb testing.TB, src ingress.Source, n int) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	h := &countingHandler{n: int64(n), done: make(chan struct{})}
	errc := make(chan error, 1)
	go func() { errc <- src.Run(ctx, h) }()
	select {
	case <-h.done:
	case err := <-errc:
		tb.Fatalf("source returned before %d messages (%d received): %v", n, h.count.Load(), err)
	}
	cancel()
	if err := <-errc; err != nil {
		tb.Fatal(err)
	}
}

// countingHandler settles every message at once and closes done at the n-th.
type countingHandler struct {
	n     int64
	count atomic.Int64
	done  chan struct{}
}

func (h *countingHandler) Handle(ctx context.Context, m ingress.Message, settle ingress.Settle) error {
	settle(nil)
	if h.count.Add(1) == h.n {
		close(h.done)
	}
	return nil
}

func (h *countingHandler) State(ingress.State, error) {}
