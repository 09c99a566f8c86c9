package job

import (
	"context"

	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/twins"
)

// IndexGraph returns the Graph of the graph index x: imports check relationships against the
// twins the index holds, which Read brings up to date first.
func IndexGraph(x *graph.Index) Graph { return indexGraph{x} }

type indexGraph struct{ x *graph.Index }

func (g indexGraph) ViewTwins(ctx context.Context, fn func(twins.TwinView) error) error {
	return g.x.Read(ctx, func(r *graph.Reader) error { return fn(indexView{r}) })
}

// indexView is a twins.TwinView of a graph.Reader.
type indexView struct{ r *graph.Reader }

func (v indexView) TwinModel(id string) (string, bool) {
	t, ok := v.r.Twin(id)
	if !ok {
		return "", false
	}
	return v.r.ModelIDs()[t.Model()], true
}

func (v indexView) Outgoing(id string) int {
	if t, ok := v.r.Twin(id); ok {
		return len(t.Out())
	}
	return 0
}

func (v indexView) OutgoingNamed(id, name string) int {
	t, ok := v.r.Twin(id)
	if !ok {
		return 0
	}
	n := 0
	for _, rel := range t.Out() {
		if rel.Name() == name {
			n++
		}
	}
	return n
}

func (v indexView) Incoming(id string) int {
	if t, ok := v.r.Twin(id); ok {
		return len(t.In())
	}
	return 0
}
