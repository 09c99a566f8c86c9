package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/twinflow/twinflow/internal/api"
	"github.com/twinflow/twinflow/internal/config"
	"github.com/twinflow/twinflow/internal/connector/amqp"
	"github.com/twinflow/twinflow/internal/connector/kafka"
	"github.com/twinflow/twinflow/internal/connector/mqtt"
	"github.com/twinflow/twinflow/internal/connector/nats"
	"github.com/twinflow/twinflow/internal/connector/webhook"
	"github.com/twinflow/twinflow/internal/endpoint"
	"github.com/twinflow/twinflow/internal/eventroute"
	"github.com/twinflow/twinflow/internal/loopguard"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/outbox"
	"github.com/twinflow/twinflow/internal/store"
)

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

// newDelivery builds event delivery over st with the limits of cfg.Delivery, its routes and
// endpoints checked by guard, and creates or replaces the endpoints and routes cfg declares,
// with what endpoints reach checked against policy. consumers are the in-process readers of
// the log (the graph index, the history writer), each returning the Seq it is done with (0
// while it is not reading yet): the pruner keeps every record after the smallest. Each relay
// runs while holder holds its endpoint's lease.
func newDelivery(ctx context.Context, cfg config.Config, st deliveryStore, guard *loopguard.Guard, consumers []func() uint64,
	policy *netpolicy.Policy, holder endpoint.Holder, logger *slog.Logger) (*delivery, error) {
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
	if d.routes, err = eventroute.New(ctx, eventroute.Config{MaxRoutes: cfg.Delivery.MaxRoutes, Guard: guard}, st); err != nil {
		return nil, err
	}
	d.endpoints, err = endpoint.New(endpoint.Config{
		MaxEndpoints:  cfg.Delivery.MaxEndpoints,
		DeadLetterDir: cfg.Delivery.DeadLetterDir,
		SkipHandshake: cfg.Delivery.SkipHandshake,
		Policy:        policy,
		MaxHops:       cfg.Delivery.MaxHops,
		Guard:         guard,
		Holder:        holder,
	}, Kinds(), st, d.routes, m, logger)
	if err != nil {
		return nil, err
	}
	d.pruner, err = outbox.NewPruner(outbox.PrunerConfig{Retention: cfg.Delivery.Retention, Consumers: consumers}, st, logger)
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
