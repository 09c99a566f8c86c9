package detector

import (
	"context"
	"fmt"

	"github.com/twinflow/twinflow/internal/anomaly"
	"github.com/twinflow/twinflow/internal/history"
)

// lifecyclePage is the most lifecycle rows read from data history at a time.
const lifecyclePage = 1000

// timeline replays the data history of one series as streaming scores it: the series' rows
// merged in log order with those of the twin's siblings (when the detector compares peers),
// each point scored by the series' model with the latest values its siblings had when it
// committed. A deletion of the twin, which history's lifecycle table keeps, starts a fresh
// model for what follows (a twin created again with the same id is a new series), and a
// sibling's deletion forgets its value, as streaming does. Backtests and the rebuilding of a
// model both replay a series through a timeline, so that they agree with streaming and with
// each other to the bit.
type timeline struct {
	def     Definition
	k       series
	members map[string]bool
	pr      *peers
	det     *anomaly.Detector
	own     *historyRead
	sibs    []*historyRead
}

// timelineStart is where a timeline starts: at the first row of history when zero, else
// after a position a backtest's continuation token holds.
type timelineStart struct {
	// state is the model's state after the last point scored; nil for a fresh model.
	state []byte
	// after is the history position of the series' last row taken, and through its log
	// position; the deletions after it are still to come.
	after   string
	through uint64
	// siblings is where each sibling's history was read to, with its latest value.
	siblings map[string]siblingRead
}

// openTimeline opens the timeline of series k of detector def, whose twin's sibling group is
// siblings and whose detector's query selects members, from start. Only the siblings that
// members holds are read. deleted returns the log positions, in order, of a twin's deletions
// after start.through: at least all of those before the point the timeline is read to.
func openTimeline(ctx context.Context, h history.Store, def Definition, k series, siblings []string, members map[string]bool, start timelineStart, deleted func(id string) ([]uint64, error)) (*timeline, error) {
	t := &timeline{def: def, k: k, members: members, pr: newPeers(def.Peers, nil), det: def.newDetector()}
	if start.state != nil {
		if err := t.det.UnmarshalBinary(start.state); err != nil {
			return nil, fmt.Errorf("%w: the continuation token is not one of this detector: %v", ErrBacktestInvalid, err)
		}
	}
	t.pr.siblings[k.twin] = siblings
	t.own = openHistory(ctx, h, history.Selection{ID: k.twin, Key: k.property, After: start.after})
	var err error
	if t.own.deleted, err = deleted(k.twin); err != nil {
		return nil, err
	}
	for _, id := range siblings {
		if id == k.twin || !members[id] {
			continue
		}
		read := start.siblings[id]
		if read.Latest != nil {
			t.pr.scored(series{id, k.property}, *read.Latest)
		}
		sib := openHistory(ctx, h, history.Selection{ID: id, Key: k.property, After: read.After})
		if sib.deleted, err = deleted(id); err != nil {
			return nil, err
		}
		t.sibs = append(t.sibs, sib)
	}
	return t, nil
}

// next scores the series' next point whose row is before log position before (0 for no
// bound) and returns it with its score. When no point is left before it, ok is false and the
// timeline stands as streaming does just before record before: t.det is the model that
// scores that record's point, and t.pr holds the siblings' values it is compared with.
func (t *timeline) next(before uint64) (p point, res anomaly.Result, ok bool, err error) {
	for {
		row, more, err := t.own.peek()
		if err != nil {
			return point{}, anomaly.Result{}, false, err
		}
		if !more || before > 0 && row.Seq >= before {
			if before == 0 {
				return point{}, anomaly.Result{}, false, nil
			}
			return point{}, anomaly.Result{}, false, t.advance(before)
		}
		// The siblings' points that committed before the row are the ones it is compared
		// with, and a twin deleted before it is a new series.
		if err := t.advance(row.Seq); err != nil {
			return point{}, anomaly.Result{}, false, err
		}
		p, ok := pointOf(row)
		t.own.take()
		if !ok {
			continue
		}
		return p, score(t.det, p, t.pr.values(t.k, t.members)...), true, nil
	}
}

// advance takes the siblings' rows and deletions and the twin's deletions before log
// position seq.
func (t *timeline) advance(seq uint64) error {
	for _, h := range t.sibs {
		for {
			row, ok, err := h.peek()
			if err != nil {
				return err
			}
			if h.deletedBefore(seq, ok, row) {
				t.pr.forget(h.sel.ID)
				continue
			}
			if !ok || row.Seq >= seq {
				break
			}
			if p, ok := pointOf(row); ok {
				t.pr.scored(series{h.sel.ID, t.k.property}, p.Value)
			}
			h.take()
		}
	}
	for t.own.deletedBefore(seq, false, nil) {
		t.det = t.def.newDetector()
	}
	return nil
}

// deletions returns the log positions, in order, of twin id's deletions after after, which
// data history's lifecycle table keeps.
func deletions(ctx context.Context, h history.Store, id string, after uint64) ([]uint64, error) {
	var out []uint64
	for {
		evs, err := h.Lifecycle(ctx, history.LifecycleSelection{ID: id, After: after, Limit: lifecyclePage})
		if err != nil {
			return nil, fmt.Errorf("read the lifecycle of %s: %w", id, err)
		}
		for _, e := range evs {
			if e.Twin != nil && e.Twin.Action == history.LifecycleDelete {
				out = append(out, e.Twin.Seq)
			}
		}
		if len(evs) < lifecyclePage {
			return out, nil
		}
		after = max(after, evs[len(evs)-1].Seq())
	}
}

// historyRead reads one history selection a row at a time: peek shows the next row, take
// consumes it, and after is the position of the last row taken. It reads historyChunk rows
// per query, each read to its end before the next, so that a timeline reading several
// selections at once holds no more than one of the store's connections.
type historyRead struct {
	ctx   context.Context
	h     history.Store
	sel   history.Selection // its After is where the next chunk starts
	rows  []history.PropertyEvent
	done  bool // the last chunk was short: no rows after rows
	after string
	// deleted holds the log positions of the twin's deletions still to come, in order.
	deleted []uint64
}

// historyChunk is the number of rows a historyRead reads per query.
const historyChunk = 256

func openHistory(ctx context.Context, h history.Store, sel history.Selection) *historyRead {
	sel.Limit = historyChunk
	return &historyRead{ctx: ctx, h: h, sel: sel, after: sel.After}
}

// peek returns the next row, false when there is none.
func (h *historyRead) peek() (*history.PropertyEvent, bool, error) {
	if len(h.rows) == 0 && !h.done {
		for row, err := range h.h.Select(h.ctx, h.sel) {
			if err != nil {
				return nil, false, fmt.Errorf("read the history of %s.%s: %w", h.sel.ID, h.sel.Key, err)
			}
			h.rows = append(h.rows, row)
		}
		if len(h.rows) < historyChunk {
			h.done = true
		}
		if len(h.rows) > 0 {
			h.sel.After = history.Continuation(h.rows[len(h.rows)-1])
		}
	}
	if len(h.rows) == 0 {
		return nil, false, nil
	}
	return &h.rows[0], true, nil
}

// deletedBefore reports whether the twin's next deletion still to come is before log position
// seq and before next, the next row if ok, and if so consumes it.
func (h *historyRead) deletedBefore(seq uint64, ok bool, next *history.PropertyEvent) bool {
	if len(h.deleted) == 0 || h.deleted[0] >= seq || ok && h.deleted[0] >= next.Seq {
		return false
	}
	h.deleted = h.deleted[1:]
	return true
}

// take consumes the row peek returned.
func (h *historyRead) take() {
	h.after = history.Continuation(h.rows[0])
	h.rows = h.rows[1:]
}
