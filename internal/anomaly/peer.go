package anomaly

import (
	"math"
	"slices"
)

// Peer compares a value with the values of its peers at the same time (for a twin, the same
// property of its siblings in the graph) by a robust z-score: the distance from the peers' median
// in units of their median absolute deviation (scaled by 1.4826 to estimate a normal standard
// deviation; where more than half the peers are equal, 1.2533 times the mean absolute deviation
// instead). Median and MAD ignore up to half the peers being anomalous themselves.
type Peer struct {
	// MinPeers is the fewest peers that give a score; fewer score 0. 0 means 5.
	MinPeers int
	// Sensitivity is as in Config; 0 means 0.5.
	Sensitivity float64
}

// Score scores value against peers (which it does not modify). NaN and infinite peers are
// ignored; a NaN or infinite value scores 0.
func (c Peer) Score(value float64, peers []float64) Result {
	minPeers := c.MinPeers
	if minPeers <= 0 {
		minPeers = 5
	}
	sens := c.Sensitivity
	if !(sens > 0 && sens <= 1) {
		sens = DefaultSensitivity
	}
	res := Result{Expected: math.NaN()}
	if math.IsNaN(value) || math.IsInf(value, 0) {
		return res
	}
	xs := make([]float64, 0, len(peers))
	for _, p := range peers {
		if !math.IsNaN(p) && !math.IsInf(p, 0) {
			xs = append(xs, p)
		}
	}
	if len(xs) < minPeers {
		return res
	}
	med := median(xs)
	res.Expected = med
	dev := make([]float64, len(xs))
	for i, x := range xs {
		dev[i] = math.Abs(x - med)
	}
	scale := 1.4826 * median(dev)
	if scale == 0 {
		sum := 0.0
		for _, x := range dev {
			sum += x
		}
		scale = 1.2533 * sum / float64(len(dev))
	}
	diff := value - med
	var p float64
	switch {
	case diff == 0:
		p = 1
	case scale == 0:
		p = 0
	default:
		p = normalTail(diff / scale)
	}
	res.Score = scoreOf(p)
	if res.Score > 0 {
		res.Kind = KindPeer
	}
	res.Anomaly = res.Score > 0 && res.Score >= 1-sens
	return res
}

// median sorts xs and returns its median.
func median(xs []float64) float64 {
	slices.Sort(xs)
	n := len(xs)
	if n%2 == 1 {
		return xs[n/2]
	}
	return (xs[n/2-1] + xs[n/2]) / 2
}
