package detector

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/twinflow/twinflow/internal/anomaly"
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
	// From and To bound the rows' TimeStamp (when the change committed), From inclusive and
	// To exclusive; a zero time leaves that side open.
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
// last row, the history position of that row, and the series, which the next request must
// name again.
type backtestToken struct {
	TwinID   string `json:"t"`
	Property string `json:"p"`
	After    string `json:"a"`
	State    []byte `json:"s"`
}

// Backtest scores the property of a twin over data history with detector name's definition:
// a fresh detector scores every point history holds of the series from its first through
// q.To, in the order streaming scores them, with the same code, and the page holds the
// points from q.From on. A point's score depends only on the points before it (no
// look-ahead), so the scores equal those a detector streaming since the series' first
// point gave. A twin deleted and created again with the same id is a new series: the points
// after each creation are scored by a fresh detector, as streaming scores them. A
// continuation token carries the detector's state, so every page costs only its own points.
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
	sel := history.Selection{ID: q.TwinID, Key: q.Property, To: q.To}
	if q.Token != "" {
		tok, err := decodeToken(q.Token)
		if err != nil || tok.TwinID != q.TwinID || tok.Property != q.Property {
			return BacktestPage{}, fmt.Errorf("%w: the continuation token is not one of this series' backtest", ErrBacktestInvalid)
		}
		if err := det.UnmarshalBinary(tok.State); err != nil {
			return BacktestPage{}, fmt.Errorf("%w: the continuation token is not one of this detector: %v", ErrBacktestInvalid, err)
		}
		sel.After = tok.After
	}
	l, err := readLives(ctx, s.hist, q.TwinID)
	if err != nil {
		return BacktestPage{}, fmt.Errorf("read the history of %s.%s: %w", q.TwinID, q.Property, err)
	}
	// life is where the life of the twin whose points det scored began (see lives).
	var life uint64
	if sel.After != "" {
		pos, err := history.ParseContinuation(sel.After)
		if err != nil {
			return BacktestPage{}, fmt.Errorf("%w: the continuation token is not one of this series' backtest", ErrBacktestInvalid)
		}
		life = l.start(pos.Seq)
	}
	var page BacktestPage
	for row, err := range s.hist.Select(ctx, sel) {
		if err != nil {
			return BacktestPage{}, fmt.Errorf("read the history of %s.%s: %w", q.TwinID, q.Property, err)
		}
		p, ok := pointOf(&row)
		if !ok {
			continue
		}
		if at := l.start(row.Seq); at != life {
			// A twin deleted and created again is a new series, which streaming scores
			// with a fresh model.
			det, life = def.newDetector(), at
		}
		res := score(det, p)
		if row.TimeStamp.Before(q.From) {
			continue
		}
		page.Points = append(page.Points, Scored{Time: p.Time, Value: p.Value, Score: res.Score, Anomaly: res.Anomaly, Kind: res.Kind})
		if len(page.Points) == limit {
			state, err := det.MarshalBinary()
			if err != nil {
				return BacktestPage{}, err
			}
			page.Token = encodeToken(backtestToken{TwinID: q.TwinID, Property: q.Property, After: history.Continuation(row), State: state})
			break
		}
	}
	return page, nil
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
