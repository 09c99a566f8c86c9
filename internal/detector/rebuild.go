package detector

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/twinflow/twinflow/internal/anomaly"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/store"
)

// Bounds of the wait for data history to reach a record.
const (
	historyPollMin = 10 * time.Millisecond
	historyPollMax = 250 * time.Millisecond
	// historyWaitWarn is how long a scorer waits for data history before it says so.
	historyWaitWarn = 10 * time.Second
)

// rebuilder makes what a scorer's series have no state to go on from: the models of those
// of a detector created over twins that already have data history, or whose stored state
// cannot be read, and, for a detector comparing peers, the latest values of siblings whose
// states are gone. With data history on, it replays the series' timeline (replay.go), the
// backtest's, up to the point being scored, so that the model and its peer values are what
// a detector that watched the series and its siblings from their first points holds: the
// scores that follow are those a backtest gives. One rebuilder serves one run of a scorer's
// stream.
type rebuilder struct {
	sc *scorer
	// peers is the stream's; the rebuilder gives it the values of siblings it lacks.
	peers *peers
	// replayed holds the series whose values the rebuilder has read from history in this
	// run, or looked for there: from then on streaming keeps them.
	replayed map[series]bool
	// reached is a Seq through which data history is known to hold the log's rows.
	reached uint64
	// deleted holds the twins' deletions read from data history for the batch that ends
	// with record batch: the series of a twin that a batch rebuilds read them once.
	deleted map[string][]uint64
	batch   uint64
}

// model returns the model that scores the point of series k that record ch brings, for a
// series without a model in memory, and readies the values of its siblings among members
// that the stream's peers lack. state is its stored state, when stored is true. last is the
// Seq of the last record of the batch being scored: if data history has to be read, it is
// first waited for through the record before last, so that a batch waits once at most.
func (rb *rebuilder) model(ctx context.Context, k series, state []byte, stored bool, ch *store.Change, last uint64, members map[string]bool) (*anomaly.Detector, error) {
	sc := rb.sc
	det := sc.def.newDetector()
	rebuild := true
	if stored {
		err := det.UnmarshalBinary(state)
		if rebuild = err != nil; rebuild {
			// det is unchanged: a fresh model, rebuilt below when history is on.
			sc.svc.logger.Warn("detector "+sc.name+": the stored state of a series cannot be read; rebuilding it",
				slog.String("twin", k.twin), slog.String("property", k.property), slog.Bool("history", sc.svc.hist != nil), slog.Any("err", err))
		}
	}
	if sc.svc.hist == nil {
		return det, nil
	}
	// A creation begins a new series: nothing before it belongs to it. Its siblings' values
	// may still be wanted.
	rebuild = rebuild && ch.Event.Type != event.TwinCreate
	group := rb.peers.siblings[k.twin]
	lacking := false
	for _, id := range group {
		sib := series{id, k.property}
		if _, ok := rb.peers.latest[sib]; ok || id == k.twin || !members[id] || rb.replayed[sib] {
			continue
		}
		lacking = true
	}
	if !rebuild && !lacking {
		return det, nil
	}
	if err := rb.await(ctx, last-1); err != nil {
		return nil, err
	}
	t, n, err := replay(ctx, sc.svc.hist, sc.def, k, group, members, ch.Seq, rb.deletions(ctx, last))
	if err != nil {
		return nil, fmt.Errorf("rebuild the model of %s.%s from data history: %w", k.twin, k.property, err)
	}
	if rebuild {
		det = t.det
		sc.rebuiltSeries.Add(1)
		sc.rebuilt.Add(uint64(n))
		sc.svc.metrics.rebuilt(sc.name, n)
		sc.svc.logger.Debug("detector "+sc.name+": rebuilt the model of a series from data history",
			slog.String("twin", k.twin), slog.String("property", k.property), slog.Int("points", n), slog.Uint64("before", ch.Seq))
	}
	// The values streaming holds are as new as history's; those it lacks are history's.
	for _, id := range group {
		sib := series{id, k.property}
		if v, ok := t.pr.latest[sib]; ok {
			if _, held := rb.peers.latest[sib]; !held {
				rb.peers.scored(sib, v)
			}
		}
		if rb.replayed == nil {
			rb.replayed = map[series]bool{}
		}
		rb.replayed[sib] = true
	}
	return det, nil
}

// deletions returns what reads the deletions of a twin for a replay in the batch that ends
// with record last, which has waited for data history through the record before last: read
// once per twin and batch, they hold every deletion that any replay of the batch, which stops
// before a record of it, takes.
func (rb *rebuilder) deletions(ctx context.Context, last uint64) func(id string) ([]uint64, error) {
	if rb.deleted == nil || rb.batch != last {
		rb.deleted, rb.batch = map[string][]uint64{}, last
	}
	return func(id string) ([]uint64, error) {
		if d, ok := rb.deleted[id]; ok {
			return d, nil
		}
		d, err := deletions(ctx, rb.sc.svc.hist, id, 0)
		if err != nil {
			return nil, err
		}
		rb.deleted[id] = d
		return d, nil
	}
}

// await waits until data history holds the rows of the log through record through, or ctx
// ends. The history writer follows the log on its own, behind it.
func (rb *rebuilder) await(ctx context.Context, through uint64) error {
	var (
		poll   = historyPollMin
		since  = time.Now()
		warned bool
	)
	for rb.reached < through {
		c, err := rb.sc.svc.hist.Cursor(ctx)
		if err != nil {
			return fmt.Errorf("read the data history cursor: %w", err)
		}
		if rb.reached = c; c >= through {
			return nil
		}
		if !warned && time.Since(since) >= historyWaitWarn {
			warned = true
			rb.sc.svc.logger.Warn("detector "+rb.sc.name+": waiting for data history to rebuild the model of a series",
				slog.Uint64("history", c), slog.Uint64("want", through))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(poll):
		}
		poll = min(2*poll, historyPollMax)
	}
	return nil
}

// replay replays the timeline of series k of detector def, whose twin's sibling group is
// group, from history's first row up to the rows of record before, which it leaves out: it
// returns the timeline as it stands just before that record, and how many of the series'
// points it scored. There is no look-ahead: nothing of record before or after it is read.
func replay(ctx context.Context, h history.Store, def Definition, k series, group []string, members map[string]bool, before uint64, deleted func(id string) ([]uint64, error)) (*timeline, int, error) {
	t, err := openTimeline(ctx, h, def, k, group, members, timelineStart{}, deleted)
	if err != nil {
		return nil, 0, err
	}
	n := 0
	for {
		_, _, ok, err := t.next(before)
		if err != nil {
			return nil, n, err
		}
		if !ok {
			return t, n, nil
		}
		n++
	}
}
