package detector

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/twinflow/twinflow/internal/anomaly"
)

// Metrics are the detectors' Prometheus metrics, labelled by detector:
//
//	twinflow_detector_points_total       points scored
//	twinflow_detector_anomalies_total    anomalies raised, also by kind
//	twinflow_detector_twins              twins the detector's query selected when last asked
//	twinflow_detector_rebuilt_series_total  series whose models were rebuilt from data history
//	twinflow_detector_rebuilt_points_total  points of data history replayed to rebuild them
//
// A nil *Metrics records nothing.
type Metrics struct {
	points    *prometheus.CounterVec
	anomalies *prometheus.CounterVec
	twins     *prometheus.GaugeVec
	// rebuiltSeries and rebuiltPoints count the models rebuilt from data history and the
	// points replayed to rebuild them.
	rebuiltSeries, rebuiltPoints *prometheus.CounterVec
}

// NewMetrics registers the detectors' metrics with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "twinflow", Subsystem: "detector", Name: name, Help: help}
	}
	m := &Metrics{
		points: prometheus.NewCounterVec(prometheus.CounterOpts(opts("points_total", "Points the detector scored.")),
			[]string{"detector"}),
		anomalies: prometheus.NewCounterVec(prometheus.CounterOpts(opts("anomalies_total", "Anomalies the detector raised, by the kind of test that found them.")),
			[]string{"detector", "kind"}),
		twins: prometheus.NewGaugeVec(prometheus.GaugeOpts(opts("twins", "Twins the detector's query selected when last asked.")),
			[]string{"detector"}),
		rebuiltSeries: prometheus.NewCounterVec(prometheus.CounterOpts(opts("rebuilt_series_total", "Series whose models the detector rebuilt from data history.")),
			[]string{"detector"}),
		rebuiltPoints: prometheus.NewCounterVec(prometheus.CounterOpts(opts("rebuilt_points_total", "Points of data history the detector replayed to rebuild models.")),
			[]string{"detector"}),
	}
	for _, c := range []prometheus.Collector{m.points, m.anomalies, m.twins, m.rebuiltSeries, m.rebuiltPoints} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register detector metrics: %w", err)
		}
	}
	return m, nil
}

// scored counts a point of detector scored with res.
func (m *Metrics) scored(detector string, res anomaly.Result) {
	if m == nil {
		return
	}
	m.points.WithLabelValues(detector).Inc()
	if res.Anomaly {
		m.anomalies.WithLabelValues(detector, res.Kind.String()).Inc()
	}
}

// rebuilt counts a model of detector rebuilt by replaying n points of data history.
func (m *Metrics) rebuilt(detector string, n int) {
	if m == nil {
		return
	}
	m.rebuiltSeries.WithLabelValues(detector).Inc()
	m.rebuiltPoints.WithLabelValues(detector).Add(float64(n))
}

// watching sets the number of twins detector watches.
func (m *Metrics) watching(detector string, n int) {
	if m == nil {
		return
	}
	m.twins.WithLabelValues(detector).Set(float64(n))
}

// forget drops the series of a deleted detector.
func (m *Metrics) forget(detector string) {
	if m == nil {
		return
	}
	labels := prometheus.Labels{"detector": detector}
	m.points.DeletePartialMatch(labels)
	m.anomalies.DeletePartialMatch(labels)
	m.twins.DeletePartialMatch(labels)
	m.rebuiltSeries.DeletePartialMatch(labels)
	m.rebuiltPoints.DeletePartialMatch(labels)
}
