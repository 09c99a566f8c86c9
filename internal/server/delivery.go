package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/twinflow/twinflow/internal/api"
	"github.com/twinflow/twinflow/internal/connector/amqp"
	"github.com/twinflow/twinflow/internal/connector/kafka"
	"github.com/twinflow/twinflow/internal/connector/mqtt"
	"github.com/twinflow/twinflow/internal/connector/nats"
	"github.com/twinflow/twinflow/internal/connector/webhook"
	"github.com/twinflow/twinflow/internal/endpoint"
	"github.com/twinflow/twinflow/internal/eventroute"
	"github.com/twinflow/twinflow/internal/outbox"
	"github.com/twinflow/twinflow/internal/store"
)

// DeliveryConfig configures event delivery: limits, retention and the endpoints and routes
// declared in the config file (see LoadConfigFile). The zero value is ADT's limits with
// nothing declared.
type DeliveryConfig struct {
	// MaxRoutes and MaxEndpoints limit routes and endpoints; 0 means ADT's 6.
	MaxRoutes    int `yaml:"maxRoutes"`
	MaxEndpoints int `yaml:"maxEndpoints"`
	// Retention is how long the change log keeps events every endpoint is past and the graph
	// index has applied (the log keeps every event one of them still needs, however old); 0
	// means outbox.DefaultRetention (7 days).
	Retention time.Duration `yaml:"retention"`
	// DeadLetterDir, when set, also writes dead letters as files in ADT's layout under it.
	DeadLetterDir string `yaml:"deadLetterDir"`
	// SkipHandshake skips the webhook validation handshake of new endpoints.
	SkipHandshake bool `yaml:"skipHandshake"`
	// Endpoints are created, or replaced, at start-up: name to definition (see
	// endpoint.Parse). Endpoints created through the API stay as they are. A new webhook
	// endpoint must pass the validation handshake (unless SkipHandshake), so start-up fails
	// when its destination refuses it or cannot be reached.
	Endpoints map[string]json.RawMessage `yaml:"-"`
	// Routes are created, or replaced, at start-up, after the endpoints: id to route.
	Routes map[string]RouteConfig `yaml:"-"`
}

// RouteConfig is a route declared in the config file.
type RouteConfig struct {
	EndpointName string `yaml:"endpointName" json:"endpointName"`
	Filter       string `yaml:"filter" json:"filter"`
}

// Kinds are the endpoint types this build can deliver to, each through its connector:
// twinflow's own, and ADT's EventGrid, EventHub and ServiceBus, translated to the connector
// that speaks their protocol.
func Kinds() map[string]endpoint.Kind {
	return map[string]endpoint.Kind{
		"webhook":               endpoint.KindOf(webhook.NewSink, webhook.Handshake),
		"kafka":                 endpoint.KindOf(kafka.NewSink, nil),
		"nats":                  endpoint.KindOf(nats.NewSink, nil),
		"amqp":                  endpoint.KindOf(amqp.NewSink, nil),
		"mqtt":                  endpoint.KindOf(mqtt.NewSink, nil),
		endpoint.EventGridType:  endpoint.EventGridKind(),
		endpoint.EventHubType:   endpoint.EventHubKind(),
		endpoint.ServiceBusType: endpoint.ServiceBusKind(),
	}
}

// deliveryStore is what event delivery needs from the store.
type deliveryStore interface {
	store.Delivery
	Log() store.Log
}

// delivery is the event delivery half of a server: routes, the endpoint registry with its
// relays, the change log pruner and the metrics registry /metrics serves.
type delivery struct {
	routes    *eventroute.Table
	endpoints *endpoint.Registry
	pruner    *outbox.Pruner
	metrics   *prometheus.Registry
}

// newDelivery builds event delivery over st and applies the endpoints and routes cfg
// declares. indexed returns the Seq through which the graph index has applied the log (0
// while there is none yet): the pruner keeps every record after it.
func newDelivery(ctx context.Context, cfg DeliveryConfig, st deliveryStore, indexed func() uint64, logger *slog.Logger) (*delivery, error) {
	d := &delivery{metrics: prometheus.NewRegistry()}
	if err := d.metrics.Register(collectors.NewGoCollector()); err != nil {
		return nil, err
	}
	if err := d.metrics.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, err
	}
	m, err := outbox.NewMetrics(d.metrics)
	if err != nil {
		return nil, fmt.Errorf("register delivery metrics: %w", err)
	}
	if d.routes, err = eventroute.New(ctx, eventroute.Config{MaxRoutes: cfg.MaxRoutes}, st); err != nil {
		return nil, err
	}
	d.endpoints, err = endpoint.New(endpoint.Config{
		MaxEndpoints:  cfg.MaxEndpoints,
		DeadLetterDir: cfg.DeadLetterDir,
		SkipHandshake: cfg.SkipHandshake,
	}, Kinds(), st, d.routes, m, logger)
	if err != nil {
		return nil, err
	}
	d.pruner, err = outbox.NewPruner(outbox.PrunerConfig{Retention: cfg.Retention, Consumers: []func() uint64{indexed}}, st, logger)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, name := range sortedKeys(cfg.Endpoints) {
		if _, err := d.endpoints.Put(ctx, name, cfg.Endpoints[name]); err != nil {
			errs = append(errs, fmt.Errorf("endpoints.%s: %w", name, err))
		}
	}
	for _, id := range sortedKeys(cfg.Routes) {
		r := cfg.Routes[id]
		if err := d.routes.Put(ctx, store.Route{ID: id, EndpointName: r.EndpointName, Filter: r.Filter}); err != nil {
			errs = append(errs, fmt.Errorf("routes.%s: %w", id, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("apply config: %w", err)
	}
	return d, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// api returns what the API serves event routes and endpoints from.
func (d *delivery) api() *api.Delivery {
	return &api.Delivery{Routes: d.routes, Endpoints: d.endpoints}
}

// run runs the relays and the pruner until ctx ends, and returns after both stopped.
func (d *delivery) run(ctx context.Context) error {
	var wg sync.WaitGroup
	var relayErr, pruneErr error
	wg.Go(func() { relayErr = d.endpoints.Run(ctx) })
	wg.Go(func() { pruneErr = d.pruner.Run(ctx) })
	wg.Wait()
	return errors.Join(relayErr, pruneErr)
}
