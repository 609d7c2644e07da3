package tag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"
)

// CodecVersion is the first byte of every encoded record. A reader refuses
// versions it does not know, so a newer writer can never be misread.
const CodecVersion = 1

// Presence flags of the binary form.
const (
	hasSentAt = 1 << iota
	hasReceivedAt
	hasDuration
	hasDevice
	hasPush
	hasUnplanned
	hasAppVersion
)

// AppendBinary appends the compact binary form of r to b: a version byte,
// the kind, a presence byte, then length-prefixed strings, varint times and
// typed extras. It is what the collector writes to Kafka.
func (r *Record) AppendBinary(b []byte) []byte {
	var flags byte
	if !r.SentAt.IsZero() {
		flags |= hasSentAt
	}
	if !r.ReceivedAt.IsZero() {
		flags |= hasReceivedAt
	}
	if r.Duration != 0 {
		flags |= hasDuration
	}
	if r.Device != nil {
		flags |= hasDevice
	}
	if r.Push != nil {
		flags |= hasPush
	}
	if len(r.Unplanned) > 0 {
		flags |= hasUnplanned
	}
	if r.AppVersion != "" {
		flags |= hasAppVersion
	}
	b = append(b, CodecVersion, byte(r.Kind), flags)
	for _, s := range [...]string{r.AppID, r.DeviceID, r.UserID, r.MessageID, r.SessionID, r.Name, r.Activity, r.JobID} {
		b = appendString(b, s)
	}
	b = binary.AppendVarint(b, r.Time.UnixNano())
	if flags&hasSentAt != 0 {
		b = binary.AppendVarint(b, r.SentAt.UnixNano())
	}
	if flags&hasReceivedAt != 0 {
		b = binary.AppendVarint(b, r.ReceivedAt.UnixNano())
	}
	if flags&hasDuration != 0 {
		b = binary.AppendUvarint(b, uint64(r.Duration))
	}
	b = appendExtras(b, r.Extras)
	b = appendExtras(b, r.AppInfo)
	if d := r.Device; d != nil {
		for _, s := range [...]string{d.Platform, d.AppVersion, d.AppBuild, d.OSVersion, d.Model, d.Manufacturer, d.Locale, d.TimeZone, d.Country, d.PushToken, string(d.PushProvider)} {
			b = appendString(b, s)
		}
	}
	if p := r.Push; p != nil {
		b = appendString(b, string(p.Action))
		b = appendString(b, p.DeliveryID)
		b = appendString(b, p.CampaignID)
	}
	if flags&hasUnplanned != 0 {
		b = binary.AppendUvarint(b, uint64(len(r.Unplanned)))
		for _, s := range r.Unplanned {
			b = appendString(b, s)
		}
	}
	if flags&hasAppVersion != 0 {
		b = appendString(b, r.AppVersion)
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendExtras(b []byte, xs []Extra) []byte {
	b = binary.AppendUvarint(b, uint64(len(xs)))
	for _, x := range xs {
		b = appendString(b, x.Key)
		b = append(b, byte(x.Value.Type))
		switch x.Value.Type {
		case TypeString:
			b = appendString(b, x.Value.Str)
		case TypeNumber:
			b = binary.LittleEndian.AppendUint64(b, math.Float64bits(x.Value.Num))
		case TypeBool:
			if x.Value.Bool {
				b = append(b, 1)
			} else {
				b = append(b, 0)
			}
		case TypeDate:
			b = binary.AppendVarint(b, x.Value.Date.UnixMilli())
		}
	}
	return b
}

// ErrCorrupt is wrapped by every decoding error of the binary form.
var ErrCorrupt = errors.New("corrupt tag record")

type reader struct {
	b      []byte
	err    error
	shared bool     // strings alias b instead of copying it
	arena  *[]Extra // extras are carved from here when set
}

func (d *reader) fail(what string) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: truncated or invalid %s", ErrCorrupt, what)
	}
}

func (d *reader) uvarint(what string) uint64 {
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail(what)
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *reader) varint(what string) int64 {
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail(what)
		d.b = nil
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *reader) byte(what string) byte {
	if len(d.b) == 0 {
		d.fail(what)
		return 0
	}
	c := d.b[0]
	d.b = d.b[1:]
	return c
}

func (d *reader) string(what string) string {
	n := d.uvarint(what)
	if n > uint64(len(d.b)) {
		d.fail(what)
		d.b = nil
		return ""
	}
	var s string
	if d.shared {
		if n > 0 {
			s = unsafe.String(&d.b[0], n)
		}
	} else {
		s = string(d.b[:n])
	}
	d.b = d.b[n:]
	return s
}

func (d *reader) extras(what string) []Extra {
	n := d.uvarint(what)
	if n == 0 {
		return nil
	}
	if n > uint64(len(d.b))/3 || n > 4*MaxExtras {
		d.fail(what)
		return nil
	}
	var xs []Extra
	if d.arena != nil {
		a := *d.arena
		if cap(a)-len(a) < int(n) {
			a = make([]Extra, 0, max(256, 2*cap(a), int(n)))
		}
		xs = a[len(a) : len(a)+int(n) : len(a)+int(n)]
		*d.arena = a[:len(a)+int(n)]
	} else {
		xs = make([]Extra, n)
	}
	for i := range xs {
		xs[i].Key = d.string(what)
		t := Type(d.byte(what))
		xs[i].Value.Type = t
		switch t {
		case TypeString:
			xs[i].Value.Str = d.string(what)
		case TypeNumber:
			if len(d.b) < 8 {
				d.fail(what)
				return nil
			}
			xs[i].Value.Num = math.Float64frombits(binary.LittleEndian.Uint64(d.b))
			d.b = d.b[8:]
		case TypeBool:
			xs[i].Value.Bool = d.byte(what) != 0
		case TypeDate:
			xs[i].Value.Date = time.UnixMilli(d.varint(what)).UTC()
		default:
			d.fail(what + " value type")
			return nil
		}
		if d.err != nil {
			return nil
		}
	}
	return xs
}

// UnmarshalBinary decodes a record written by AppendBinary. It fails with an
// error wrapping ErrCorrupt on anything it cannot read; it never panics.
func (r *Record) UnmarshalBinary(data []byte) error {
	return r.unmarshal(reader{}, data)
}

// UnmarshalBinaryShared decodes like UnmarshalBinary, for hot paths that
// decode many records and drop them soon: the record's strings share
// data's memory instead of copying it (data must not change while the
// record is in use), and its extras are carved from *arena, which grows as
// needed (its earlier records stay valid), instead of one allocation each.
func (r *Record) UnmarshalBinaryShared(data []byte, arena *[]Extra) error {
	return r.unmarshal(reader{shared: true, arena: arena}, data)
}

func (r *Record) unmarshal(d reader, data []byte) error {
	*r = Record{}
	if len(data) < 3 {
		return fmt.Errorf("%w: %d bytes is too short", ErrCorrupt, len(data))
	}
	if data[0] != CodecVersion {
		return fmt.Errorf("%w: unknown codec version %d (this reader knows %d)", ErrCorrupt, data[0], CodecVersion)
	}
	r.Kind = Kind(data[1])
	if r.Kind == KindInvalid || r.Kind >= kindCount {
		return fmt.Errorf("%w: unknown kind %d", ErrCorrupt, data[1])
	}
	flags := data[2]
	d.b = data[3:]
	r.AppID = d.string("app")
	r.DeviceID = d.string("device")
	r.UserID = d.string("user")
	r.MessageID = d.string("message id")
	r.SessionID = d.string("session")
	r.Name = d.string("name")
	r.Activity = d.string("activity")
	r.JobID = d.string("job id")
	r.Time = time.Unix(0, d.varint("time")).UTC()
	if flags&hasSentAt != 0 {
		r.SentAt = time.Unix(0, d.varint("sentAt")).UTC()
	}
	if flags&hasReceivedAt != 0 {
		r.ReceivedAt = time.Unix(0, d.varint("receivedAt")).UTC()
	}
	if flags&hasDuration != 0 {
		r.Duration = time.Duration(d.uvarint("duration"))
	}
	r.Extras = d.extras("extras")
	r.AppInfo = d.extras("app-info")
	if flags&hasDevice != 0 {
		var s [11]string
		for i := range s {
			s[i] = d.string("device info")
		}
		r.Device = &DeviceInfo{s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], s[8], s[9], PushProvider(s[10])}
	}
	if flags&hasPush != 0 {
		r.Push = &Push{Action: PushAction(d.string("push action")), DeliveryID: d.string("push delivery"), CampaignID: d.string("push campaign")}
	}
	if flags&hasUnplanned != 0 {
		n := d.uvarint("unplanned")
		if n > uint64(len(d.b)) {
			d.fail("unplanned")
		} else if n > 0 { // an empty list decodes as none, as it encodes
			r.Unplanned = make([]string, n)
			for i := range r.Unplanned {
				r.Unplanned[i] = d.string("unplanned")
			}
		}
	}
	if flags&hasAppVersion != 0 {
		r.AppVersion = d.string("app version")
	}
	if flags >= hasAppVersion<<1 {
		return fmt.Errorf("%w: unknown presence flags %#x", ErrCorrupt, flags)
	}
	if d.err != nil {
		return d.err
	}
	if len(d.b) != 0 {
		return fmt.Errorf("%w: %d trailing bytes", ErrCorrupt, len(d.b))
	}
	return nil
}

// PeekKind returns the kind of an encoded record without decoding it
// (KindInvalid for data that is not a record of a known version).
func PeekKind(data []byte) Kind {
	if len(data) < 2 || data[0] != CodecVersion || data[1] == byte(KindInvalid) || int(data[1]) >= len(kindNames) {
		return KindInvalid
	}
	return Kind(data[1])
}
