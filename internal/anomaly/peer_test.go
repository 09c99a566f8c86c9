package anomaly

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

func TestPeerSpread(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	peers := make([]float64, 20)
	for i := range peers {
		peers[i] = 50 + rng.NormFloat64()
	}
	outlying := append([]float64{500, -400}, peers...)
	var buf []float64
	for _, c := range []struct {
		name           string
		peers          []float64
		med, spread, n float64 // want; spread is the standard deviation estimate, within 40%
	}{
		{"normal peers", peers, 50, 1, 20},
		{"two outlying peers move neither", outlying, 50, 1, 22},
		{"NaN and infinite peers ignored", []float64{1, 2, math.NaN(), 3, math.Inf(1), 4, 5}, 3, 1.4826 * math.Sqrt(5.0/4), 5},
		{"more than half equal: the mean absolute deviation", []float64{7, 7, 7, 7, 8}, 7, 1.2533 * 0.2 * math.Sqrt(5.0/4), 5},
	} {
		before := slices.Clone(c.peers)
		med, spread2, n := peerSpread(c.peers, &buf)
		if math.Abs(med-c.med) > 0.5 || math.Abs(math.Sqrt(spread2)/c.spread-1) > 0.4 || float64(n) != c.n {
			t.Errorf("%s: median %v, spread %v, n %d; want %v, %v, %v", c.name, med, math.Sqrt(spread2), n, c.med, c.spread, c.n)
		}
		if !slices.EqualFunc(before, c.peers, func(a, b float64) bool { return math.Float64bits(a) == math.Float64bits(b) }) {
			t.Errorf("%s: the peers changed", c.name)
		}
	}
}

// floor is a synthetic floor of thermostats on a 5-minute grid: a shared daily cycle of
// amplitude 1, a small constant offset per thermostat and noise of standard deviation sigma;
// from point at on, thermostat 0's value drifts by slope a point.
type floor struct {
	thermostats, n, at int
	seed               uint64
	sigma, slope       float64
}

// values returns the thermostats' values: values[i][j] is thermostat j's i-th.
func (f floor) values() [][]float64 {
	rng := rand.New(rand.NewPCG(f.seed, 11))
	offsets := make([]float64, f.thermostats)
	for j := range offsets {
		offsets[j] = 0.05 * rng.NormFloat64()
	}
	out := make([][]float64, f.n)
	for i := range out {
		day := float64(i%288) / 288
		out[i] = make([]float64, f.thermostats)
		for j := range out[i] {
			v := 21 + math.Sin(2*math.Pi*day) + offsets[j] + f.sigma*rng.NormFloat64()
			if j == 0 && i >= f.at {
				v += f.slope * float64(i-f.at)
			}
			out[i][j] = v
		}
	}
	return out
}

// scoreFloor scores each thermostat with a detector of its own, point by point in the order
// thermostat 0, 1, ... at each time, comparing each with the latest values of the others when
// peers is set.
func scoreFloor(t *testing.T, f floor, peers bool) [][]Result {
	t.Helper()
	vals := f.values()
	dets := make([]*Detector, f.thermostats)
	for j := range dets {
		var err error
		if dets[j], err = New(Config{}); err != nil {
			t.Fatal(err)
		}
	}
	latest := make([]float64, f.thermostats)
	for j := range latest {
		latest[j] = math.NaN()
	}
	res := make([][]Result, f.n)
	var others []float64
	for i, row := range vals {
		res[i] = make([]Result, f.thermostats)
		at := start.Add(time.Duration(i) * 5 * time.Minute)
		for j, v := range row {
			others = others[:0]
			if peers {
				for k, l := range latest {
					if k != j && !math.IsNaN(l) {
						others = append(others, l)
					}
				}
			}
			res[i][j] = dets[j].ScoreAmong(at, v, others)
			latest[j] = v
		}
	}
	return res
}

// TestPeerDeparture drifts one of seven thermostats slowly away from the others, so slowly
// that its own model follows it: compared with its peers, it is reported, with kind peer,
// before it is 5σ away, and the six others are reported at fewer than 0.1% of their points.
func TestPeerDeparture(t *testing.T) {
	const sigma, slope = 0.2, 0.002 // 0.01σ a point
	for seed := uint64(1); seed <= 3; seed++ {
		f := floor{thermostats: 7, n: 4000, at: 2000, seed: seed, sigma: sigma, slope: slope}
		alone := scoreFloor(t, f, false)
		among := scoreFloor(t, f, true)
		first := -1
		for i := f.at; i < f.n && first < 0; i++ {
			if among[i][0].Anomaly {
				first = i
				if among[i][0].Kind != KindPeer {
					t.Errorf("seed %d: the drift is first reported as %v, want %v", seed, among[i][0].Kind, KindPeer)
				}
			}
		}
		if first < 0 || slope*float64(first-f.at) > 5*sigma {
			t.Errorf("seed %d: the drift first reported at point %d, want before it reaches 5σ (point %d)", seed, first, f.at+int(5*sigma/slope))
		}
		for i := f.at; i <= first; i++ {
			if alone[i][0].Anomaly {
				t.Errorf("seed %d: its own model alone reports the drift at point %d (%v): it is not slow enough for the test", seed, i, alone[i][0])
				break
			}
		}
		for i := range f.at {
			if among[i][0].Anomaly {
				t.Errorf("seed %d: thermostat 0 reported at point %d, before its drift", seed, i)
			}
		}
		reported, points := 0, 0
		for _, row := range among[100:] {
			for _, r := range row[1:] {
				points++
				if r.Anomaly {
					reported++
				}
			}
		}
		if rate := float64(reported) / float64(points); rate >= 0.001 {
			t.Errorf("seed %d: %d of %d points of the clean thermostats reported (%.3f%%), want < 0.1%%", seed, reported, points, 100*rate)
		}
		t.Logf("seed %d: drift reported at %.1fσ; %d of %d clean points reported", seed, slope*float64(first-f.at)/sigma, reported, points)
	}
}

// TestPeerFewPeers scores a value far from fewer than MinPeers peers as Score does.
func TestPeerFewPeers(t *testing.T) {
	d, _ := New(Config{WarmUp: 1})
	e, _ := New(Config{WarmUp: 1})
	for i := range 200 {
		at := start.Add(time.Duration(i) * time.Minute)
		v := 20 + 0.1*math.Sin(float64(i))
		peers := []float64{100, 100, 100, 100, math.NaN()}
		if got, want := d.ScoreAmong(at, v, peers), e.Score(at, v); got != want && !math.IsNaN(want.Expected) {
			t.Fatalf("point %d: %v among 4 peers, %v alone", i, got, want)
		}
	}
}

// TestStateVersion1 reads a version 1 state (without the peer fields) as one that has learned
// nothing of peers, and LatestValue reads the latest value of either version.
func TestStateVersion1(t *testing.T) {
	d, _ := New(Config{})
	if _, ok := LatestValue(mustMarshal(t, d)); ok {
		t.Error("LatestValue of a series without points reports one")
	}
	for i := range 50 {
		d.ScoreAmong(start.Add(time.Duration(i)*time.Minute), float64(i), []float64{1, 2, 3, 4, 5})
	}
	v2 := mustMarshal(t, d)
	if d.st.PeerN != 50 {
		t.Fatalf("PeerN %d, want 50", d.st.PeerN)
	}
	v1 := slices.Clone(v2[:len(v2)-16])
	v1[len(stateMagic)] = 1
	for _, b := range [][]byte{v1, v2} {
		if v, ok := LatestValue(b); !ok || v != 49 {
			t.Errorf("LatestValue = %v, %v; want 49", v, ok)
		}
	}
	old, _ := New(Config{})
	if err := old.UnmarshalBinary(v1); err != nil {
		t.Fatal(err)
	}
	want := d.st
	want.PeerVar, want.PeerN = 0, 0
	if old.st != want {
		t.Error("a version 1 state reads differently")
	}
	if n := binary.Size(old.st); len(v2) != len(stateMagic)+2+n {
		t.Errorf("state of %d bytes, want %d", len(v2), len(stateMagic)+2+n)
	}
}

func mustMarshal(t *testing.T, d *Detector) []byte {
	t.Helper()
	b, err := d.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func BenchmarkScoreAmong(b *testing.B) {
	s := synth{n: 10000, seed: 1, noise: 1, daily: 10, irregular: true}.make()
	d, _ := New(Config{})
	peers := []float64{100.5, 99.1, 101.2, 98.7, 100.2, 99.9}
	b.ResetTimer()
	for i := range b.N {
		j := i % len(s.v)
		d.ScoreAmong(s.t[j].Add(time.Duration(i/len(s.v))*35*24*time.Hour), s.v[j], peers)
	}
}
