package engine

import "math"

// timerEntry is a device's timer in the heap. Entries are values, so that
// ordering them reads no device; an entry whose device's timer has since
// changed is stale and skipped when it comes out (lazy deletion).
type timerEntry struct {
	t  uint32 // due, stored time
	kh uint32 // key hash, to order devices due at the same instant
	d  *device
}

// timerHeap is a min-heap of timer entries ordered by due time, then key
// (so that devices due at the same instant fire in the same order after a
// restore).
type timerHeap []timerEntry

func (h timerHeap) less(i, j int) bool {
	a, b := &h[i], &h[j]
	switch {
	case a.t != b.t:
		return a.t < b.t
	case a.kh != b.kh:
		return a.kh < b.kh
	case a.d == b.d:
		return false
	}
	return keyLess(a.d, b.d)
}

func (h timerHeap) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if !h.less(i, p) {
			return
		}
		h[i], h[p] = h[p], h[i]
		i = p
	}
}

func (h timerHeap) down(i int) {
	n := len(h)
	for {
		l := 2*i + 1
		if l >= n {
			return
		}
		m := l
		if r := l + 1; r < n && h.less(r, l) {
			m = r
		}
		if !h.less(m, i) {
			return
		}
		h[i], h[m] = h[m], h[i]
		i = m
	}
}

func (e *Engine) push(ent timerEntry) {
	e.heap = append(e.heap, ent)
	e.heap.up(len(e.heap) - 1)
}

func (e *Engine) pop() {
	h := e.heap
	last := len(h) - 1
	h[0] = h[last]
	h[last] = timerEntry{}
	e.heap = h[:last]
	if last > 0 {
		e.heap.down(0)
	}
}

func (ent *timerEntry) live() bool { return ent.d.app != nil && ent.d.timer == ent.t }

// top returns the earliest live timer, dropping stale entries.
func (e *Engine) top() *timerEntry {
	for len(e.heap) > 0 {
		if e.heap[0].live() {
			return &e.heap[0]
		}
		e.pop()
	}
	return nil
}

// setTimer sets a device's next timer to the instant at (Unix seconds;
// never removes it).
func (e *Engine) setTimer(d *device, at int64) {
	var t uint32
	if at != never && at-epoch < math.MaxUint32 {
		t = stamp(at)
	}
	if t == d.timer {
		return
	}
	switch {
	case d.timer == 0:
		e.timers++
	case t == 0:
		e.timers--
	}
	d.timer = t
	if t != 0 {
		e.push(timerEntry{t: t, kh: d.kh, d: d})
		if len(e.heap) > 2*e.timers+1024 {
			e.compact()
		}
	}
}

// compact drops the stale entries of the heap.
func (e *Engine) compact() {
	h := e.heap[:0]
	for _, ent := range e.heap {
		if ent.live() && !ent.d.queued {
			ent.d.queued = true
			h = append(h, ent)
		}
	}
	for i := len(h); i < len(e.heap); i++ {
		e.heap[i] = timerEntry{}
	}
	for _, ent := range h {
		ent.d.queued = false
	}
	e.heap = h
	for i := len(h)/2 - 1; i >= 0; i-- {
		h.down(i)
	}
}
