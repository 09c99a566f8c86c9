package runner

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the runners' Prometheus metrics, labelled by source, and by mapping for the
// mappings' own:
//
//	twinflow_source_received_messages_total       messages the source handed over
//	twinflow_source_applied_messages_total        messages whose changes committed
//	twinflow_source_duplicate_messages_total      messages recognised as applied before
//	twinflow_source_dead_lettered_messages_total  messages kept as dead letters
//	twinflow_source_failed_messages_total         attempts to apply a message the store failed
//	twinflow_source_apply_seconds                 from handing over to settling, per message
//	twinflow_source_lag_messages                  messages waiting at the broker, where known
//	twinflow_mapping_evaluations_total            messages a mapping was evaluated on
//	twinflow_mapping_changes_total                twin changes a mapping computed
//	twinflow_mapping_failures_total               messages a mapping failed on (dead letters)
//	twinflow_mapping_evaluation_seconds           time a mapping took per message (each evaluation)
//
// One Metrics serves every runner of a process; it is safe for concurrent use.
type Metrics struct {
	received, applied, duplicates, dead, failed *prometheus.CounterVec
	latency                                     *prometheus.HistogramVec
	lag                                         *prometheus.Desc
	evaluated, changes, failures                *prometheus.CounterVec
	evaluation                                  *prometheus.HistogramVec

	mu      sync.Mutex
	runners map[*Runner]struct{}
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	counter := func(subsystem, name, label, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "twinflow", Subsystem: subsystem, Name: name, Help: help,
		}, []string{label})
	}
	histogram := func(subsystem, name, label, help string, buckets []float64) *prometheus.HistogramVec {
		return prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "twinflow", Subsystem: subsystem, Name: name, Help: help, Buckets: buckets,
		}, []string{label})
	}
	m := &Metrics{
		received:   counter("source", "received_messages_total", "source", "Messages the source handed over."),
		applied:    counter("source", "applied_messages_total", "source", "Messages whose twin changes committed."),
		duplicates: counter("source", "duplicate_messages_total", "source", "Messages recognised by their id as applied before."),
		dead:       counter("source", "dead_lettered_messages_total", "source", "Messages kept as dead letters."),
		failed:     counter("source", "failed_messages_total", "source", "Attempts to apply a message that failed on the store."),
		latency: histogram("source", "apply_seconds", "source", "Time from a message's arrival to its settlement.",
			prometheus.ExponentialBuckets(0.0005, 2, 16)),
		lag: prometheus.NewDesc("twinflow_source_lag_messages",
			"Messages waiting for the source at its broker.", []string{"source"}, nil),
		evaluated: counter("mapping", "evaluations_total", "mapping", "Messages the mapping was evaluated on."),
		changes:   counter("mapping", "changes_total", "mapping", "Twin changes the mapping computed."),
		failures:  counter("mapping", "failures_total", "mapping", "Messages the mapping failed on."),
		evaluation: histogram("mapping", "evaluation_seconds", "mapping", "Time the mapping took on one message.",
			prometheus.ExponentialBuckets(0.000001, 4, 12)),
		runners: make(map[*Runner]struct{}),
	}
	for _, c := range []prometheus.Collector{m.received, m.applied, m.duplicates, m.dead, m.failed, m.latency,
		m.evaluated, m.changes, m.failures, m.evaluation, m} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Describe implements prometheus.Collector for the lag gauge.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.lag
}

// Collect implements prometheus.Collector: the lag of every running runner's source that
// knows it.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	runners := make([]*Runner, 0, len(m.runners))
	for r := range m.runners {
		runners = append(runners, r)
	}
	m.mu.Unlock()
	for _, r := range runners {
		if st := r.Status(); st.LagKnown {
			ch <- prometheus.MustNewConstMetric(m.lag, prometheus.GaugeValue, float64(st.Lag), r.cfg.Source)
		}
	}
}

// ForgetSource drops the metrics of a deleted source.
func (m *Metrics) ForgetSource(source string) {
	if m == nil {
		return
	}
	for _, v := range []*prometheus.CounterVec{m.received, m.applied, m.duplicates, m.dead, m.failed} {
		v.DeleteLabelValues(source)
	}
	m.latency.DeleteLabelValues(source)
}

// ForgetMapping drops the metrics of a deleted mapping.
func (m *Metrics) ForgetMapping(mapping string) {
	if m == nil {
		return
	}
	for _, v := range []*prometheus.CounterVec{m.evaluated, m.changes, m.failures} {
		v.DeleteLabelValues(mapping)
	}
	m.evaluation.DeleteLabelValues(mapping)
}

// sourceMetrics are one source's metrics; a nil *sourceMetrics counts nothing.
type sourceMetrics struct {
	m                                         *Metrics
	nReceived, nApplied, nDup, nDead, nFailed prometheus.Counter
	latency                                   prometheus.Observer
}

func (m *Metrics) forSource(name string) *sourceMetrics {
	if m == nil {
		return nil
	}
	return &sourceMetrics{
		m:         m,
		nReceived: m.received.WithLabelValues(name),
		nApplied:  m.applied.WithLabelValues(name),
		nDup:      m.duplicates.WithLabelValues(name),
		nDead:     m.dead.WithLabelValues(name),
		nFailed:   m.failed.WithLabelValues(name),
		latency:   m.latency.WithLabelValues(name),
	}
}

func (s *sourceMetrics) received() {
	if s != nil {
		s.nReceived.Inc()
	}
}

func (s *sourceMetrics) failed(n int) {
	if s != nil {
		s.nFailed.Add(float64(n))
	}
}

// settled counts a message settled with result after it waited d.
func (s *sourceMetrics) settled(result Result, d time.Duration) {
	if s == nil {
		return
	}
	switch result {
	case Applied:
		s.nApplied.Inc()
	case Duplicate:
		s.nDup.Inc()
	case DeadLettered:
		s.nDead.Inc()
	default:
		return
	}
	s.latency.Observe(d.Seconds())
}

func (s *sourceMetrics) attach(r *Runner) {
	if s != nil {
		s.m.mu.Lock()
		s.m.runners[r] = struct{}{}
		s.m.mu.Unlock()
	}
}

func (s *sourceMetrics) detach(r *Runner) {
	if s != nil {
		s.m.mu.Lock()
		delete(s.m.runners, r)
		s.m.mu.Unlock()
	}
}

// mappingMetrics are one mapping's metrics; a nil *mappingMetrics counts nothing.
type mappingMetrics struct {
	nEvaluated, nChanges, nFailures prometheus.Counter
	evaluation                      prometheus.Observer
}

func (s *sourceMetrics) forMapping(name string) *mappingMetrics {
	if s == nil {
		return nil
	}
	return &mappingMetrics{
		nEvaluated: s.m.evaluated.WithLabelValues(name),
		nChanges:   s.m.changes.WithLabelValues(name),
		nFailures:  s.m.failures.WithLabelValues(name),
		evaluation: s.m.evaluation.WithLabelValues(name),
	}
}

// evaluated observes one evaluation's time (a message's mappings are evaluated again when its
// write is prepared again).
func (mm *mappingMetrics) evaluated(d time.Duration) {
	if mm != nil {
		mm.evaluation.Observe(d.Seconds())
	}
}

// counted counts a message the mapping was evaluated on, once its outcome committed: the
// changes it computed, or its failure.
func (mm *mappingMetrics) counted(changes int, failed bool) {
	if mm == nil {
		return
	}
	mm.nEvaluated.Inc()
	mm.nChanges.Add(float64(changes))
	if failed {
		mm.nFailures.Inc()
	}
}
