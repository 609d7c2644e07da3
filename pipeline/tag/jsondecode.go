package tag

import (
	"errors"
	"math"
	"time"
)

// DecodeJSON decodes one record in the native JSON form, corrects its event
// time for clock skew, gives it a message id if it has none, and validates
// it. Errors are *FieldError; a syntax error names the byte offset in raw.
func DecodeJSON(raw []byte, env Envelope) (Record, error) {
	s := scanner{b: raw}
	var r Record
	var clientTime time.Time
	var typ string
	var hasType bool
	err := decodeRecord(&s, &r, &clientTime, &typ, &hasType)
	if err == nil {
		err = s.end()
	}
	if err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			return Record{}, fe
		}
		var se *syntaxError
		if errors.As(err, &se) {
			return Record{}, fieldErr("record", "malformed JSON at byte %d of the record: %s", se.Offset, se.Msg)
		}
		return Record{}, fieldErr("record", "%v", err)
	}
	if err := r.finish(typ, hasType, clientTime, env); err != nil {
		return Record{}, err
	}
	if err := r.Validate(); err != nil {
		return Record{}, err
	}
	return r, nil
}

// finish fills in what the envelope knows, corrects the time and gives an id.
func (r *Record) finish(typ string, hasType bool, clientTime time.Time, env Envelope) error {
	kind, ok := ParseKind(typ)
	if !ok {
		if !hasType || typ == "" {
			return fieldErr("type", "missing")
		}
		return fieldErr("type", "%q is not a record type", typ)
	}
	r.Kind = kind
	if r.AppID != "" && r.AppID != env.AppID {
		return fieldErr("app", "%q does not match the app of the write key", r.AppID)
	}
	r.AppID = env.AppID
	if !env.ReceivedAt.IsZero() {
		r.ReceivedAt = env.ReceivedAt
	}
	if r.SentAt.IsZero() {
		r.SentAt = env.SentAt
	}
	r.Time = CorrectSkew(clientTime, r.SentAt, r.ReceivedAt)
	// The extras are in key order already (extrasField), as the id below
	// reads them.
	if r.MessageID == "" {
		r.MessageID = GenerateID(r, clientTime)
	}
	return nil
}

// typeErr says that a field holds the wrong JSON kind.
func typeErr(s *scanner, field, want string) error {
	return fieldErr(field, "expected %s, got JSON %s", want, s.kindAt())
}

func strField(s *scanner, field string, dst *string) error {
	if s.null() {
		return nil
	}
	if s.peek() != '"' {
		if err := typeCheck(s); err != nil {
			return err
		}
		return typeErr(s, field, "string")
	}
	v, err := s.str()
	*dst = v
	return err
}

// typeCheck makes sure that what follows is at least a JSON value, so that
// malformed JSON is reported as such rather than as a wrong type.
func typeCheck(s *scanner) error {
	save := s.pos
	if err := s.skip(0); err != nil {
		return err
	}
	s.pos = save
	return nil
}

func timeField(s *scanner, field string, dst *time.Time) error {
	if s.null() {
		return nil
	}
	switch s.peek() {
	case '"':
		v, err := s.str()
		if err != nil {
			return err
		}
		t, err := ParseTime(v)
		if err != nil {
			return fieldErr(field, "%v", err)
		}
		*dst = t
		return nil
	case '{', '[', 't', 'f':
		if err := typeCheck(s); err != nil {
			return err
		}
		return typeErr(s, field, "an RFC 3339 string or milliseconds since 1970")
	}
	ms, err := s.number()
	if err != nil {
		return err
	}
	if math.Abs(ms) > 1e15 {
		return fieldErr(field, "%v is not milliseconds since 1970", ms)
	}
	*dst = time.UnixMilli(int64(ms)).UTC()
	return nil
}

func decodeRecord(s *scanner, r *Record, clientTime *time.Time, typ *string, hasType *bool) error {
	if s.peek() != '{' {
		if err := typeCheck(s); err != nil {
			return err
		}
		return fieldErr("record", "expected a JSON object, got JSON %s", s.kindAt())
	}
	return s.object(func(key string) error {
		switch key {
		case "type":
			*hasType = true
			return strField(s, key, typ)
		case "app":
			return strField(s, key, &r.AppID)
		case "deviceId":
			return strField(s, key, &r.DeviceID)
		case "userId":
			return strField(s, key, &r.UserID)
		case "messageId":
			return strField(s, key, &r.MessageID)
		case "session":
			return strField(s, key, &r.SessionID)
		case "appVersion":
			return strField(s, key, &r.AppVersion)
		case "name":
			return strField(s, key, &r.Name)
		case "activity":
			return strField(s, key, &r.Activity)
		case "jobId":
			return strField(s, key, &r.JobID)
		case "time":
			return timeField(s, key, clientTime)
		case "sentAt":
			return timeField(s, key, &r.SentAt)
		case "receivedAt":
			return timeField(s, key, &r.ReceivedAt)
		case "durationMs":
			return durationField(s, r)
		case "extras":
			return extrasField(s, key, &r.Extras)
		case "appInfo":
			return extrasField(s, key, &r.AppInfo)
		case "device":
			return deviceField(s, r)
		case "push":
			return pushField(s, r)
		case "unplanned":
			return unplannedField(s, r)
		}
		return fieldErr("record", "unknown field %q", key)
	})
}

func durationField(s *scanner, r *Record) error {
	if s.null() {
		return nil
	}
	if k := s.kindAt(); k != "number" {
		if err := typeCheck(s); err != nil {
			return err
		}
		return typeErr(s, "durationMs", "number")
	}
	d, err := s.number()
	if err != nil {
		return err
	}
	if d < 0 || d > float64(math.MaxInt64/int64(time.Millisecond)) {
		return fieldErr("durationMs", "%v is not a duration in milliseconds", d)
	}
	r.Duration = time.Duration(d * float64(time.Millisecond))
	return nil
}

func extrasField(s *scanner, field string, dst *[]Extra) error {
	if ok, err := kindField(s, field, '{'); !ok {
		return err
	}
	// Gathered here, then copied once, in key order, into a slice of the
	// right size: appending to a growing slice would allocate and copy up
	// to four times for MaxExtras keys.
	var scratch [MaxExtras]Extra
	n := 0
	err := s.object(func(key string) error {
		if n >= MaxExtras {
			return fieldErr(field, "more than the limit of %d keys", MaxExtras)
		}
		v, err := scanValue(s)
		if err != nil {
			var se *syntaxError
			if errors.As(err, &se) {
				return err
			}
			return fieldErr(field+"."+key, "%v", err)
		}
		scratch[n] = Extra{Key: key, Value: v}
		n++
		return nil
	})
	if n > 0 {
		*dst = sortedExtras(scratch[:n]) // Validate checks them
	}
	return err
}

// scanValue reads a typed value: a string, number or bool, or
// {"$date": "<RFC 3339>"} for a date.
func scanValue(s *scanner) (Value, error) {
	switch s.peek() {
	case '"':
		v, err := s.str()
		return String(v), err
	case 't', 'f', 'n':
		lit, err := s.literal()
		switch {
		case err != nil:
			return Value{}, err
		case lit == "null":
			return Value{}, errors.New("null is not a value: leave the key out")
		}
		return Bool(lit == "true"), nil
	case '[':
		if err := s.skip(0); err != nil {
			return Value{}, err
		}
		return Value{}, errors.New("arrays are not values: use one key per item or a string")
	case '{':
		var date *string
		bad := false
		err := s.object(func(key string) error {
			if key != "$date" || s.peek() != '"' {
				bad = true
				return s.skip(1)
			}
			v, err := s.str()
			date = &v
			return err
		})
		if err != nil {
			return Value{}, err
		}
		if bad || date == nil {
			return Value{}, errors.New(`an object value must be {"$date": "<RFC 3339 time>"}`)
		}
		t, err := ParseTime(*date)
		if err != nil {
			return Value{}, err
		}
		return Date(t), nil
	}
	f, err := s.number()
	return Number(f), err
}

// kindField checks that a field holds the JSON kind that open starts
// ('{' or '['); a null reports false with no error (the field is absent).
func kindField(s *scanner, field string, open byte) (present bool, err error) {
	if s.null() {
		return false, nil
	}
	if s.peek() != open {
		if err := typeCheck(s); err != nil {
			return false, err
		}
		want := "object"
		if open == '[' {
			want = "array"
		}
		return false, typeErr(s, field, want)
	}
	return true, nil
}

func deviceField(s *scanner, r *Record) error {
	if ok, err := kindField(s, "device", '{'); !ok {
		return err
	}
	d := &DeviceInfo{}
	r.Device = d
	return s.object(func(key string) error {
		var dst *string
		switch key {
		case "platform":
			dst = &d.Platform
		case "appVersion":
			dst = &d.AppVersion
		case "appBuild":
			dst = &d.AppBuild
		case "osVersion":
			dst = &d.OSVersion
		case "model":
			dst = &d.Model
		case "manufacturer":
			dst = &d.Manufacturer
		case "locale":
			dst = &d.Locale
		case "timeZone":
			dst = &d.TimeZone
		case "country":
			dst = &d.Country
		case "pushToken":
			dst = &d.PushToken
		case "pushProvider":
			var p string
			err := strField(s, "device.pushProvider", &p)
			d.PushProvider = PushProvider(p)
			return err
		default:
			return fieldErr("device", "unknown field %q", key)
		}
		return strField(s, "device."+key, dst)
	})
}

func pushField(s *scanner, r *Record) error {
	if ok, err := kindField(s, "push", '{'); !ok {
		return err
	}
	p := &Push{}
	r.Push = p
	return s.object(func(key string) error {
		switch key {
		case "action":
			var a string
			err := strField(s, "push.action", &a)
			p.Action = PushAction(a)
			return err
		case "deliveryId":
			return strField(s, "push.deliveryId", &p.DeliveryID)
		case "campaignId":
			return strField(s, "push.campaignId", &p.CampaignID)
		}
		return fieldErr("push", "unknown field %q", key)
	})
}

func unplannedField(s *scanner, r *Record) error {
	if ok, err := kindField(s, "unplanned", '['); !ok {
		return err
	}
	return s.array(func() error {
		if len(r.Unplanned) >= MaxExtras*2 {
			return fieldErr("unplanned", "more than %d marks", MaxExtras*2)
		}
		var m string
		if err := strField(s, "unplanned", &m); err != nil {
			return err
		}
		r.Unplanned = append(r.Unplanned, m)
		return nil
	})
}
