package engine

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"

	"github.com/openengage/engage/pipeline/tag"
)

// The binary forms of states start with a version byte; a reader refuses
// versions it does not know.
const (
	stateVersion = 2 // 2: message-id hashes of 8 bytes (1: 4 bytes)
	metaVersion  = 2 // 2: history states of features (1: an origin)
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
//	byte count<<4 | ring position, then count × 8 bytes of message-id hashes
//	        (64-bit murmur3; version 1 had 4-byte hashes, which a restore drops)
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
		b = binary.LittleEndian.AppendUint64(b, h)
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

func (r *stateReader) u64(what string) uint64 {
	if len(r.b) < 8 {
		r.fail(what)
		return 0
	}
	v := binary.LittleEndian.Uint64(r.b)
	r.b = r.b[8:]
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
	version := data[0]
	if version != stateVersion && version != 1 {
		return nil, nil, fmt.Errorf("%w: unknown version %d (this reader knows 1 to %d)", ErrCorruptState, data[0], stateVersion)
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
		if version == 1 {
			// 32-bit hashes cannot be compared with 64-bit ones: the
			// device forgets its recent ids (a retry arriving just after the
			// upgrade would count again).
			r.u32("message ids")
			continue
		}
		d.msgs[i] = r.u64("message ids")
	}
	if version == 1 {
		d.nmsg, d.mpos = 0, 0
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
