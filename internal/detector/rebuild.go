package detector

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/twinflow/twinflow/internal/anomaly"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/store"
)

// lifecyclePage is the most lifecycle rows read from data history at a time.
const lifecyclePage = 1000

// Bounds of the wait for data history to reach a record.
const (
	historyPollMin = 10 * time.Millisecond
	historyPollMax = 250 * time.Millisecond
	// historyWaitWarn is how long a scorer waits for data history before it says so.
	historyWaitWarn = 10 * time.Second
)

// lives holds the Seqs of a twin's lifecycle rows in data history (its creations and
// deletions), ascending. A twin deleted and created again with the same id is a new series,
// so each of these rows begins a life of the twin's series: streaming forgets the twin's
// models at a deletion, and a backtest or a rebuild starts a fresh model at a new life.
type lives []uint64

// readLives reads the lives of twin from h.
func readLives(ctx context.Context, h history.Store, twin string) (lives, error) {
	var (
		out   lives
		after uint64
	)
	for {
		evs, err := h.Lifecycle(ctx, history.LifecycleSelection{ID: twin, After: after, Limit: lifecyclePage})
		if err != nil {
			return nil, fmt.Errorf("read the lifecycle of %q: %w", twin, err)
		}
		for _, e := range evs {
			if e.Twin != nil {
				out = append(out, e.Twin.Seq)
			}
		}
		if len(evs) < lifecyclePage {
			return out, nil
		}
		after = evs[len(evs)-1].Seq()
	}
}

// start returns where the life that the rows of record seq belong to began: the Seq of the
// twin's newest lifecycle row at or before seq, 0 when there is none.
func (l lives) start(seq uint64) uint64 {
	i, _ := slices.BinarySearch(l, seq+1)
	if i == 0 {
		return 0
	}
	return l[i-1]
}

// rebuilder makes the models of a scorer's series that have no state to go on from, such as
// those of a detector created over twins that already have data history, or whose stored
// state cannot be read. With data history on, it rebuilds each from the series' history,
// so that it holds what a model that watched the series from its first point holds: the
// scores that follow are those a backtest gives. One rebuilder serves one run of a scorer's
// stream.
type rebuilder struct {
	sc *scorer
	// reached is a Seq through which data history is known to hold the log's rows.
	reached uint64
}

// model returns the model that scores the point of series k that record ch brings, for a
// series without a model in memory. state is its stored state, when stored is true. last is
// the Seq of the last record of the batch being scored: if data history has to be read, it
// is first waited for through the record before last, so that a batch waits once at most.
func (rb *rebuilder) model(ctx context.Context, k series, state []byte, stored bool, ch *store.Change, last uint64) (*anomaly.Detector, error) {
	sc := rb.sc
	det := sc.def.newDetector()
	if stored {
		err := det.UnmarshalBinary(state)
		if err == nil {
			return det, nil
		}
		// det is unchanged: a fresh model, rebuilt below when history is on.
		sc.svc.logger.Warn("detector "+sc.name+": the stored state of a series cannot be read; rebuilding it",
			slog.String("twin", k.twin), slog.String("property", k.property), slog.Bool("history", sc.svc.hist != nil), slog.Any("err", err))
	}
	// A creation begins a new series: nothing before it belongs to it.
	if sc.svc.hist == nil || ch.Event.Type == event.TwinCreate {
		return det, nil
	}
	if err := rb.await(ctx, last-1); err != nil {
		return nil, err
	}
	n, err := replay(ctx, sc.svc.hist, det, k, ch.Seq)
	if err != nil {
		return nil, fmt.Errorf("rebuild the model of %s.%s from data history: %w", k.twin, k.property, err)
	}
	sc.svc.logger.Debug("detector "+sc.name+": rebuilt the model of a series from data history",
		slog.String("twin", k.twin), slog.String("property", k.property), slog.Int("points", n), slog.Uint64("before", ch.Seq))
	return det, nil
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

// replay scores with det the points data history holds of series k in the life of its twin
// that record before belongs to, from the life's first row up to the rows of record before,
// which it leaves out; it returns how many it scored. It scores them in the order, and with
// the code, of a backtest, so det ends as a backtest's model is after those points.
func replay(ctx context.Context, h history.Store, det *anomaly.Detector, k series, before uint64) (int, error) {
	l, err := readLives(ctx, h, k.twin)
	if err != nil {
		return 0, err
	}
	from := l.start(before - 1)
	n := 0
	for row, err := range h.Select(ctx, history.Selection{ID: k.twin, Key: k.property}) {
		if err != nil {
			return n, err
		}
		if row.Seq < from || row.Seq >= before {
			continue
		}
		p, ok := pointOf(&row)
		if !ok {
			continue
		}
		score(det, p)
		n++
	}
	return n, nil
}
