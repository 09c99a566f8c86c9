package sinktest

import (
	"context"
	"encoding/json"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/event"
)

// BenchmarkBatch is the batch size of Bench, the relay's default.
const BenchmarkBatch = 256

// BenchmarkEvents returns a batch of Twin.Update events with size bytes of JSON data each
// (at least a few dozen), spread over 64 twins.
func BenchmarkEvents(n, size int) []event.Event {
	out := make([]event.Event, n)
	for i := range out {
		head := `{"modelId":"dtmi:example:Room;1","patch":[{"op":"replace","path":"/note","value":"`
		tail := `"}]}`
		fill := strings.Repeat("x", max(size-len(head)-len(tail), 0))
		out[i] = event.Event{
			Source: "twinflow.bench", SpecVersion: event.SpecVersion, Type: event.TwinUpdate,
			Subject: "twin-" + strconv.Itoa(i%64), Time: "2026-11-25T10:00:00.0000000Z",
			DataContentType: "application/json", TraceParent: "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
			Data: json.RawMessage(head + fill + tail),
		}
	}
	return out
}

// Bench delivers b.N events of 1 KB through send, in batches of BenchmarkBatch, and reports
// events/s. Every event gets a fresh id, so destinations that drop duplicate ids (JetStream)
// store them all. Use it for a sink's Send and for the same client publishing directly, so
// the two figures compare.
func Bench(b *testing.B, send func(ctx context.Context, events []event.Event) error) {
	batch := BenchmarkEvents(BenchmarkBatch, 1024)
	ctx := b.Context()
	var seq uint64
	prefix := "bench-" + strconv.FormatInt(int64(b.N), 36) + "-"
	b.SetBytes(int64(len(batch[0].Data)))
	b.ResetTimer()
	for sent := 0; sent < b.N; {
		n := min(len(batch), b.N-sent)
		for i := range batch[:n] {
			seq++
			batch[i].ID = prefix + strconv.FormatUint(seq, 36)
		}
		if err := send(ctx, batch[:n]); err != nil {
			b.Fatal(err)
		}
		sent += n
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchLatency sends b.N single 1 KB events through send, one after another, and reports
// the median and 99th percentile time until send returned, that is until the destination
// accepted the event.
func BenchLatency(b *testing.B, send func(ctx context.Context, events []event.Event) error) {
	batch := BenchmarkEvents(1, 1024)
	ctx := b.Context()
	prefix := "latency-" + strconv.FormatInt(int64(b.N), 36) + "-"
	took := make([]time.Duration, b.N)
	b.ResetTimer()
	for i := range b.N {
		batch[0].ID = prefix + strconv.Itoa(i)
		start := time.Now()
		if err := send(ctx, batch); err != nil {
			b.Fatal(err)
		}
		took[i] = time.Since(start)
	}
	b.StopTimer()
	slices.Sort(took)
	b.ReportMetric(float64(took[len(took)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(took[len(took)*99/100].Microseconds())/1000, "p99-ms")
}
