// Package loopguard refuses the configurations in which an event route feeds twinflow's own
// events back into one of its sources: a route to an endpoint whose destination (broker
// topic, subject, queue or exchange) is what a source reads. It checks every route, endpoint
// and source as it is created or replaced, whichever of the three comes last, and serialises
// those writes so that two of them cannot form a loop together unseen.
//
// It sees what the configuration says (see endpoint.Feeder): a loop through a system outside
// it (a queue bound to the exchange outside twinflow, a bridge between two brokers, a webhook
// that posts back to twinflow) is stopped by the relays' hop limit instead (see
// event.Event.Hops).
package loopguard

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/twinflow/twinflow/internal/endpoint"
	"github.com/twinflow/twinflow/internal/source"
	"github.com/twinflow/twinflow/internal/store"
)

// ErrFeedsSource is wrapped by the errors of the writes the guard refuses.
var ErrFeedsSource = errors.New("a route would feed a source")

// Store is what the guard reads: routes and endpoints, and sources.
type Store interface {
	store.Delivery
	store.Ingress
}

// Guard checks routes, endpoints and sources before they are written. It is safe for
// concurrent use; its methods run one at a time, each with the write it checks.
type Guard struct {
	st            Store
	endpointKinds map[string]endpoint.Kind
	sourceKinds   map[string]source.Kind

	mu sync.Mutex
}

// New returns a guard reading st, parsing stored endpoints and sources with the kinds given.
func New(st Store, endpointKinds map[string]endpoint.Kind, sourceKinds map[string]source.Kind) *Guard {
	return &Guard{st: st, endpointKinds: endpointKinds, sourceKinds: sourceKinds}
}

// namedEndpoint is an endpoint with the routes that send to it.
type namedEndpoint struct {
	name   string
	def    endpoint.Definition
	routes []string
}

// namedSource is a source's name and definition.
type namedSource struct {
	name string
	def  source.Definition
}

// PutRoute runs write, which creates or replaces r, unless r's endpoint sends where a source
// reads (ErrFeedsSource). A route to an endpoint that does not exist is left to write to
// refuse.
func (g *Guard) PutRoute(ctx context.Context, r store.Route, write func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var ep store.Endpoint
	err := g.st.ViewDelivery(ctx, func(dr store.DeliveryReader) error {
		var err error
		ep, err = dr.Endpoint(r.EndpointName)
		return err
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return write()
	case err != nil:
		return fmt.Errorf("check route %q: %w", r.ID, err)
	}
	def, err := endpoint.Parse(ep.Config, g.endpointKinds)
	if err != nil {
		return write() // stored by a build with other kinds: nothing to compare
	}
	srcs, err := g.sources(ctx)
	if err != nil {
		return fmt.Errorf("check route %q: %w", r.ID, err)
	}
	if err := conflict([]namedEndpoint{{name: r.EndpointName, def: def, routes: []string{r.ID}}}, srcs); err != nil {
		return err
	}
	return write()
}

// PutEndpoint runs write, which creates or replaces the endpoint name with def, unless
// routes send to it and def sends where a source reads (ErrFeedsSource).
func (g *Guard) PutEndpoint(ctx context.Context, name string, def endpoint.Definition, write func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	var routes []string
	err := g.st.ViewDelivery(ctx, func(dr store.DeliveryReader) error {
		all, err := dr.Routes("", 0)
		for _, r := range all {
			if r.EndpointName == name {
				routes = append(routes, r.ID)
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("check endpoint %q: %w", name, err)
	}
	if len(routes) > 0 {
		srcs, err := g.sources(ctx)
		if err != nil {
			return fmt.Errorf("check endpoint %q: %w", name, err)
		}
		if err := conflict([]namedEndpoint{{name: name, def: def, routes: routes}}, srcs); err != nil {
			return err
		}
	}
	return write()
}

// PutSource runs write, which creates or replaces the source name with def, unless def reads
// where an endpoint that routes send to sends (ErrFeedsSource).
func (g *Guard) PutSource(ctx context.Context, name string, def source.Definition, write func() error) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	eps, err := g.routedEndpoints(ctx)
	if err != nil {
		return fmt.Errorf("check source %q: %w", name, err)
	}
	if err := conflict(eps, []namedSource{{name: name, def: def}}); err != nil {
		return err
	}
	return write()
}

// sources returns the stored sources this build can parse.
func (g *Guard) sources(ctx context.Context) ([]namedSource, error) {
	var stored []store.Source
	err := g.st.ViewIngress(ctx, func(ir store.IngressReader) error {
		var err error
		stored, err = ir.Sources()
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]namedSource, 0, len(stored))
	for _, s := range stored {
		if def, err := source.Parse(s.Config, g.sourceKinds); err == nil {
			out = append(out, namedSource{name: s.Name, def: def})
		}
	}
	return out, nil
}

// routedEndpoints returns the stored endpoints this build can parse that routes send to,
// each with its routes.
func (g *Guard) routedEndpoints(ctx context.Context) ([]namedEndpoint, error) {
	var out []namedEndpoint
	err := g.st.ViewDelivery(ctx, func(dr store.DeliveryReader) error {
		routes, err := dr.Routes("", 0)
		if err != nil {
			return err
		}
		byEndpoint := make(map[string][]string)
		for _, r := range routes {
			byEndpoint[r.EndpointName] = append(byEndpoint[r.EndpointName], r.ID)
		}
		eps, err := dr.Endpoints()
		if err != nil {
			return err
		}
		for _, ep := range eps {
			if len(byEndpoint[ep.Name]) == 0 {
				continue
			}
			if def, err := endpoint.Parse(ep.Config, g.endpointKinds); err == nil {
				out = append(out, namedEndpoint{name: ep.Name, def: def, routes: byEndpoint[ep.Name]})
			}
		}
		return nil
	})
	return out, err
}

// conflict returns ErrFeedsSource, with what feeds what, for the first endpoint of eps that
// sends where a source of srcs reads; nil when none does.
func conflict(eps []namedEndpoint, srcs []namedSource) error {
	for _, ep := range eps {
		for _, src := range srcs {
			if ep.def.Feeds(src.def.Settings()) {
				return fmt.Errorf("%w: the endpoint %s sends where the source %s reads, so the route %s would feed twinflow's own events back into it. Route to another destination, or have the source read another one",
					ErrFeedsSource, ep.name, src.name, ep.routes[0])
			}
		}
	}
	return nil
}
