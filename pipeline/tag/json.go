package tag

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"
)

// wireRecord is the native JSON form of a record (POST /v1/tags).
type wireRecord struct {
	Type      string                     `json:"type"`
	App       string                     `json:"app,omitempty"`
	DeviceID  string                     `json:"deviceId"`
	UserID    string                     `json:"userId,omitempty"`
	MessageID string                     `json:"messageId,omitempty"`
	Time      *jsonTime                  `json:"time,omitempty"`
	SentAt    *jsonTime                  `json:"sentAt,omitempty"`
	Received  *jsonTime                  `json:"receivedAt,omitempty"`
	AppVer    string                     `json:"appVersion,omitempty"`
	Session   string                     `json:"session,omitempty"`
	Name      string                     `json:"name,omitempty"`
	Activity  string                     `json:"activity,omitempty"`
	JobID     string                     `json:"jobId,omitempty"`
	Duration  *float64                   `json:"durationMs,omitempty"`
	Extras    map[string]json.RawMessage `json:"extras,omitempty"`
	AppInfo   map[string]json.RawMessage `json:"appInfo,omitempty"`
	Device    *wireDevice                `json:"device,omitempty"`
	Push      *wirePush                  `json:"push,omitempty"`
	Unplanned []string                   `json:"unplanned,omitempty"`
}

type wireDevice struct {
	Platform     string       `json:"platform,omitempty"`
	AppVersion   string       `json:"appVersion,omitempty"`
	AppBuild     string       `json:"appBuild,omitempty"`
	OSVersion    string       `json:"osVersion,omitempty"`
	Model        string       `json:"model,omitempty"`
	Manufacturer string       `json:"manufacturer,omitempty"`
	Locale       string       `json:"locale,omitempty"`
	TimeZone     string       `json:"timeZone,omitempty"`
	Country      string       `json:"country,omitempty"`
	PushToken    string       `json:"pushToken,omitempty"`
	PushProvider PushProvider `json:"pushProvider,omitempty"`
}

type wirePush struct {
	Action     string `json:"action"`
	DeliveryID string `json:"deliveryId"`
	CampaignID string `json:"campaignId,omitempty"`
}

// jsonTime accepts an RFC 3339 string or a number of milliseconds since the
// Unix epoch.
type jsonTime struct{ time.Time }

func (t *jsonTime) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		v, err := ParseTime(s)
		if err != nil {
			return err
		}
		t.Time = v
		return nil
	}
	ms, err := strconv.ParseFloat(string(b), 64)
	if err != nil || math.IsInf(ms, 0) || math.IsNaN(ms) || math.Abs(ms) > 1e15 {
		return fmt.Errorf("%s is neither an RFC 3339 time nor milliseconds since 1970", b)
	}
	t.Time = time.UnixMilli(int64(ms)).UTC()
	return nil
}

func (t jsonTime) MarshalJSON() ([]byte, error) {
	return []byte(`"` + t.UTC().Format(time.RFC3339Nano) + `"`), nil
}

// ParseTime parses an RFC 3339 time (with or without fractional seconds).
func ParseTime(s string) (time.Time, error) {
	v, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not an RFC 3339 time such as 2026-01-31T09:30:00Z", s)
	}
	return v.UTC(), nil
}

// Envelope is what the collector knows about a record besides its body.
type Envelope struct {
	AppID      string
	ReceivedAt time.Time
	SentAt     time.Time // batch-level sentAt, used when a record has none
}

// DecodeJSONValue decodes a typed value: a JSON string, number or bool, or
// {"$date": "<RFC 3339>"} for a date.
func DecodeJSONValue(raw json.RawMessage) (Value, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return Value{}, errors.New("empty value")
	}
	switch raw[0] {
	case '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return Value{}, err
		}
		return String(s), nil
	case 't', 'f':
		var b bool
		if err := json.Unmarshal(raw, &b); err != nil {
			return Value{}, err
		}
		return Bool(b), nil
	case '{':
		var d struct {
			Date *string `json:"$date"`
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&d); err != nil || d.Date == nil {
			return Value{}, errors.New(`an object value must be {"$date": "<RFC 3339 time>"}`)
		}
		t, err := ParseTime(*d.Date)
		if err != nil {
			return Value{}, err
		}
		return Date(t), nil
	case 'n':
		return Value{}, errors.New("null is not a value: leave the key out")
	case '[':
		return Value{}, errors.New("arrays are not values: use one key per item or a string")
	default:
		f, err := strconv.ParseFloat(string(raw), 64)
		if err != nil {
			return Value{}, fmt.Errorf("%.40s is not a string, number, bool or date", raw)
		}
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return Value{}, errors.New("number out of range")
		}
		return Number(f), nil
	}
}

// MarshalJSON writes the record in the native JSON form.
func (r Record) MarshalJSON() ([]byte, error) {
	w := wireRecord{
		Type: r.Kind.String(), App: r.AppID, DeviceID: r.DeviceID, UserID: r.UserID, MessageID: r.MessageID,
		AppVer: r.AppVersion, Session: r.SessionID, Name: r.Name, Activity: r.Activity, JobID: r.JobID, Unplanned: r.Unplanned,
		Time: &jsonTime{r.Time},
	}
	if !r.SentAt.IsZero() {
		w.SentAt = &jsonTime{r.SentAt}
	}
	if !r.ReceivedAt.IsZero() {
		w.Received = &jsonTime{r.ReceivedAt}
	}
	if r.Duration != 0 {
		ms := float64(r.Duration) / float64(time.Millisecond)
		w.Duration = &ms
	}
	w.Extras = encodeExtras(r.Extras)
	w.AppInfo = encodeExtras(r.AppInfo)
	if r.Device != nil {
		d := wireDevice(*r.Device)
		w.Device = &d
	}
	if r.Push != nil {
		w.Push = &wirePush{Action: string(r.Push.Action), DeliveryID: r.Push.DeliveryID, CampaignID: r.Push.CampaignID}
	}
	return json.Marshal(w)
}

func encodeExtras(xs []Extra) map[string]json.RawMessage {
	if len(xs) == 0 {
		return nil
	}
	m := make(map[string]json.RawMessage, len(xs))
	for _, x := range xs {
		m[x.Key] = x.Value.AppendJSON(nil)
	}
	return m
}

// AppendJSON appends the value's JSON form to b.
func (v Value) AppendJSON(b []byte) []byte {
	switch v.Type {
	case TypeString:
		return appendJSONString(b, v.Str)
	case TypeNumber:
		if f := v.Num; f == math.Trunc(f) && f > -1e6 && f < 1e6 && (f != 0 || !math.Signbit(f)) {
			// What 'g' writes for these integers, several times faster.
			return strconv.AppendInt(b, int64(f), 10)
		}
		return strconv.AppendFloat(b, v.Num, 'g', -1, 64)
	case TypeBool:
		return strconv.AppendBool(b, v.Bool)
	case TypeDate:
		b = append(b, `{"$date":"`...)
		b = v.Date.AppendFormat(b, time.RFC3339Nano)
		return append(b, `"}`...)
	}
	return append(b, "null"...)
}

// appendJSONString appends s as json.Marshal writes it (HTML characters,
// U+2028 and U+2029 escaped, invalid UTF-8 as \ufffd), without its
// allocation and reflection: GenerateID writes every string extra this way.
func appendJSONString(b []byte, s string) []byte {
	const hexDigits = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if c := s[i]; c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '\\', '"':
				b = append(b, '\\', c)
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// GenerateID gives a record without a client message id a deterministic id
// derived from its content and the client's own time, so that a client
// retrying the same batch produces the same ids and analytics count the
// records once. Without a client time there is nothing stable to derive it
// from, and the id is random.
func GenerateID(r *Record, clientTime time.Time) string {
	if clientTime.IsZero() {
		var b [16]byte
		g := idRand.Get().(*mrand.ChaCha8)
		_, _ = g.Read(b[:])
		idRand.Put(g)
		return prefixedHex("r-", b[:])
	}
	// Room on the stack for a record of 64 short extras (a Segment
	// message of many properties): past it, buf is grown on the heap.
	var stack [1024]byte
	buf := stack[:0]
	buf = append(buf, byte(r.Kind))
	for _, s := range [...]string{r.AppID, r.DeviceID, r.UserID, r.SessionID, r.Name, r.Activity, r.JobID} {
		buf = strconv.AppendInt(buf, int64(len(s)), 10)
		buf = append(buf, ':')
		buf = append(buf, s...)
	}
	buf = strconv.AppendInt(buf, clientTime.UnixNano(), 10)
	buf = strconv.AppendInt(buf, int64(r.Duration), 10)
	for _, xs := range [...][]Extra{r.Extras, r.AppInfo} {
		// In key order, without sorting (or copying) xs: DecodeJSON has
		// sorted them already, other callers may not have.
		if extrasSorted(xs) {
			for _, x := range xs {
				buf = appendIDExtra(buf, x)
			}
		} else {
			var order [2 * MaxExtras]uint64
			for _, p := range keyOrder(xs, order[:]) {
				buf = appendIDExtra(buf, xs[p])
			}
		}
		buf = append(buf, ';')
	}
	if d := r.Device; d != nil {
		for _, s := range [...]string{d.Platform, d.AppVersion, d.AppBuild, d.OSVersion, d.Model, d.Manufacturer, d.Locale, d.TimeZone, d.Country, d.PushToken, string(d.PushProvider)} {
			buf = append(buf, s...)
			buf = append(buf, 0)
		}
	}
	if p := r.Push; p != nil {
		buf = append(buf, p.Action...)
		buf = append(buf, 0)
		buf = append(buf, p.DeliveryID...)
		buf = append(buf, 0)
		buf = append(buf, p.CampaignID...)
	}
	sum := sha256.Sum256(buf)
	return prefixedHex("h-", sum[:16])
}

// idRand draws random message ids: ChaCha8 generators, each seeded from
// crypto/rand, so that a batch of records without a client time does not
// make a system call per record.
var idRand = sync.Pool{New: func() any {
	var seed [32]byte
	_, _ = rand.Read(seed[:])
	return mrand.NewChaCha8(seed)
}}

// prefixedHex returns prefix followed by b in hexadecimal, in one
// allocation.
func prefixedHex(prefix string, b []byte) string {
	var out [2 + 2*16]byte
	n := copy(out[:], prefix)
	n += hex.Encode(out[n:], b)
	return string(out[:n])
}

func appendIDExtra(buf []byte, x Extra) []byte {
	buf = append(buf, x.Key...)
	buf = append(buf, '=')
	return x.Value.AppendJSON(buf)
}
