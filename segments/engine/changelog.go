package engine

import (
	"encoding/binary"
	"fmt"
	"sort"
)

// Dirty calls fn with the changelog key and state of every device (and
// app meta record) that changed since the last call, then forgets them. A
// nil state is a tombstone: the key's state was deleted (its app has no
// segments any more). Keys are app + "/" + device id, the key of the
// input records; meta records have keys that start with a NUL byte. fn
// must not keep key or state after it returns.
func (e *Engine) Dirty(fn func(key, state []byte)) {
	for _, k := range e.tombs {
		kb := append(e.kbuf[:0], k...)
		e.kbuf = kb
		if e.lookup(keyHash(kb), kb) == nil {
			fn(kb, nil)
		}
	}
	e.tombs = e.tombs[:0]
	if len(e.metas) > 0 {
		apps := make([]string, 0, len(e.metas))
		for app := range e.metas {
			apps = append(apps, app)
		}
		sort.Strings(apps)
		for _, app := range apps {
			e.emitMeta(app, fn)
		}
		clear(e.metas)
	}
	for i := range e.dirty {
		ent := &e.dirty[i]
		d := ent.d
		ent.d = nil
		switch {
		case d == nil: // removed since
		case ent.again:
			e.emitState(d, fn)
		default:
			klen := d.keyLen()
			fn(e.dirtyBuf[ent.key:ent.key+klen], e.dirtyBuf[ent.key+klen:ent.end])
		}
	}
	e.dirtyBuf = e.dirtyBuf[:0]
	if e.gen++; e.gen == 0 {
		// After 2^32 calls: forget old generations.
		for _, a := range e.apps {
			for _, d := range a.devs {
				d.dirtyGen = 0
			}
		}
		e.gen = 1
	}
	e.dirty = e.dirty[:0]
}

// Snapshot calls fn with every state the engine holds, meta records first,
// as Dirty would write them.
func (e *Engine) Snapshot(fn func(key, state []byte)) {
	apps := make([]string, 0, len(e.apps))
	for app := range e.apps {
		apps = append(apps, app)
	}
	sort.Strings(apps)
	for _, app := range apps {
		e.emitMeta(app, fn)
	}
	for _, app := range apps {
		for _, d := range e.apps[app].devs {
			e.emitState(d, fn)
		}
	}
}

func (e *Engine) emitState(d *device, fn func(key, state []byte)) {
	e.kbuf = d.appendKey(e.kbuf[:0])
	e.sbuf = e.appendState(e.sbuf[:0], d)
	fn(e.kbuf, e.sbuf)
}

func (e *Engine) emitMeta(app string, fn func(key, state []byte)) {
	e.kbuf = append(e.kbuf[:0], appKey(app)...)
	a := e.apps[app]
	if a == nil {
		fn(e.kbuf, nil)
		return
	}
	e.sbuf = a.appendMeta(e.sbuf[:0])
	fn(e.kbuf, e.sbuf)
}

// appendMeta appends an app's meta record (version 2): version byte;
// uvarint features, each 4 bytes id, uvarint since, uvarint k, uvarint
// span+1 (0: never), byte history state, uvarint seam+1; first_session and
// last_seen as byte known, uvarint since, byte history state, uvarint
// seam+1; uvarint deleted segments, each uvarint-prefixed name, varint
// version, 4 bytes fingerprint. (Version 1 had a uvarint origin first and
// no history states: a feature tracked since the origin was complete.)
func (a *appState) appendMeta(b []byte) []byte {
	b = append(b, metaVersion)
	ids := make([]uint32, 0, len(a.reg.feats))
	for id := range a.reg.feats {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	b = binary.AppendUvarint(b, uint64(len(ids)))
	for _, id := range ids {
		r := a.reg.feats[id]
		b = binary.LittleEndian.AppendUint32(b, id)
		b = binary.AppendUvarint(b, uint64(r.since))
		b = binary.AppendUvarint(b, uint64(r.k))
		if r.span == never {
			b = append(b, 0)
		} else {
			b = binary.AppendUvarint(b, uint64(r.span)+1)
		}
		b = append(b, r.hist)
		b = binary.AppendUvarint(b, uint64(r.seam+1))
	}
	if a.reg.known {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	b = binary.AppendUvarint(b, uint64(a.reg.base.since))
	b = append(b, a.reg.base.hist)
	b = binary.AppendUvarint(b, uint64(a.reg.base.seam+1))
	hs := make([]uint32, 0, len(a.deleted))
	for h := range a.deleted {
		hs = append(hs, h)
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i] < hs[j] })
	b = binary.AppendUvarint(b, uint64(len(hs)))
	for _, h := range hs {
		del := a.deleted[h]
		b = binary.AppendUvarint(b, uint64(len(del.name)))
		b = append(b, del.name...)
		b = binary.AppendVarint(b, del.version)
		b = binary.LittleEndian.AppendUint32(b, del.fp)
	}
	return b
}

func decodeMeta(data []byte) (registry, map[uint32]deletedSeg, error) {
	var reg registry
	if len(data) == 0 || data[0] < 1 || data[0] > metaVersion {
		return reg, nil, fmt.Errorf("%w: unknown meta version", ErrCorruptState)
	}
	v1 := data[0] == 1
	r := &stateReader{b: data[1:]}
	var origin int64
	if v1 {
		origin = int64(r.uvarint("origin"))
	}
	size := 9
	if v1 {
		size = 7
	}
	n := r.count("features", size)
	reg.feats = make(map[uint32]regFeat, n)
	for range n {
		id := r.u32("feature")
		f := regFeat{since: int64(r.uvarint("feature since")), k: int(r.uvarint("feature k")), span: never, seam: -1}
		if s := r.uvarint("feature span"); s != 0 {
			f.span = int64(s - 1)
		}
		if v1 {
			if f.since > origin {
				f.hist = histPartial
			}
		} else {
			f.hist = r.byte("feature history")
			f.seam = int64(r.uvarint("feature seam")) - 1
			if f.hist > histPartial {
				r.fail("feature history")
			}
		}
		reg.feats[id] = f
	}
	if v1 {
		reg.known, reg.base = true, regFeat{since: origin, hist: histComplete, seam: -1}
	} else {
		reg.known = r.byte("known") == 1
		reg.base.since = int64(r.uvarint("base since"))
		reg.base.hist = r.byte("base history")
		reg.base.seam = int64(r.uvarint("base seam")) - 1
		if reg.base.hist > histPartial {
			r.fail("base history")
		}
	}
	var deleted map[uint32]deletedSeg
	n = r.count("deleted segments", 6)
	for range n {
		l := r.count("deleted segment", 1)
		name := string(r.b[:l])
		r.b = r.b[l:]
		del := deletedSeg{name: name, version: r.varint("deleted version"), fp: r.u32("deleted fingerprint")}
		if deleted == nil {
			deleted = map[uint32]deletedSeg{}
		}
		deleted[hashName(name)] = del
	}
	if r.err != nil {
		return reg, nil, r.err
	}
	if len(r.b) != 0 {
		return reg, nil, fmt.Errorf("%w: %d trailing bytes in meta record", ErrCorruptState, len(r.b))
	}
	return reg, deleted, nil
}

// Restore loads one changelog record (key and state as Dirty gave them; a
// nil state deletes the key). Call SetSegments first, then Restore every
// record of the partition's changelog, then process. (Restoring first works
// too: states wait for their app's segments.) A state written under
// another segment set is re-evaluated against the current one by the next
// Advance or Apply for the device, its changes carrying the cause "segment
// updated".
func (e *Engine) Restore(key, state []byte) error {
	if len(key) > 0 && key[0] == 0 {
		return e.restoreMeta(string(key[1:]), state)
	}
	h := keyHash(key)
	if old := e.lookup(h, key); old != nil {
		e.removeDevice(old)
		e.tombs = e.tombs[:len(e.tombs)-1]
	}
	if state == nil {
		return nil
	}
	d, hashes, err := decodeState(key, state, &e.strs)
	if err != nil {
		return fmt.Errorf("restore %q: %w", key, err)
	}
	if d.offset >= e.position {
		e.position = d.offset + 1
	}
	app := string(key[:d.appLen])
	a := e.apps[app]
	if a == nil {
		a = &appState{name: app}
		e.apps[app] = a
	}
	d.app = a
	e.addDevice(d, h)
	e.pending[d] = hashes
	e.stats.Restored++
	if a.set != nil {
		e.attach(d)
	}
	e.armEvict(d)
	return nil
}

// attach maps a restored device's memberships to its app's current set.
// A state written under another set waits, with its memberships as name
// hashes, for the next Advance or Apply, which re-evaluate it and can emit
// changes.
func (e *Engine) attach(d *device) {
	set := d.app.set
	if d.fp != set.fp {
		d.stale = true
		e.stale = append(e.stale, d)
		return
	}
	for _, h := range e.pending[d] {
		if cs := set.hashed(h); cs != nil {
			d.mem.set(cs.slot, true)
			cs.size++
		}
	}
	delete(e.pending, d)
	d.attached = true
	if t := d.timer; t != 0 {
		d.timer = 0
		e.setTimer(d, unix(t))
	}
}

func (e *Engine) restoreMeta(app string, state []byte) error {
	a := e.apps[app]
	if state == nil {
		return nil
	}
	reg, deleted, err := decodeMeta(state)
	if err != nil {
		return fmt.Errorf("restore meta of app %q: %w", app, err)
	}
	if a == nil {
		a = &appState{name: app}
		e.apps[app] = a
	}
	if !a.reg.known {
		a.reg = reg
	} else {
		// The set came first: keep what the stored registry knows of the
		// features it still has.
		if reg.known {
			a.reg.base = reg.base
		}
		for id, cur := range a.reg.feats {
			if old, ok := reg.feats[id]; ok && old.k >= cur.k && old.span >= cur.span {
				a.reg.feats[id] = old
			}
		}
	}
	// A fill under way when the state was written starts over (the next
	// plan clears what it had filled).
	if a.reg.base.hist == histFilling {
		a.reg.base.hist = histNeeded
	}
	for id, f := range a.reg.feats {
		if f.hist == histFilling {
			f.hist = histNeeded
			a.reg.feats[id] = f
		}
	}
	e.plan = true
	for h, del := range deleted {
		if a.deleted == nil {
			a.deleted = map[uint32]deletedSeg{}
		}
		if a.set == nil || a.set.hashed(h) == nil {
			a.deleted[h] = del
		}
	}
	return nil
}
