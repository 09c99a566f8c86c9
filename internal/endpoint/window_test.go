package endpoint

import (
	"context"
	"encoding/json"
	"log/slog"
	"testing"

	"github.com/twinflow/twinflow/internal/connector/nats"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/outbox"
	"github.com/twinflow/twinflow/internal/sink"
	"github.com/twinflow/twinflow/internal/store"
)

var _ WindowSizer[nats.SinkConfig] = nats.SinkConfig{}

// windowedConfig is the config of a connector whose sink bounds its unacknowledged publishes:
// Window is what WithWindow set.
type windowedConfig struct {
	Window int `json:"-"`
}

func (c windowedConfig) Validate() error                      { return nil }
func (c windowedConfig) Redacted() windowedConfig             { return c }
func (c windowedConfig) WithWindow(events int) windowedConfig { c.Window = events; return c }
func (c windowedConfig) DefaultMaxBatch() int                 { return 300 }
func (c windowedConfig) Reach() netpolicy.Reach               { return netpolicy.Reach{} }
func (c windowedConfig) WithPolicy(*netpolicy.Policy) windowedConfig {
	return c
}

// windowedSink accepts everything.
type windowedSink struct{}

func (*windowedSink) Send(context.Context, []event.Event) error { return nil }
func (*windowedSink) Close() error                              { return nil }
func (*windowedSink) Publish(context.Context, []event.Event) (sink.Ack, error) {
	return func(context.Context) error { return nil }, nil
}

// TestSinkSizedForTheRelayWindow checks that the registry builds a sink whose config sizes
// its own bound of unacknowledged publishes with the window of the endpoint's relay: at the
// kind's batch size, or the delivery policy's.
func TestSinkSizedForTheRelayWindow(t *testing.T) {
	built := make(chan windowedConfig, 2)
	kind := KindOf(func(c windowedConfig, _ *slog.Logger) (*windowedSink, error) {
		built <- c
		return &windowedSink{}, nil
	}, nil)
	f := newFixtureOf(t, Config{}, map[string]Kind{"windowed": kind})
	ctx := context.Background()
	for name, tc := range map[string]struct {
		def    string
		window int
	}{
		"kind":   {`{"endpointType":"windowed"}`, outbox.Window(300)},
		"policy": {`{"endpointType":"windowed","delivery":{"maxBatch":50}}`, outbox.Window(50)},
	} {
		if _, err := f.reg.Put(ctx, name, json.RawMessage(tc.def)); err != nil {
			t.Fatal(err)
		}
		if err := f.routes.Put(ctx, store.Route{ID: name, EndpointName: name, Filter: "true"}); err != nil {
			t.Fatal(err)
		}
		f.emit(t, "e-"+name) // the sink is built for the first event
		if c := <-built; c.Window != tc.window {
			t.Errorf("%s: sink built with window %d, want %d", name, c.Window, tc.window)
		}
	}
}
