package webhook

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/event/cloudevents"
	"github.com/twinflow/twinflow/internal/sink/sinktest"
)

// BenchmarkDelivery compares the sink in batched and structured mode with net/http posting
// the same bodies directly, to a local server that reads and discards them.
func BenchmarkDelivery(b *testing.B) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	defer srv.Close()
	for _, mode := range []string{Batched, Structured} {
		b.Run("sink-"+mode, func(b *testing.B) {
			s := newSink(b, SinkConfig{URL: srv.URL, Mode: mode})
			defer s.Close()
			sinktest.Bench(b, s.Send)
		})
	}
	b.Run("direct-batched", func(b *testing.B) {
		client := srv.Client()
		sinktest.Bench(b, func(ctx context.Context, events []event.Event) error {
			body, err := cloudevents.Batch(events)
			if err != nil {
				return err
			}
			req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL, bytes.NewReader(body))
			if err != nil {
				return err
			}
			req.Header.Set("Content-Type", cloudevents.BatchContentType)
			resp, err := client.Do(req)
			if err != nil {
				return err
			}
			_, _ = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return fmt.Errorf("status %s", resp.Status)
			}
			return nil
		})
	})
}
