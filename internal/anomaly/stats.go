package anomaly

import "math"

// ewmaAlpha is the weight of a new observation in an exponentially weighted moving average of
// nominal weight alpha per regular step, for a step of steps regular intervals (irregular
// sampling), and after n observations so far (a plain running mean while n < 1/alpha, so that an
// average starts unbiased).
func ewmaAlpha(alpha, steps float64, n int64) float64 {
	a := 1 - math.Pow(1-alpha, steps)
	if n >= 0 && 1/float64(n+1) > a {
		a = 1 / float64(n+1)
	}
	return a
}

// normalTail is the two-sided tail probability P(|Z| >= |z|) of a standard normal variable.
func normalTail(z float64) float64 {
	return math.Erfc(math.Abs(z) / math.Sqrt2)
}

// normalUpper is the one-sided tail probability P(Z >= z) of a standard normal variable.
func normalUpper(z float64) float64 {
	return 0.5 * math.Erfc(z/math.Sqrt2)
}

// chiSquareRatioTail is the two-sided tail probability of observing ratio as a variance ratio
// X/ν with X ~ χ²(ν), by the Wilson–Hilferty cube-root normal approximation.
func chiSquareRatioTail(ratio, nu float64) float64 {
	if ratio <= 0 {
		return 0
	}
	v := 2 / (9 * nu)
	z := (math.Cbrt(ratio) - (1 - v)) / math.Sqrt(v)
	return normalTail(z)
}

// scoreOf maps a tail probability p to a score in [0, 1]: 1 − 2^(−u/scaleDecades) with
// u = −log10 p. A probability of 10^-scaleDecades scores 0.5, of 10^-2·scaleDecades 0.75, and so on:
// the map is monotone, so thresholding the score thresholds the tail probability.
func scoreOf(p float64) float64 {
	if !(p < 1) {
		return 0
	}
	if p <= 0 {
		return 1
	}
	u := -math.Log10(p)
	return 1 - math.Exp2(-u/scaleDecades)
}

// scaleDecades is the number of decades of tail probability that make a score of 0.5: an event
// with a tail probability of 1e-5 under the model of normal behaviour scores 0.5.
const scaleDecades = 5

// regression is an exponentially weighted least-squares line y = a + b·x, updated one point at a
// time (a weighted Welford update), so its memory is constant.
type regression struct {
	W   float64 // Σw
	W2  float64 // Σw², for the variance of the slope under unequal weights
	MX  float64 // weighted mean of x
	MY  float64 // weighted mean of y
	SXX float64 // Σw(x−x̄)²
	SXY float64 // Σw(x−x̄)(y−ȳ)
}

// add forgets the old points by the factor keep and adds (x, y) with weight 1.
func (r *regression) add(x, y, keep float64) {
	w0 := r.W * keep
	w := w0 + 1
	dx, dy := x-r.MX, y-r.MY
	r.MX += dx / w
	r.MY += dy / w
	r.SXX = r.SXX*keep + w0*dx*dx/w
	r.SXY = r.SXY*keep + w0*dx*dy/w
	r.W = w
	r.W2 = r.W2*keep*keep + 1
}

// slope is the fitted slope and the variance of its estimate per unit of noise variance.
func (r *regression) slope() (b, varPerNoise float64, ok bool) {
	if r.W < 3 || r.SXX <= 0 {
		return 0, 0, false
	}
	return r.SXY / r.SXX, (r.W2 / r.W) / r.SXX, true
}
