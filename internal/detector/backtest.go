package detector

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twinflow/twinflow/internal/anomaly"
	"github.com/twinflow/twinflow/internal/graph"
	"github.com/twinflow/twinflow/internal/history"
	"github.com/twinflow/twinflow/internal/store"
)

// DefaultBacktestPage is the most points one backtest page holds.
const DefaultBacktestPage = 1000

// ErrBacktestInvalid is wrapped by the errors of a backtest request that cannot be run.
var ErrBacktestInvalid = errors.New("invalid backtest")

// BacktestQuery asks Backtest for the scores of one series.
type BacktestQuery struct {
	TwinID, Property string
	// From and To bound the points' time (their source time when they have one, else when
	// their change committed), From inclusive and To exclusive; a zero time leaves that side
	// open.
	From, To time.Time
	// Token continues a previous page: its continuation token.
	Token string
	// Max is the most points on the page; 0 means DefaultBacktestPage.
	Max int
}

// Scored is one scored point of a backtest.
type Scored struct {
	Time    time.Time
	Value   float64
	Score   float64
	Anomaly bool
	Kind    anomaly.Kind
}

// BacktestPage is one page of a backtest; Token, when set, continues it.
type BacktestPage struct {
	Points []Scored
	Token  string
}

// backtestToken is what a continuation token holds: the detector's state after the page's
// last row, the history position of that row, the series, which the next request must name
// again, and where each sibling's history was read to, with its latest value.
type backtestToken struct {
	TwinID   string                 `json:"t"`
	Property string                 `json:"p"`
	After    string                 `json:"a"`
	State    []byte                 `json:"s"`
	Siblings map[string]siblingRead `json:"q,omitempty"`
}

// siblingRead is how far a backtest read a sibling's history: the position of the last row
// taken, and the value of its latest point, if any.
type siblingRead struct {
	After  string   `json:"a,omitempty"`
	Latest *float64 `json:"v,omitempty"`
}

// Backtest scores the property of a twin over data history with detector name's definition:
// a fresh detector scores every point history holds of the series from its first, in the order
// streaming scores them, with the same code, and the page holds the points whose time is in
// [q.From, q.To). A deletion of the twin, which history's lifecycle table keeps, starts a
// fresh detector for what follows, as streaming does. When the detector compares peers, the twin's siblings are those of the graph
// and the detector's query now, and their history is read too and merged with the series' in
// log order, so each point is compared with the values its siblings had when it committed
// (a sibling's deletion forgets its value). A
// point's score depends only on the points before it (no look-ahead), so the scores equal
// those a detector streaming since the first point of the series and of its siblings gave. A
// continuation token carries the detector's state and the siblings' latest values, so every
// page costs only its own points and the siblings' between them.
func (s *Service) Backtest(ctx context.Context, name string, q BacktestQuery) (BacktestPage, error) {
	if s.hist == nil {
		return BacktestPage{}, ErrNoHistory
	}
	var d store.Detector
	err := s.st.ViewDetectors(ctx, func(r store.DetectorReader) error {
		var err error
		d, err = r.Detector(name)
		return err
	})
	if err != nil {
		return BacktestPage{}, err
	}
	var def Definition
	if err := json.Unmarshal(d.Config, &def); err != nil {
		return BacktestPage{}, fmt.Errorf("decode detector %q: %w", name, err)
	}
	switch {
	case q.TwinID == "":
		return BacktestPage{}, fmt.Errorf("%w: twinId is required", ErrBacktestInvalid)
	case !def.watches(q.Property):
		return BacktestPage{}, fmt.Errorf("%w: property %q is not one the detector scores (%q)", ErrBacktestInvalid, q.Property, def.Properties)
	case !q.From.IsZero() && !q.To.IsZero() && !q.From.Before(q.To):
		return BacktestPage{}, fmt.Errorf("%w: from must be before to", ErrBacktestInvalid)
	case q.Max < 0:
		return BacktestPage{}, fmt.Errorf("%w: the page size must not be negative", ErrBacktestInvalid)
	}
	limit := q.Max
	if limit == 0 {
		limit = DefaultBacktestPage
	}
	det := def.newDetector()
	var tok backtestToken
	if q.Token != "" {
		var err error
		tok, err = decodeToken(q.Token)
		if err != nil || tok.TwinID != q.TwinID || tok.Property != q.Property {
			return BacktestPage{}, fmt.Errorf("%w: the continuation token is not one of this series' backtest", ErrBacktestInvalid)
		}
		if err := det.UnmarshalBinary(tok.State); err != nil {
			return BacktestPage{}, fmt.Errorf("%w: the continuation token is not one of this detector: %v", ErrBacktestInvalid, err)
		}
	}

	// The series and each sibling's history, merged in log order.
	pr := newPeers(def.Peers, nil)
	k := series{q.TwinID, q.Property}
	var members map[string]bool
	if def.Peers {
		if members, err = s.siblings(ctx, def, pr, q.TwinID); err != nil {
			return BacktestPage{}, err
		}
	}
	// Where the token left off: the log position of the last point scored. The deletions of
	// the twin and its siblings after it are still to come.
	var scoredThrough uint64
	if tok.After != "" {
		pos, err := history.ParseContinuation(tok.After)
		if err != nil {
			return BacktestPage{}, fmt.Errorf("%w: the continuation token is not one of this series' backtest", ErrBacktestInvalid)
		}
		scoredThrough = pos.Seq
	}
	own := openHistory(ctx, s.hist, history.Selection{ID: q.TwinID, Key: q.Property, After: tok.After})
	if own.deleted, err = s.deletions(ctx, q.TwinID, scoredThrough); err != nil {
		return BacktestPage{}, err
	}
	var sibs []*historyRead
	for _, id := range pr.siblings[q.TwinID] {
		if id == q.TwinID || !members[id] {
			continue
		}
		read := tok.Siblings[id]
		if read.Latest != nil {
			pr.scored(series{id, q.Property}, *read.Latest)
		}
		h := openHistory(ctx, s.hist, history.Selection{ID: id, Key: q.Property, After: read.After})
		if h.deleted, err = s.deletions(ctx, id, scoredThrough); err != nil {
			return BacktestPage{}, err
		}
		sibs = append(sibs, h)
	}
	var page BacktestPage
	for {
		row, ok, err := own.peek()
		if err != nil || !ok {
			return page, err
		}
		// The siblings' points that committed before the row are the ones it is compared with,
		// and a twin deleted before it is a new series, as streaming has them.
		for _, h := range sibs {
			for {
				srow, ok, err := h.peek()
				if err != nil {
					return BacktestPage{}, err
				}
				if h.deletedBefore(row.Seq, ok, srow) {
					pr.forget(h.sel.ID)
					continue
				}
				if !ok || srow.Seq > row.Seq {
					break
				}
				if p, ok := pointOf(srow); ok {
					pr.scored(series{h.sel.ID, q.Property}, p.Value)
				}
				h.take()
			}
		}
		for own.deletedBefore(row.Seq, false, nil) {
			det = def.newDetector()
		}
		p, ok := pointOf(row)
		own.take()
		if !ok {
			continue
		}
		res := score(det, p, pr.values(k, members)...)
		if p.Time.Before(q.From) || !q.To.IsZero() && !p.Time.Before(q.To) {
			continue
		}
		page.Points = append(page.Points, Scored{Time: p.Time, Value: p.Value, Score: res.Score, Anomaly: res.Anomaly, Kind: res.Kind})
		if len(page.Points) == limit {
			state, err := det.MarshalBinary()
			if err != nil {
				return BacktestPage{}, err
			}
			next := backtestToken{TwinID: q.TwinID, Property: q.Property, After: own.after, State: state}
			for _, h := range sibs {
				if next.Siblings == nil {
					next.Siblings = map[string]siblingRead{}
				}
				read := siblingRead{After: h.after}
				if v, ok := pr.latest[series{h.sel.ID, q.Property}]; ok {
					read.Latest = &v
				}
				next.Siblings[h.sel.ID] = read
			}
			page.Token = encodeToken(next)
			return page, nil
		}
	}
}

// siblings fills pr with the siblings of twin id in today's graph and returns the twins the
// detector's query selects today.
func (s *Service) siblings(ctx context.Context, def Definition, pr *peers, id string) (map[string]bool, error) {
	sel, err := prepare(def.Twins)
	if err != nil {
		return nil, fmt.Errorf("prepare the twins query: %w", err)
	}
	members, err := selectTwins(ctx, s.index, sel)
	if err != nil {
		return nil, err
	}
	err = s.index.Read(ctx, func(r *graph.Reader) error {
		pr.siblings[id] = pr.group(r, id)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the siblings of %q: %w", id, err)
	}
	return members, nil
}

// deletions returns the log positions, in order, of twin id's deletions after after, which
// data history's lifecycle table keeps.
func (s *Service) deletions(ctx context.Context, id string, after uint64) ([]uint64, error) {
	var out []uint64
	for {
		evs, err := s.hist.Lifecycle(ctx, history.LifecycleSelection{ID: id, After: after, Limit: 1000})
		if err != nil {
			return nil, fmt.Errorf("read the lifecycle of %s: %w", id, err)
		}
		for _, e := range evs {
			if e.Twin != nil && e.Twin.Action == history.LifecycleDelete {
				out = append(out, e.Twin.Seq)
			}
		}
		if len(evs) < 1000 {
			return out, nil
		}
		after = max(after, evs[len(evs)-1].Seq())
	}
}

// historyRead reads one history selection a row at a time: peek shows the next row, take
// consumes it, and after is the position of the last row taken. It reads historyChunk rows
// per query, each read to its end before the next, so that a backtest reading several
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

func encodeToken(t backtestToken) string {
	b, _ := json.Marshal(t) // strings and bytes always encode
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeToken(s string) (backtestToken, error) {
	var t backtestToken
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return t, err
	}
	err = json.Unmarshal(b, &t)
	return t, err
}
