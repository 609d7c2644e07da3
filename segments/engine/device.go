package engine

import (
	"math"
	"math/bits"
	"slices"
	"strings"
	"time"

	"github.com/twmb/murmur3"

	"github.com/openengage/engage/pipeline/tag"
)

const (
	// epoch is where stored times start: they are uint32 seconds since
	// 2000-01-01T00:00:00Z (good until 2136), 0 meaning none. Earlier times
	// count as 2000-01-01T00:00:01Z.
	epoch = 946684800
	// never is the instant of something that does not happen.
	never = int64(math.MaxInt64)
	// dedupIDs is how many recent message ids a device remembers.
	dedupIDs = 4
)

// stamp converts Unix seconds to a stored time.
func stamp(s int64) uint32 {
	s -= epoch
	switch {
	case s < 1:
		return 1
	case s > math.MaxUint32:
		return math.MaxUint32
	}
	return uint32(s)
}

// unix converts a stored time to Unix seconds.
func unix(u uint32) int64 { return int64(u) + epoch }

// inlineKey is how long a key may be to be kept in the device itself
// ("app/" + a UUID fits), which saves a cache miss per record.
const inlineKey = 48

// device is the state of one device of one app. The layout keeps what
// every record reads in the struct itself.
type device struct {
	app      *appState
	offset   int64 // last applied input offset, -1 none
	idx      int32 // in app.devs
	kh       uint32
	first    uint32
	last     uint32
	timer    uint32           // next instant a condition can change with time alone, 0 none
	evict    uint32           // instant of its live entry in Engine.evicts, 0 none
	fp       uint32           // fingerprint of the segment set it was evaluated under
	msgs     [dedupIDs]uint64 // 64-bit murmur3 of recent message ids
	nmsg     uint8            // message ids remembered (up to dedupIDs); the next goes to msgs[mpos]
	mpos     uint8
	appLen   uint8  // len(app id)
	klen     uint8  // bytes of keyb in use; 0: the key is long
	dirtyGen uint32 // == Engine.gen: changed since the last Dirty, its entry is Engine.dirty[dirtyIdx]
	dirtyIdx int32
	stale    bool // restored under another segment set: re-evaluate before use
	// attached is true once the memberships are mapped to the app's set;
	// until then a restored state's memberships (segment name hashes) wait
	// in Engine.pending.
	attached bool
	queued   bool // scratch of the timer heap's compaction

	mem members
	// times holds the did features' times: for each feature that has any,
	// [id, n, t1 ... tn] with t ascending.
	times []uint32
	attrs []attrVal
	keyb  [inlineKey]byte
	long  string
}

// members is a device's membership bits, by slot of its app's segment set.
type members struct {
	lo uint64   // slots 0-63
	hi []uint64 // slots 64 and up
}

func (m *members) has(slot int) bool {
	if slot < 64 {
		return m.lo&(1<<slot) != 0
	}
	return m.hi[(slot>>6)-1]&(1<<(slot&63)) != 0
}

func (m *members) set(slot int, in bool) {
	w := &m.lo
	if slot >= 64 {
		for len(m.hi) < slot>>6 {
			m.hi = append(m.hi, 0)
		}
		w = &m.hi[(slot>>6)-1]
	}
	if in {
		*w |= 1 << (slot & 63)
	} else {
		*w &^= 1 << (slot & 63)
	}
}

// each calls fn with each slot that is set, in order.
func (m *members) each(fn func(slot int)) {
	for word := m.lo; word != 0; {
		b := bits.TrailingZeros64(word)
		word &^= 1 << b
		fn(b)
	}
	for w, word := range m.hi {
		for word != 0 {
			b := bits.TrailingZeros64(word)
			word &^= 1 << b
			fn((w+1)<<6 | b)
		}
	}
}

func (d *device) member(slot int) bool { return d.mem.has(slot) }

func (d *device) setMember(slot int, in bool) { d.mem.set(slot, in) }

func (d *device) setKey(key []byte, appLen int) {
	d.appLen = uint8(appLen)
	if len(key) <= inlineKey {
		d.klen = uint8(copy(d.keyb[:], key))
	} else {
		d.long = string(key)
	}
	d.kh = uint32(keyHash(key))
}

func keyHash(key []byte) uint64 { return murmur3.Sum64(key) }

func (d *device) appendKey(b []byte) []byte {
	if d.klen > 0 {
		return append(b, d.keyb[:d.klen]...)
	}
	return append(b, d.long...)
}

func (d *device) keyLen() int {
	if d.klen > 0 {
		return int(d.klen)
	}
	return len(d.long)
}

func (d *device) keyIs(k []byte) bool {
	if d.klen > 0 {
		return string(d.keyb[:d.klen]) == string(k)
	}
	return d.long == string(k)
}

func (d *device) key() string {
	if d.klen > 0 {
		return string(d.keyb[:d.klen])
	}
	return d.long
}

// appendID appends the device id (the key after "app/").
func (d *device) appendID(b []byte) []byte {
	if d.klen > 0 {
		return append(b, d.keyb[int(d.appLen)+1:d.klen]...)
	}
	return append(b, d.long[int(d.appLen)+1:]...)
}

func (d *device) id() string {
	if d.klen > 0 {
		return string(d.keyb[int(d.appLen)+1 : d.klen])
	}
	return d.long[int(d.appLen)+1:]
}

// keyLess orders devices by key.
func keyLess(a, b *device) bool { return a.key() < b.key() }

// seen reports whether the message id hash is among the recent ones, and
// remembers it if not. With 64-bit hashes and 4 remembered ids, a record
// is taken for a retry by mistake with probability 4/2^64 (about 2×10^-19):
// one in 10^12 records has odds of 2×10^-7 of being dropped.
func (d *device) seen(h uint64) bool {
	for i := range int(d.nmsg) {
		if d.msgs[i] == h {
			return true
		}
	}
	d.msgs[d.mpos] = h
	d.mpos = (d.mpos + 1) % dedupIDs
	if d.nmsg < dedupIDs {
		d.nmsg++
	}
	return false
}

// entry returns the position of a did feature's entry in times, or -1.
func (d *device) entry(id uint32) int {
	for i := 0; i < len(d.times); i += 2 + int(d.times[i+1]) {
		if d.times[i] == id {
			return i
		}
	}
	return -1
}

// timesOf returns a did feature's kept times, oldest first.
func (d *device) timesOf(id uint32) []uint32 {
	if i := d.entry(id); i >= 0 {
		return d.times[i+2 : i+2+int(d.times[i+1])]
	}
	return nil
}

// insertTime adds the time of a matching record to a did feature, keeping
// the k newest that can still matter. It reports whether the kept times
// changed.
func (d *device) insertTime(f *feature, t uint32, now int64) bool {
	pos := d.entry(f.id)
	if pos < 0 {
		if !f.keeps(0, t, now) {
			return false
		}
		d.times = append(d.times, f.id, 1, t)
		return true
	}
	n := int(d.times[pos+1])
	ts := d.times[pos+2 : pos+2+n]
	i := len(ts) // insert after the times at or before t
	for i > 0 && ts[i-1] > t {
		i--
	}
	rank := n - i // times newer than t
	if !f.keeps(rank, t, now) {
		return false
	}
	if n < f.k {
		d.times = slices.Insert(d.times, pos+2+i, t)
		d.times[pos+1] = uint32(n + 1)
	} else {
		// Full: the oldest goes, t takes its place in order (i >= 1 since
		// rank < k = n).
		copy(ts[:i-1], ts[1:i])
		ts[i-1] = t
	}
	d.prune(pos, f, now)
	return true
}

// prune drops a did feature's times that no segment can count any more.
func (d *device) prune(pos int, f *feature, now int64) {
	n := int(d.times[pos+1])
	ts := d.times[pos+2 : pos+2+n]
	drop := 0
	for drop < n && !f.keeps(n-1-drop, ts[drop], now) {
		drop++
	}
	switch {
	case drop == 0:
	case drop == n:
		d.times = slices.Delete(d.times, pos, pos+2+n)
	default:
		d.times = slices.Delete(d.times, pos+2, pos+2+drop)
		d.times[pos+1] = uint32(n - drop)
	}
}

// attrVal is the state of an app_info value or a device field.
type attrVal struct {
	id    uint32
	at    uint32 // time of the newest record that set it
	since uint32 // start of the current run of this value
	prev  uint32 // newest time of a record with another value, 0 none
	typ   tag.Type
	num   float64 // number; bool as 0/1; date as Unix milliseconds
	str   string
}

func (a *attrVal) value() tag.Value {
	switch a.typ {
	case tag.TypeString:
		return tag.Value{Type: a.typ, Str: a.str}
	case tag.TypeNumber:
		return tag.Value{Type: a.typ, Num: a.num}
	case tag.TypeBool:
		return tag.Value{Type: a.typ, Bool: a.num != 0}
	case tag.TypeDate:
		return tag.Value{Type: a.typ, Date: time.UnixMilli(int64(a.num)).UTC()}
	}
	return tag.Value{}
}

func (a *attrVal) equal(v tag.Value) bool {
	if a.typ != v.Type {
		return false
	}
	switch v.Type {
	case tag.TypeString:
		return a.str == v.Str
	case tag.TypeNumber:
		return a.num == v.Num || math.IsNaN(a.num) && math.IsNaN(v.Num)
	case tag.TypeBool:
		return (a.num != 0) == v.Bool
	case tag.TypeDate:
		return int64(a.num) == v.Date.UnixMilli()
	}
	return true
}

func (a *attrVal) set(v tag.Value, in *interner) {
	a.typ, a.str, a.num = v.Type, "", 0
	switch v.Type {
	case tag.TypeString:
		a.str = in.intern(v.Str) // a copy: the record's strings may alias its buffer
	case tag.TypeNumber:
		a.num = v.Num
	case tag.TypeBool:
		if v.Bool {
			a.num = 1
		}
	case tag.TypeDate:
		a.num = float64(v.Date.UnixMilli())
	}
}

func (d *device) attr(id uint32) *attrVal {
	for i := range d.attrs {
		if d.attrs[i].id == id {
			return &d.attrs[i]
		}
	}
	return nil
}

// setAttr applies a record that sets an attribute to v at time t (a value
// of TypeInvalid unsets a device field). The newest record by event time
// wins, a later arrival winning a tie; an older record never overwrites a
// newer value. It reports whether the state changed and whether what
// conditions read (value, start of its run) changed.
//
// The start of the run ("since", for unchanged) is exact for records in
// time order and for late records outside the current run. A late record
// with another value that falls inside the current run splits it; the
// engine does not keep every record, so it starts the run again at the
// newest record's time (the value may have come back earlier: it errs
// towards "changed recently").
func (d *device) setAttr(f *feature, t uint32, v tag.Value, in *interner) (changed, read bool) {
	a := d.attr(f.id)
	if a == nil {
		// An unset value is kept too (with its time): an older record that
		// arrives later must not set it.
		d.attrs = append(d.attrs, attrVal{id: f.id, at: t, since: t})
		d.attrs[len(d.attrs)-1].set(v, in)
		return true, v.Type != tag.TypeInvalid
	}
	same := a.equal(v)
	switch {
	case t >= a.at && same:
		if t == a.at {
			return false, false
		}
		a.at = t
		return true, false
	case t >= a.at:
		a.prev, a.at, a.since = a.at, t, t
		a.set(v, in)
		return true, true
	case same && t < a.since && t > a.prev:
		a.since = t
		return true, true
	case same:
		return false, false
	case t >= a.since:
		a.prev, a.since = t, a.at
		return true, true
	case t > a.prev:
		a.prev = t
		return true, false
	}
	return false, false
}

// newest returns the newest kept time of a did feature, 0 if none.
func newest(ts []uint32) uint32 {
	if len(ts) == 0 {
		return 0
	}
	return ts[len(ts)-1]
}

// recordTime is the time the engine gives a record: its event time in
// whole seconds, no later than now.
func recordTime(t time.Time, now int64) uint32 {
	s := t.Unix()
	if s > now {
		s = now
	}
	return stamp(s)
}

// dropFeatures removes the data of features the set no longer has, and
// trims did features to what the set keeps.
func (d *device) dropFeatures(set *segSet, now int64) {
	for i := 0; i < len(d.times); {
		n := int(d.times[i+1])
		f := set.byID[d.times[i]]
		if f == nil || f.kind != featDid {
			d.times = slices.Delete(d.times, i, i+2+n)
			continue
		}
		d.prune(i, f, now)
		if i < len(d.times) && d.times[i] == f.id {
			i += 2 + int(d.times[i+1])
		}
	}
	d.attrs = slices.DeleteFunc(d.attrs, func(a attrVal) bool {
		f := set.byID[a.id]
		return f == nil || f.kind == featDid
	})
	if len(d.attrs) == 0 {
		d.attrs = nil
	}
}

func bitsEmpty(b []uint64) bool {
	for _, w := range b {
		if w != 0 {
			return false
		}
	}
	return true
}

func newBits(words int) []uint64 { return make([]uint64, words) }

func setBit(b []uint64, i int) { b[i>>6] |= 1 << (i & 63) }

func growBits(b *[]uint64, words int) {
	for len(*b) < words {
		*b = append(*b, 0)
	}
}

func orBits(dst, src []uint64) {
	for i, w := range src {
		dst[i] |= w
	}
}

// interner keeps one copy of the attribute values that many devices share
// ("ios", "football", "3.2"), which saves memory and keeps them in the
// cache. It is bounded: past maxInterned values, or for long ones, values
// are plain copies.
type interner map[string]string

const maxInterned = 1 << 16

func (in *interner) intern(s string) string {
	if v, ok := (*in)[s]; ok {
		return v
	}
	v := strings.Clone(s)
	if len(s) <= 64 && len(*in) < maxInterned {
		if *in == nil {
			*in = interner{}
		}
		(*in)[v] = v
	}
	return v
}

func (in *interner) internBytes(b []byte) string {
	if v, ok := (*in)[string(b)]; ok {
		return v
	}
	return in.intern(string(b))
}
