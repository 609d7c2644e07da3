package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"sort"

	"github.com/openengage/engage/pipeline/tag"
)

// The binary forms of states start with a version byte; a reader refuses
// versions it does not know.
const (
	stateVersion = 1
	metaVersion  = 1
)

// ErrCorruptState is wrapped by every error decoding a stored state.
var ErrCorruptState = errors.New("corrupt segment engine state")

// Attribute type byte: the tag.Type in the low bits, and flags.
const (
	attrInt  = 0x10 // a number stored as a varint
	attrTrue = 0x20 // a true bool
)

// appendState appends a device's state in its binary form:
//
//	version byte
//	uvarint len(app id)           (the key is app + "/" + device id)
//	uvarint offset+1
//	4 bytes segment-set fingerprint
//	uvarint first_session          (stored seconds, 0 none)
//	uvarint last_seen              (minus first_session when there is one)
//	uvarint timer                  (0 none, else 1 + zigzag(timer - last_seen))
//	byte count<<4 | ring position, then count × 4 bytes of message-id hashes
//	uvarint members, each 4 bytes of segment name hash
//	uvarint did features, each: 4 bytes id, uvarint n, n times newest first
//	        as uvarint deltas (last_seen - t0, t0 - t1, ...)
//	uvarint attributes, each: 4 bytes id, type byte, value, uvarint
//	        last_seen - at, uvarint at - since, uvarint prev (0 none, else
//	        since - prev + 1)
//
// Integers are little endian.
func (e *Engine) appendState(b []byte, d *device) []byte {
	b = append(b, stateVersion)
	b = binary.AppendUvarint(b, uint64(d.appLen))
	b = binary.AppendUvarint(b, uint64(d.offset+1))
	b = binary.LittleEndian.AppendUint32(b, d.fp)
	b = binary.AppendUvarint(b, uint64(d.first))
	if d.first != 0 && d.last >= d.first {
		b = binary.AppendUvarint(b, uint64(d.last-d.first))
	} else {
		b = binary.AppendUvarint(b, uint64(d.last))
	}
	if d.timer == 0 {
		b = append(b, 0)
	} else {
		b = binary.AppendUvarint(b, 1+zigzag(int64(d.timer)-int64(d.last)))
	}
	b = append(b, d.nmsg<<4|d.mpos)
	for _, h := range d.msgs[:d.nmsg] {
		b = binary.LittleEndian.AppendUint32(b, h)
	}
	var n int
	if !d.attached {
		hs := e.pending[d]
		b = binary.AppendUvarint(b, uint64(len(hs)))
		for _, h := range hs {
			b = binary.LittleEndian.AppendUint32(b, h)
		}
	} else {
		segs := d.app.set.segs
		n = bits.OnesCount64(d.mem.lo)
		for _, w := range d.mem.hi {
			n += bits.OnesCount64(w)
		}
		b = binary.AppendUvarint(b, uint64(n))
		for w := d.mem.lo; w != 0; w &= w - 1 {
			b = binary.LittleEndian.AppendUint32(b, segs[bits.TrailingZeros64(w)].hash)
		}
		for i, word := range d.mem.hi {
			for w := word; w != 0; w &= w - 1 {
				b = binary.LittleEndian.AppendUint32(b, segs[(i+1)<<6|bits.TrailingZeros64(w)].hash)
			}
		}
	}
	n = 0
	for i := 0; i < len(d.times); i += 2 + int(d.times[i+1]) {
		n++
	}
	b = binary.AppendUvarint(b, uint64(n))
	for i := 0; i < len(d.times); i += 2 + int(d.times[i+1]) {
		cnt := int(d.times[i+1])
		b = binary.LittleEndian.AppendUint32(b, d.times[i])
		b = binary.AppendUvarint(b, uint64(cnt))
		ref := d.last
		for j := i + 1 + cnt; j >= i+2; j-- {
			t := d.times[j]
			b = binary.AppendUvarint(b, uint64(ref-min(t, ref)))
			ref = min(t, ref)
		}
	}
	b = binary.AppendUvarint(b, uint64(len(d.attrs)))
	for i := range d.attrs {
		a := &d.attrs[i]
		b = binary.LittleEndian.AppendUint32(b, a.id)
		typ := byte(a.typ)
		switch a.typ {
		case tag.TypeNumber:
			if a.num == math.Trunc(a.num) && math.Abs(a.num) < 1<<53 {
				typ |= attrInt
			}
		case tag.TypeBool:
			if a.num != 0 {
				typ |= attrTrue
			}
		}
		b = append(b, typ)
		switch a.typ {
		case tag.TypeString:
			b = binary.AppendUvarint(b, uint64(len(a.str)))
			b = append(b, a.str...)
		case tag.TypeNumber:
			if typ&attrInt != 0 {
				b = binary.AppendVarint(b, int64(a.num))
			} else {
				b = binary.LittleEndian.AppendUint64(b, math.Float64bits(a.num))
			}
		case tag.TypeDate:
			b = binary.AppendVarint(b, int64(a.num))
		}
		b = binary.AppendUvarint(b, uint64(d.last-min(a.at, d.last)))
		b = binary.AppendUvarint(b, uint64(a.at-min(a.since, a.at)))
		if a.prev == 0 {
			b = append(b, 0)
		} else {
			b = binary.AppendUvarint(b, uint64(a.since-min(a.prev, a.since))+1)
		}
	}
	return b
}

func zigzag(v int64) uint64   { return uint64(v<<1) ^ uint64(v>>63) }
func unzigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

type stateReader struct {
	b   []byte
	err error
}

func (r *stateReader) fail(what string) {
	if r.err == nil {
		r.err = fmt.Errorf("%w: truncated or invalid %s", ErrCorruptState, what)
	}
	r.b = nil
}

func (r *stateReader) uvarint(what string) uint64 {
	v, n := binary.Uvarint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *stateReader) varint(what string) int64 {
	v, n := binary.Varint(r.b)
	if n <= 0 {
		r.fail(what)
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *stateReader) u32(what string) uint32 {
	if len(r.b) < 4 {
		r.fail(what)
		return 0
	}
	v := binary.LittleEndian.Uint32(r.b)
	r.b = r.b[4:]
	return v
}

func (r *stateReader) byte(what string) byte {
	if len(r.b) < 1 {
		r.fail(what)
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

// count reads a count of items of at least size bytes each.
func (r *stateReader) count(what string, size int) int {
	n := r.uvarint(what)
	if n > uint64(len(r.b)/size) {
		r.fail(what)
		return 0
	}
	return int(n)
}

// stamp32 reads a stored time as a difference from ref.
func (r *stateReader) back(ref uint32, what string) uint32 {
	d := r.uvarint(what)
	if d > uint64(ref) {
		r.fail(what)
		return 0
	}
	return ref - uint32(d)
}

// decodeState decodes a device state; its memberships are returned as
// segment name hashes.
func decodeState(key []byte, data []byte, in *interner) (*device, []uint32, error) {
	if len(data) == 0 {
		return nil, nil, fmt.Errorf("%w: empty", ErrCorruptState)
	}
	if data[0] != stateVersion {
		return nil, nil, fmt.Errorf("%w: unknown version %d (this reader knows %d)", ErrCorruptState, data[0], stateVersion)
	}
	r := &stateReader{b: data[1:]}
	d := &device{}
	appLen := r.uvarint("app length")
	if appLen == 0 || appLen >= uint64(len(key)) || appLen > 255 || key[appLen] != '/' {
		return nil, nil, fmt.Errorf("%w: app length %d does not fit key %q", ErrCorruptState, appLen, key)
	}
	d.setKey(key, int(appLen))
	d.offset = int64(r.uvarint("offset")) - 1
	d.fp = r.u32("fingerprint")
	first := r.uvarint("first session")
	last := r.uvarint("last seen")
	if first != 0 {
		last += first
	}
	if first > math.MaxUint32 || last > math.MaxUint32 {
		r.fail("times")
	}
	d.first, d.last = uint32(first), uint32(last)
	if t := r.uvarint("timer"); t != 0 {
		v := int64(d.last) + unzigzag(t-1)
		if v <= 0 || v > math.MaxUint32 {
			r.fail("timer")
		}
		d.timer = uint32(v)
	}
	ring := r.byte("message ids")
	d.nmsg, d.mpos = ring>>4, ring&15
	if d.nmsg > dedupIDs || d.mpos >= dedupIDs {
		r.fail("message ids")
		d.nmsg = 0
	}
	for i := range int(d.nmsg) {
		d.msgs[i] = r.u32("message ids")
	}
	n := r.count("members", 4)
	hashes := make([]uint32, n)
	for i := range hashes {
		hashes[i] = r.u32("members")
	}
	n = r.count("did features", 5)
	for range n {
		id := r.u32("did feature")
		cnt := r.count("did feature times", 1)
		if cnt == 0 {
			r.fail("did feature times")
			break
		}
		pos := len(d.times)
		d.times = append(d.times, id, uint32(cnt))
		d.times = append(d.times, make([]uint32, cnt)...)
		ref := d.last
		for j := pos + 1 + cnt; j >= pos+2; j-- {
			ref = r.back(ref, "did feature times")
			d.times[j] = ref
		}
	}
	n = r.count("attributes", 7)
	if n > 0 {
		d.attrs = make([]attrVal, n)
	}
	for i := range d.attrs {
		a := &d.attrs[i]
		a.id = r.u32("attribute")
		typ := r.byte("attribute type")
		a.typ = tag.Type(typ & 7)
		switch a.typ {
		case tag.TypeInvalid:
		case tag.TypeString:
			l := r.count("attribute string", 1)
			a.str = in.internBytes(r.b[:l])
			r.b = r.b[l:]
		case tag.TypeNumber:
			if typ&attrInt != 0 {
				a.num = float64(r.varint("attribute number"))
			} else if len(r.b) < 8 {
				r.fail("attribute number")
			} else {
				a.num = math.Float64frombits(binary.LittleEndian.Uint64(r.b))
				r.b = r.b[8:]
			}
		case tag.TypeBool:
			if typ&attrTrue != 0 {
				a.num = 1
			}
		case tag.TypeDate:
			a.num = float64(r.varint("attribute date"))
		default:
			r.fail("attribute type")
		}
		a.at = r.back(d.last, "attribute time")
		a.since = r.back(a.at, "attribute since")
		if p := r.uvarint("attribute prev"); p != 0 {
			if p-1 > uint64(a.since) {
				r.fail("attribute prev")
			}
			a.prev = a.since - uint32(p-1)
		}
		if r.err != nil {
			break
		}
	}
	if r.err != nil {
		return nil, nil, r.err
	}
	if len(r.b) != 0 {
		return nil, nil, fmt.Errorf("%w: %d trailing bytes", ErrCorruptState, len(r.b))
	}
	return d, hashes, nil
}

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

// appendMeta appends an app's meta record: version byte, uvarint origin,
// uvarint features, each 4 bytes id, uvarint since, uvarint k, uvarint
// span+1 (0: never); uvarint deleted segments, each uvarint-prefixed name,
// varint version, 4 bytes fingerprint.
func (a *appState) appendMeta(b []byte) []byte {
	b = append(b, metaVersion)
	b = binary.AppendUvarint(b, uint64(a.reg.origin))
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
	}
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
	if len(data) == 0 || data[0] != metaVersion {
		return reg, nil, fmt.Errorf("%w: unknown meta version", ErrCorruptState)
	}
	r := &stateReader{b: data[1:]}
	reg.origin = int64(r.uvarint("origin"))
	n := r.count("features", 7)
	reg.feats = make(map[uint32]regFeat, n)
	for range n {
		id := r.u32("feature")
		f := regFeat{since: int64(r.uvarint("feature since")), k: int(r.uvarint("feature k")), span: never}
		if s := r.uvarint("feature span"); s != 0 {
			f.span = int64(s - 1)
		}
		reg.feats[id] = f
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
	if a.reg.feats == nil {
		a.reg = reg
	} else {
		// The set came first: keep what the stored registry knows of the
		// features it still has.
		if reg.origin != 0 && reg.origin < a.reg.origin {
			a.reg.origin = reg.origin
		}
		for id, cur := range a.reg.feats {
			if old, ok := reg.feats[id]; ok && old.k >= cur.k && old.span >= cur.span {
				a.reg.feats[id] = old
			}
		}
	}
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
