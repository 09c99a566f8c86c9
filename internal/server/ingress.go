package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinflow/twinflow/internal/api"
	"github.com/twinflow/twinflow/internal/ingress/runner"
	"github.com/twinflow/twinflow/internal/source"
	"github.com/twinflow/twinflow/internal/store/sqlite"
	"github.com/twinflow/twinflow/internal/twins"
)

// SourceKinds are the source types this build can consume, each through its connector.
func SourceKinds() map[string]source.Kind {
	return map[string]source.Kind{
		source.HTTPType: source.HTTPKind(),
	}
}

// errNoMappingCompiler is the answer to a mapping definition when the server has no
// Config.MappingCompiler.
var errNoMappingCompiler = errors.New("this server compiles no mapping rules")

// ingest is the ingress half of a server: the source registry, which runs a runner per
// source (and for $events while mappings read it), and the pruner of message ids.
type ingest struct {
	sources *source.Registry
	pruner  *runner.Pruner
}

// newIngest builds ingress over st and svc with the limits of cfg.Ingress, compiling mappings
// with cfg.MappingCompiler (which may be nil: then no mapping can be defined), and creates or
// replaces the sources and then the mappings cfg declares. Its metrics go to reg.
func newIngest(ctx context.Context, cfg Config, st *sqlite.Store, svc *twins.Service, reg prometheus.Registerer, logger *slog.Logger) (*ingest, error) {
	m, err := runner.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("register ingress metrics: %w", err)
	}
	compile := cfg.MappingCompiler
	if compile == nil {
		compile = func(json.RawMessage) (source.Compiled, error) { return nil, errNoMappingCompiler }
	}
	limits := cfg.Ingress
	rc := runner.Config{
		MaxMessageBytes: limits.MaxMessageBytes, DedupWindow: limits.DedupWindow, MaxDepth: limits.MaxDepth,
		MaxUnsettled: limits.MaxUnsettled, MaxConcurrency: limits.MaxConcurrency,
	}
	sources, err := source.New(source.Config{Runner: rc}, SourceKinds(), st, svc, compile, m, logger)
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
