package collector

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the collector's Prometheus metrics.
type metrics struct {
	requests      *prometheus.CounterVec   // endpoint, code
	records       *prometheus.CounterVec   // app, outcome
	duration      *prometheus.HistogramVec // endpoint
	produce       prometheus.Histogram
	bufferUsed    prometheus.GaugeFunc
	bufferCap     prometheus.Gauge
	bufferFull    prometheus.Counter
	rateLimited   *prometheus.CounterVec // app
	produceErrors prometheus.Counter
	overload      *prometheus.CounterVec // reason: memory_budget, body_timeout, processing_timeout, too_many_records
}

func newMetrics(reg prometheus.Registerer, buf *buffer) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "engage_collector_requests_total", Help: "HTTP requests by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "engage_collector_records_total", Help: "Tag records by app and outcome (accepted, rejected, unplanned, failed).",
		}, []string{"app", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "engage_collector_request_seconds", Help: "Request latency, including Kafka's acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}, []string{"endpoint"}),
		produce: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "engage_collector_produce_seconds", Help: "Time until Kafka acknowledged a request's records.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16),
		}),
		bufferUsed: prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "engage_collector_buffer_bytes", Help: "Bytes of accepted records waiting for Kafka.",
		}, func() float64 { return float64(buf.inUse()) }),
		bufferCap: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "engage_collector_buffer_capacity_bytes", Help: "Capacity of the buffer of records waiting for Kafka.",
		}),
		bufferFull: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "engage_collector_buffer_full_total", Help: "Requests refused with 503 because the buffer was full.",
		}),
		rateLimited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "engage_collector_rate_limited_total", Help: "Requests refused with 429, by app.",
		}, []string{"app"}),
		produceErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "engage_collector_produce_errors_total", Help: "Requests whose records Kafka did not acknowledge (answered 503).",
		}),
		overload: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "engage_collector_overload_total", Help: "Requests refused to bound their cost, by reason (memory_budget, body_timeout, processing_timeout, too_many_records).",
		}, []string{"reason"}),
	}
	m.bufferCap.Set(float64(buf.capacity))
	if reg != nil {
		reg.MustRegister(m.requests, m.records, m.duration, m.produce, m.bufferUsed, m.bufferCap, m.bufferFull, m.rateLimited, m.produceErrors, m.overload)
	}
	return m
}
