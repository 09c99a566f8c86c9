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

// newIngest builds ingress over st and svc, compiling mappings with compile (which may be
// nil: then no mapping can be defined). Its metrics go to reg.
func newIngest(st *sqlite.Store, svc *twins.Service, compile source.Compiler, reg prometheus.Registerer, logger *slog.Logger) (*ingest, error) {
	m, err := runner.NewMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("register ingress metrics: %w", err)
	}
	if compile == nil {
		compile = func(json.RawMessage) (source.Compiled, error) { return nil, errNoMappingCompiler }
	}
	sources, err := source.New(source.Config{}, SourceKinds(), st, svc, compile, m, logger)
	if err != nil {
		return nil, err
	}
	pruner, err := runner.NewPruner(runner.PrunerConfig{}, st, logger)
	if err != nil {
		return nil, err
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
