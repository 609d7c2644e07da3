package engine

import (
	"errors"
	"fmt"
	"math/bits"
	"time"

	"github.com/twmb/murmur3"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// DefaultMaxCount is the default of Options.MaxCount.
const DefaultMaxCount = 1000

// Options configures an Engine.
type Options struct {
	// MaxCount bounds the N of a did condition ("at least N times" keeps
	// the N newest matching times of each device). Zero means
	// DefaultMaxCount. Segments over the bound do not compile.
	MaxCount int
	// Fill makes the engine fill the features a new segment reads from
	// history: the processor reads what Fills asks from the history store
	// (fill.go). Without it, such features count from when they were first
	// tracked, and Status says so.
	Fill bool
	// EvictAfter is the retention of devices that are no longer seen
	// (evict.go): a device not seen for this long is evicted even when a
	// condition without a window reads it. Zero: devices are never evicted.
	EvictAfter time.Duration
	// EvictMargin is added to the longest look-back of an app's segments:
	// a device not seen for longer than both is evicted. Zero means
	// DefaultEvictMargin.
	EvictMargin time.Duration
}

// DefaultEvictMargin is the default of Options.EvictMargin.
const DefaultEvictMargin = 30 * 24 * time.Hour

// Validate checks the options.
func (o Options) Validate() error {
	if o.MaxCount < 0 || o.MaxCount > 1<<16 {
		return fmt.Errorf("engine: MaxCount %d: give 0 (default %d) up to 65536", o.MaxCount, DefaultMaxCount)
	}
	if o.EvictAfter < 0 || o.EvictAfter > 0 && o.EvictAfter < time.Second {
		return fmt.Errorf("engine: EvictAfter %s: give 0 (never) or at least 1s", o.EvictAfter)
	}
	if o.EvictMargin < 0 {
		return fmt.Errorf("engine: EvictMargin %s: give 0 (default %s) or more", o.EvictMargin, DefaultEvictMargin)
	}
	return nil
}

// Engine keeps the segment memberships of the devices of one partition.
// It is not safe for concurrent use: one goroutine owns it (the one that
// owns the partition).
type Engine struct {
	opts Options
	now  int64 // newest now seen, Unix seconds
	apps map[string]*appState
	// devs finds a device by the 64-bit hash of its key; the rare keys
	// whose hash another key already has are in collide.
	devs    devTable
	collide map[string]*device
	count   int // devices
	heap    timerHeap
	timers  int                  // devices with a timer
	evicts  timerHeap            // eviction checks, one live entry per device at most (evict.go)
	stale   []*device            // restored under another segment set, not yet re-evaluated
	pending map[*device][]uint32 // memberships (name hashes) of restored states not yet attached

	// dirty lists the devices changed since the last Dirty call. A state
	// is encoded into dirtyBuf when it first changes (its data is in the
	// cache then); a device that changes again is encoded again by Dirty.
	dirty    []dirtyEntry
	dirtyBuf []byte
	gen      uint32 // of the dirty list; Dirty starts a new one
	tombs    []string
	metas    map[string]bool // apps whose meta record changed

	touched []uint64
	strs    interner
	lastApp *appState // of the last record; reset when apps change
	batch   []*device
	hashes  []uint64
	sink    uint32
	buf     []byte // scratch
	kbuf    []byte
	sbuf    []byte
	stats   Stats

	// Fills (fill.go).
	plan     bool  // some app's registry may need a fill: plan before the next record
	position int64 // the offset after the newest input offset seen: the next fill's seam
	fillSeq  uint64
}

// appState is what the engine keeps per app.
type appState struct {
	name    string
	set     *segSet // nil: the app has no segments (yet)
	devs    []*device
	reg     registry
	deleted map[uint32]deletedSeg // recently deleted segments, by name hash
	prevSet *segSet               // the set before set (for the cause of changes a fill makes)
	fill    *fill                 // under way, or nil
	wait    []uint64              // segments not evaluated until their history is filled; nil none
}

type deletedSeg struct {
	name    string
	version int64
	fp      uint32 // of the set that deleted it
}

// Stats counts what the engine did.
type Stats struct {
	Devices    int    // device states held
	Records    uint64 // records applied
	Replayed   uint64 // records skipped: offset at or before the device's last applied one
	Duplicates uint64 // records skipped: message id among the device's recent ones
	Ignored    uint64 // records of apps without segments
	Timers     uint64 // timers fired
	Changes    uint64 // enters and exits emitted
	Restored   uint64 // states restored
	Evicted    uint64 // devices evicted: not seen for longer than their app's horizon
}

// New returns an empty engine. It panics if the options are not valid
// (call Validate first when they come from outside).
func New(opts Options) *Engine {
	if err := opts.Validate(); err != nil {
		panic(err)
	}
	if opts.MaxCount == 0 {
		opts.MaxCount = DefaultMaxCount
	}
	if opts.EvictMargin == 0 {
		opts.EvictMargin = DefaultEvictMargin
	}
	return &Engine{opts: opts, gen: 1, apps: map[string]*appState{}, collide: map[string]*device{},
		pending: map[*device][]uint32{}, metas: map[string]bool{}}
}

// clock takes the caller's now: the engine never reads the wall clock, and
// never lets its now go back.
func (e *Engine) clock(now time.Time) int64 {
	if s := now.Unix(); s > e.now {
		e.now = s
	}
	return e.now
}

// Apply applies one input record read at offset, evaluates the segments
// that read what it changed, and appends the resulting changes to out.
// now is the processor's clock (the wall clock, or the newest event time
// of the partition); the engine keeps the newest now it was given.
//
// Records of apps without segments are ignored. A record at an offset at
// or before the device's last applied one is a replay and changes nothing;
// a record whose message id is among the device's last four is a client
// retry and changes nothing either. Before the record (replayed or not),
// the device's timers that are due at now fire, so that after Apply the
// device's memberships are those at now.
func (e *Engine) Apply(r *tag.Record, offset int64, now time.Time, out []Change) []Change {
	ns := e.clock(now)
	if e.plan {
		out = e.planFills(out)
	}
	return e.apply(r, offset, ns, nil, out)
}

// ApplyBatch is Apply for records read together, in order (offsets[i] is
// the offset of recs[i]), all at now. It gives the same results as
// calling Apply for each, faster: it first finds every record's device,
// so that the memory accesses of different devices overlap.
func (e *Engine) ApplyBatch(recs []*tag.Record, offsets []int64, now time.Time, out []Change) []Change {
	ns := e.clock(now)
	if e.plan {
		out = e.planFills(out)
	}
	// Find the devices in phases, each a loop of independent loads, so
	// that the cache misses of different records overlap.
	hs := e.hashes[:0]
	for _, r := range recs {
		e.kbuf = append(append(append(e.kbuf[:0], r.AppID...), '/'), r.DeviceID...)
		hs = append(hs, keyHash(e.kbuf))
	}
	devs := e.batch[:0]
	for _, h := range hs {
		devs = append(devs, e.devs.get(h))
	}
	var sink uint32
	for _, d := range devs {
		if d != nil {
			sink += d.kh + uint32(d.klen) + uint32(len(d.times))
		}
	}
	for i, d := range devs {
		if d == nil {
			continue
		}
		r := recs[i]
		e.kbuf = append(append(append(e.kbuf[:0], r.AppID...), '/'), r.DeviceID...)
		if !d.keyIs(e.kbuf) {
			devs[i] = nil // another key with the same hash: apply looks it up
			continue
		}
		if len(d.times) > 0 {
			sink += d.times[0]
		}
		if len(d.attrs) > 0 {
			sink += d.attrs[0].id
		}
	}
	e.sink = sink
	for i, r := range recs {
		out = e.apply(r, offsets[i], ns, devs[i], out)
		devs[i] = nil
	}
	e.batch, e.hashes = devs[:0], hs[:0]
	return out
}

// platformRecord reports a record the platform wrote about a device (the
// dispatcher's push record token_dead) rather than one the device sent: it
// says nothing of what the device did, so no segment counts it (it would
// make the device seen at the time of a failed push).
func platformRecord(r *tag.Record) bool {
	return r.Kind == tag.KindPush && r.Push != nil && r.Push.Action == tag.PushTokenDead
}

func (e *Engine) apply(r *tag.Record, offset int64, ns int64, d *device, out []Change) []Change {
	if offset >= e.position {
		e.position = offset + 1
	}
	a := e.lastApp // records of one app come in runs
	if a == nil || a.name != r.AppID {
		a = e.apps[r.AppID]
		e.lastApp = a
	}
	if a == nil || a.set == nil || platformRecord(r) {
		e.stats.Ignored++
		return out
	}
	if d != nil && d.app == nil {
		d = nil // evicted by an earlier record of the batch: look it up again
	}
	for d != nil && d.evict != 0 && unix(d.evict) <= ns {
		if out = e.evictDue(d, ns, out); d.app == nil {
			d = nil // evicted: the record starts a new state
		}
	}
	fresh := false
	if d == nil {
		e.kbuf = append(append(append(e.kbuf[:0], r.AppID...), '/'), r.DeviceID...)
		h := keyHash(e.kbuf)
		if d = e.lookup(h, e.kbuf); d == nil {
			d = e.newDevice(a, h, e.kbuf)
			fresh = true
		}
	}
	out = e.catchUp(d, ns, out)
	if offset <= d.offset {
		e.stats.Replayed++
		return out
	}
	d.offset = offset
	if r.MessageID != "" && d.seen(murmur3.StringSum64(r.MessageID)) {
		e.stats.Duplicates++
		return out
	}
	e.stats.Records++
	set := a.set
	touched := e.clearTouched(set.words)
	if fresh {
		// Conditions such as "did not" hold on an empty state.
		copy(touched, set.all)
	}
	t := recordTime(r.Time, ns)
	if t > d.last {
		d.last = t
		orBits(touched, set.last)
	}
	if r.Kind == tag.KindSessionStart && (d.first == 0 || t < d.first) {
		d.first = t
		orBits(touched, set.first)
	}
	named, any := set.matching(r.Kind, r.Name)
	// A filling feature takes the records below its seam from history.
	for _, f := range named {
		if offset >= f.histBefore && f.matches(r) && d.insertTime(f, t, ns) {
			orBits(touched, f.segs)
		}
	}
	for _, f := range any {
		if offset >= f.histBefore && f.matches(r) && d.insertTime(f, t, ns) {
			orBits(touched, f.segs)
		}
	}
	switch r.Kind {
	case tag.KindAppInfo:
		if len(set.appInfo) > 0 {
			for i := range r.AppInfo {
				x := &r.AppInfo[i]
				if f := set.appInfo[x.Key]; f != nil && offset >= f.histBefore {
					if _, read := d.setAttr(f, t, x.Value, &e.strs); read {
						orBits(touched, f.segs)
					}
					if f.histBefore > 0 {
						a.fill.noteLive(d, f, t, x.Value, &e.strs)
					}
				}
			}
		}
	case tag.KindDevice:
		if r.Device != nil {
			for _, f := range set.device {
				if offset < f.histBefore {
					continue
				}
				var v tag.Value
				if s := segments.DeviceField(r.Device, f.field); s != "" {
					v = tag.String(s)
				}
				if _, read := d.setAttr(f, t, v, &e.strs); read {
					orBits(touched, f.segs)
				}
				if f.histBefore > 0 {
					a.fill.noteLive(d, f, t, v, &e.strs)
				}
			}
		}
	}
	var next int64
	out, next = e.evaluate(d, ns, cause{kind: causeRecord, id: offset, msg: r.MessageID}, out)
	if d.timer != 0 {
		next = min(next, unix(d.timer))
	}
	e.setTimer(d, next)
	e.markDirty(d)
	e.armEvict(d)
	return out
}

// Advance fires the timers due at now (and re-evaluates devices restored
// under another segment set), appending the changes to out. It touches
// only the devices whose timers are due.
func (e *Engine) Advance(now time.Time, out []Change) []Change {
	ns := e.clock(now)
	if e.plan {
		out = e.planFills(out)
	}
	out = e.resyncStale(ns, out)
	for {
		// Timers and evictions in time order; at the same instant the
		// timers first, so that an eviction sees the memberships at its
		// instant.
		top, ev := e.top(), e.evictTop()
		switch {
		case top != nil && unix(top.t) <= ns && (ev == nil || top.t <= ev.t):
			out = e.fire(top.d, out)
		case ev != nil && unix(ev.t) <= ns:
			out = e.evictDue(ev.d, ns, out)
		default:
			return out
		}
	}
}

// NextTimer returns the earliest pending timer: when Advance next has work.
func (e *Engine) NextTimer() (time.Time, bool) {
	if len(e.stale) > 0 {
		return time.Unix(e.now, 0).UTC(), true
	}
	top, ev := e.top(), e.evictTop()
	switch {
	case top == nil && ev == nil:
		return time.Time{}, false
	case top == nil || ev != nil && ev.t < top.t:
		return time.Unix(unix(ev.t), 0).UTC(), true
	}
	return time.Unix(unix(top.t), 0).UTC(), true
}

// catchUp brings a device up to now before a record: re-evaluation under
// a new segment set, then its due timers.
func (e *Engine) catchUp(d *device, now int64, out []Change) []Change {
	if d.stale {
		out = e.resync(d, now, out)
	}
	for d.timer != 0 && unix(d.timer) <= now {
		out = e.fire(d, out)
	}
	return out
}

// fire evaluates the time-dependent segments of a device at its timer's
// due time, and sets the next timer exactly.
func (e *Engine) fire(d *device, out []Change) []Change {
	at := unix(d.timer)
	e.stats.Timers++
	set := d.app.set
	var next int64 = never
	if set != nil {
		copy(e.clearTouched(set.words), set.timed)
		out, next = e.evaluate(d, at, cause{kind: causeTimer, id: at}, out)
	}
	e.setTimer(d, next)
	e.markDirty(d)
	return out
}

// evaluate evaluates the segments marked in e.touched, in dependency
// order, and those that refer to a segment whose membership changed. It
// returns the earliest instant at which one of them can change with time
// alone.
func (e *Engine) evaluate(d *device, now int64, c cause, out []Change) ([]Change, int64) {
	set := d.app.set
	touched := e.touched[:set.words]
	wait := d.app.wait // waiting for their history: not evaluated
	next := never
	for w := range touched {
		for touched[w] != 0 {
			b := bits.TrailingZeros64(touched[w])
			touched[w] &^= 1 << b
			if wait != nil && wait[w]&(1<<b) != 0 {
				continue
			}
			cs := set.segs[w<<6|b]
			v, n := e.eval(cs.root, d, now)
			next = min(next, n)
			if v == d.member(cs.slot) {
				continue
			}
			d.setMember(cs.slot, v)
			if v {
				cs.size++
			} else {
				cs.size--
			}
			out = append(out, e.change(d, cs.seg.Name, cs.seg.Version, v, now, c))
			for _, s := range cs.refBy {
				touched[s>>6] |= 1 << (s & 63)
			}
		}
	}
	return out, next
}

func (e *Engine) clearTouched(words int) []uint64 {
	if len(e.touched) < words {
		e.touched = make([]uint64, words)
	}
	t := e.touched[:words]
	clear(t)
	return t
}

func (e *Engine) newDevice(a *appState, h uint64, key []byte) *device {
	d := &device{app: a, offset: -1, fp: a.set.fp, attached: true}
	d.setKey(key, len(a.name))
	e.addDevice(d, h)
	return d
}

// lookup finds the device with a key (h its hash).
func (e *Engine) lookup(h uint64, key []byte) *device {
	if d := e.devs.get(h); d != nil && d.keyIs(key) {
		return d
	}
	if len(e.collide) > 0 {
		return e.collide[string(key)]
	}
	return nil
}

func (e *Engine) addDevice(d *device, h uint64) {
	if e.devs.get(h) == nil {
		e.devs.put(h, d)
	} else {
		e.collide[d.key()] = d
	}
	a := d.app
	d.idx = int32(len(a.devs))
	a.devs = append(a.devs, d)
	e.count++
}

type dirtyEntry struct {
	d        *device // nil: removed since
	key, end int     // its key in dirtyBuf from key, then its encoded state up to end
	again    bool    // changed again since: encode at Dirty
}

// markDirty records that a device's state changed. Call it after the
// change is complete.
func (e *Engine) markDirty(d *device) {
	if d.dirtyGen == e.gen {
		e.dirty[d.dirtyIdx].again = true
		return
	}
	key := len(e.dirtyBuf)
	e.dirtyBuf = d.appendKey(e.dirtyBuf)
	e.dirtyBuf = e.appendState(e.dirtyBuf, d)
	d.dirtyGen, d.dirtyIdx = e.gen, int32(len(e.dirty))
	e.dirty = append(e.dirty, dirtyEntry{d: d, key: key, end: len(e.dirtyBuf)})
}

// removeDevice forgets a device; its key becomes a tombstone.
func (e *Engine) removeDevice(d *device) {
	a := d.app
	if a.set != nil && d.attached {
		d.mem.each(func(slot int) { a.set.segs[slot].size-- })
	}
	last := a.devs[len(a.devs)-1]
	a.devs[d.idx] = last
	last.idx = d.idx
	a.devs = a.devs[:len(a.devs)-1]
	key := d.key()
	if !e.devs.del(keyHash(d.appendKey(e.kbuf[:0])), d) {
		delete(e.collide, key)
	}
	delete(e.pending, d)
	if d.dirtyGen == e.gen {
		e.dirty[d.dirtyIdx].d = nil
	}
	e.count--
	e.setTimer(d, never)
	d.app = nil
	e.tombs = append(e.tombs, key)
}

// Size returns the live number of devices in a segment.
func (e *Engine) Size(app, segment string) (int, bool) {
	cs := e.seg(app, segment)
	if cs == nil {
		return 0, false
	}
	return cs.size, true
}

// Members calls fn with the id of each device in a segment, in no
// particular order, until fn returns false.
func (e *Engine) Members(app, segment string, fn func(deviceID string) bool) error {
	cs := e.seg(app, segment)
	if cs == nil {
		return fmt.Errorf("members: %w: %s/%s", ErrNoSegment, app, segment)
	}
	for _, d := range e.apps[app].devs {
		if d.attached && d.member(cs.slot) && !fn(d.id()) {
			break
		}
	}
	return nil
}

// Member reports whether a device is in a segment.
func (e *Engine) Member(app, segment, deviceID string) bool {
	cs := e.seg(app, segment)
	d := e.device(app, deviceID)
	return cs != nil && d != nil && d.attached && d.member(cs.slot)
}

// Devices returns the number of device states the engine holds.
func (e *Engine) Devices() int { return e.count }

func (e *Engine) device(app, id string) *device {
	k := append(append(append(e.kbuf[:0], app...), '/'), id...)
	e.kbuf = k
	return e.lookup(keyHash(k), k)
}

// Stats returns the counters.
func (e *Engine) Stats() Stats {
	s := e.stats
	s.Devices = e.count
	return s
}

// ErrNoSegment is returned for a segment the engine does not have.
var ErrNoSegment = errors.New("no such active segment")

func (e *Engine) seg(app, segment string) *cseg {
	a := e.apps[app]
	if a == nil || a.set == nil {
		return nil
	}
	return a.set.byName[segment]
}
