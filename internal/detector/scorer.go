package detector

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"

	"github.com/twinflow/twinflow/internal/anomaly"
	"github.com/twinflow/twinflow/internal/event"
	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/query"
	"github.com/twinflow/twinflow/internal/store"
)

// AnomalyType is the CloudEvents type of the event a detector raises for an anomaly. Its data
// is AnomalyData; its subject is the twin's id.
const AnomalyType = event.Anomaly

// AnomalyData is the data of an anomaly event.
type AnomalyData struct {
	TwinID   string  `json:"twinId"`
	Property string  `json:"property"`
	Value    float64 `json:"value"`
	Score    float64 `json:"score"`
	// Kind names the test that scored the point (package anomaly's Kind): spike, dip,
	// level_shift, trend_change, variance_change, seasonality_broken, flat_line or peer.
	Kind string `json:"kind"`
	// Time is the point's time (RFC 3339): its sourceTime, or when the change committed.
	Time     string `json:"time"`
	Detector string `json:"detector"`
}

// eventNamespace makes anomaly event ids: the same anomaly, scored again, has the same id.
var eventNamespace = uuid.MustParse("8f0c52c4-3b9e-4d8e-9a57-2a2f4b7c1d10")

// series names one series of a detector: a property of a twin.
type series struct{ twin, property string }

// scorer scores the change log for one detector, from the detector's cursor.
type scorer struct {
	svc  *Service
	name string
	def  Definition
	// config is def as the store keeps it, to tell when the stored detector changed.
	config string
	sel    selection
	cancel context.CancelFunc
	done   chan struct{}

	cursor    atomic.Uint64
	twins     atomic.Int64
	points    atomic.Uint64
	anomalies atomic.Uint64
	// rebuiltSeries and rebuilt count the series whose models were rebuilt from data
	// history and the points replayed to rebuild them.
	rebuiltSeries atomic.Uint64
	rebuilt       atomic.Uint64
	running       atomic.Bool
	// mu guards lastError.
	mu        sync.Mutex
	lastError string
}

// status returns the scorer's status, without the lag.
func (sc *scorer) status() Status {
	st := Status{State: "stopped", Twins: int(sc.twins.Load()), Points: sc.points.Load(), Anomalies: sc.anomalies.Load(),
		RebuiltSeries: sc.rebuiltSeries.Load(), Rebuilt: sc.rebuilt.Load()}
	if sc.running.Load() {
		st.State = "running"
	}
	sc.mu.Lock()
	st.LastError = sc.lastError
	sc.mu.Unlock()
	return st
}

// run scores until ctx ends, starting again from what is committed after a failure.
func (sc *scorer) run(ctx context.Context) {
	for {
		sc.running.Store(true)
		err := sc.stream(ctx)
		sc.running.Store(false)
		if ctx.Err() != nil {
			if err != nil {
				sc.svc.logger.Warn("detector "+sc.name+": stopped without a checkpoint; a start scores again from the last one", slog.Any("err", err))
			}
			return
		}
		sc.svc.logger.Error("detector "+sc.name+": scoring failed; starting again from its cursor", slog.Any("err", err))
		sc.mu.Lock()
		sc.lastError = err.Error()
		sc.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Second):
		}
	}
}

// stream loads the detector's last checkpoint, its states and the cursor they are of, and
// scores the change log after that cursor until ctx ends or a step fails.
//
// Each batch's anomaly events commit with the cursor of the events (eventsConsumer) in one
// transaction; the states learned stay in memory, and a checkpoint commits those that
// changed with the consumer cursor in one transaction every Config.CheckpointInterval and
// when ctx ends. Scoring is deterministic, so after a crash the records after the checkpoint
// score as they did, and those up to the events cursor raise no anomaly again: the scores
// and events after a restart are those an uninterrupted run gives.
func (sc *scorer) stream(ctx context.Context) error {
	svc := sc.svc
	var (
		cursor, through uint64
		stored          []store.DetectorState
	)
	err := svc.st.ViewDetectors(ctx, func(r store.DetectorReader) error {
		var err error
		if cursor, through, err = cursors(r, sc.name); err != nil {
			return err
		}
		stored, err = r.DetectorStates(sc.name)
		return err
	})
	if err != nil {
		return fmt.Errorf("load cursor and states: %w", err)
	}
	sc.cursor.Store(cursor)
	states := make(map[series][]byte, len(stored))
	for _, st := range stored {
		states[series{st.Twin, st.Property}] = st.State
	}
	pr := newPeers(sc.def.Peers, stored)
	members, err := sc.members(ctx)
	if err != nil {
		return err
	}
	dets := map[series]*anomaly.Detector{}
	rb := &rebuilder{sc: sc, peers: pr}
	// detector returns the model of series k to score the point record ch brings, in the
	// batch that ends with record last: its stored state, else one rebuilt (rebuild.go), which
	// also gives pr the values of its siblings that pr lacks.
	detector := func(k series, ch *store.Change, last uint64) (*anomaly.Detector, error) {
		if d := dets[k]; d != nil {
			return d, nil
		}
		b, stored := states[k]
		d, err := rb.model(ctx, k, b, stored, ch, last, members)
		if err != nil {
			return nil, err
		}
		dets[k] = d
		delete(states, k) // the model holds it now
		return d, nil
	}

	asked := time.Now()
	var (
		x   = extractor{properties: sc.def.Properties}
		pts []watchedPoint
		// dirty are the series scored since the last checkpoint, and gone the twins deleted
		// since then, whose states go.
		dirty = map[series]bool{}
		gone  = map[string]bool{}
		ckpt  = checkpoint{sc: sc, dets: dets, dirty: dirty, gone: gone, at: time.Now(), cursor: cursor}
		// written is when the events cursor last moved.
		written = time.Now()
	)
	// Commits outlive ctx, so that a stop lets the batch being committed and the last
	// checkpoint finish.
	commitCtx := context.WithoutCancel(ctx)
	for {
		recs, err := readChanges(ctx, svc.st.Log(), cursor, svc.cfg.Batch)
		if ctx.Err() != nil {
			// A clean stop: what was scored is checkpointed, so a start goes on from it.
			return ckpt.commit(commitCtx, cursor, max(through, cursor), nil)
		}
		if err != nil {
			return fmt.Errorf("read the change log after %d: %w", cursor, err)
		}
		if time.Since(asked) >= svc.cfg.MembershipInterval || changesMembership(recs) {
			if members, err = sc.members(ctx); err != nil {
				return err
			}
			asked = time.Now()
		}
		if err := pr.refresh(ctx, svc.index, recs, members); err != nil {
			return err
		}
		// forget drops what the detector learned of twin's series: a look-up per watched
		// property, so that deleting many twins costs no scan of every series. The stored
		// states of a twin the detector watched go too, those of properties it no longer
		// watches included.
		forget := func(twin string) {
			if members[twin] {
				gone[twin] = true
			}
			for _, p := range sc.def.Properties {
				k := series{twin, p}
				_, inStates := states[k]
				_, inDets := dets[k]
				if inStates || inDets {
					gone[twin] = true
				}
				delete(dirty, k)
				delete(states, k)
				delete(dets, k)
			}
			pr.forget(twin)
		}
		var events []event.Event
		for i := range recs {
			ch := &recs[i]
			if ch.Event.Type == event.TwinDelete {
				// A twin created again with the same id is a new series.
				forget(ch.Event.Subject)
				continue
			}
			// Only a twin's creation and updates give points of its properties.
			if t := ch.Event.Type; t != event.TwinCreate && t != event.TwinUpdate || !members[ch.Event.Subject] {
				continue
			}
			if pts, err = x.points(ch, pts[:0]); err != nil && !errors.Is(err, history.ErrUnknownValue) {
				svc.logger.Warn("detector "+sc.name+": a change log record cannot be read", slog.Uint64("seq", ch.Seq), slog.Any("err", err))
			}
			for _, wp := range pts {
				p, k := wp.point, series{ch.Event.Subject, wp.property}
				d, err := detector(k, ch, recs[len(recs)-1].Seq)
				if err != nil {
					return err
				}
				res := score(d, p, pr.values(k, members)...)
				pr.scored(k, p.Value)
				dirty[k] = true
				sc.points.Add(1)
				svc.metrics.scored(sc.name, res)
				if res.Anomaly && ch.Seq > through {
					sc.anomalies.Add(1)
					ev, err := sc.anomalyEvent(ch, k, p, res)
					if err != nil {
						return err
					}
					events = append(events, ev)
				}
			}
		}
		last := recs[len(recs)-1].Seq
		switch {
		case time.Since(ckpt.at) >= svc.cfg.CheckpointInterval:
			if err := ckpt.commit(commitCtx, last, max(through, last), events); err != nil {
				return err
			}
			through, written = max(through, last), time.Now()
		case last > through && (len(events) > 0 || time.Since(written) >= time.Second):
			// The events cursor also moves at least every second without events, so that
			// the stored cursors tell other nodes how far the detector has scored.
			err = svc.st.UpdateDetectors(commitCtx, func(w store.DetectorWriter) error {
				for _, ev := range events {
					if err := w.Emit(ev); err != nil {
						return err
					}
				}
				return w.SetConsumerCursor(eventsConsumer(sc.name), last)
			})
			if err != nil {
				return fmt.Errorf("commit the anomalies through record %d: %w", last, err)
			}
			through, written = last, time.Now()
		}
		cursor = last
		sc.cursor.Store(cursor)
	}
}

// checkpoint commits what a scorer learned since its last checkpoint.
type checkpoint struct {
	sc   *scorer
	dets map[series]*anomaly.Detector
	// dirty and gone are the series scored and the twins deleted since the last checkpoint;
	// commit empties them.
	dirty map[series]bool
	gone  map[string]bool
	// at is when the last checkpoint committed, or the scorer started; cursor is the record
	// it is of.
	at     time.Time
	cursor uint64
}

// commit commits, in one transaction, the states of the dirty series and the deletion of
// the states of the twins gone, as of the record cursor, with events, the consumer cursor
// at cursor and the events cursor at through. With nothing to commit it commits nothing.
func (c *checkpoint) commit(ctx context.Context, cursor, through uint64, events []event.Event) error {
	if len(c.dirty) == 0 && len(c.gone) == 0 && len(events) == 0 && cursor == c.cursor {
		c.at = time.Now()
		return nil
	}
	name := c.sc.name
	// The states are encoded before the transaction, which holds the store's writer.
	states := make([]store.DetectorState, 0, len(c.dirty))
	for k := range c.dirty {
		b, err := c.dets[k].MarshalBinary()
		if err != nil {
			return fmt.Errorf("encode the state of %s.%s: %w", k.twin, k.property, err)
		}
		states = append(states, store.DetectorState{Detector: name, Twin: k.twin, Property: k.property, State: b})
	}
	err := c.sc.svc.st.UpdateDetectors(ctx, func(w store.DetectorWriter) error {
		for twin := range c.gone {
			if err := w.DeleteDetectorTwin(name, twin); err != nil {
				return err
			}
		}
		for _, st := range states {
			if err := w.PutDetectorState(st); err != nil {
				return err
			}
		}
		for _, ev := range events {
			if err := w.Emit(ev); err != nil {
				return err
			}
		}
		if err := w.SetConsumerCursor(eventsConsumer(name), through); err != nil {
			return err
		}
		return w.SetConsumerCursor(consumer(name), cursor)
	})
	if err != nil {
		return fmt.Errorf("checkpoint the states through record %d: %w", cursor, err)
	}
	clear(c.dirty)
	clear(c.gone)
	c.at, c.cursor = time.Now(), cursor
	return nil
}

// anomalyEvent returns the event of an anomaly of the point p of series k, taken from ch.
func (sc *scorer) anomalyEvent(ch *store.Change, k series, p point, res anomaly.Result) (event.Event, error) {
	data, err := json.Marshal(AnomalyData{
		TwinID: k.twin, Property: k.property, Value: p.Value, Score: res.Score, Kind: res.Kind.String(),
		Time: p.Time.Format(time.RFC3339Nano), Detector: sc.name,
	})
	if err != nil {
		return event.Event{}, fmt.Errorf("encode the anomaly of %s.%s: %w", k.twin, k.property, err)
	}
	id := uuid.NewSHA1(eventNamespace, []byte(sc.name+"\n"+strconv.FormatUint(ch.Seq, 10)+"\n"+k.twin+"\n"+k.property))
	return event.Event{
		ID:              id.String(),
		Source:          sc.svc.cfg.ServiceID + "/detectors/" + sc.name,
		SpecVersion:     event.SpecVersion,
		Type:            AnomalyType,
		Subject:         k.twin,
		Time:            ch.Event.Time,
		DataContentType: "application/json",
		TraceParent:     ch.Event.TraceParent,
		TraceState:      ch.Event.TraceState,
		Data:            data,
	}, nil
}

// members asks the detector's query which twins it watches.
func (sc *scorer) members(ctx context.Context) (map[string]bool, error) {
	out, err := selectTwins(ctx, sc.svc.index, sc.sel)
	if err != nil {
		return nil, err
	}
	sc.twins.Store(int64(len(out)))
	sc.svc.metrics.watching(sc.name, len(out))
	return out, nil
}

// selectTwins runs the twins query of sel over index: the twins it selects.
func selectTwins(ctx context.Context, index Index, sel selection) (map[string]bool, error) {
	out := map[string]bool{}
	err := index.Read(ctx, func(r *graph.Reader) error {
		var cur query.Cursor
		for {
			page, err := sel.q.Run(ctx, r, cur, 1000)
			if err != nil {
				return err
			}
			for _, row := range page.Rows {
				id, err := sel.twinID(row)
				if err != nil {
					return err
				}
				out[id] = true
			}
			if page.Next == nil {
				return nil
			}
			cur = *page.Next
		}
	})
	if err != nil {
		return nil, fmt.Errorf("run the twins query: %w", err)
	}
	return out, nil
}

// twinID returns the id of the twin in a row of the selection's query.
func (s selection) twinID(row json.RawMessage) (string, error) {
	var twin struct {
		ID string `json:"$dtId"`
	}
	if s.alias == "" {
		if err := json.Unmarshal(row, &twin); err != nil {
			return "", fmt.Errorf("read a row of the twins query: %w", err)
		}
		return twin.ID, nil
	}
	var aliased map[string]json.RawMessage
	if err := json.Unmarshal(row, &aliased); err != nil {
		return "", fmt.Errorf("read a row of the twins query: %w", err)
	}
	if err := json.Unmarshal(aliased[s.alias], &twin); err != nil {
		return "", fmt.Errorf("read a row of the twins query: %w", err)
	}
	return twin.ID, nil
}

// modelPath is how a patch that changes a twin's model shows in a Twin.Update's data.
var modelPath = []byte(`"/$metadata/$model"`)

// changesMembership reports whether recs may change which twins a query selects beyond what
// the periodic asking catches at once: twins created or deleted, or a model changed.
func changesMembership(recs []store.Change) bool {
	for i := range recs {
		switch ev := &recs[i].Event; ev.Type {
		case event.TwinCreate, event.TwinDelete:
			return true
		case event.TwinUpdate:
			if bytes.Contains(ev.Data, modelPath) {
				return true
			}
		}
	}
	return false
}

// noPrior is the history.Prior of streaming: a change whose new value needs the one before
// it (a sub-property patch, which a number has not) and that the log no longer knows scores
// no point.
func noPrior(string, string, string) (history.PropertyEvent, bool, error) {
	return history.PropertyEvent{}, false, nil
}

// readChanges reads the records after after, with the states they left where the log knows
// them; it waits while there are none.
func readChanges(ctx context.Context, log store.Log, after uint64, max int) ([]store.Change, error) {
	if cl, ok := log.(store.ChangeLog); ok {
		return cl.ReadChanges(ctx, after, max)
	}
	recs, err := log.Read(ctx, after, max)
	if err != nil {
		return nil, err
	}
	out := make([]store.Change, len(recs))
	for i, r := range recs {
		out[i] = store.Change{Record: r}
	}
	return out, nil
}
