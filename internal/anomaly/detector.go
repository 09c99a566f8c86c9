package anomaly

import (
	"fmt"
	"math"
	"time"
)

// Kind names what kind of departure from normal behaviour a result reports.
type Kind uint8

// The kinds of anomaly. KindNone is the kind of a result that is not an anomaly candidate (score 0).
const (
	KindNone Kind = iota
	KindSpike
	KindDip
	KindLevelShift
	KindTrendChange
	KindVarianceChange
	KindSeasonalityBroken
	KindFlatLine
	KindPeer
)

var kindNames = [...]string{"", "spike", "dip", "level_shift", "trend_change", "variance_change", "seasonality_broken", "flat_line", "peer"}

// String is the kind's name in snake case ("level_shift"), or "" for KindNone.
func (k Kind) String() string {
	if int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Result is the verdict on one point.
type Result struct {
	// Score is in [0, 1]: 1 − 2^(−u/5) where u = −log10 of the (multiple-test adjusted) tail
	// probability of the point under the model of normal behaviour, so 0.5 is a 1-in-100,000 event.
	// It is 0 during the warm-up.
	Score float64
	// Anomaly reports Score ≥ 1 − Sensitivity.
	Anomaly bool
	// Kind is the test that gave the score; KindNone when Score is 0.
	Kind Kind
	// Expected is the value the model predicted for the point before seeing it (level plus
	// seasonal profile); NaN during the first point.
	Expected float64
}

// Method selects which tests a detector runs.
type Method string

// The methods. MethodAuto runs every test; MethodResidual only the spike/dip test on residuals;
// MethodChange only the change tests (level shift, trend change, variance change, broken
// seasonality, flat line).
const (
	MethodAuto     Method = "auto"
	MethodResidual Method = "residual"
	MethodChange   Method = "change"
)

// Config configures a Detector. The zero value is valid and means the defaults.
type Config struct {
	// Sensitivity in (0, 1]: a point is an anomaly when its score is at least 1 − Sensitivity.
	// 0 means the default, 0.5 (a 1-in-100,000 event under the model).
	Sensitivity float64
	// Method is one of MethodAuto (the default when empty), MethodResidual and MethodChange.
	Method Method
	// WarmUp is the number of points scored 0 while the model learns; 0 means 100.
	WarmUp int
}

// DefaultSensitivity is the sensitivity of a Config that leaves it 0.
const DefaultSensitivity = 0.5

func (c Config) withDefaults() (Config, error) {
	if c.Sensitivity == 0 {
		c.Sensitivity = DefaultSensitivity
	}
	if !(c.Sensitivity > 0 && c.Sensitivity <= 1) {
		return c, fmt.Errorf("sensitivity %v is not in (0, 1]", c.Sensitivity)
	}
	if c.Method == "" {
		c.Method = MethodAuto
	}
	if methodCode(c.Method) == 0 {
		return c, fmt.Errorf("method %q is not one of %q, %q, %q", c.Method, MethodAuto, MethodResidual, MethodChange)
	}
	if c.WarmUp == 0 {
		c.WarmUp = 100
	}
	if c.WarmUp < 0 {
		return c, fmt.Errorf("warm-up %d is negative", c.WarmUp)
	}
	return c, nil
}

func methodCode(m Method) uint8 {
	switch m {
	case MethodAuto:
		return 1
	case MethodResidual:
		return 2
	case MethodChange:
		return 3
	}
	return 0
}

// The model's constants, chosen from first principles and the synthetic tests (see the package
// documentation): the level, profile and slopes weigh points per regular sampling interval of
// the series, the scale and error averages per point.
const (
	levelAlpha      = 0.05  // level EWMA: a time constant of 20 intervals
	scaleAlpha      = 0.01  // long-run residual variance and successive difference: 100 points
	fastScaleAlpha  = 0.1   // short-run mean square successive difference, for the variance test: 10 points
	fastTrendAlpha  = 0.05  // short-run slope: 20 intervals
	slowTrendAlpha  = 0.005 // long-run slope: 200 intervals
	seasonFastAlpha = 0.05  // short-run errors of the seasonal and plain models
	seasonSlowAlpha = 0.005 // long-run errors of the seasonal and plain models
	repeatAlpha     = 0.002 // long-run rate of exactly repeated values
	intervalAlpha   = 0.01  // typical sampling interval

	dailyGain  = 0.2 // seasonal profile learning per half hour of data in a bucket
	weeklyGain = 0.1 // weekday offset learning per day of data in a bucket

	clipZ     = 4   // residuals beyond clipZ·σ are winsorised before they update the model
	levelClip = 3   // the level moves by at most levelClip·σ·α a step
	cusumK    = 0.5 // CUSUM reference value, in σ: tuned to shifts of 1σ
	maxSteps  = 10  // a gap longer than maxSteps intervals counts as maxSteps
	minRepeat = 0.05

	trendExplains = 1e-3 // a level-shift alarm with a slope change this significant is a trend change

	alarmScore = 0.5 // a test at or above this adapts the model to the change it reports

	dailyBuckets = 48
)

// Detector scores one univariate series online. It is not safe for concurrent use: a series is
// scored by one goroutine at a time.
type Detector struct {
	cfg Config
	st  state
	buf []float64 // scratch for the peers' values, not state
}

// state is everything a detector learns; it has only fixed-size fields so that it marshals as a
// flat record (see MarshalBinary). Memory per series: the size of this struct, 1,128 bytes.
type state struct {
	N      int64 // valid points scored
	FirstT int64 // unix nanoseconds of the first point
	LastT  int64 // unix nanoseconds of the latest point
	LastV  float64
	DT     float64 // typical sampling interval, seconds
	Level  float64
	Daily  [dailyBuckets]float64
	Weekly [7]float64            // learned from the eighth day on
	Base   float64               // the deseasonalised value averaged over about a day, which the profile is learned against
	DailyN [dailyBuckets]float64 // visits, for the start-up of the profile

	Var     float64 // long-run variance of the winsorised residual
	MSD     float64 // long-run mean square successive difference of the winsorised residual
	MSDFast float64 // short-run mean square successive difference of the winsorised residual
	LastRC  float64 // the latest winsorised residual
	VarN    int64

	CusumPos, CusumNeg   float64
	CusumPosN, CusumNegN float64

	FastTrend, SlowTrend regression

	Plain                float64 // level of the model without seasonality
	SeasFast, SeasSlow   float64 // mean squared errors of the seasonal model
	PlainFast, PlainSlow float64 // mean squared errors of the model without seasonality
	RepeatRate           float64
	Run                  int64 // consecutive exact repeats of the latest value
	SeasN                int64

	// Added in state version 2; a version 1 state has them 0.
	PeerVar float64 // long-run average of the peers' squared robust spread at the series' points
	PeerN   int64   // points with at least MinPeers peers
}

// New returns a detector for one series.
func New(cfg Config) (*Detector, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, fmt.Errorf("new anomaly detector: %w", err)
	}
	return &Detector{cfg: cfg, st: state{RepeatRate: 0.5}}, nil
}

// Config is the detector's configuration with its defaults filled in.
func (d *Detector) Config() Config { return d.cfg }

// Score scores the point (t, v) given the points before it, then learns from it. The result
// depends only on this point and those scored before it. A value that is NaN or infinite scores
// 0 and changes nothing. A timestamp not after the previous one counts as one regular interval
// later.
func (d *Detector) Score(t time.Time, v float64) Result { return d.ScoreAmong(t, v, nil) }

// ScoreAmong scores the point (t, v) as Score does, and compares v with peers, the values of
// its peers (for a twin's property, the latest values of the same property of its siblings),
// in any order. With at least MinPeers finite peers, the distance of v from the peers' median
// in units of their spread, pooled over the series' past points, is one more test of the
// ensemble, whose kind is KindPeer; with fewer, the point is scored as Score scores it. The
// result depends only on this point, its peers and the points and peers before it. peers is
// not modified.
func (d *Detector) ScoreAmong(t time.Time, v float64, peers []float64) Result {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return Result{Expected: math.NaN()}
	}
	s := &d.st
	var (
		peerMed, peerSpread2 float64
		npeers               int
	)
	if len(peers) >= MinPeers {
		peerMed, peerSpread2, npeers = peerSpread(peers, &d.buf)
	}
	withPeers := npeers >= MinPeers
	tn := t.UnixNano()
	if s.N == 0 {
		s.N, s.FirstT, s.LastT, s.LastV = 1, tn, tn, v
		s.Level, s.Plain, s.Base = v, v, v
		d.learnPeers(withPeers, peerSpread2)
		return Result{Expected: math.NaN()}
	}

	// Sampling interval: the step, in typical intervals, scales every average's weight.
	dt := float64(tn-s.LastT) / 1e9
	if s.DT == 0 && dt > 0 {
		s.DT = dt
	}
	steps := 1.0
	if dt > 0 && s.DT > 0 {
		steps = math.Min(dt/s.DT, maxSteps)
		s.DT += ewmaAlpha(intervalAlpha, 1, s.N-2) * (math.Min(dt, maxSteps*s.DT) - s.DT)
	} else {
		tn = s.LastT + int64(s.DT*1e9)
	}
	tt := time.Unix(0, tn).In(t.Location())
	_, off := tt.Zone()
	secOfDay := (tn/1e9 + int64(off)) % 86400
	if secOfDay < 0 {
		secOfDay += 86400
	}
	// The daily profile is interpolated linearly between the centres of its buckets.
	pos := float64(secOfDay)/(86400/dailyBuckets) - 0.5
	if pos < 0 {
		pos += dailyBuckets
	}
	db := int(pos)
	dw := pos - float64(db)
	wb := int(tt.Weekday())
	daily := s.DT > 0 && s.DT <= 3*3600
	weekly := s.DT > 0 && s.DT <= 86400 && tn-s.FirstT >= int64(7*24*time.Hour)

	season := 0.0
	if daily {
		season += (1-dw)*s.Daily[db] + dw*s.Daily[(db+1)%dailyBuckets]
	}
	if weekly {
		season += s.Weekly[wb]
	}
	expected := s.Level + season
	r := v - expected
	rPlain := v - s.Plain
	sigma := math.Sqrt(s.Var)
	if floor := 1e-9 * math.Max(1, math.Abs(s.Level)); sigma < floor {
		sigma = floor
	}
	z := r / sigma
	warm := s.N >= int64(d.cfg.WarmUp)
	method := d.cfg.Method
	residualTests := method == MethodAuto || method == MethodResidual
	changeTests := method == MethodAuto || method == MethodChange

	// The tests, each a tail probability under normal behaviour, from the state before the point.
	type test struct {
		p    float64
		kind Kind
	}
	var tests [7]test
	nt := 0
	add := func(p float64, k Kind) {
		tests[nt] = test{p, k}
		nt++
	}

	// Spike or dip: the residual against the robust scale.
	if residualTests {
		k := KindSpike
		if z < 0 {
			k = KindDip
		}
		add(normalTail(z), k)
	}

	zc := math.Max(-clipZ, math.Min(clipZ, z))
	pTrend := 1.0
	cusumPos := math.Max(0, s.CusumPos+zc-cusumK)
	cusumNeg := math.Max(0, s.CusumNeg-zc-cusumK)
	if changeTests {
		// Level shift: Page's CUSUM of the winsorised standardised residuals. For a reference
		// value k, the stationary tail of the statistic is P(S > h) ≈ exp(−2k·h).
		add(math.Exp(-2*cusumK*math.Max(cusumPos, cusumNeg)), KindLevelShift)

		// Variance change: short-run against long-run mean square successive difference of the
		// winsorised residuals (von Neumann's estimator, which a level shift moves by one term
		// only), a χ²(ν)/ν ratio with ν = 2/3·(2−α)/α effective degrees of freedom of the short-run
		// average (2/3 being the estimator's efficiency).
		d2 := (zc*sigma - s.LastRC) * (zc*sigma - s.LastRC) / 2
		msdFast := s.MSDFast + fastScaleAlpha*(d2-s.MSDFast)
		if s.MSD > 0 && s.VarN > 20 {
			add(chiSquareRatioTail(msdFast/s.MSD, 2.0/3*(2-fastScaleAlpha)/fastScaleAlpha), KindVarianceChange)
		}

		// Trend change: the slope of a short exponentially weighted regression against that of a
		// long one, with the standard errors of both under the residual scale.
		bf, vf, okf := s.FastTrend.slope()
		bs, vs, oks := s.SlowTrend.slope()
		if okf && oks && s.FastTrend.W > 10 && s.SlowTrend.W > 50 {
			pTrend = normalTail((bf - bs) / (sigma * math.Sqrt(vf+vs)))
			add(pTrend, KindTrendChange)
		}

		// Broken seasonality: where the seasonal model has been clearly better than the plain
		// one, the short-run ratio of their errors against its long-run value; the log of a ratio
		// of two χ²(ν)/ν variables has a variance of about 4/ν, doubled for the errors' autocorrelation.
		if daily && s.SeasN > int64(2*86400/s.DT) && s.PlainSlow > 0 && s.SeasSlow < 0.5*s.PlainSlow && s.PlainFast > 0 {
			nu := (2 - seasonFastAlpha) / seasonFastAlpha
			lr := math.Log((s.SeasFast / s.PlainFast) / (s.SeasSlow / s.PlainSlow))
			add(normalUpper(lr/math.Sqrt(8/nu)), KindSeasonalityBroken)
		}

		// Flat line: a run of exact repeats, whose probability is the repeat rate to the power of
		// the run length.
		run := s.Run
		if v == s.LastV {
			run++
		} else {
			run = 0
		}
		if run >= 3 {
			add(math.Pow(math.Max(s.RepeatRate, minRepeat), float64(run)), KindFlatLine)
		}
	}

	// Peer: the distance from the peers' median against the pooled spread of the peers, with
	// the variance of the median of n normal values, π/2n of theirs, added.
	if withPeers && s.PeerN >= peerWarmUp && s.PeerVar > 0 {
		add(normalTail((v-peerMed)/math.Sqrt(s.PeerVar*(1+math.Pi/(2*float64(npeers))))), KindPeer)
	}

	// The ensemble: the smallest Bonferroni-adjusted tail probability.
	res := Result{Expected: expected}
	best := -1
	for i := range nt {
		if best < 0 || tests[i].p < tests[best].p {
			best = i
		}
	}
	alarm := KindNone
	if best >= 0 && warm {
		p := math.Min(1, tests[best].p*float64(nt))
		res.Score = scoreOf(p)
		if res.Score > 0 {
			res.Kind = tests[best].kind
		}
		res.Anomaly = res.Score > 0 && res.Score >= 1-d.cfg.Sensitivity
		// A CUSUM alarm that the slopes explain as well is a trend change: a new slope makes the
		// residuals grow steadily, which the CUSUM accumulates sooner than the slope test.
		if res.Kind == KindLevelShift && pTrend < trendExplains {
			res.Kind = KindTrendChange
		}
		if res.Score >= alarmScore {
			alarm = res.Kind
		}
	}

	d.learn(v, r, rPlain, zc, sigma, steps, tn, db, dw, wb, daily, weekly)
	d.learnPeers(withPeers, peerSpread2)

	// Adapt to a change once it is reported, so that it is reported once and not at every point
	// until the slow averages have caught up.
	switch alarm {
	case KindLevelShift:
		shift := 0.0
		if s.CusumPos >= s.CusumNeg && s.CusumPosN > 0 {
			shift = (cusumK + s.CusumPos/s.CusumPosN) * sigma
		} else if s.CusumNegN > 0 {
			shift = -(cusumK + s.CusumNeg/s.CusumNegN) * sigma
		}
		s.Level += shift
		s.Plain += shift
		s.resetChange()
	case KindVarianceChange:
		s.Var *= s.MSDFast / s.MSD
		s.MSD = s.MSDFast
		s.CusumPos, s.CusumNeg, s.CusumPosN, s.CusumNegN = 0, 0, 0, 0
	case KindTrendChange:
		s.SlowTrend = s.FastTrend
		s.CusumPos, s.CusumNeg, s.CusumPosN, s.CusumNegN = 0, 0, 0, 0
	case KindSeasonalityBroken:
		s.SeasSlow, s.PlainSlow = s.SeasFast, s.PlainFast
	}
	return res
}

// resetChange forgets the short-run statistics after a level shift.
func (s *state) resetChange() {
	s.CusumPos, s.CusumNeg, s.CusumPosN, s.CusumNegN = 0, 0, 0, 0
	s.MSDFast = s.MSD
	s.FastTrend, s.SlowTrend = regression{}, regression{}
	s.SeasFast, s.PlainFast = s.SeasSlow, s.PlainSlow
}

// learn updates the model with the point.
func (d *Detector) learn(v, r, rPlain, zc, sigma, steps float64, tn int64, db int, dw float64, wb int, daily, weekly bool) {
	s := &d.st
	warming := s.VarN < 10
	rc := zc * sigma
	if warming {
		rc = r
	}

	// Residual variance, and the long- and short-run mean square successive differences; weighted
	// per point, not per interval, since a gap adds no information on the scale.
	s.Var += ewmaAlpha(scaleAlpha, 1, s.VarN) * (rc*rc - s.Var)
	if s.VarN > 0 {
		d2 := (rc - s.LastRC) * (rc - s.LastRC) / 2
		s.MSD += ewmaAlpha(scaleAlpha, 1, s.VarN-1) * (d2 - s.MSD)
		s.MSDFast += ewmaAlpha(fastScaleAlpha, 1, s.VarN-1) * (d2 - s.MSDFast)
	}
	s.LastRC = rc
	s.VarN++

	// CUSUM, with the number of steps of the current excursion for Page's shift estimate.
	s.CusumPos = math.Max(0, s.CusumPos+zc-cusumK)
	s.CusumNeg = math.Max(0, s.CusumNeg-zc-cusumK)
	s.CusumPosN, s.CusumNegN = excursion(s.CusumPos, s.CusumPosN), excursion(s.CusumNeg, s.CusumNegN)

	// Level: a Holt–Winters level step with a Huber-clipped residual.
	before := s.Level
	lr := rc
	if !warming {
		lr = math.Max(-levelClip*sigma, math.Min(levelClip*sigma, r))
	}
	la := ewmaAlpha(levelAlpha, steps, s.N-1)
	s.Level += la * lr
	// The profile is learned against a baseline averaged over about a day, not against the fast
	// level, which would otherwise follow the cycle and leave the profile lagging behind it.
	vc := v - r + rc // the value, winsorised
	season := v - r - before
	if s.DT > 0 {
		s.Base += ewmaAlpha(math.Min(1, s.DT/86400), steps, s.N-1) * (vc - season - s.Base)
	}
	dev := vc - s.Base

	// Seasonal profile: what the level does not explain, learned per bucket.
	if daily {
		g := math.Min(1, dailyGain*s.DT/1800)
		for _, bw := range [2]struct {
			b int
			w float64
		}{{db, 1 - dw}, {(db + 1) % dailyBuckets, dw}} {
			s.DailyN[bw.b] += bw.w
			if s.DailyN[bw.b] > 0 {
				s.Daily[bw.b] += bw.w * math.Max(g, 1/s.DailyN[bw.b]) * (dev - s.Weekly[wb] - s.Daily[bw.b])
			}
		}
	}
	if weekly {
		s.Weekly[wb] += math.Min(1, weeklyGain*s.DT/86400) * (dev - season)
	}

	// Errors of the seasonal and the plain model, for the broken-seasonality test.
	s.Plain += ewmaAlpha(levelAlpha, steps, s.N-1) * rPlain
	s.SeasFast += ewmaAlpha(seasonFastAlpha, 1, s.SeasN) * (rc*rc - s.SeasFast)
	s.SeasSlow += ewmaAlpha(seasonSlowAlpha, 1, s.SeasN) * (rc*rc - s.SeasSlow)
	s.PlainFast += ewmaAlpha(seasonFastAlpha, 1, s.SeasN) * (rPlain*rPlain - s.PlainFast)
	s.PlainSlow += ewmaAlpha(seasonSlowAlpha, 1, s.SeasN) * (rPlain*rPlain - s.PlainSlow)
	s.SeasN++

	// Trend: regressions of the winsorised, deseasonalised value on time in typical intervals.
	x := float64(tn-s.FirstT) / 1e9 / s.DT
	y := before + rc
	if s.DT > 0 {
		s.FastTrend.add(x, y, math.Pow(1-fastTrendAlpha, steps))
		s.SlowTrend.add(x, y, math.Pow(1-slowTrendAlpha, steps))
	}

	// Flat line: runs of exact repeats and their long-run rate.
	rep := 0.0
	if v == s.LastV {
		s.Run++
		rep = 1
	} else {
		s.Run = 0
	}
	s.RepeatRate += ewmaAlpha(repeatAlpha, 1, s.N) * (rep - s.RepeatRate)

	s.N++
	s.LastT, s.LastV = tn, v
}

// learnPeers updates the pooled spread of the peers with that at the latest point, spread2,
// winsorised at clipZ² times the pooled value once it is learned, when the point had peers.
func (d *Detector) learnPeers(withPeers bool, spread2 float64) {
	if !withPeers {
		return
	}
	s := &d.st
	if s.PeerN >= peerWarmUp {
		spread2 = math.Min(spread2, clipZ*clipZ*s.PeerVar)
	}
	s.PeerVar += ewmaAlpha(scaleAlpha, 1, s.PeerN) * (spread2 - s.PeerVar)
	s.PeerN++
}

// excursion counts the steps of a CUSUM excursion: 0 while the statistic is 0.
func excursion(stat, n float64) float64 {
	if stat == 0 {
		return 0
	}
	return n + 1
}
