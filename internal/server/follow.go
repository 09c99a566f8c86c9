package server

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/twinflow/twinflow/internal/store"
	"github.com/twinflow/twinflow/internal/store/postgres"
)

// configWatcher is a store that several nodes share and that counts each kind of
// configuration's changes in a generation (postgres.Store); a store that one node owns
// (sqlite.Store) is not one, and needs no following.
type configWatcher interface {
	// Generations returns the generation of each kind of configuration, by kind
	// (postgres.GenModels, ...): it moves with every committed change of that kind, by any
	// node. State read after the call reflects at least the changes it counts.
	Generations() map[string]uint64
	// GenerationsChanged returns a channel that is closed once a generation moves past what
	// Generations returns after the call.
	GenerationsChanged() <-chan struct{}
}

// followRetry is how long the follower waits before it tries again a reload that failed
// because the store could not be reached.
const followRetry = time.Second

// follower keeps the configuration this node holds in memory (the twin service's models,
// the routes, the endpoints' relays, the sources and mappings) in line with the store, which
// the other nodes sharing it change too. Whenever a generation moves it reloads what depends
// on it, each holder reconciling its memory with the store; the node's own changes move the
// generations as well, and reloading after them changes nothing.
type follower struct {
	watch   configWatcher
	reloads []*reload
	logger  *slog.Logger
}

// reload is one holder's reload and the kinds of configuration it depends on.
type reload struct {
	what  string
	kinds []string
	fn    func(context.Context) error
	// seen are the generations of kinds as of the last reload that was not cut short by an
	// unreachable store: state loaded since reflects them.
	seen map[string]uint64
}

// newFollower returns the follower of s's configuration, or nil when s's store is not shared
// (not a configWatcher). gens are the generations as of before s loaded its configuration
// from the store: every later change is reloaded.
func newFollower(s *Server, gens map[string]uint64) *follower {
	watch, ok := s.store.(configWatcher)
	if !ok {
		return nil
	}
	reloads := []*reload{
		{what: "models", kinds: []string{postgres.GenModels}, fn: s.twins.ReloadModels},
		{what: "routes", kinds: []string{postgres.GenRoutes}, fn: s.delivery.routes.Reload},
		{what: "endpoints", kinds: []string{postgres.GenEndpoints}, fn: s.delivery.endpoints.Reload},
		// Mappings are compiled against the models: one that did not compile may now.
		{what: "sources and mappings", kinds: []string{postgres.GenSources, postgres.GenMappings, postgres.GenModels},
			fn: s.ingest.sources.Reload},
	}
	for _, r := range reloads {
		r.seen = make(map[string]uint64, len(r.kinds))
		for _, k := range r.kinds {
			r.seen[k] = gens[k]
		}
	}
	return &follower{watch: watch, reloads: reloads, logger: s.logger}
}

// generationsOf returns st's generations, or nil when st is not a configWatcher.
func generationsOf(st store.Store) map[string]uint64 {
	if w, ok := st.(configWatcher); ok {
		return w.Generations()
	}
	return nil
}

// Run reloads, in the order models, routes, endpoints, sources and mappings, whatever
// depends on a generation that moved, until ctx ends; then it returns nil. A reload that
// fails because the store cannot be reached is tried again after followRetry; one that fails
// otherwise (a stored definition this build does not take) is logged, and its holder keeps
// the rest of what it reloaded.
func (f *follower) Run(ctx context.Context) error {
	for {
		changed := f.watch.GenerationsChanged()
		gens := f.watch.Generations()
		retry := false
		for _, r := range f.reloads {
			if !r.due(gens) {
				continue
			}
			err := r.fn(ctx)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				f.logger.Error("reload configuration changed by another node", slog.String("what", r.what), slog.Any("err", err))
				if errors.Is(err, store.ErrUnavailable) {
					retry = true
					continue
				}
			}
			for _, k := range r.kinds {
				r.seen[k] = gens[k]
			}
		}
		var again <-chan time.Time
		if retry {
			again = time.After(followRetry)
		}
		select {
		case <-changed:
		case <-again:
		case <-ctx.Done():
			return nil
		}
	}
}

// due reports whether a generation r depends on moved since r last reloaded.
func (r *reload) due(gens map[string]uint64) bool {
	for _, k := range r.kinds {
		if gens[k] != r.seen[k] {
			return true
		}
	}
	return false
}
