package engine

import (
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

// HistoryRecord is a record read back from the history store (the raw
// tags that the sink wrote), for a fill.
type HistoryRecord struct {
	Record *tag.Record
	// Offset is the record's offset in the input partition.
	Offset int64
	// Arrived is when the record was received (the collector's clock): a
	// record counts no later than that, as it did when it was applied live
	// at about that time. Zero: unknown (the engine's now bounds it).
	Arrived time.Time
}

// HistoryQuery says which records of the history store a fill needs: the
// records of one app on the engine's partition, at offsets below Before,
// of the given kinds and names, at or after Since.
type HistoryQuery struct {
	App string
	// Before is the fill's seam: the records at offsets below it come from
	// history, those at or after it were (or will be) applied live.
	Before int64
	// Since is the earliest event time any filled condition can read;
	// zero: all the history the store holds.
	Since time.Time
	// Kinds lists the record kinds the filled conditions read; nil: every
	// kind (the app's first segments need every record, for first_session
	// and last_seen).
	Kinds []tag.Kind
	// Names restricts a kind of Kinds to records with one of the names;
	// a kind without an entry: every name.
	Names map[tag.Kind][]string
}

// Wants reports whether a record matches the query's kinds and names (the
// store may return more; the engine filters again).
func (q *HistoryQuery) Wants(r *tag.Record) bool {
	if q.Kinds == nil {
		return true
	}
	for _, k := range q.Kinds {
		if k != r.Kind {
			continue
		}
		names, ok := q.Names[k]
		if !ok {
			return true
		}
		for _, n := range names {
			if n == r.Name {
				return true
			}
		}
		return false
	}
	return false
}
