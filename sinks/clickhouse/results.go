package clickhouse

import (
	"context"
	"time"
)

// ResultRow is one delivery result of the dispatcher (the fields of
// dispatcher.Feedback) and where it came from in Kafka.
type ResultRow struct {
	ID         string // the result's id: the same whenever the dispatcher writes this result again
	DeliveryID string
	App        string
	Campaign   string
	Version    int64
	Variant    string
	DeviceID   string
	Channel    string // push, data, in_app
	Provider   string // apns, apns-sandbox, fcm; '' when none was tried
	Outcome    string // accepted, failed, unreachable, expired, unknown
	Reason     string
	ProviderID string // the provider's id of an accepted message
	Attempts   uint32
	Time       time.Time // when the result was known
	Partition  int32
	Offset     int64
}

const resultColumns = `app, campaign, device_id, delivery_id, id, version, variant, channel, provider, outcome, reason, provider_id,
	attempts, day, time, kafka_partition, kafka_offset`

// WriteResults inserts delivery results into the delivery_results table,
// in one columnar insert; the server sets inserted_at. It returns an error
// if the insert failed; the caller retries the whole batch (copies of a
// result collapse on its id). Safe for concurrent use.
func (w *Writer) WriteResults(ctx context.Context, rows []ResultRow) error {
	if len(rows) == 0 {
		return nil
	}
	n := len(rows)
	str := func() []string { return make([]string, 0, n) }
	app, campaign, device, delivery, id, variant, channel, provider, outcome, reason, provID :=
		str(), str(), str(), str(), str(), str(), str(), str(), str(), str(), str()
	version, attempts := make([]int64, 0, n), make([]uint32, 0, n)
	day, at := make([]time.Time, 0, n), make([]time.Time, 0, n)
	partition, offset := make([]uint32, 0, n), make([]uint64, 0, n)
	for i := range rows {
		r := &rows[i]
		t := r.Time.UTC()
		app, campaign, device, delivery, id = append(app, r.App), append(campaign, r.Campaign), append(device, r.DeviceID), append(delivery, r.DeliveryID), append(id, r.ID)
		version, variant, channel, provider = append(version, r.Version), append(variant, r.Variant), append(channel, r.Channel), append(provider, r.Provider)
		outcome, reason, provID, attempts = append(outcome, r.Outcome), append(reason, r.Reason), append(provID, r.ProviderID), append(attempts, r.Attempts)
		day, at = append(day, time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)), append(at, t)
		partition, offset = append(partition, uint32(r.Partition)), append(offset, uint64(r.Offset))
	}
	return w.insertColumns(ctx, "delivery_results", resultColumns,
		[]any{app, campaign, device, delivery, id, version, variant, channel, provider, outcome, reason, provID, attempts, day, at, partition, offset})
}
