package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinflow/twinflow/internal/api"
	"github.com/twinflow/twinflow/internal/connector/amqp"
	"github.com/twinflow/twinflow/internal/connector/kafka"
	"github.com/twinflow/twinflow/internal/connector/mqtt"
	"github.com/twinflow/twinflow/internal/connector/nats"
	"github.com/twinflow/twinflow/internal/dtdl"
	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/ingress"
	"github.com/twinflow/twinflow/internal/ingress/runner"
	"github.com/twinflow/twinflow/internal/mapping"
	"github.com/twinflow/twinflow/internal/netpolicy"
	"github.com/twinflow/twinflow/internal/source"
	"github.com/twinflow/twinflow/internal/twins"
)

// SourceKinds are the source types this build can consume, each through its connector.
func SourceKinds() map[string]source.Kind {
	return map[string]source.Kind{
		source.HTTPType: source.HTTPKind(),
		"mqtt":          source.KindOf(mqtt.NewSource),
		"nats":          source.KindOf(nats.NewSource),
		"kafka":         source.KindOf(kafka.NewSource),
		"amqp":          source.KindOf(amqp.NewSource),
	}
}

// mappingCompiler returns the compiler of mapping definitions (package mapping's CEL rules),
// checking them against the models as they are when compiled, and answering incoming and
// outgoing from g.
func mappingCompiler(models func() *dtdl.ModelSet, g mapping.Graph) source.Compiler {
	return func(raw json.RawMessage) (source.Compiled, error) {
		var def mapping.Definition
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&def); err != nil {
			return nil, err
		}
		// A source's own limit (maxMessageBytes) bounds its messages before they are mapped.
		m, err := mapping.Compile(def, mapping.Config{MaxMessageBytes: math.MaxInt32}, mapping.Deps{Models: models(), Graph: g})
		if err != nil {
			return nil, err
		}
		return compiledMapping{m}, nil
	}
}

// compiledMapping is a mapping.Mapping as the source registry takes it.
type compiledMapping struct{ *mapping.Mapping }

// DryRun implements source.Compiled: the mapping's mapping.Result.
func (c compiledMapping) DryRun(ctx context.Context, m ingress.Message, twins ingress.TwinReader) (any, error) {
	return c.Mapping.DryRun(ctx, m, twins)
}

// lateGraph is the graph index the server's mappings read, which the server builds only after
// it compiled them: incoming and outgoing wait until it is there.
type lateGraph struct {
	ready chan struct{}
	index *graph.Index
}

func newLateGraph() *lateGraph { return &lateGraph{ready: make(chan struct{})} }

// set makes idx the index; it must be called once.
func (g *lateGraph) set(idx *graph.Index) {
	g.index = idx
	close(g.ready)
}

// built returns the index once it is there, or ErrUnavailable when ctx ends first.
func (g *lateGraph) built(ctx context.Context) (*graph.Index, error) {
	select {
	case <-g.ready:
		return g.index, nil
	case <-ctx.Done():
		return nil, fmt.Errorf("the graph index is being built: %w: %w", ingress.ErrUnavailable, ctx.Err())
	}
}

// Incoming implements mapping.Graph.
func (g *lateGraph) Incoming(ctx context.Context, id, name string) ([]string, error) {
	idx, err := g.built(ctx)
	if err != nil {
		return nil, err
	}
	return idx.Incoming(ctx, id, name)
}

// Outgoing implements mapping.Graph.
func (g *lateGraph) Outgoing(ctx context.Context, id, name string) ([]string, error) {
	idx, err := g.built(ctx)
	if err != nil {
		return nil, err
	}
	return idx.Outgoing(ctx, id, name)
}

// ingest is the ingress half of a server: the source registry, which runs a runner per
// source (and for $events while mappings read it), and the pruner of message ids.
type ingest struct {
	sources *source.Registry
	pruner  *runner.Pruner
}

// newIngest builds ingress over st and svc with the limits of cfg.Ingress, compiling mappings
// with cfg.MappingCompiler, or else with package mapping reading g, and creates or replaces the
// sources and then the mappings cfg declares, with sources checked by guard and what they
// reach checked against policy; each source but the http ones runs while holder holds its
// lease. Its metrics go to reg.
func newIngest(ctx context.Context, cfg Config, guard source.Guard, st mainStore, svc *twins.Service, g mapping.Graph,
	reg prometheus.Registerer, policy *netpolicy.Policy, holder source.Holder, logger *slog.Logger) (*ingest, error) {
	m, err := runner.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("register ingress metrics: %w", err)
	}
	compile := cfg.MappingCompiler
	if compile == nil {
		compile = mappingCompiler(svc.Models, g)
	}
	limits := cfg.Ingress
	rc := runner.Config{
		MaxMessageBytes: limits.MaxMessageBytes, DedupWindow: limits.DedupWindow, MaxDepth: limits.MaxDepth,
		MaxUnsettled: limits.MaxUnsettled, MaxConcurrency: limits.MaxConcurrency,
	}
	sources, err := source.New(source.Config{Runner: rc, Policy: policy, Guard: guard, Holder: holder}, SourceKinds(), st, svc, compile, m, logger)
	if err != nil {
		return nil, err
	}
	pruner, err := runner.NewPruner(runner.PrunerConfig{}, st, logger)
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, name := range sortedKeys(cfg.Sources) {
		if _, err := sources.Put(ctx, name, cfg.Sources[name]); err != nil {
			errs = append(errs, fmt.Errorf("sources.%s: %w", name, err))
		}
	}
	for _, name := range sortedKeys(cfg.Mappings) {
		if _, err := sources.PutMapping(ctx, name, cfg.Mappings[name]); err != nil {
			errs = append(errs, fmt.Errorf("mappings.%s: %w", name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("apply config: %w", err)
	}
	return &ingest{sources: sources, pruner: pruner}, nil
}

// api returns what the API serves sources and mappings from.
func (i *ingest) api() *api.Ingress {
	return &api.Ingress{Sources: i.sources}
}

// run runs the sources and the pruner until ctx ends, and returns after both stopped.
func (i *ingest) run(ctx context.Context) error {
	var wg sync.WaitGroup
	var sourcesErr, pruneErr error
	wg.Go(func() { sourcesErr = i.sources.Run(ctx) })
	wg.Go(func() { pruneErr = i.pruner.Run(ctx) })
	wg.Wait()
	return errors.Join(sourcesErr, pruneErr)
}
