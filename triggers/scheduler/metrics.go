package scheduler

import "github.com/prometheus/client_golang/prometheus"

// metrics are the scheduler's Prometheus metrics.
type metrics struct {
	records, invalid, deliveries, states, restored, suppressed prometheus.Counter
	decisions                                                  *prometheus.CounterVec
	pending                                                    *prometheus.GaugeVec
}

// NewMetrics registers the scheduler's metrics with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *metrics { return newMetrics(reg) }

func newMetrics(reg prometheus.Registerer) *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &metrics{
		records:    c("engage_schedule_input_total", "Segment changes and forwarded records read."),
		invalid:    c("engage_schedule_invalid_input_total", "Input messages that did not decode, skipped."),
		deliveries: c("engage_schedule_deliveries_total", "Deliveries produced."),
		states:     c("engage_schedule_changelog_records_total", "State records written to the changelog."),
		restored:   c("engage_schedule_restored_records_total", "Changelog records read to restore partitions."),
		suppressed: c("engage_schedule_outputs_not_repeated_total",
			"Deliveries and decisions a replay recomputed that had been produced before the restore, and were not produced again."),
		decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "engage_schedule_decisions_total", Help: "Decisions produced, by outcome."}, []string{"outcome"}),
		pending:   prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "engage_schedule_waiting_sends", Help: "Sends waiting for their time (durable timers), by partition."}, []string{"partition"}),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.invalid, m.deliveries, m.states, m.restored, m.suppressed, m.decisions, m.pending)
	}
	return m
}
