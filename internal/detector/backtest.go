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
	var (
		tok  backtestToken
		from timelineStart
	)
	if q.Token != "" {
		var err error
		tok, err = decodeToken(q.Token)
		if err != nil || tok.TwinID != q.TwinID || tok.Property != q.Property || tok.State == nil {
			return BacktestPage{}, fmt.Errorf("%w: the continuation token is not one of this series' backtest", ErrBacktestInvalid)
		}
		from = timelineStart{state: tok.State, after: tok.After, siblings: tok.Siblings}
		// Where the token left off: the log position of the last point scored. The deletions
		// of the twin and its siblings after it are still to come.
		if tok.After != "" {
			pos, err := history.ParseContinuation(tok.After)
			if err != nil {
				return BacktestPage{}, fmt.Errorf("%w: the continuation token is not one of this series' backtest", ErrBacktestInvalid)
			}
			from.through = pos.Seq
		}
	}
	k := series{q.TwinID, q.Property}
	var (
		group   []string
		members map[string]bool
	)
	if def.Peers {
		if group, members, err = s.siblings(ctx, def, q.TwinID); err != nil {
			return BacktestPage{}, err
		}
	}
	t, err := openTimeline(ctx, s.hist, def, k, group, members, from, func(id string) ([]uint64, error) {
		return deletions(ctx, s.hist, id, from.through)
	})
	if err != nil {
		return BacktestPage{}, err
	}
	var page BacktestPage
	for {
		p, res, ok, err := t.next(0)
		if err != nil || !ok {
			return page, err
		}
		if p.Time.Before(q.From) || !q.To.IsZero() && !p.Time.Before(q.To) {
			continue
		}
		page.Points = append(page.Points, Scored{Time: p.Time, Value: p.Value, Score: res.Score, Anomaly: res.Anomaly, Kind: res.Kind})
		if len(page.Points) == limit {
			state, err := t.det.MarshalBinary()
			if err != nil {
				return BacktestPage{}, err
			}
			next := backtestToken{TwinID: q.TwinID, Property: q.Property, After: t.own.after, State: state}
			for _, h := range t.sibs {
				if next.Siblings == nil {
					next.Siblings = map[string]siblingRead{}
				}
				read := siblingRead{After: h.after}
				if v, ok := t.pr.latest[series{h.sel.ID, q.Property}]; ok {
					read.Latest = &v
				}
				next.Siblings[h.sel.ID] = read
			}
			page.Token = encodeToken(next)
			return page, nil
		}
	}
}

// siblings returns the sibling group of twin id in today's graph and the twins the detector's
// query selects today.
func (s *Service) siblings(ctx context.Context, def Definition, id string) ([]string, map[string]bool, error) {
	sel, err := prepare(def.Twins)
	if err != nil {
		return nil, nil, fmt.Errorf("prepare the twins query: %w", err)
	}
	members, err := selectTwins(ctx, s.index, sel)
	if err != nil {
		return nil, nil, err
	}
	pr := newPeers(true, nil)
	var group []string
	err = s.index.Read(ctx, func(r *graph.Reader) error {
		group = pr.group(r, id)
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("read the siblings of %q: %w", id, err)
	}
	return group, members, nil
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
