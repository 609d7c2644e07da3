package engine

import (
	"math/rand/v2"
	"testing"
)

// TestDevTable compares the device table with a map under random puts and
// deletes, with hashes crowded into few slots so that probes wrap and
// deletions shift entries back.
func TestDevTable(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var tab devTable
	ref := map[uint64]*device{}
	var keys []uint64
	for i := range 50_000 {
		switch {
		case len(keys) > 0 && r.IntN(3) == 0:
			j := r.IntN(len(keys))
			h := keys[j]
			if !tab.del(h, ref[h]) {
				t.Fatalf("step %d: del %x failed", i, h)
			}
			delete(ref, h)
			keys[j] = keys[len(keys)-1]
			keys = keys[:len(keys)-1]
		default:
			h := r.Uint64()
			if r.IntN(50) == 0 {
				h = h&^0xffff | uint64(r.IntN(8)) | 0xfff8 // crowd the low bits (slots near the end: wrap)
			}
			if ref[h] != nil {
				continue
			}
			d := &device{}
			tab.put(h, d)
			ref[h] = d
			keys = append(keys, h)
		}
		if i%1000 == 0 {
			for h, d := range ref {
				if tab.get(h) != d {
					t.Fatalf("step %d: get %x: wrong device", i, h)
				}
			}
			if tab.n != len(ref) {
				t.Fatalf("step %d: %d entries, want %d", i, tab.n, len(ref))
			}
		}
	}
	if tab.get(12345) != nil && ref[12345] == nil {
		t.Fatal("get of an absent hash found a device")
	}
}
