package anomaly

import (
	"math"
	"math/rand/v2"
	"time"
)

// series is a synthetic series of a test: timestamps and values.
type series struct {
	t []time.Time
	v []float64
}

// synth describes a synthetic series: noise of standard deviation 1 around a base level, an
// optional daily sine, on a 5-minute grid or irregular timestamps, and an anomaly injected from
// point at on.
type synth struct {
	n         int
	seed      uint64
	noise     float64 // standard deviation of the noise (1 unless 0 for none)
	daily     float64 // amplitude of the daily sine
	irregular bool    // 5 minutes ± 2 minutes, and a 1-hour gap every 1,000 points
	at        int     // first point of the anomaly; 0 means none
	inject    func(i, at int, v, prev float64) float64
}

var start = time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)

func (s synth) make() series {
	rng := rand.New(rand.NewPCG(s.seed, 7))
	out := series{t: make([]time.Time, s.n), v: make([]float64, s.n)}
	t := start
	for i := range s.n {
		if i > 0 {
			step := 5 * time.Minute
			if s.irregular {
				step += time.Duration((rng.Float64()*4 - 2) * float64(time.Minute))
				if i%1000 == 0 {
					step += time.Hour
				}
			}
			t = t.Add(step)
		}
		day := float64(t.Sub(start)%(24*time.Hour)) / float64(24*time.Hour)
		v := 100 + s.daily*math.Sin(2*math.Pi*day) + s.noise*rng.NormFloat64()
		if s.at > 0 && i >= s.at && s.inject != nil {
			prev := 0.0
			if i > 0 {
				prev = out.v[i-1]
			}
			v = s.inject(i, s.at, v, prev)
		}
		out.t[i], out.v[i] = t, v
	}
	return out
}

// scoreAll scores a series with a fresh detector of cfg.
func scoreAll(cfg Config, s series) []Result {
	d, err := New(cfg)
	if err != nil {
		panic(err)
	}
	res := make([]Result, len(s.v))
	for i := range s.v {
		res[i] = d.Score(s.t[i], s.v[i])
	}
	return res
}
