package processor

import "github.com/prometheus/client_golang/prometheus"

// metrics are the processor's Prometheus metrics.
type metrics struct {
	records, invalid, changes, states, restored, suppressed prometheus.Counter
	fills, fillRecords, fillErrors                          prometheus.Counter
}

// NewMetrics registers the processor's metrics with reg (nil: none).
func NewMetrics(reg prometheus.Registerer) *metrics { return newMetrics(reg) }

func newMetrics(reg prometheus.Registerer) *metrics {
	c := func(name, help string) prometheus.Counter {
		return prometheus.NewCounter(prometheus.CounterOpts{Name: name, Help: help})
	}
	m := &metrics{
		records:  c("engage_process_records_total", "Input records read."),
		invalid:  c("engage_process_invalid_records_total", "Input records that did not decode, skipped."),
		changes:  c("engage_process_segment_changes_total", "Segment enters and exits produced."),
		states:   c("engage_process_changelog_records_total", "State records written to the changelog."),
		restored: c("engage_process_restored_records_total", "Changelog records read to restore partitions."),
		suppressed: c("engage_process_changes_not_repeated_total",
			"Changes a replay recomputed that had been produced before the restore, and were not produced again."),
		fills:       c("engage_process_fills_total", "Fills of new segment conditions from the history store started."),
		fillRecords: c("engage_process_fill_records_total", "Records read from the history store by fills."),
		fillErrors:  c("engage_process_fill_errors_total", "Failed reads of the history store (each is tried again)."),
	}
	if reg != nil {
		reg.MustRegister(m.records, m.invalid, m.changes, m.states, m.restored, m.suppressed, m.fills, m.fillRecords, m.fillErrors)
	}
	return m
}
