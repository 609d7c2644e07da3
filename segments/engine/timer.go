package engine

import "math"

// timerHeap is a min-heap of the devices that have a timer, ordered by due
// time, then key (so that devices due at the same instant fire in the same
// order after a restore). Each device knows its index.
type timerHeap []*device

func (h timerHeap) less(i, j int) bool {
	a, b := h[i], h[j]
	if a.timer != b.timer {
		return a.timer < b.timer
	}
	return a.key < b.key
}

func (h timerHeap) swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].hidx = int32(i)
	h[j].hidx = int32(j)
}

func (h timerHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h.swap(i, p)
		i = p
	}
}

func (h timerHeap) down(i int) bool {
	start := i
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			break
		}
		h.swap(i, m)
		i = m
	}
	return i > start
}

// setTimer sets a device's next timer to the instant at (Unix seconds;
// never removes it).
func (e *Engine) setTimer(d *device, at int64) {
	var t uint32
	if at != never && at-epoch < math.MaxUint32 {
		t = stamp(at)
	}
	if t == d.timer && (t == 0) == (d.hidx < 0) {
		return
	}
	d.timer = t
	h := e.heap
	switch {
	case t == 0 && d.hidx >= 0:
		i := int(d.hidx)
		last := len(h) - 1
		if i != last {
			h.swap(i, last)
		}
		h[last] = nil
		e.heap = h[:last]
		d.hidx = -1
		if i != last {
			if !e.heap.down(i) {
				e.heap.up(i)
			}
		}
	case t == 0:
	case d.hidx >= 0:
		i := int(d.hidx)
		if !h.down(i) {
			h.up(i)
		}
	default:
		d.hidx = int32(len(h))
		e.heap = append(h, d)
		e.heap.up(int(d.hidx))
	}
}
