package sinks

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	rows, dead, batches prometheus.Counter
	errors              *prometheus.CounterVec
	insert              prometheus.Histogram
	// The same counts for the sink's own log: what it wrote per interval
	// and in all when it stops.
	nRows, nDead, nBatches atomic.Int64
}

// totals are a sink's counts at one time.
type totals struct{ rows, dead, batches int64 }

func (m *metrics) totals() totals {
	return totals{m.nRows.Load(), m.nDead.Load(), m.nBatches.Load()}
}

func newMetrics(reg prometheus.Registerer, stream string) *metrics {
	labels := prometheus.Labels{"stream": stream}
	m := &metrics{
		rows:    prometheus.NewCounter(prometheus.CounterOpts{Name: "engage_sink_rows_total", Help: "Messages written to the store.", ConstLabels: labels}),
		dead:    prometheus.NewCounter(prometheus.CounterOpts{Name: "engage_sink_dead_letters_total", Help: "Messages sent to the dead-letter topic.", ConstLabels: labels}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{Name: "engage_sink_batches_total", Help: "Batches written and committed.", ConstLabels: labels}),
		errors:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "engage_sink_retries_total", Help: "Failed attempts, retried, by operation.", ConstLabels: labels}, []string{"op"}),
		insert: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "engage_sink_write_seconds", Help: "Time to write a batch, retries included.",
			ConstLabels: labels, Buckets: prometheus.ExponentialBuckets(0.005, 2, 14)}),
	}
	if reg != nil {
		reg.MustRegister(m.rows, m.dead, m.batches, m.errors, m.insert)
	}
	return m
}
