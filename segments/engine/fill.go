package engine

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// Filling new segments from history
//
// A segment saved today over "the last 14 days" must count the last 14
// days at once. When a set brings features the engine did not track (or
// must now keep more of), the engine plans a fill per app: it picks a seam,
// the input offset from which it applies records to those features live,
// clears whatever the features held, and asks for the records below the
// seam from the history store (the raw tags the sink wrote). Records at or
// after the seam feed the features live as usual; records below it are
// left to the fill, so that none counts twice or is missed at the seam,
// whichever comes first. The segments that read a filling feature are not
// evaluated until the fill is done (their memberships stay as they were);
// then every device of the app is evaluated for them once.
//
// The seam is the offset after the newest input offset the engine has
// seen (applied, skipped, or restored in a device's state), and at least
// the position the processor resumes from (SetPosition): every record
// below it has been, or on a replay will be, handed to the engine, and
// none at or after it has been applied to the new features.
//
// Exactness. A did feature's kept times are the newest that matter among a
// multiset: the order in which times arrive does not change them. An
// attribute's value and the start of its run are a fold over the records
// in arrival order; the engine keeps, during a fill, the live records that
// set a filling attribute, and when a device's history arrives it folds
// the history, then those live records, in order. first_session and
// last_seen are a minimum and a maximum: the fill applies them for every
// device, which repeats nothing. History is deduplicated per device by
// offset and by message id (the store may hold a record twice); a record
// counts no later than when it arrived (HistoryRecord.Arrived), as it did
// live.
//
// A restore during a fill (the processor crashed, or the partition moved)
// finds the features in the filling state in the app's meta record: the
// next plan clears them again and starts over from a new seam.

// fill is a fill under way for one app.
type fill struct {
	id    uint64
	app   *appState
	q     HistoryQuery
	feats []*feature // did and attribute features to fill
	base  bool       // first_session and last_seen too
	old   *segSet    // the set before the one that needs the fill, for the cause of changes
	// live holds, per device, the records at or after the seam that set a
	// filling attribute, in arrival order.
	live    map[*device][]liveAttr
	devices int
	records int64
	total   int64               // records the store holds for the fill, -1 unknown
	seen    map[string]struct{} // scratch: message ids of one device's history
}

type liveAttr struct {
	feat uint32
	t    uint32
	v    tag.Value
}

// Fill is a fill the processor must run: read Query from the history store
// (for the engine's partition), hand each device's records to ApplyHistory,
// then call FinishFill, or AbandonFill if the history cannot be read.
type Fill struct {
	ID    uint64
	Query HistoryQuery
}

// ErrNoFill is returned for a fill that is not under way (any more): a
// newer segment set replaced it.
var ErrNoFill = errors.New("no such fill under way")

// SetPosition tells the engine the input offset the processor resumes
// from: every record below it has been applied (or is in a restored
// state). Call it after restoring, before the first Apply.
func (e *Engine) SetPosition(next int64) {
	if next > e.position {
		e.position = next
	}
}

// Fills plans the fills that the segment set needs (if not done yet) and
// returns every fill under way, by app, and the changes of segments that
// needed no fill after all (nothing came before the seam). now is the
// processor's clock.
func (e *Engine) Fills(now time.Time, out []Change) ([]Fill, []Change) {
	e.clock(now)
	out = e.planFills(out)
	var fills []Fill
	for _, a := range e.apps {
		if a.fill != nil {
			fills = append(fills, Fill{ID: a.fill.id, Query: a.fill.q})
		}
	}
	sort.Slice(fills, func(i, j int) bool { return fills[i].Query.App < fills[j].Query.App })
	return fills, out
}

// planFills starts a fill for each app whose registry has features that
// need their history. With no input before the seam (a partition read from
// its first record) there is nothing to fill: the features are complete,
// and the segments that waited are evaluated at once.
func (e *Engine) planFills(out []Change) []Change {
	if !e.plan {
		return out
	}
	e.plan = false
	names := make([]string, 0, len(e.apps))
	for name := range e.apps {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		if a := e.apps[name]; a.set != nil && a.fill == nil {
			out = e.planApp(a, out)
		}
	}
	return out
}

// computeWait marks the segments of an app that read a feature whose
// history is needed or being filled: they are not evaluated until then.
func (a *appState) computeWait(fills bool) {
	set := a.set
	a.wait = nil
	if !fills {
		return // features count from when they were first tracked: nothing waits
	}
	mark := func(bits []uint64) {
		if bitsEmpty(bits) {
			return
		}
		if a.wait == nil {
			a.wait = newBits(set.words)
		}
		orBits(a.wait, bits)
	}
	if h := a.reg.base.hist; h == histNeeded || h == histFilling {
		mark(set.first)
		mark(set.last)
	}
	for _, f := range set.feats {
		if h := a.reg.feats[f.id].hist; h == histNeeded || h == histFilling {
			mark(f.segs)
		}
	}
}

func (e *Engine) planApp(a *appState, out []Change) []Change {
	set := a.set
	seam := e.position
	a.computeWait(e.opts.Fill)
	var feats []*feature
	for _, f := range set.feats {
		if a.reg.feats[f.id].hist == histNeeded {
			feats = append(feats, f)
		}
	}
	base := a.reg.base.hist == histNeeded
	if len(feats) == 0 && !base {
		return out
	}
	e.metas[a.name] = true
	// Registered before the engine had a clock (a processor starting):
	// tracked from now.
	for _, f := range feats {
		if r := a.reg.feats[f.id]; r.since == 0 {
			r.since = e.now
			a.reg.feats[f.id] = r
		}
	}
	if base && a.reg.base.since == 0 {
		a.reg.base.since = e.now
	}
	if seam <= 0 {
		// Nothing came before: tracked from the start is complete.
		for _, f := range feats {
			r := a.reg.feats[f.id]
			r.hist, r.seam = histComplete, -1
			a.reg.feats[f.id] = r
		}
		if base {
			a.reg.base.hist, a.reg.base.seam = histComplete, -1
		}
		return e.release(a, a.prevSet, out)
	}
	if !e.opts.Fill {
		for _, f := range feats {
			r := a.reg.feats[f.id]
			r.hist, r.seam, r.why = histPartial, -1, "no history store"
			a.reg.feats[f.id] = r
		}
		if base {
			a.reg.base.hist, a.reg.base.seam, a.reg.base.why = histPartial, -1, "no history store"
		}
		return out
	}
	e.fillSeq++
	fl := &fill{id: e.fillSeq, app: a, feats: feats, base: base, old: a.prevSet,
		live: map[*device][]liveAttr{}, seen: map[string]struct{}{}, total: -1}
	fl.q = HistoryQuery{App: a.name, Before: seam}
	if base {
		a.reg.base.hist, a.reg.base.seam = histFilling, seam
		a.reg.base.since = min(a.reg.base.since, e.now)
	}
	since := int64(0) // earliest event time any filled feature reads; 0 all
	bounded := !base
	kinds := map[tag.Kind]bool{}
	names := map[tag.Kind][]string{}
	anyName := map[tag.Kind]bool{}
	for _, f := range feats {
		r := a.reg.feats[f.id]
		r.hist, r.seam = histFilling, seam
		a.reg.feats[f.id] = r
		f.histBefore = seam
		switch f.kind {
		case featDid:
			span := never
			if len(f.span) > 0 {
				span = f.span[0]
			}
			if span == never {
				bounded = false
			} else if t := e.now - span; since == 0 || t < since {
				since = t
			}
			for k := tag.Kind(0); int(k) < len(set.kinds); k++ {
				if f.kinds&(1<<k) == 0 {
					continue
				}
				kinds[k] = true
				if f.anyName || !k.Named() {
					anyName[k] = true
				} else if !slices.Contains(names[k], f.name) {
					names[k] = append(names[k], f.name)
				}
			}
		case featAppInfo:
			bounded = false
			kinds[tag.KindAppInfo], anyName[tag.KindAppInfo] = true, true
		case featDevice:
			bounded = false
			kinds[tag.KindDevice], anyName[tag.KindDevice] = true, true
		}
	}
	if bounded && since > 0 {
		fl.q.Since = time.Unix(since, 0).UTC()
	}
	if !base {
		for _, k := range tag.Kinds() {
			if !kinds[k] {
				continue
			}
			fl.q.Kinds = append(fl.q.Kinds, k)
			if !anyName[k] {
				if fl.q.Names == nil {
					fl.q.Names = map[tag.Kind][]string{}
				}
				sort.Strings(names[k])
				fl.q.Names[k] = names[k]
			}
		}
	}
	// What the features held is replaced by the fill: history below the
	// seam, live records from it.
	for _, d := range a.devs {
		if d.clearFeatures(feats) {
			e.markDirty(d)
		}
	}
	a.fill = fl
	return out
}

// clearFeatures drops a device's data of the given features.
func (d *device) clearFeatures(feats []*feature) bool {
	changed := false
	for _, f := range feats {
		if f.kind == featDid {
			if i := d.entry(f.id); i >= 0 {
				d.times = slices.Delete(d.times, i, i+2+int(d.times[i+1]))
				changed = true
			}
			continue
		}
		if n := len(d.attrs); n > 0 {
			d.attrs = slices.DeleteFunc(d.attrs, func(a attrVal) bool { return a.id == f.id })
			changed = changed || len(d.attrs) != n
		}
	}
	return changed
}

// dropFill abandons an app's fill without a trace in the registry (a new
// set replaces it; register decides what its features need).
func (e *Engine) dropFill(a *appState) {
	for _, f := range a.fill.feats {
		f.histBefore = 0
	}
	a.fill = nil
}

// ApplyHistory applies the history of one device to a fill: recs are the
// device's records below the fill's seam, in offset order (all of one
// device's records in one call). Only the filling features take them; the
// segments that wait for the fill are not evaluated (FinishFill does
// that). A device the engine did not hold is evaluated at once for the
// other segments (those that hold on an empty state, such as "not did"),
// as a new device is; the changes are appended to out.
func (e *Engine) ApplyHistory(id uint64, deviceID string, recs []HistoryRecord, out []Change) ([]Change, error) {
	a, fl := e.fillByID(id)
	if fl == nil {
		return out, fmt.Errorf("apply history: fill %d: %w", id, ErrNoFill)
	}
	if len(recs) == 0 {
		return out, nil
	}
	e.kbuf = append(append(append(e.kbuf[:0], a.name...), '/'), deviceID...)
	h := keyHash(e.kbuf)
	d := e.lookup(h, e.kbuf)
	created := d == nil
	if created {
		// A device the engine never held (its records came before the app
		// had segments).
		d = e.newDevice(a, h, e.kbuf)
	}
	ns := e.now
	clear(fl.seen)
	var attrs []liveAttr // the history of filling attributes, in order
	last := int64(-1)
	for i := range recs {
		hr := &recs[i]
		r := hr.Record
		if hr.Offset >= fl.q.Before {
			return out, fmt.Errorf("apply history: fill %d: device %q: a record at offset %d, at or after the seam %d", id, deviceID, hr.Offset, fl.q.Before)
		}
		if hr.Offset < last {
			return out, fmt.Errorf("apply history: fill %d: device %q: offsets out of order (%d after %d)", id, deviceID, hr.Offset, last)
		}
		if hr.Offset == last {
			continue // the store holds it twice
		}
		last = hr.Offset
		if r.MessageID != "" {
			if _, dup := fl.seen[r.MessageID]; dup {
				continue
			}
			fl.seen[r.MessageID] = struct{}{}
		}
		fl.records++
		tt := r.Time
		if !hr.Arrived.IsZero() && hr.Arrived.Before(tt) {
			tt = hr.Arrived
		}
		t := recordTime(tt, ns)
		if t > d.last {
			d.last = t
		}
		if r.Kind == tag.KindSessionStart && (d.first == 0 || t < d.first) {
			d.first = t
		}
		for _, f := range fl.feats {
			switch f.kind {
			case featDid:
				if f.kinds&(1<<r.Kind) != 0 && (f.anyName || f.name == r.Name) && f.matches(r) {
					d.insertTime(f, t, ns)
				}
			case featAppInfo:
				if r.Kind == tag.KindAppInfo {
					if v, ok := lookupExtra(r.AppInfo, f.key); ok {
						attrs = append(attrs, liveAttr{feat: f.id, t: t, v: v})
					}
				}
			case featDevice:
				if r.Kind == tag.KindDevice && r.Device != nil {
					var v tag.Value
					if s := segments.DeviceField(r.Device, f.field); s != "" {
						v = tag.String(s)
					}
					attrs = append(attrs, liveAttr{feat: f.id, t: t, v: v})
				}
			}
		}
	}
	if len(attrs) > 0 {
		// Fold the attributes in arrival order: history, then the live
		// records that came during the fill.
		live := fl.live[d]
		for _, f := range fl.feats {
			if f.kind == featDid {
				continue
			}
			d.attrs = slices.DeleteFunc(d.attrs, func(x attrVal) bool { return x.id == f.id })
			for _, x := range attrs {
				if x.feat == f.id {
					d.setAttr(f, x.t, x.v, &e.strs)
				}
			}
			for _, x := range live {
				if x.feat == f.id {
					d.setAttr(f, x.t, x.v, &e.strs)
				}
			}
		}
		if len(d.attrs) == 0 {
			d.attrs = nil
		}
	}
	fl.devices++
	if created && e.evictAt(d) <= ns {
		// Gone before the fill: its history does not bring it back
		// (evict.go); nothing was written for it.
		e.removeDevice(d)
		e.tombs = e.tombs[:len(e.tombs)-1]
		return out, nil
	}
	if created {
		copy(e.clearTouched(a.set.words), a.set.all)
		var next int64
		out, next = e.evaluate(d, ns, cause{kind: causeSegment, id: int64(a.set.fp), old: fl.old}, out)
		e.setTimer(d, next)
	}
	e.markDirty(d)
	e.armEvict(d)
	return out, nil
}

func lookupExtra(xs []tag.Extra, key string) (tag.Value, bool) {
	for _, x := range xs {
		if x.Key == key {
			return x.Value, true
		}
	}
	return tag.Value{}, false
}

// noteLive keeps a live record's value of a filling attribute, for the
// fold of the device's history.
func (fl *fill) noteLive(d *device, f *feature, t uint32, v tag.Value, in *interner) {
	if v.Type == tag.TypeString {
		v.Str = in.intern(v.Str) // the record's strings may alias its buffer
	}
	fl.live[d] = append(fl.live[d], liveAttr{feat: f.id, t: t, v: v})
}

// SetFillTotal records how many records the store holds for a fill, for
// its progress (Status.Fill.Total).
func (e *Engine) SetFillTotal(id uint64, n int64) {
	if _, fl := e.fillByID(id); fl != nil {
		fl.total = n
	}
}

func (e *Engine) fillByID(id uint64) (*appState, *fill) {
	for _, a := range e.apps {
		if a.fill != nil && a.fill.id == id {
			return a, a.fill
		}
	}
	return nil, nil
}

// FinishFill ends a fill whose history has all been applied: its features
// become complete, and every device of the app is evaluated for the
// segments that waited, at now. It returns the resulting changes (and
// those of devices the history brought).
func (e *Engine) FinishFill(id uint64, now time.Time, out []Change) ([]Change, error) {
	return e.endFill(id, now, "", out)
}

// AbandonFill ends a fill whose history cannot be read (no history store,
// or it failed): its features count from when they were first tracked
// (Status says why), and the segments that waited are evaluated at now on
// what the engine holds.
func (e *Engine) AbandonFill(id uint64, now time.Time, why string, out []Change) ([]Change, error) {
	if why == "" {
		why = "abandoned"
	}
	return e.endFill(id, now, why, out)
}

func (e *Engine) endFill(id uint64, now time.Time, why string, out []Change) ([]Change, error) {
	a, fl := e.fillByID(id)
	if fl == nil {
		return out, fmt.Errorf("end fill %d: %w", id, ErrNoFill)
	}
	out = e.Advance(now, out)
	hist, seam := uint8(histComplete), fl.q.Before
	if why != "" {
		hist, seam = histPartial, -1
	}
	for _, f := range fl.feats {
		r := a.reg.feats[f.id]
		r.hist, r.seam, r.why = hist, seam, why
		a.reg.feats[f.id] = r
		f.histBefore = 0
	}
	if fl.base {
		a.reg.base.hist, a.reg.base.seam, a.reg.base.why = hist, seam, why
	}
	a.fill = nil
	e.metas[a.name] = true
	return e.release(a, fl.old, out), nil
}

// release evaluates, at now, the segments of an app that waited for their
// history, once the registry no longer has them wait.
func (e *Engine) release(a *appState, old *segSet, out []Change) []Change {
	waited := a.wait
	a.computeWait(e.opts.Fill)
	if waited == nil {
		return out
	}
	if a.wait != nil {
		for w := range waited {
			waited[w] &^= a.wait[w]
		}
	}
	set := a.set
	c := cause{kind: causeSegment, id: int64(set.fp), old: old}
	for _, d := range sortedDevices(a.devs) {
		if !d.attached {
			continue
		}
		touched := e.clearTouched(set.words)
		copy(touched, waited)
		var next int64
		out, next = e.evaluate(d, e.now, c, out)
		if d.timer != 0 {
			next = min(next, unix(d.timer))
		}
		e.setTimer(d, next)
		e.markDirty(d)
	}
	return out
}
