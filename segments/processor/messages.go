package processor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

// ChangeMessage is what the segment-changes topic carries (JSON; key
// app/device, so that it is co-partitioned with the tags): a segment
// change, or a device or app-info record forwarded for the scheduler.
//
// A device's messages are in the order the processor made them: a
// forwarded record comes before the changes it caused, so that a consumer
// knows a device's time zone before the entry it times.
type ChangeMessage struct {
	ID string `json:"id"`
	// Kind is empty for a segment change (enter or exit), KindRecord for a
	// forwarded record.
	Kind     string    `json:"kind,omitempty"`
	App      string    `json:"app"`
	Segment  string    `json:"segment,omitempty"`
	Version  int64     `json:"version,omitempty"`
	DeviceID string    `json:"device_id"`
	Enter    bool      `json:"enter"`
	Time     time.Time `json:"time"` // the processor's now when it made the message
	Cause    string    `json:"cause"`
	// Extras are the typed extras of the record that caused the change
	// (a JSON object in the native form: strings, numbers, bools,
	// {"$date": ...}), absent when none did.
	Extras json.RawMessage `json:"extras,omitempty"`
	// Record is a forwarded record in the tags' binary form (base64 in
	// the JSON).
	Record []byte `json:"record,omitempty"`
}

// KindRecord marks a forwarded record.
const KindRecord = "record"

// Forwarded reports whether records of kind k go to the scheduler: what it
// knows of a device beyond its memberships (time zone, locale, push token,
// the device fields and app-info values its templates read) comes from
// device and app-info records, and push records say when a token died.
func Forwarded(k tag.Kind) bool {
	return k == tag.KindDevice || k == tag.KindAppInfo || k == tag.KindPush
}

// recordIDPrefix starts the id of a forwarded record's message: a change's
// id is 32 hex digits, so the two never meet.
const recordIDPrefix = "record:"

// forward is a record to forward, at its place among the changes of a
// flush (before the change of index at).
type forward struct {
	at     int
	offset int64
	now    time.Time
	value  []byte
}

// forwardMessage makes the message of a forwarded record. Its id is the
// record's message id, unique per app and device, so that a replay makes
// the same message (and a restored processor does not produce it again).
func forwardMessage(f forward, partition int) (ChangeMessage, []byte, error) {
	var r tag.Record
	if err := r.UnmarshalBinary(f.value); err != nil {
		return ChangeMessage{}, nil, err
	}
	return ChangeMessage{ID: recordIDPrefix + r.AppID + "/" + r.DeviceID + "/" + r.MessageID, Kind: KindRecord, App: r.AppID, DeviceID: r.DeviceID,
		Time: f.now.UTC(), Cause: "record", Record: f.value}, r.Key(), nil
}

// AppendExtrasJSON appends extras (sorted by key, as records hold them) as
// a JSON object in the native form; nil for none.
func AppendExtrasJSON(b []byte, xs []tag.Extra) json.RawMessage {
	if len(xs) == 0 {
		return nil
	}
	b = append(b, '{')
	for i, x := range xs {
		if i > 0 {
			b = append(b, ',')
		}
		k, _ := json.Marshal(x.Key)
		b = append(append(b, k...), ':')
		b = x.Value.AppendJSON(b)
	}
	return append(b, '}')
}

// DecodeExtras reads what AppendExtrasJSON wrote: extras sorted by key.
func DecodeExtras(raw json.RawMessage) ([]tag.Extra, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("extras: %w", err)
	}
	xs := make([]tag.Extra, 0, len(m))
	var errs []error
	for k, v := range m {
		val, err := tag.DecodeJSONValue(v)
		if err != nil {
			errs = append(errs, fmt.Errorf("extra %q: %w", k, err))
			continue
		}
		xs = append(xs, tag.Extra{Key: k, Value: val})
	}
	sort.Slice(xs, func(i, j int) bool { return strings.Compare(xs[i].Key, xs[j].Key) < 0 })
	return xs, errors.Join(errs...)
}
