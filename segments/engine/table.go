package engine

// devTable maps the 64-bit hash of a device key to the device: open
// addressing with linear probing, at most half full. Its probe is a few
// instructions, so that ApplyBatch's lookups of different records overlap
// their cache misses. Two keys with one hash (practically never) are
// resolved by the caller (Engine.collide).
type devTable struct {
	slots []devSlot // a power of two
	n     int
}

type devSlot struct {
	h uint64
	d *device // nil: empty
}

func (t *devTable) get(h uint64) *device {
	if len(t.slots) == 0 {
		return nil
	}
	mask := uint64(len(t.slots) - 1)
	for i := h & mask; ; i = (i + 1) & mask {
		s := &t.slots[i]
		if s.d == nil || s.h == h {
			return s.d
		}
	}
}

// put adds a device under h, which must not be in the table.
func (t *devTable) put(h uint64, d *device) {
	if 2*(t.n+1) > len(t.slots) {
		t.grow()
	}
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for t.slots[i].d != nil {
		i = (i + 1) & mask
	}
	t.slots[i] = devSlot{h, d}
	t.n++
}

func (t *devTable) grow() {
	old := t.slots
	t.slots = make([]devSlot, max(1024, 2*len(old)))
	t.n = 0
	for _, s := range old {
		if s.d != nil {
			t.put(s.h, s.d)
		}
	}
}

// del removes the entry of h if it holds d, shifting the entries after it
// back so that every probe sequence stays unbroken.
func (t *devTable) del(h uint64, d *device) bool {
	if len(t.slots) == 0 {
		return false
	}
	mask := uint64(len(t.slots) - 1)
	i := h & mask
	for {
		s := &t.slots[i]
		if s.d == nil {
			return false
		}
		if s.h == h && s.d == d {
			break
		}
		i = (i + 1) & mask
	}
	for j := (i + 1) & mask; t.slots[j].d != nil; j = (j + 1) & mask {
		home := t.slots[j].h & mask
		// Move j's entry to the hole at i if its home is not in (i, j].
		if (j > i && (home <= i || home > j)) || (j < i && home <= i && home > j) {
			t.slots[i] = t.slots[j]
			i = j
		}
	}
	t.slots[i] = devSlot{}
	t.n--
	return true
}
