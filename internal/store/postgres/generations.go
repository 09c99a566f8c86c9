package postgres

import (
	"strconv"
	"strings"
)

// The kinds of configuration whose changes a Store counts, as Generations names them. Nodes
// sharing a schema keep these in memory (the twin service its models, the route table, the
// endpoint and source registries) and reload one when its generation moves.
const (
	GenModels    = "models"
	GenRoutes    = "routes"
	GenEndpoints = "endpoints"
	GenSources   = "sources"
	GenMappings  = "mappings"
)

// genKind indexes generations; the order is that of the columns of table generations.
type genKind uint8

const (
	genModels genKind = iota
	genRoutes
	genEndpoints
	genSources
	genMappings
	numGenKinds
)

// genNames names each genKind as Generations does.
var genNames = [numGenKinds]string{GenModels, GenRoutes, GenEndpoints, GenSources, GenMappings}

// generations holds one count per kind of configuration.
type generations [numGenKinds]uint64

// genColumns are the columns of table generations, in genKind order.
const genColumns = "models, routes, endpoints, sources, mappings"

// bumpGenerations adds $1 to $5 to the generations, in genKind order, and notifies the
// listeners of other nodes, on channel $6, with the new generations (see genPayload). The
// writer runs it once per batch that changed configuration, after appendLog and just before
// the commit, so that the one row's lock is the last a transaction takes: a transaction that
// holds it waits for no other lock, and two nodes' batches cannot deadlock on it.
const bumpGenerations = `
WITH g AS (
	UPDATE generations SET models = models + $1, routes = routes + $2, endpoints = endpoints + $3,
		sources = sources + $4, mappings = mappings + $5
	RETURNING ` + genColumns + `
)
SELECT ` + genColumns + ` FROM g,
	pg_notify($6, '` + genPrefix + `' || models || ' ' || routes || ' ' || endpoints || ' ' || sources || ' ' || mappings) AS n`

// genPrefix starts the payload of a notification of new generations, which shares the log's
// channel: "config <models> <routes> <endpoints> <sources> <mappings>". The log's own
// notifications are bare Seqs.
const genPrefix = "config "

// parseGenerations parses the payload of a notification of new generations; ok is false when
// payload is not one.
func parseGenerations(payload string) (g generations, ok bool) {
	rest, found := strings.CutPrefix(payload, genPrefix)
	if !found {
		return g, false
	}
	fields := strings.Fields(rest)
	if len(fields) != int(numGenKinds) {
		return g, false
	}
	for i, f := range fields {
		n, err := strconv.ParseUint(f, 10, 64)
		if err != nil {
			return g, false
		}
		g[i] = n
	}
	return g, true
}

// touch records that the current batch changes configuration of kind k: its commit bumps
// k's generation. A fn that is rolled back after touching leaves the mark, so the batch may
// bump a generation for nothing; followers then reload an unchanged configuration, which is
// harmless.
func (w *writer) touch(k genKind) {
	w.touched[k] = 1
}

// Generations returns the generation of each kind of configuration (GenModels, GenRoutes,
// GenEndpoints, GenSources and GenMappings) as this Store knows it: the count of committed
// transactions, of any node sharing the schema, that changed that kind. It knows of its own
// commits once they returned, and of other nodes' when the listener hears of them, at once
// through their notification or at the latest after Config.PollInterval (see listen). A
// generation never goes back; state read after Generations returned reflects at least the
// changes it counts.
func (s *Store) Generations() map[string]uint64 {
	s.genMu.Lock()
	g := s.gens
	s.genMu.Unlock()
	out := make(map[string]uint64, numGenKinds)
	for k, name := range genNames {
		out[name] = g[k]
	}
	return out
}

// GenerationsChanged returns a channel that is closed once any generation moves past what
// Generations returns after this call: call it first, then read Generations, then wait on
// the channel, and no change is missed.
func (s *Store) GenerationsChanged() <-chan struct{} {
	s.genMu.Lock()
	defer s.genMu.Unlock()
	return s.genChanged
}

// advanceGenerations raises the known generations to g, kind by kind, and wakes the callers
// waiting on GenerationsChanged when any moved.
func (s *Store) advanceGenerations(g generations) {
	s.genMu.Lock()
	defer s.genMu.Unlock()
	moved := false
	for k := range g {
		if g[k] > s.gens[k] {
			s.gens[k], moved = g[k], true
		}
	}
	if moved {
		close(s.genChanged)
		s.genChanged = make(chan struct{})
	}
}

// scanGenerations scans a row of the generations' columns, in genKind order, into g.
func scanGenerations(sc scanner, g *generations) error {
	var v [numGenKinds]int64
	if err := sc.Scan(&v[0], &v[1], &v[2], &v[3], &v[4]); err != nil {
		return err
	}
	for k := range v {
		g[k] = uint64(v[k])
	}
	return nil
}
