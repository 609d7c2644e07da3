package engine

import (
	"cmp"
	"fmt"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/openengage/engage/segments"
)

// registry says, per feature of an app, since when it has been tracked
// and whether the history before that is known: filled from the history
// store, being filled, or unknown. It is kept in the app's meta record.
type registry struct {
	feats map[uint32]regFeat
	// base is first_session and last_seen, which every device of an app
	// with segments tracks: known since the app's first segments.
	base regFeat
	// known is false until the app has had segments (base is then set).
	known bool
}

// The history states of a feature.
const (
	histComplete = iota // every record the partition ever had is counted
	histNeeded          // new: to fill from history at the next plan
	histFilling         // a fill is under way (seam in regFeat.seam)
	histPartial         // no fill: counts from since
)

type regFeat struct {
	since int64 // tracked since (Unix seconds)
	k     int   // times kept (did features)
	span  int64 // span of the newest time kept
	hist  uint8 // histComplete, histNeeded, histFilling or histPartial
	seam  int64 // histComplete after a fill, histFilling: the input offsets below it came from history; -1: none
	// why is, for histPartial, why the history was not filled (kept in
	// memory only).
	why string
}

// maxDeleted bounds the deleted segments an app remembers (to emit exits
// for restored states that predate a deletion).
const maxDeleted = 256

// SetSegments replaces the engine's segments: segs is the complete set,
// for every app the partition serves. It first fires the timers due at
// now under the old set. Each app whose set changed is compiled, its
// features are rebuilt (data of features no longer read is dropped; new
// features start empty) and every device of the app is re-evaluated for
// the segments that changed, in dependency order; a deleted segment's
// members exit. This is the one operation that visits every device.
//
// A segment that does not compile (or refers to one that does not) is
// left out, inactive, and its Status has Err set; the others are applied.
// The returned error is for a set that cannot be applied at all (a nil
// segment, an empty name, a name given twice in one app); then nothing
// changes.
func (e *Engine) SetSegments(segs []*segments.Segment, now time.Time) ([]Change, []Status, error) {
	byApp := map[string][]*segments.Segment{}
	seen := map[[2]string]bool{}
	for i, s := range segs {
		switch {
		case s == nil:
			return nil, nil, fmt.Errorf("set segments: segment %d is nil", i)
		case s.App == "" || s.Name == "":
			return nil, nil, fmt.Errorf("set segments: segment %d (%q of app %q) needs an app and a name", i, s.Name, s.App)
		case strings.ContainsRune(s.App, 0):
			return nil, nil, fmt.Errorf("set segments: app %q contains a NUL byte", s.App)
		case seen[[2]string{s.App, s.Name}]:
			return nil, nil, fmt.Errorf("set segments: segment %q of app %q is given twice", s.Name, s.App)
		}
		seen[[2]string{s.App, s.Name}] = true
		byApp[s.App] = append(byApp[s.App], s)
	}
	out := e.Advance(now, nil)
	ns := e.now
	e.lastApp = nil
	names := make([]string, 0, len(e.apps)+len(byApp))
	for app := range e.apps {
		names = append(names, app)
	}
	for app := range byApp {
		if e.apps[app] == nil {
			names = append(names, app)
		}
	}
	sort.Strings(names)
	for _, app := range names {
		segs := byApp[app]
		a := e.apps[app]
		if len(segs) == 0 {
			out = e.dropApp(a, ns, out)
			continue
		}
		if a == nil {
			a = &appState{name: app}
			e.apps[app] = a
		}
		set := compileApp(app, segs, &e.opts)
		if a.set != nil && a.set.fp == set.fp {
			a.set.invalid = set.invalid
			continue
		}
		out = e.switchSet(a, set, ns, out)
	}
	out = e.planFills(out)
	return out, e.Statuses(), nil
}

// switchSet moves an app to a new compiled set.
func (e *Engine) switchSet(a *appState, set *segSet, now int64, out []Change) []Change {
	old := a.set
	e.register(a, set, now)
	// The segments to evaluate: new or changed definitions. A segment that
	// refers to one of them is evaluated too if its membership changes.
	changed := newBits(set.words)
	for _, cs := range set.segs {
		var prev *cseg
		if old != nil {
			prev = old.byName[cs.seg.Name]
		}
		if prev == nil || prev.sig != cs.sig {
			setBit(changed, cs.slot)
		}
		if prev != nil {
			cs.size = prev.size
		}
	}
	if old != nil {
		for _, cs := range old.segs {
			if set.byName[cs.seg.Name] == nil {
				if a.deleted == nil {
					a.deleted = map[uint32]deletedSeg{}
				}
				if len(a.deleted) >= maxDeleted {
					for h := range a.deleted {
						delete(a.deleted, h)
						break
					}
				}
				a.deleted[cs.hash] = deletedSeg{name: cs.seg.Name, version: cs.seg.Version, fp: set.fp}
			}
		}
	}
	for _, cs := range set.segs {
		delete(a.deleted, cs.hash)
	}
	a.set, a.prevSet = set, old
	a.computeWait(e.opts.Fill)
	e.metas[a.name] = true
	c := cause{kind: causeSegment, id: int64(set.fp), old: old}
	// Visit the devices in an order that does not depend on how the engine
	// came by them (applied or restored), so that the changes come out in
	// the same order.
	for _, d := range sortedDevices(a.devs) {
		// A state restored before the app had a set (pending) was written
		// under the set its fingerprint names: the same set needs no
		// evaluation, another one needs all of it.
		pending := !d.attached
		same := pending && d.fp == set.fp
		var restored uint32 // a pending state's timer, not scheduled yet
		if pending {
			restored, d.timer = d.timer, 0
		}
		out = e.remap(d, old, now, restored, out)
		touched := e.clearTouched(set.words)
		switch {
		case pending && !same:
			copy(touched, set.all)
		case !pending:
			copy(touched, changed)
		}
		d.fp = set.fp
		d.stale = false
		var next int64
		out, next = e.evaluate(d, now, c, out)
		switch {
		case !pending && d.timer != 0:
			next = min(next, unix(d.timer)) // due after now: Advance ran first
		case same && restored != 0:
			next = min(next, unix(restored)) // fires at its due time, as it would have
		}
		// (A state from another set was evaluated in full at now: its old
		// timer goes.)
		e.setTimer(d, next)
		if !same {
			e.markDirty(d)
		}
	}
	if old == nil || old.look != set.look {
		e.rearmEvicts(a)
	}
	e.stale = e.stale[:0]
	for _, b := range e.apps {
		for _, d := range b.devs {
			if d.stale {
				e.stale = append(e.stale, d)
			}
		}
	}
	return out
}

// sortedDevices returns the devices ordered by key hash, then key: an
// order that does not depend on how the engine came by them.
func sortedDevices(devs []*device) []*device {
	devs = slices.Clone(devs)
	slices.SortFunc(devs, func(x, y *device) int {
		if x.kh != y.kh {
			return cmp.Compare(x.kh, y.kh)
		}
		return strings.Compare(x.key(), y.key())
	})
	return devs
}

// remap carries a device's memberships over to its app's new set (from
// the old set, or from the name hashes of a restored state), emitting
// exits for the segments that are gone, and drops the data of features
// the set no longer reads.
func (e *Engine) remap(d *device, old *segSet, now int64, restored uint32, out []Change) []Change {
	a := d.app
	set := a.set
	var m members
	exit := func(name string, version int64, fp uint32) {
		out = append(out, e.change(d, name, version, false, now, cause{kind: causeDeleted, id: int64(fp)}))
	}
	switch {
	case !d.attached:
		for _, h := range e.pending[d] {
			if cs := set.hashed(h); cs != nil {
				m.set(cs.slot, true)
				cs.size++
			} else if del, ok := a.deleted[h]; ok {
				exit(del.name, del.version, del.fp)
			}
		}
		delete(e.pending, d)
	case old != nil:
		d.mem.each(func(slot int) {
			cs := old.segs[slot]
			if ncs := set.byName[cs.seg.Name]; ncs != nil {
				m.set(ncs.slot, true)
			} else {
				exit(cs.seg.Name, cs.seg.Version, set.fp)
			}
		})
	}
	d.mem = m
	d.attached = true
	// A restored device may have a timer due before now, which evaluates
	// at its due time: prune only what no evaluation from then on reads.
	pruneAt := now
	if restored != 0 {
		pruneAt = min(pruneAt, unix(restored))
	}
	d.dropFeatures(set, pruneAt)
	return out
}

// hashed returns the segment whose name hashes to h.
func (s *segSet) hashed(h uint32) *cseg {
	for _, cs := range s.segs {
		if cs.hash == h {
			return cs
		}
	}
	return nil
}

// dropApp removes an app that has no segments any more: its members exit
// and its device states are deleted.
func (e *Engine) dropApp(a *appState, now int64, out []Change) []Change {
	if a.fill != nil {
		e.dropFill(a)
	}
	if a.set != nil {
		for _, d := range sortedDevices(a.devs) {
			if d.attached {
				d.mem.each(func(slot int) {
					cs := a.set.segs[slot]
					out = append(out, e.change(d, cs.seg.Name, cs.seg.Version, false, now, cause{kind: causeDeleted}))
				})
			}
			e.removeDevice(d)
		}
	}
	for len(a.devs) > 0 {
		e.removeDevice(a.devs[len(a.devs)-1])
	}
	delete(e.apps, a.name)
	e.lastApp = nil
	e.metas[a.name] = true
	return out
}

// register updates the app's feature registry for a new set: a feature new
// to the set, or one that must now keep more than it kept, is tracked from
// now and needs its history (the next plan fills it, or says it cannot).
// A fill under way for the app is abandoned: its features need their
// history again, from a new seam.
func (e *Engine) register(a *appState, set *segSet, now int64) {
	if !a.reg.known {
		a.reg.known = true
		a.reg.base = regFeat{since: now, hist: histNeeded, seam: -1}
	}
	if a.fill != nil {
		e.dropFill(a)
	}
	if a.reg.base.hist == histFilling {
		a.reg.base.hist = histNeeded
	}
	need := a.reg.base.hist == histNeeded
	feats := make(map[uint32]regFeat, len(set.feats))
	for _, f := range set.feats {
		r, ok := a.reg.feats[f.id]
		k, span := f.k, int64(0)
		if len(f.span) > 0 {
			span = f.span[0]
		}
		switch {
		case !ok:
			r = regFeat{since: now, k: k, span: span, hist: histNeeded, seam: -1}
		case k > r.k || span > r.span:
			r = regFeat{since: now, k: max(k, r.k), span: max(span, r.span), hist: histNeeded, seam: -1}
		case r.hist == histFilling:
			r.hist = histNeeded
		}
		need = need || r.hist == histNeeded
		feats[f.id] = r
	}
	a.reg.feats = feats
	if need {
		e.plan = true
	}
}

// resync re-evaluates every segment of a device restored from a state
// written under another segment set.
func (e *Engine) resync(d *device, now int64, out []Change) []Change {
	set := d.app.set
	d.stale = false
	if set == nil || d.attached {
		return out
	}
	d.timer = 0 // evaluated in full at now: the old timer goes
	out = e.remap(d, nil, now, 0, out)
	copy(e.clearTouched(set.words), set.all)
	var next int64
	out, next = e.evaluate(d, now, cause{kind: causeSegment, id: int64(set.fp), old: set}, out)
	d.fp = set.fp
	e.setTimer(d, next)
	e.markDirty(d)
	return out
}

func (e *Engine) resyncStale(now int64, out []Change) []Change {
	for _, d := range e.stale {
		if d.stale && d.app != nil {
			out = e.resync(d, now, out)
		}
	}
	e.stale = e.stale[:0]
	return out
}

// Status says whether a segment is active and whether its memberships are
// computed from all the history of the partition, are being filled from
// the history store, or count from when its conditions started being
// tracked.
type Status struct {
	App     string
	Segment string
	Version int64
	// Err is why the segment is not active (it did not compile, or refers
	// to a segment that did not).
	Err error
	// Complete is true when every condition reads all the history: data
	// tracked since the partition's first record, or filled from the
	// history store, or (for a window) tracked for at least the window.
	Complete bool
	// Filling is true while the history of its conditions is being read
	// from the history store. The segment is not evaluated meanwhile: its
	// memberships are those from before (none for a new segment), and the
	// fill evaluates every device once it is done.
	Filling bool
	// Fill is the progress of the fill (Filling), or the fill that
	// completed it.
	Fill FillProgress
	// CountsFrom is, when not complete, the instant since which the
	// newest-tracked condition counts: history before it is unknown (or,
	// while filling, not read yet).
	CountsFrom time.Time
	// CompleteAt is, when neither complete nor filling, when the segment
	// becomes complete as its windows fill; zero if never (a count over
	// all the history, a last time without bound, or an attribute the app
	// set before it was tracked and has not sent since).
	CompleteAt time.Time
	// Why explains each incomplete condition.
	Why string
}

// FillProgress is where a fill from the history store stands.
type FillProgress struct {
	// Before is the seam: the input offsets below it come from history.
	// -1: no fill.
	Before int64
	// Since is the earliest event time read; zero: all the history.
	Since time.Time
	// Devices and Records count what the fill has applied so far; Total
	// is how many records the store holds for it (-1 unknown).
	Devices int
	Records int64
	Total   int64
}

// Statuses returns the status of every segment, valid or not, of every
// app, sorted by app and name.
func (e *Engine) Statuses() []Status {
	var sts []Status
	for _, a := range e.apps {
		if a.set == nil {
			continue
		}
		for _, cs := range a.set.segs {
			sts = append(sts, e.status(a, cs))
		}
		for _, st := range a.set.invalid {
			sts = append(sts, *st)
		}
	}
	sort.Slice(sts, func(i, j int) bool {
		if sts[i].App != sts[j].App {
			return sts[i].App < sts[j].App
		}
		return sts[i].Segment < sts[j].Segment
	})
	return sts
}

func (e *Engine) status(a *appState, cs *cseg) Status {
	st := Status{App: a.name, Segment: cs.seg.Name, Version: cs.seg.Version, Complete: true, Fill: FillProgress{Before: -1}}
	var from, at int64
	forever := false
	var why []string
	note := func(r regFeat, span int64, text string) {
		switch r.hist {
		case histComplete:
			if r.seam > st.Fill.Before {
				st.Fill.Before = r.seam
			}
			return
		case histNeeded, histFilling:
			if !e.opts.Fill {
				break // counts from since, as a partial one
			}
			st.Complete, st.Filling = false, true
			from = max(from, r.since)
			why = append(why, text+": filling from history")
			return
		}
		if span != never && e.now >= r.since+span {
			return
		}
		st.Complete = false
		from = max(from, r.since)
		since := time.Unix(r.since, 0).UTC().Format(time.RFC3339)
		because := ""
		if r.why != "" {
			because = " (history not filled: " + r.why + ")"
		}
		if span == never {
			forever = true
			why = append(why, fmt.Sprintf("%s: counts from %s; what came before is not known%s", text, since, because))
		} else {
			at = max(at, r.since+span)
			why = append(why, fmt.Sprintf("%s: counts from %s, complete from %s%s", text, since, time.Unix(r.since+span, 0).UTC().Format(time.RFC3339), because))
		}
	}
	var walk func(n *cnode, depth int)
	walk = func(n *cnode, depth int) {
		for _, x := range n.args {
			walk(x, depth)
		}
		var span int64 // how long after its start the data is complete; never: not by waiting
		switch n.op {
		case opDid:
			span = never
			if n.win > 0 {
				span = n.win
			}
		case opLastTag:
			span = never
			if !n.rng.abs && n.rng.max != never {
				span = n.rng.max + 1
			}
		case opAttr, opUnchanged:
			span = never
		case opFirst, opLastSeen:
			note(a.reg.base, never, segments.Format(n.src))
			return
		case opRef:
			if depth < 64 {
				walk(n.ref.root, depth+1)
			}
			return
		default:
			return
		}
		note(a.reg.feats[n.feat.id], span, segments.Format(n.src))
	}
	walk(cs.root, 0)
	if f := a.fill; f != nil && st.Filling {
		st.Fill = FillProgress{Before: f.q.Before, Since: f.q.Since, Devices: f.devices, Records: f.records, Total: f.total}
	}
	if !st.Complete {
		st.CountsFrom = time.Unix(from, 0).UTC()
		if !forever && !st.Filling {
			st.CompleteAt = time.Unix(at, 0).UTC()
		}
		st.Why = strings.Join(why, "; ")
	}
	return st
}

// appKey returns the changelog key of an app's meta record.
func appKey(app string) string { return "\x00" + app }
