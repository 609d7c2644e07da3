package engine

// Eviction: memory bounded under churn.
//
// A device that is gone (no record for longer than every window its app's
// segments read, plus a margin) is evicted: the memberships it still holds
// exit (cause CauseEvicted), then its state is deleted and Dirty hands out
// a tombstone for its key. Its horizon is
//
//	min(longest look-back of the app's segments + Options.EvictMargin, Options.EvictAfter)
//
// where the look-back of a condition is how far back it reads: the window
// of a did ("in the last 30d": 30d), the far end of a relative range of
// first_session, last_seen or a last tag ("between 15d and 16d ago": 16d).
// A condition that can read a device's state however old it is makes the
// look-back unbounded, and the horizon Options.EvictAfter (the retention):
// a did without a window, an open or absolute range ("more than 14d ago",
// "after 2026-01-01"), an app_info value or a device field (the value is
// kept until the next record changes it, and "unchanged for 3d" reads that
// value too). Past the horizon every windowed feature of the device is
// empty and nothing it held can matter any more, except what the retention
// chose to forget.
//
// A device is evicted at last_seen + horizon, unless a timer of its
// conditions is still pending then: it waits until the timer fired (and
// the next one, if any), so that a membership that can still change with
// time is not cut short. Eviction is driven by a heap of eviction checks
// (at most one live entry per device, re-armed at the check when the
// device was seen since), never by a scan; an Apply for a device whose
// check is due evicts it first, as Advance would have, so that the result
// does not depend on when Advance ran. The instant of an eviction is its
// check's time, a function of the device's state (last_seen, timer) and
// of the app's horizon: a replay, or a restored engine, evicts at the same
// instant with the same change ids.
//
// A device that comes back after its eviction starts afresh, as a device
// never seen: its first_session is that of its new session, its counts
// start from its new records, its attributes are unset until it sends them
// again, and its message-id window is empty.

// lookBack returns how far back a condition reads, in seconds (never: it
// can read a state however old).
func lookBack(n *cnode) int64 {
	switch n.op {
	case opDid:
		if n.win > 0 {
			return n.win
		}
		return never
	case opFirst, opLastSeen, opLastTag:
		if n.rng.abs || n.rng.max == never {
			return never
		}
		return n.rng.max + 1
	case opAttr, opUnchanged:
		return never
	case opRef, opSample:
		return 0
	}
	var lb int64
	for _, a := range n.args {
		lb = max(lb, lookBack(a))
	}
	return lb
}

// lookBackOf returns the longest look-back of a compiled set's segments.
func lookBackOf(set *segSet) int64 {
	var lb int64
	for _, cs := range set.segs {
		lb = max(lb, lookBack(cs.root))
	}
	return lb
}

// horizon returns how long after its last record a device of the app is
// evicted, in seconds; never when eviction is off.
func (e *Engine) horizon(a *appState) int64 {
	if e.opts.EvictAfter <= 0 {
		return never
	}
	ret := int64(e.opts.EvictAfter.Seconds())
	if a == nil || a.set == nil || a.set.look == never {
		return ret
	}
	return min(a.set.look+int64(e.opts.EvictMargin.Seconds()), ret)
}

// Horizon returns how long after its last record a device of the app is
// evicted, and false when its devices are never evicted.
func (e *Engine) Horizon(app string) (seconds int64, ok bool) {
	h := e.horizon(e.apps[app])
	return h, h != never
}

// evictAt returns when a device becomes evictable: its last record plus
// the horizon, or its pending timer if later.
func (e *Engine) evictAt(d *device) int64 {
	h := e.horizon(d.app)
	if h == never {
		return never
	}
	at := unix(d.last) + h
	if d.timer != 0 {
		at = max(at, unix(d.timer))
	}
	return at
}

// armEvict schedules a device's eviction check, unless one is scheduled.
func (e *Engine) armEvict(d *device) {
	if d.evict != 0 || d.app == nil || e.opts.EvictAfter <= 0 {
		return
	}
	at := e.evictAt(d)
	if at == never || at-epoch >= 1<<32-1 {
		return
	}
	d.evict = stamp(at)
	e.evicts = append(e.evicts, timerEntry{t: d.evict, kh: d.kh, d: d})
	e.evicts.up(len(e.evicts) - 1)
	if len(e.evicts) > 2*e.count+1024 {
		e.compactEvicts()
	}
}

// rearmEvicts schedules again the eviction checks of an app's devices
// (its horizon changed).
func (e *Engine) rearmEvicts(a *appState) {
	if e.opts.EvictAfter <= 0 {
		return
	}
	for _, d := range a.devs {
		d.evict = 0
		e.armEvict(d)
	}
}

func (ent *timerEntry) evictLive() bool { return ent.d.app != nil && ent.d.evict == ent.t }

// evictTop returns the earliest live eviction check, dropping stale ones.
func (e *Engine) evictTop() *timerEntry {
	for len(e.evicts) > 0 {
		if e.evicts[0].evictLive() {
			return &e.evicts[0]
		}
		e.popEvict()
	}
	return nil
}

func (e *Engine) popEvict() {
	h := e.evicts
	last := len(h) - 1
	h[0] = h[last]
	h[last] = timerEntry{}
	e.evicts = h[:last]
	if last > 0 {
		e.evicts.down(0)
	}
}

// compactEvicts drops the stale entries of the eviction heap.
func (e *Engine) compactEvicts() {
	h := e.evicts[:0]
	for _, ent := range e.evicts {
		if ent.evictLive() {
			h = append(h, ent)
		}
	}
	for i := len(h); i < len(e.evicts); i++ {
		e.evicts[i] = timerEntry{}
	}
	e.evicts = h
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}

// evictDue runs a device's due eviction check (its entry's instant is at
// or before now): the device is evicted at that instant if it has not
// been seen since and no timer of its conditions is still pending, and
// its check is scheduled again otherwise.
func (e *Engine) evictDue(d *device, now int64, out []Change) []Change {
	at := unix(d.evict)
	d.evict = 0 // its heap entry is stale from now on
	if d.app.fill != nil {
		// Not while its app's history is being filled: the fill holds
		// devices. Checked again later.
		d.evict = stamp(max(at, now) + 3600)
		e.evicts = append(e.evicts, timerEntry{t: d.evict, kh: d.kh, d: d})
		e.evicts.up(len(e.evicts) - 1)
		return out
	}
	out = e.catchUp(d, at, out)
	if due := e.evictAt(d); due > at {
		e.armEvict(d)
		return out
	}
	a := d.app
	if a.set != nil && d.attached {
		c := cause{kind: causeEvicted, id: at}
		d.mem.each(func(slot int) {
			cs := a.set.segs[slot]
			out = append(out, e.change(d, cs.seg.Name, cs.seg.Version, false, at, c))
		})
	}
	e.stats.Evicted++
	e.removeDevice(d) // exits the sizes, and writes a tombstone
	return out
}
