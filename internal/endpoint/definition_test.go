package endpoint

import (
	"encoding/json"
	"testing"

	"github.com/twinflow/twinflow/internal/connector/nats"
	"github.com/twinflow/twinflow/internal/connector/webhook"
)

var _ BatchSizer = nats.SinkConfig{}

// TestKindBatchSize checks the batch size of each kind, and which kinds' sinks publish.
func TestKindBatchSize(t *testing.T) {
	kinds := map[string]Kind{
		"webhook": KindOf(webhook.NewSink, webhook.Handshake),
		"nats":    KindOf(nats.NewSink, nil),
	}
	for _, tc := range []struct {
		name, body string
		want       int
		publishes  bool
	}{
		{"kind without a size", `{"endpointType":"webhook","url":"http://127.0.0.1:1/"}`, 0, false},
		{"kind with a size", `{"endpointType":"nats","url":"nats://127.0.0.1:4222","subject":"twins.{twinId}"}`, nats.SinkConfig{}.DefaultMaxBatch(), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			def, err := Parse(json.RawMessage(tc.body), kinds)
			if err != nil {
				t.Fatal(err)
			}
			if got := def.settings.maxBatch(); got != tc.want {
				t.Errorf("maxBatch() = %d, want %d", got, tc.want)
			}
			if got := def.settings.publishes(); got != tc.publishes {
				t.Errorf("publishes() = %v, want %v", got, tc.publishes)
			}
		})
	}
}
