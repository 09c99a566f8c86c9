package outbox

import (
	"context"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the relays' Prometheus metrics, labelled by endpoint:
//
//	twinflow_endpoint_delivered_events_total     events the endpoint accepted
//	twinflow_endpoint_failed_sends_total         sends that failed (each attempt)
//	twinflow_endpoint_retries_total              sends retried after a failure
//	twinflow_endpoint_dead_lettered_events_total events given up on
//	twinflow_endpoint_lag_events                 log records after the endpoint's cursor
//	twinflow_endpoint_lag_seconds                age of the oldest record after the cursor
//
// One Metrics serves every relay of a process; it is safe for concurrent use.
type Metrics struct {
	delivered, failed, retried, dead *prometheus.CounterVec
	lag, lagSeconds                  *prometheus.Desc

	mu     sync.Mutex
	relays map[*Relay]struct{}
}

// NewMetrics creates the metrics and registers them with reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "twinflow", Subsystem: "endpoint", Name: name, Help: help,
		}, []string{"endpoint"})
	}
	m := &Metrics{
		delivered: counter("delivered_events_total", "Events the endpoint accepted."),
		failed:    counter("failed_sends_total", "Sends to the endpoint that failed."),
		retried:   counter("retries_total", "Sends retried after a failure."),
		dead:      counter("dead_lettered_events_total", "Events dead-lettered: rejected or expired."),
		lag: prometheus.NewDesc("twinflow_endpoint_lag_events",
			"Change log records after the endpoint's cursor.", []string{"endpoint"}, nil),
		lagSeconds: prometheus.NewDesc("twinflow_endpoint_lag_seconds",
			"Age of the oldest change log record after the endpoint's cursor.", []string{"endpoint"}, nil),
		relays: make(map[*Relay]struct{}),
	}
	for _, c := range []prometheus.Collector{m.delivered, m.failed, m.retried, m.dead, m} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Describe implements prometheus.Collector for the lag gauges.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	ch <- m.lag
	ch <- m.lagSeconds
}

// Collect implements prometheus.Collector: the lag of every running relay, read now. A relay
// whose lag cannot be dated reports its lag in events only.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.mu.Lock()
	relays := make([]*Relay, 0, len(m.relays))
	for r := range m.relays {
		relays = append(relays, r)
	}
	m.mu.Unlock()
	for _, r := range relays {
		st, err := r.Status(context.Background())
		ch <- prometheus.MustNewConstMetric(m.lag, prometheus.GaugeValue, float64(st.LagEvents), r.cfg.Endpoint)
		if err == nil {
			ch <- prometheus.MustNewConstMetric(m.lagSeconds, prometheus.GaugeValue, st.LagSeconds, r.cfg.Endpoint)
		}
	}
}

// Forget drops the counters of a deleted endpoint.
func (m *Metrics) Forget(endpoint string) {
	if m == nil {
		return
	}
	for _, v := range []*prometheus.CounterVec{m.delivered, m.failed, m.retried, m.dead} {
		v.DeleteLabelValues(endpoint)
	}
}

// endpointMetrics are one endpoint's counters; a nil *endpointMetrics counts nothing.
type endpointMetrics struct {
	m                                    *Metrics
	nDelivered, nFailed, nRetried, nDead prometheus.Counter
}

func (m *Metrics) forEndpoint(name string) *endpointMetrics {
	if m == nil {
		return nil
	}
	return &endpointMetrics{
		m:          m,
		nDelivered: m.delivered.WithLabelValues(name),
		nFailed:    m.failed.WithLabelValues(name),
		nRetried:   m.retried.WithLabelValues(name),
		nDead:      m.dead.WithLabelValues(name),
	}
}

func (e *endpointMetrics) delivered(n int) {
	if e != nil {
		e.nDelivered.Add(float64(n))
	}
}

func (e *endpointMetrics) failed() {
	if e != nil {
		e.nFailed.Inc()
	}
}

func (e *endpointMetrics) retried() {
	if e != nil {
		e.nRetried.Inc()
	}
}

func (e *endpointMetrics) deadLettered() {
	if e != nil {
		e.nDead.Inc()
	}
}

func (e *endpointMetrics) attach(r *Relay) {
	if e != nil {
		e.m.mu.Lock()
		e.m.relays[r] = struct{}{}
		e.m.mu.Unlock()
	}
}

func (e *endpointMetrics) detach(r *Relay) {
	if e != nil {
		e.m.mu.Lock()
		delete(e.m.relays, r)
		e.m.mu.Unlock()
	}
}
