// Package anomaly scores a univariate time series online, one point at a time, optionally
// comparing each value with its peers'.
//
// # Model of normal behaviour
//
// A Detector keeps a robust additive model of one series: a level, an exponentially weighted moving
// average (EWMA) with a time constant of 20 sampling intervals, and a seasonal profile of 48
// half-hour buckets of the time of day (interpolated linearly between bucket centres) plus, from
// the eighth day on, an offset per day of the week. The profile is learned against a baseline
// averaged over about a day, so the fast level does not absorb the daily cycle. The model's
// prediction error (the residual) is winsorised at 4σ before it updates anything (Huber-style, as in
// robust Holt–Winters smoothing), so a spike does not drag the level or inflate the scale; σ is the
// square root of a long-run EWMA (100 intervals) of the winsorised squared residual. Timestamps,
// not indices, drive the model: every average's weight per point is 1 − (1 − α)^(Δt/Δ), where Δ
// is the series' typical interval (itself an EWMA of the gaps), so irregular sampling and gaps
// are weighted by the time they span, and the profile buckets come from the wall clock of the
// timestamps' location.
//
// # Tests
//
// Each point is scored by tests that each give a tail probability under the model:
//
//   - spike or dip: the residual over σ, a two-sided normal tail;
//   - level shift: Page's two-sided CUSUM of the winsorised standardised residuals with reference
//     value k = 0.5σ, whose stationary tail is P(S > h) ≈ exp(−2k·h) (Siegmund's approximation);
//   - trend change: the slope of an exponentially weighted least-squares line over about 20
//     intervals against one over about 200, a normal test on their difference with the slopes'
//     standard errors under σ; a CUSUM alarm that this test explains at p < 0.001 is reported as a
//     trend change;
//   - variance change: the short-run (10 intervals) against the long-run (100) mean square
//     successive difference of the residuals (von Neumann's estimator, which a level shift moves by
//     one term only), a two-sided χ²(ν)/ν test by the Wilson–Hilferty approximation;
//   - broken seasonality: where the seasonal model has been at least twice as accurate as a plain
//     level over the long run, the short-run ratio of their mean squared errors against its long-run
//     value, a one-sided log-normal test;
//   - flat line: a run of L exact repeats of a value, with probability q^L where q is the series'
//     long-run rate of exact repeats (at least 0.05), so quantised series are not flagged for the
//     repeats they always have;
//   - peer (ScoreAmong, given the values of at least MinPeers peers, such as the latest values of
//     the same property of a twin's siblings): the distance of the value from the peers' median
//     over their pooled spread, a two-sided normal tail. The spread at a point is 1.4826 times the
//     peers' median absolute deviation (1.2533 times their mean absolute deviation where more than
//     half of them are equal), squared and scaled by n/(n−1) for small samples; the pooled spread
//     is a long-run average (100 points) of it, winsorised at 4² times the average, over the
//     series' points with peers, and its variance is widened by π/2n, the variance of the median
//     of n normal values. Median and median absolute deviation ignore up to half the peers
//     departing themselves, and pooling over time keeps a handful of peers from making a noisy
//     scale. The test runs once the series has had 10 points with peers. A departure from the
//     peers that is slow enough for the series' own model to follow is what it catches; a twin
//     that has always sat apart from its peers is reported too, as it departs from them.
//
// The ensemble takes the smallest tail probability, multiplies it by the number of tests
// (Bonferroni; the peer test counts as one when it runs), and maps it to a score in [0, 1]:
// 1 − 2^(−u/5) with u = −log10 p, so 0.5 is a 1-in-100,000 event and every further 5 decades
// halve the distance to 1. A point is an anomaly
// when its score is at least 1 − Sensitivity (default 0.5). When a change test reaches a score of
// 0.5 the model adopts the change (the level moves by Page's estimate of the shift, the long-run
// scale or slope takes the short-run one), so one change is reported once rather than until the
// slow averages have caught up. The first WarmUp points (default 100) score 0.
//
// On synthetic series (see the tests) fewer than 0.1% of anomaly-free points are reported at the
// default sensitivity, with or without noise, daily seasonality and irregular timestamps; a
// spike or dip of 8σ is reported at once, a level shift of 5σ within 15 points, a trend change
// of 0.1σ per interval within 60, a fivefold noise increase within 30, a flat line within 10, and
// a daily cycle of 10σ that stops within a day. Among seven thermostats with a shared daily
// cycle and their own noise σ (TestPeerDeparture), one drifting away from the others by 0.01σ a
// point, which its own model follows without a report, is reported as a peer departure before
// it is 5σ away (at 2 to 4σ), and the six others at fewer than 0.1% of their points (0.004%
// measured).
//
// # Guarantees and cost
//
// A point's score depends only on it and the points before it (no look-ahead), and scoring is
// deterministic; with peers, it depends on their values as given, not on their order.
// MarshalBinary encodes the whole learned state (a versioned flat record of 1,134 bytes); a
// detector restored from it with UnmarshalBinary scores the rest of the series exactly, bit for
// bit, as the original would have, and LatestValue reads the latest value from it. Memory is
// constant per series: a Detector is 1,184 bytes plus room for its peers' values, and
// allocates nothing per point once that room is there. BenchmarkScore and BenchmarkScoreAmong
// (six peers) measure the cost per point (about 1.2 µs each on a 2-core machine).
package anomaly
