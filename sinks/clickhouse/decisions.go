package clickhouse

import (
	"context"
	"time"
)

// DecisionRow is one decision of the scheduler (the fields of
// scheduler.DecisionMessage) and where it came from in Kafka.
type DecisionRow struct {
	ID         string
	App        string
	Campaign   string
	Version    int64
	DeviceID   string
	Occurrence string
	Outcome    string
	Reason     string
	Time       time.Time // when it was decided
	SendAt     time.Time // zero: none (stored as 1970-01-01)
	Variant    string
	Partition  int32
	Offset     int64
}

// The times every supported server stores in a time column (DateTime holds
// 1970 to 2106 on 18.16; Date, the day column, to 2149). A writer given a
// time outside them would store another time or fail on every retry, so
// the sink refuses such a decision first.
var (
	MinTime = time.Unix(1, 0).UTC() // 1970-01-01 itself means "none"
	MaxTime = time.Date(2105, 12, 31, 23, 59, 59, 0, time.UTC)
)

const decisionColumns = `app, campaign, device_id, id, version, occurrence, outcome, reason, day, time, send_at, variant,
	kafka_partition, kafka_offset`

// WriteDecisions inserts decisions into the decisions table, in one
// columnar insert; the server sets inserted_at. It returns an error if the
// insert failed; the caller retries the whole batch (copies of a decision
// collapse on its id). Safe for concurrent use.
func (w *Writer) WriteDecisions(ctx context.Context, rows []DecisionRow) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	str := func() []string { return make([]string, 0, n) }
	tm := func() []time.Time { return make([]time.Time, 0, n) }
	app, campaign, device, id, occ, outcome, reason, variant := str(), str(), str(), str(), str(), str(), str(), str()
	day, at, sendAt := tm(), tm(), tm()
	version := make([]int64, 0, n)
	partition, offset := make([]uint32, 0, n), make([]uint64, 0, n)
	for i := range rows {
		r := &rows[i]
		t := r.Time.UTC()
		app, campaign, device, id = append(app, r.App), append(campaign, r.Campaign), append(device, r.DeviceID), append(id, r.ID)
		version, occ, outcome, reason = append(version, r.Version), append(occ, r.Occurrence), append(outcome, r.Outcome), append(reason, r.Reason)
		day = append(day, time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC))
		at, sendAt, variant = append(at, t), append(sendAt, orEpoch(r.SendAt)), append(variant, r.Variant)
		partition, offset = append(partition, uint32(r.Partition)), append(offset, uint64(r.Offset))
	}
	return w.insertColumns(ctx, "decisions", decisionColumns,
		[]any{app, campaign, device, id, version, occ, outcome, reason, day, at, sendAt, variant, partition, offset})
}
