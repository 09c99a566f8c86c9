package anomaly

import (
	"math"
	"slices"
)

// MinPeers is the fewest peer values that make a peer comparison; a point with fewer is
// scored by its own series' tests alone.
const MinPeers = 5

// peerWarmUp is the number of points with at least MinPeers peers a series needs before the
// peer test scores: the points its pooled peer scale is first learned from.
const peerWarmUp = 10

// peerSpread returns the median of the finite values among peers, the square of their robust
// spread (1.4826 times their median absolute deviation, the normal standard deviation's
// estimate, or 1.2533 times their mean absolute deviation where more than half of them are
// equal), scaled by n/(n−1) so that small samples do not understate it, and n, how many there
// are. It copies peers into *buf, which it grows as needed, and leaves peers unchanged.
func peerSpread(peers []float64, buf *[]float64) (med, spread2 float64, n int) {
	xs := (*buf)[:0]
	for _, p := range peers {
		if !math.IsNaN(p) && !math.IsInf(p, 0) {
			xs = append(xs, p)
		}
	}
	*buf = xs
	n = len(xs)
	if n < 2 {
		return math.NaN(), 0, n
	}
	med = median(xs)
	for i, x := range xs {
		xs[i] = math.Abs(x - med)
	}
	scale := 1.4826 * median(xs)
	if scale == 0 {
		sum := 0.0
		for _, x := range xs {
			sum += x
		}
		scale = 1.2533 * sum / float64(n)
	}
	return med, scale * scale * float64(n) / float64(n-1), n
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
