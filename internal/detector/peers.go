package detector

import (
	"context"
	"fmt"
	"slices"

	"github.com/twinflow/twinflow/internal/anomaly"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/store"
)

// peers is what a detector compares a point with: the latest value of each series it scored,
// and the siblings of the twins whose points it scores. Streaming and backtests share it, so
// that both give a point the same peer values.
type peers struct {
	// on is the definition's Peers; when it is off, values gives none and nothing is kept.
	on bool
	// latest is the value of each series' latest point scored, in log order.
	latest map[series]float64
	// siblings caches, for each twin asked, its sibling group: the sorted ids of the twins
	// that share a parent with it, itself included. Twins of one parent share one slice (see
	// groups), so the cache grows with the twins, not with their square.
	siblings map[string][]string
	groups   map[parent][]string
	buf      []float64
}

// parent names a sibling group: the source twin and the name of its relationships to them.
type parent struct{ source, name string }

// newPeers returns the peers of a detector, with the latest values of the series whose
// states the store keeps.
func newPeers(on bool, stored []store.DetectorState) *peers {
	p := &peers{on: on, latest: map[series]float64{}, siblings: map[string][]string{}, groups: map[parent][]string{}}
	if !on {
		return p
	}
	for _, st := range stored {
		if v, ok := anomaly.LatestValue(st.State); ok {
			p.latest[series{st.Twin, st.Property}] = v
		}
	}
	return p
}

// refresh readies the siblings of the twins whose points recs may bring: it forgets every
// sibling set when recs create, replace or delete a relationship or create or delete a twin,
// and asks the graph, in one read, for those of the member twins recs create or update that it
// does not know.
func (p *peers) refresh(ctx context.Context, index Index, recs []store.Change, members map[string]bool) error {
	if !p.on {
		return nil
	}
	var ask []string
	for i := range recs {
		switch ev := &recs[i].Event; ev.Type {
		case event.RelationshipCreate, event.RelationshipUpdate, event.RelationshipDelete, event.TwinCreate, event.TwinDelete:
			clear(p.siblings)
			clear(p.groups)
		}
	}
	for i := range recs {
		ev := &recs[i].Event
		if ev.Type != event.TwinCreate && ev.Type != event.TwinUpdate || !members[ev.Subject] {
			continue
		}
		if _, ok := p.siblings[ev.Subject]; !ok && !slices.Contains(ask, ev.Subject) {
			ask = append(ask, ev.Subject)
		}
	}
	if len(ask) == 0 {
		return nil
	}
	err := index.Read(ctx, func(r *graph.Reader) error {
		for _, id := range ask {
			p.siblings[id] = p.group(r, id)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("read the siblings of %d twins: %w", len(ask), err)
	}
	return nil
}

// values returns the peer values of a point of series k: the latest values of the same
// property of k's twin's siblings that members holds and that have had a point. It returns
// none when peers are off; the slice is valid until the next call.
func (p *peers) values(k series, members map[string]bool) []float64 {
	if !p.on {
		return nil
	}
	p.buf = p.buf[:0]
	for _, id := range p.siblings[k.twin] {
		if v, ok := p.latest[series{id, k.property}]; ok && id != k.twin && members[id] {
			p.buf = append(p.buf, v)
		}
	}
	return p.buf
}

// scored notes v as the value of series k's latest point.
func (p *peers) scored(k series, v float64) {
	if p.on {
		p.latest[k] = v
	}
}

// forget forgets the latest values of twin's series, on its deletion.
func (p *peers) forget(twin string) {
	for k := range p.latest {
		if k.twin == twin {
			delete(p.latest, k)
		}
	}
}

// group returns twin id's sibling group in r: the sorted ids of the twins that are targets of
// a relationship with the same name from the same source twin as a relationship to id (the
// thermostats of one floor, for a floor with a relationship named "contains" to each), id
// included. It keeps the group of each parent in p.groups.
func (p *peers) group(r *graph.Reader, id string) []string {
	t, ok := r.Twin(id)
	if !ok {
		return nil
	}
	var merged []string
	for i, in := range t.In() {
		key := parent{in.Source().ID(), in.Name()}
		g, ok := p.groups[key]
		if !ok {
			for _, rel := range in.Source().Out() {
				if rel.Name() == key.name {
					g = append(g, rel.Target().ID())
				}
			}
			slices.Sort(g)
			g = slices.Compact(g)
			p.groups[key] = g
		}
		if i == 0 {
			merged = g
			continue
		}
		// A twin of several parents: its own list, each sibling once.
		merged = slices.Compact(slices.Sorted(slices.Values(append(slices.Clone(merged), g...))))
	}
	return merged
}
