package tag

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"time"
)

// decodeJSONReference decodes one record with encoding/json and struct
// tags: the straightforward reading of the format, against which the
// scanner-based DecodeJSON is checked. It in the native JSON form, corrects its event
// time for clock skew, gives it a message id if it has none, and validates
// it. Errors are *FieldError.
func decodeJSONReference(raw []byte, env Envelope) (Record, error) {
	var w wireRecord
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&w); err != nil {
		return Record{}, jsonFieldError(err)
	}
	if dec.More() {
		return Record{}, fieldErr("record", "trailing data after the record")
	}
	r, err := w.record(env)
	if err != nil {
		return Record{}, err
	}
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

func jsonFieldError(err error) *FieldError {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		field := te.Field
		if field == "" {
			field = "record"
		}
		return fieldErr(field, "expected %s, got JSON %s", te.Type, te.Value)
	}
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return fieldErr("record", "malformed JSON at byte %d of the record: %v", se.Offset, se)
	}
	msg := err.Error()
	if len(msg) > 5 && msg[:5] == "json:" {
		msg = msg[6:]
	}
	return fieldErr("record", "%s", msg)
}

func (w *wireRecord) record(env Envelope) (Record, error) {
	kind, ok := ParseKind(w.Type)
	if !ok {
		if w.Type == "" {
			return Record{}, fieldErr("type", "missing")
		}
		return Record{}, fieldErr("type", "%q is not a record type", w.Type)
	}
	if w.App != "" && w.App != env.AppID {
		return Record{}, fieldErr("app", "%q does not match the app of the write key", w.App)
	}
	r := Record{
		Kind: kind, AppID: env.AppID, DeviceID: w.DeviceID, UserID: w.UserID, MessageID: w.MessageID,
		ReceivedAt: env.ReceivedAt, SentAt: env.SentAt,
		AppVersion: w.AppVer, SessionID: w.Session, Name: w.Name, Activity: w.Activity, JobID: w.JobID,
	}
	if len(w.Unplanned) > 0 {
		r.Unplanned = w.Unplanned
	}
	var clientTime time.Time
	if w.Time != nil {
		clientTime = w.Time.Time
	}
	if w.SentAt != nil {
		r.SentAt = w.SentAt.Time
	}
	if w.Received != nil && env.ReceivedAt.IsZero() {
		r.ReceivedAt = w.Received.Time
	}
	r.Time = CorrectSkew(clientTime, r.SentAt, r.ReceivedAt)
	if w.Duration != nil {
		d := *w.Duration
		if d < 0 || d > float64(math.MaxInt64/int64(time.Millisecond)) || math.IsNaN(d) {
			return Record{}, fieldErr("durationMs", "%v is not a duration in milliseconds", d)
		}
		r.Duration = time.Duration(d * float64(time.Millisecond))
	}
	var err error
	if r.Extras, err = decodeExtras("extras", w.Extras); err != nil {
		return Record{}, err
	}
	if r.AppInfo, err = decodeExtras("appInfo", w.AppInfo); err != nil {
		return Record{}, err
	}
	if w.Device != nil {
		d := DeviceInfo(*w.Device)
		r.Device = &d
	}
	if w.Push != nil {
		r.Push = &Push{Action: PushAction(w.Push.Action), DeliveryID: w.Push.DeliveryID, CampaignID: w.Push.CampaignID}
	}
	if r.MessageID == "" {
		r.MessageID = GenerateID(&r, clientTime)
	}
	return r, nil
}

func decodeExtras(field string, m map[string]json.RawMessage) ([]Extra, error) {
	if len(m) == 0 {
		return nil, nil
	}
	if len(m) > MaxExtras {
		return nil, fieldErr(field, "%d keys, more than the limit of %d", len(m), MaxExtras)
	}
	xs := make([]Extra, 0, len(m))
	for k, raw := range m {
		v, err := DecodeJSONValue(raw)
		if err != nil {
			return nil, fieldErr(field+"."+k, "%v", err)
		}
		xs = append(xs, Extra{Key: k, Value: v})
	}
	return xs, nil // Validate sorts and checks them
}
