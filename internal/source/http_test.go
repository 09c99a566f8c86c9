package source

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/ingress/ingresstest"
)

// TestHTTPSourceContract runs the Source contract suite against the http source: publishing is
// pushing the messages in one request, as a client would.
func TestHTTPSourceContract(t *testing.T) {
	var (
		mu      sync.Mutex
		sources = map[*testing.T]*HTTPSource{}
	)
	ingresstest.Run(t, ingresstest.Broker{
		NewSource: func(t *testing.T) ingress.Source {
			src, err := NewHTTPSource(HTTPConfig{}, "plant", discard)
			if err != nil {
				t.Fatal(err)
			}
			mu.Lock()
			sources[t] = src
			mu.Unlock()
			return src
		},
		Publish: func(t *testing.T, out []ingresstest.Outgoing) {
			mu.Lock()
			src := sources[t]
			mu.Unlock()
			msgs := make([]ingress.Message, len(out))
			for i, o := range out {
				msgs[i] = ingress.Message{ID: o.ID, Topic: "plant", Headers: o.Headers, Body: o.Body, Time: time.Now()}
			}
			// A push answers once its messages are settled; the suite holds some unsettled.
			// Its outcome is the suite's to check, through the handler.
			go func() { _, _ = src.Push(context.Background(), msgs) }()
		},
		Headers: true,
		IDs:     true,
	})
}
