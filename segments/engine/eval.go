package engine

import (
	"time"

	"github.com/twmb/murmur3"

	"github.com/openengage/engage/pipeline/tag"
)

// eval returns a node's value for a device at now (Unix seconds), and the
// earliest instant after now at which the value can change with time
// alone (never if it cannot). The instant is exact for conditions and a
// lower bound for and/or: an "and" that is false cannot become true before
// each of its false arguments has changed.
func (e *Engine) eval(n *cnode, d *device, now int64) (bool, int64) {
	switch n.op {
	case opAnd:
		trueNext, falseNext, anyFalse := never, int64(0), false
		for _, a := range n.args {
			v, next := e.eval(a, d, now)
			switch {
			case v:
				trueNext = min(trueNext, next)
			case next == never:
				return false, never
			default:
				anyFalse = true
				falseNext = max(falseNext, next)
			}
		}
		if anyFalse {
			return false, falseNext
		}
		return true, trueNext
	case opOr:
		falseNext, trueNext, anyTrue := never, int64(0), false
		for _, a := range n.args {
			v, next := e.eval(a, d, now)
			switch {
			case !v:
				falseNext = min(falseNext, next)
			case next == never:
				return true, never
			default:
				anyTrue = true
				trueNext = max(trueNext, next)
			}
		}
		if anyTrue {
			return true, trueNext
		}
		return false, falseNext
	case opNot:
		v, next := e.eval(n.args[0], d, now)
		return !v, next
	case opDid:
		return evalCount(n, d.timesOf(n.feat.id), now)
	case opFirst:
		return evalRange(&n.rng, d.first, now)
	case opLastSeen:
		return evalRange(&n.rng, d.last, now)
	case opLastTag:
		return evalRange(&n.rng, newest(d.timesOf(n.feat.id)), now)
	case opAttr:
		return e.evalAttr(n, d.attr(n.feat.id), now)
	case opUnchanged:
		a := d.attr(n.feat.id)
		if a == nil || a.typ == tag.TypeInvalid {
			return false, never
		}
		at := unix(a.since) + n.min
		if now >= at {
			return true, never
		}
		return false, at
	case opRef:
		return d.member(n.ref.slot), never
	case opSample:
		return e.sampled(n, d), never
	}
	return false, never
}

// evalCount counts the kept times in the window (now-win, now] and
// compares the count. As time passes the count only falls, by one each
// time the oldest counted time leaves the window: the next change of the
// comparison is when the count first reaches a value that compares the
// other way.
func evalCount(n *cnode, ts []uint32, now int64) (bool, int64) {
	if n.win == 0 {
		return countHolds(n.cmp, len(ts), n.n), never
	}
	lim := now - n.win
	c := 0
	for i := len(ts) - 1; i >= 0 && unix(ts[i]) > lim; i-- {
		c++
	}
	v := countHolds(n.cmp, c, n.n)
	for j := c - 1; j >= 0; j-- {
		if countHolds(n.cmp, j, n.n) != v {
			// The count falls to j when the time of rank j leaves.
			return v, unix(ts[len(ts)-1-j]) + n.win
		}
	}
	return v, never
}

// evalRange reports whether a moment (0: none) lies in a range.
func evalRange(r *srange, m uint32, now int64) (bool, int64) {
	if m == 0 {
		return false, never
	}
	t := unix(m)
	if r.abs {
		return t >= r.from && t < r.to, never
	}
	lo := t + r.min // first instant the moment is old enough
	hi := never     // last instant it is young enough
	if r.max != never {
		hi = t + r.max
	}
	switch {
	case now < lo:
		if lo > hi {
			return false, never
		}
		return false, lo
	case now <= hi:
		if hi == never {
			return true, never
		}
		return true, hi + 1
	}
	return false, never
}

// evalAttr compares an attribute. With dates relative to now, the
// comparison can change only where now+offset crosses the value: it is
// evaluated at those instants to find the next change.
func (e *Engine) evalAttr(n *cnode, a *attrVal, now int64) (bool, int64) {
	set := a != nil && a.typ != tag.TypeInvalid
	var v tag.Value
	if set {
		v = a.value()
	}
	if len(n.rel) == 0 {
		return holds(n.cmp, v, set, n.vals, n.version), never
	}
	val := holds(n.cmp, v, set, n.resolve(now), n.version)
	next := never
	if set && v.Type == tag.TypeDate {
		ms := v.Date.UnixMilli()
		for _, r := range n.rel {
			b := ms - r.off // now*1000 crosses b
			for _, c := range [2]int64{ceilDiv(b, 1000), floorDiv(b, 1000) + 1} {
				if c > now && c < next && holds(n.cmp, v, true, n.resolve(c), n.version) != val {
					next = c
				}
			}
		}
	}
	return val, next
}

// resolve fills in the relative operands for the instant now.
func (n *cnode) resolve(now int64) []tag.Value {
	copy(n.scratch, n.vals)
	for _, r := range n.rel {
		n.scratch[r.i] = tag.Value{Type: tag.TypeDate, Date: time.UnixMilli(now*1000 + r.off).UTC()}
	}
	return n.scratch
}

// sampled reports whether a device falls in a sample: murmur3 (32 bits) of
// salt + "/" + device id, below percent/100 of the hash space. The salt
// defaults to the segment's name.
func (e *Engine) sampled(n *cnode, d *device) bool {
	return uint64(e.sampleHash(n.salt, d)) < n.limit
}

func (e *Engine) sampleHash(salt string, d *device) uint32 {
	b := append(e.buf[:0], salt...)
	b = append(b, '/')
	b = d.appendID(b)
	e.buf = b
	return murmur3.Sum32(b)
}
