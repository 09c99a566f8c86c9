package anomaly

import (
	"math"
	"testing"
	"time"
)

// TestDetectsInjectedAnomalies injects one anomaly of each kind into synthetic series, with and
// without daily seasonality and irregular timestamps, and asserts that the detector reports it,
// of that kind, within the stated delay in points, and reports nothing before it.
func TestDetectsInjectedAnomalies(t *testing.T) {
	const at = 4000 // two weeks of 5-minute points
	spike := func(size float64) func(i, at int, v, prev float64) float64 {
		return func(i, at int, v, prev float64) float64 {
			if i == at {
				return v + size
			}
			return v
		}
	}
	shift := func(i, at int, v, prev float64) float64 { return v + 5 }
	trend := func(i, at int, v, prev float64) float64 { return v + 0.1*float64(i-at) }
	variance := func(i, at int, v, prev float64) float64 { return 100 + (v-100)*5 }
	stuck := func(i, at int, v, prev float64) float64 {
		if i == at {
			return v
		}
		return prev
	}
	for _, c := range []struct {
		name     string
		s        synth
		inject   func(i, at int, v, prev float64) float64
		kind     Kind
		maxDelay int
	}{
		{"spike", synth{noise: 1}, spike(8), KindSpike, 0},
		{"spike seasonal irregular", synth{noise: 1, daily: 10, irregular: true}, spike(8), KindSpike, 0},
		{"dip", synth{noise: 1}, spike(-8), KindDip, 0},
		{"dip seasonal", synth{noise: 1, daily: 10}, spike(-8), KindDip, 0},
		{"dip without noise", synth{}, spike(-1), KindDip, 0},
		{"level shift", synth{noise: 1}, shift, KindLevelShift, 15},
		{"level shift seasonal irregular", synth{noise: 1, daily: 10, irregular: true}, shift, KindLevelShift, 15},
		{"trend change", synth{noise: 1}, trend, KindTrendChange, 60},
		{"trend change seasonal", synth{noise: 1, daily: 10}, trend, KindTrendChange, 60},
		{"variance change", synth{noise: 1}, variance, KindVarianceChange, 30},
		{"variance change seasonal irregular", synth{noise: 1, daily: 10, irregular: true}, variance, KindVarianceChange, 30},
		{"flat line", synth{noise: 1}, stuck, KindFlatLine, 10},
		{"flat line seasonal", synth{noise: 1, daily: 10}, stuck, KindFlatLine, 10},
		{"seasonality broken", synth{noise: 1, daily: 10}, func(i, at int, v, prev float64) float64 {
			// The daily cycle stops: the value stays at the daily mean.
			return 100 + (v - 100 - 10*math.Sin(2*math.Pi*float64(i%288)/288))
		}, KindSeasonalityBroken, 288},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.s.n, c.s.seed, c.s.at, c.s.inject = at+300, 11, at, c.inject
			res := scoreAll(Config{}, c.s.make())
			for i, r := range res[:at] {
				if r.Anomaly {
					t.Errorf("point %d before the anomaly: score %.3f, kind %v", i, r.Score, r.Kind)
				}
			}
			// The onset may first be reported as another kind (a variance increase makes large
			// residuals, a broken cycle a jump), but the kind injected must be reported in time.
			first := -1
			for i := at; i < len(res); i++ {
				if r := res[i]; r.Anomaly {
					if first < 0 {
						first = i
					}
					if r.Kind == c.kind {
						if i-at > c.maxDelay {
							t.Fatalf("%v reported at delay %d, want at most %d", c.kind, i-at, c.maxDelay)
						}
						t.Logf("first report at delay %d (%v), %v at delay %d, score %.3f", first-at, res[first].Kind, c.kind, i-at, r.Score)
						return
					}
				}
			}
			t.Fatalf("%v not reported within %d points (first report at %d)", c.kind, len(res)-at, first-at)
		})
	}
}

// TestFalsePositiveRate scores anomaly-free series and asserts that fewer than 0.1% of the points
// after the warm-up are reported at the default sensitivity.
func TestFalsePositiveRate(t *testing.T) {
	const n = 20000
	for _, c := range []struct {
		name string
		s    synth
	}{
		{"noise", synth{noise: 1}},
		{"noise seasonal", synth{noise: 1, daily: 10}},
		{"noise seasonal irregular", synth{noise: 1, daily: 10, irregular: true}},
		{"no noise", synth{}},
	} {
		for seed := uint64(1); seed <= 3; seed++ {
			c.s.n, c.s.seed = n, seed
			res := scoreAll(Config{}, c.s.make())
			reported := 0
			for _, r := range res {
				if r.Anomaly {
					reported++
				}
			}
			if rate := float64(reported) / float64(n-100); rate >= 0.001 {
				t.Errorf("%s, seed %d: %d of %d points reported (%.3f%%), want < 0.1%%", c.name, seed, reported, n-100, 100*rate)
			}
		}
	}
}

// TestRestartChangesNoScore scores a series straight through, and again with the detector
// marshalled in the middle and its state unmarshalled into a fresh detector; every score must be
// identical, bit for bit.
func TestRestartChangesNoScore(t *testing.T) {
	s := synth{n: 6000, seed: 5, noise: 1, daily: 10, irregular: true, at: 3000, inject: func(i, at int, v, prev float64) float64 { return v + 6 }}.make()
	want := scoreAll(Config{}, s)
	for _, mid := range []int{0, 1, 50, 2999, 3001} {
		d, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		for i := range mid {
			d.Score(s.t[i], s.v[i])
		}
		b, err := d.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		fresh, err := New(Config{})
		if err != nil {
			t.Fatal(err)
		}
		if err := fresh.UnmarshalBinary(b); err != nil {
			t.Fatal(err)
		}
		for i := mid; i < len(s.v); i++ {
			got := fresh.Score(s.t[i], s.v[i])
			if math.Float64bits(got.Score) != math.Float64bits(want[i].Score) || got.Kind != want[i].Kind || got.Anomaly != want[i].Anomaly {
				t.Fatalf("restart at %d: point %d scored %v, want %v", mid, i, got, want[i])
			}
		}
	}
}

func TestUnmarshalRejectsBadState(t *testing.T) {
	d, _ := New(Config{})
	d.Score(start, 1)
	good, _ := d.MarshalBinary()
	other, _ := New(Config{Method: MethodResidual})
	for _, c := range []struct {
		name string
		d    *Detector
		data []byte
	}{
		{"empty", d, nil},
		{"not a state", d, []byte("hello world")},
		{"other version", d, append([]byte("TFAD\x03"), good[5:]...)},
		{"truncated", d, good[:len(good)-1]},
		{"other method", other, good},
	} {
		before, _ := c.d.MarshalBinary()
		if err := c.d.UnmarshalBinary(c.data); err == nil {
			t.Errorf("%s: no error", c.name)
		}
		after, _ := c.d.MarshalBinary()
		if string(before) != string(after) {
			t.Errorf("%s: the detector changed", c.name)
		}
	}
}

func TestNoLookAhead(t *testing.T) {
	// A point's score must not depend on the points after it: scoring a prefix gives the same
	// scores as the whole series does on that prefix.
	s := synth{n: 3000, seed: 9, noise: 1, daily: 10}.make()
	whole := scoreAll(Config{}, s)
	prefix := scoreAll(Config{}, series{t: s.t[:1500], v: s.v[:1500]})
	for i := range prefix {
		if prefix[i] != whole[i] && !(math.IsNaN(prefix[i].Expected) && math.IsNaN(whole[i].Expected)) {
			t.Fatalf("point %d: %v alone, %v in the whole series", i, prefix[i], whole[i])
		}
	}
}

func TestConfig(t *testing.T) {
	for _, c := range []struct {
		cfg Config
		ok  bool
	}{
		{Config{}, true},
		{Config{Sensitivity: 1, Method: MethodChange, WarmUp: 10}, true},
		{Config{Sensitivity: 1.5}, false},
		{Config{Sensitivity: -0.1}, false},
		{Config{Method: "magic"}, false},
		{Config{WarmUp: -1}, false},
	} {
		if _, err := New(c.cfg); (err == nil) != c.ok {
			t.Errorf("New(%+v): error %v", c.cfg, err)
		}
	}
}

func TestSkipsNonFiniteValues(t *testing.T) {
	d, _ := New(Config{WarmUp: 1})
	d.Score(start, 1)
	before, _ := d.MarshalBinary()
	for _, v := range []float64{math.NaN(), math.Inf(1), math.Inf(-1)} {
		if r := d.Score(start.Add(time.Minute), v); r.Score != 0 || r.Anomaly {
			t.Errorf("%v scored %v", v, r)
		}
	}
	after, _ := d.MarshalBinary()
	if string(before) != string(after) {
		t.Error("a non-finite value changed the state")
	}
}

func BenchmarkScore(b *testing.B) {
	s := synth{n: 10000, seed: 1, noise: 1, daily: 10, irregular: true}.make()
	d, _ := New(Config{})
	b.ResetTimer()
	for i := range b.N {
		j := i % len(s.v)
		d.Score(s.t[j].Add(time.Duration(i/len(s.v))*35*24*time.Hour), s.v[j])
	}
}
