package triggers

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/twmb/murmur3"

	"github.com/openengage/engage/pipeline/tag"
)

// The scheduler's per-device state goes to a compacted changelog (key
// app/device id, as the input's), so that another instance restores it:
// memberships, profile, last send per campaign, the recent sends the caps
// count, and the sends waiting for their time (durable timers).
//
//	byte    version (1)
//	uvarint the last input applied (its offset plus one; 0: none)
//	uvarint len, time zone; uvarint len, locale
//	uvarint app-info values the templates read, each uvarint len + key,
//	        value, varint event time
//	byte    1 + the device fields the templates read (8 strings: platform,
//	        app version and build, OS version, model, manufacturer,
//	        country, and the time zone and locale are the profile's), or 0
//	uvarint len, the newest push token; uvarint len, its provider; varint
//	        the event time (Unix s) of the device record that brought it
//	uvarint memberships, each uvarint len + segment name
//	uvarint campaigns sent, each 4 bytes campaign name hash, varint time,
//	        uvarint the local day it was for (recurring: days since 1970; 0)
//	uvarint recent sends, each varint time, byte channel
//	uvarint waiting sends, each:
//	        4 bytes campaign name hash, uvarint version,
//	        occurrence: byte 1 + 16 bytes (entry: a change id of 32 hex digits),
//	                    byte 2 (once), byte 3 + uvarint days since 1970 (day:),
//	                    byte 0 + uvarint len + text (anything else)
//	        varint due, uvarint due - trigger, byte variant + 1,
//	        uvarint trigger extras, each uvarint len + key, value
//
// A value is a type byte (tag.Type), then: a string uvarint len + bytes, a
// number 8 bytes (IEEE 754), a bool a byte, a date a varint of Unix
// milliseconds.
//
// Campaigns are named by a 32-bit hash of their name: a restore maps them
// to the current set, and drops the waiting sends of a campaign that is
// gone or whose version changed (as SetCampaigns does).
//
// Version 2 adds, at the end:
//
//	uvarint the scheduler's now (Unix s) at the device's last input, times
//	        two, plus one if that input was an exit of a device the
//	        processor evicted (evict.go)
//
// A version 1 state restores with its newest time as its last input.
const stateVersion = 2

// ErrCorruptState is wrapped by every error decoding a stored state.
var ErrCorruptState = errors.New("corrupt scheduler state")

var channelCodes = []Channel{"", ChannelPush, ChannelData, ChannelInApp}

func channelCode(c Channel) byte {
	for i, x := range channelCodes {
		if x == c {
			return byte(i)
		}
	}
	return 0
}

func nameHash(name string) uint32 { return murmur3.StringSum32(name) }

// markDirty notes that a device's state changed.
func (s *Scheduler) markDirty(d *devState) {
	if s.dirty == nil {
		s.dirty = map[*devState]bool{}
	}
	s.dirty[d] = true
	s.armEvict(d)
}

// Dirty calls fn with the key and state of every device changed since the
// last call, in key order, after a nil state (a tombstone) for each device
// evicted since and not seen again. fn must not keep them.
func (s *Scheduler) Dirty(fn func(key, state []byte)) {
	for _, k := range s.tombs {
		if s.devs[k] == nil {
			fn([]byte(k), nil)
		}
	}
	s.tombs = s.tombs[:0]
	ds := make([]*devState, 0, len(s.dirty))
	for d := range s.dirty {
		ds = append(ds, d)
	}
	slices.SortFunc(ds, func(x, y *devState) int {
		if c := strings.Compare(x.app, y.app); c != 0 {
			return c
		}
		return strings.Compare(x.id, y.id)
	})
	for _, d := range ds {
		s.kbuf = append(append(append(s.kbuf[:0], d.app...), '/'), d.id...)
		s.sbuf = s.appendState(s.sbuf[:0], d)
		fn(s.kbuf, s.sbuf)
	}
	clear(s.dirty)
}

// Snapshot calls fn with the state of every device, in key order.
func (s *Scheduler) Snapshot(fn func(key, state []byte)) {
	keys := make([]string, 0, len(s.devs))
	for k := range s.devs {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf []byte
	for _, k := range keys {
		buf = s.appendState(buf[:0], s.devs[k])
		fn([]byte(k), buf)
	}
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func (s *Scheduler) appendState(b []byte, d *devState) []byte {
	b = append(b, stateVersion)
	b = binary.AppendUvarint(b, uint64(max(d.applied, 0)))
	b = appendString(b, d.profile.TimeZone)
	b = appendString(b, d.profile.Locale)
	b = binary.AppendUvarint(b, uint64(len(d.info)))
	for i, x := range d.info {
		b = appendString(b, x.Key)
		b = appendValue(b, x.Value)
		b = binary.AppendVarint(b, d.infoAt[i])
	}
	if di := d.devInfo; di == nil {
		b = append(b, 0)
	} else {
		b = append(b, 1)
		for _, f := range []string{di.Platform, di.AppVersion, di.AppBuild, di.OSVersion, di.Model, di.Manufacturer, di.Country} {
			b = appendString(b, f)
		}
	}
	b = appendString(b, d.token)
	b = appendString(b, string(d.provider))
	b = binary.AppendVarint(b, d.tokenAt)
	segs := make([]string, 0, len(d.members))
	for seg := range d.members {
		segs = append(segs, seg)
	}
	sort.Strings(segs)
	b = binary.AppendUvarint(b, uint64(len(segs)))
	for _, seg := range segs {
		b = appendString(b, seg)
	}
	names := make([]string, 0, len(d.sent))
	for n := range d.sent {
		names = append(names, n)
	}
	sort.Strings(names)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, n := range names {
		b = binary.LittleEndian.AppendUint32(b, nameHash(n))
		b = binary.AppendVarint(b, d.sent[n].t)
		b = binary.AppendUvarint(b, uint64(max(d.sent[n].day, 0)))
	}
	b = binary.AppendUvarint(b, uint64(len(d.recent)))
	for _, m := range d.recent {
		b = binary.AppendVarint(b, m.t)
		b = append(b, channelCode(m.ch))
	}
	b = binary.AppendUvarint(b, uint64(len(d.pending)))
	for _, p := range d.pending {
		b = binary.LittleEndian.AppendUint32(b, nameHash(p.camp.Name))
		b = binary.AppendUvarint(b, uint64(p.camp.Version))
		b = appendOccurrence(b, p.occurrence)
		b = binary.AppendVarint(b, p.due)
		b = binary.AppendUvarint(b, uint64(max(p.due-p.trigger, 0)))
		b = append(b, byte(p.variant+1))
		b = binary.AppendUvarint(b, uint64(len(p.extras)))
		for _, x := range p.extras {
			b = appendString(b, x.Key)
			b = appendValue(b, x.Value)
		}
	}
	seen := uint64(max(d.seen, 0)) << 1
	if d.gone {
		seen |= 1
	}
	return binary.AppendUvarint(b, seen)
}

func appendValue(b []byte, v tag.Value) []byte {
	b = append(b, byte(v.Type))
	switch v.Type {
	case tag.TypeString:
		b = appendString(b, v.Str)
	case tag.TypeNumber:
		b = binary.LittleEndian.AppendUint64(b, math.Float64bits(v.Num))
	case tag.TypeBool:
		if v.Bool {
			return append(b, 1)
		}
		return append(b, 0)
	case tag.TypeDate:
		b = binary.AppendVarint(b, v.Date.UnixMilli())
	}
	return b
}

func (r *reader) value() tag.Value {
	t := r.bytes(1, "value type")
	if t == nil {
		return tag.Value{}
	}
	switch tag.Type(t[0]) {
	case tag.TypeString:
		return tag.String(r.string("string value"))
	case tag.TypeNumber:
		if b := r.bytes(8, "number value"); b != nil {
			return tag.Number(math.Float64frombits(binary.LittleEndian.Uint64(b)))
		}
	case tag.TypeBool:
		if b := r.bytes(1, "bool value"); b != nil {
			if b[0] > 1 {
				r.fail("bool value")
			}
			return tag.Bool(b[0] == 1)
		}
	case tag.TypeDate:
		return tag.Date(time.UnixMilli(r.varint("date value")))
	default:
		r.fail("value type")
	}
	return tag.Value{}
}

func appendOccurrence(b []byte, occ string) []byte {
	if id, ok := strings.CutPrefix(occ, "entry:"); ok && len(id) == 32 {
		if raw, err := hex.DecodeString(id); err == nil && hex.EncodeToString(raw) == id {
			return append(append(b, 1), raw...)
		}
	}
	if occ == OnceOccurrence {
		return append(b, 2)
	}
	if day, ok := strings.CutPrefix(occ, "day:"); ok {
		if t, err := time.Parse("2006-01-02", day); err == nil && t.Format("2006-01-02") == day && t.Unix() >= 0 {
			return binary.AppendUvarint(append(b, 3), uint64(t.Unix()/86400))
		}
	}
	return appendString(append(b, 0), occ)
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated or invalid %s", ErrCorruptState, what)
	}
	r.b = nil
}

func (r *reader) uvarint(what string) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) varint(what string) int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) bytes(n int, what string) []byte {
	if n < 0 || len(r.b) < n {
		r.fail(what)
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) string(what string) string {
	n := r.uvarint(what)
	if n > uint64(len(r.b)) {
		r.fail(what)
		return ""
	}
	return string(r.bytes(int(n), what))
}

func (r *reader) count(what string, size int) int {
	n := r.uvarint(what)
	if n > uint64(len(r.b)/size) {
		r.fail(what)
		return 0
	}
	return int(n)
}

func (r *reader) occurrence() string {
	switch k := r.bytes(1, "occurrence"); {
	case k == nil:
		return ""
	case k[0] == 1:
		return "entry:" + hex.EncodeToString(r.bytes(16, "occurrence"))
	case k[0] == 2:
		return OnceOccurrence
	case k[0] == 3:
		return "day:" + time.Unix(int64(r.uvarint("occurrence day"))*86400, 0).UTC().Format("2006-01-02")
	case k[0] == 0:
		return r.string("occurrence")
	}
	r.fail("occurrence kind")
	return ""
}

// Restore loads one changelog record (a nil state deletes the device).
// Call SetCampaigns first: waiting sends of campaigns that are gone or
// changed are dropped, the others wait for their time again.
func (s *Scheduler) Restore(key, state []byte) error {
	app, id, ok := strings.Cut(string(key), "/")
	if !ok {
		return fmt.Errorf("restore %q: %w: the key is not app/device", key, ErrCorruptState)
	}
	if old := s.devs[string(key)]; old != nil {
		for _, p := range old.pending {
			p.dead = true
			s.stats.Pending--
		}
		delete(s.devs, string(key))
	}
	if state == nil {
		return nil
	}
	d, err := s.decodeState(app, id, state)
	if err != nil {
		return fmt.Errorf("restore %q: %w", key, err)
	}
	s.devs[string(key)] = d
	for _, p := range d.pending {
		s.stats.Pending++
		s.timers.push(timerEntry{due: p.due, d: d, p: p})
	}
	s.armEvict(d)
	return nil
}

func (s *Scheduler) decodeState(app, id string, data []byte) (*devState, error) {
	if len(data) == 0 || data[0] != stateVersion && data[0] != 1 {
		return nil, fmt.Errorf("%w: unknown version", ErrCorruptState)
	}
	version := data[0]
	r := &reader{b: data[1:]}
	d := &devState{app: app, id: id, members: map[string]bool{}}
	d.applied = int64(r.uvarint("applied input"))
	d.profile.TimeZone = r.string("time zone")
	d.profile.Locale = r.string("locale")
	for range r.count("app-info values", 3) {
		k := r.string("app-info key")
		v := r.value()
		at := r.varint("app-info time")
		if r.err != nil {
			break
		}
		if n := len(d.info); n > 0 && d.info[n-1].Key >= k {
			r.fail("app-info order")
			break
		}
		d.info = append(d.info, tag.Extra{Key: k, Value: v})
		d.infoAt = append(d.infoAt, at)
	}
	switch f := r.bytes(1, "device fields"); {
	case f == nil:
	case f[0] == 1:
		di := &tag.DeviceInfo{}
		for _, p := range []*string{&di.Platform, &di.AppVersion, &di.AppBuild, &di.OSVersion, &di.Model, &di.Manufacturer, &di.Country} {
			*p = r.string("device field")
		}
		di.TimeZone, di.Locale = d.profile.TimeZone, d.profile.Locale
		d.devInfo = di
	case f[0] != 0:
		r.fail("device fields")
	}
	d.token = r.string("push token")
	d.provider = tag.PushProvider(r.string("push provider"))
	d.tokenAt = r.varint("push token time")
	for range r.count("memberships", 1) {
		d.members[r.string("segment")] = true
	}
	byHash := map[uint32]*Campaign{}
	if a := s.apps[app]; a != nil {
		for _, c := range a.camps {
			byHash[nameHash(c.Name)] = c
		}
	}
	for range r.count("campaigns sent", 6) {
		h := uint32(0)
		if b := r.bytes(4, "campaign"); b != nil {
			h = binary.LittleEndian.Uint32(b)
		}
		t := r.varint("sent time")
		day := r.uvarint("sent day")
		if c := byHash[h]; c != nil && day <= math.MaxInt32 {
			if d.sent == nil {
				d.sent = map[string]sentAt{}
			}
			d.sent[c.Name] = sentAt{t: t, day: int32(day)}
		}
	}
	n := r.count("recent sends", 2)
	for range n {
		t := r.varint("recent send")
		ch := r.bytes(1, "channel")
		if ch != nil && int(ch[0]) < len(channelCodes) {
			d.recent = append(d.recent, sendMark{t: t, ch: channelCodes[ch[0]]})
		} else {
			r.fail("channel")
		}
	}
	for range r.count("waiting sends", 8) {
		h := uint32(0)
		if b := r.bytes(4, "campaign"); b != nil {
			h = binary.LittleEndian.Uint32(b)
		}
		version := int64(r.uvarint("version"))
		occ := r.occurrence()
		due := r.varint("due")
		back := int64(r.uvarint("trigger"))
		v := r.bytes(1, "variant")
		var extras []tag.Extra
		for range r.count("trigger extras", 3) {
			k := r.string("trigger extra key")
			extras = append(extras, tag.Extra{Key: k, Value: r.value()})
		}
		if r.err != nil {
			break
		}
		c := byHash[h]
		if c == nil || c.Version != version {
			continue // the campaign is gone or changed
		}
		d.pending = append(d.pending, &pendingSend{camp: c, occurrence: occ, due: due, trigger: due - back, variant: int(v[0]) - 1, extras: extras})
	}
	if version >= 2 {
		seen := r.uvarint("last input")
		if seen>>1 > math.MaxInt64/4 {
			r.fail("last input")
		}
		d.seen, d.gone = int64(seen>>1), seen&1 == 1
	} else {
		// Version 1 did not keep it: the newest time the state holds.
		d.seen = max(d.tokenAt, 0)
		for _, t := range d.infoAt {
			d.seen = max(d.seen, t)
		}
		for _, sa := range d.sent {
			d.seen = max(d.seen, sa.t)
		}
		for _, m := range d.recent {
			d.seen = max(d.seen, m.t)
		}
		for _, p := range d.pending {
			d.seen = max(d.seen, p.trigger)
		}
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrCorruptState, len(r.b))
	}
	return d, nil
}
