package dispatcher

import "github.com/prometheus/client_golang/prometheus"

// metrics are the dispatcher's Prometheus metrics.
type metrics struct {
	read, invalid prometheus.Counter
	results       *prometheus.CounterVec // by app, provider, outcome, reason
	retries       *prometheus.CounterVec // by app, provider, reason
	paused        *prometheus.CounterVec // by app
	latency       *prometheus.HistogramVec
	inFlight      prometheus.Gauge
	waiting       prometheus.Gauge
}

// NewMetrics registers the dispatcher's metrics with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *metrics { return newMetrics(reg) }

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		read:    prometheus.NewCounter(prometheus.CounterOpts{Name: "engage_deliver_deliveries_read_total", Help: "Deliveries read."}),
		invalid: prometheus.NewCounter(prometheus.CounterOpts{Name: "engage_deliver_invalid_deliveries_total", Help: "Deliveries that did not decode, skipped."}),
		results: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "engage_deliver_results_total",
			Help: "Deliveries finished, by app, provider, outcome (accepted, failed, unreachable, expired, unknown) and reason."}, []string{"app", "provider", "outcome", "reason"}),
		retries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "engage_deliver_retries_total", Help: "Sends to be tried again, by app, provider and reason."}, []string{"app", "provider", "reason"}),
		paused:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "engage_deliver_app_paused_total", Help: "Times an app was paused because the provider refused its credentials."}, []string{"app"}),
		latency: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "engage_deliver_send_seconds", Help: "Time of a send to the provider.",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}, []string{"provider"}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "engage_deliver_in_flight", Help: "Sends waiting for the provider's answer."}),
		waiting:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "engage_deliver_waiting_retries", Help: "Deliveries waiting to be tried again (backoff, paused apps)."}),
	}
	if reg != nil {
		reg.MustRegister(m.read, m.invalid, m.results, m.retries, m.paused, m.latency, m.inFlight, m.waiting)
	}
	return m
}
