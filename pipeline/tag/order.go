package tag

import (
	"slices"
	"strings"
)

// Extras are kept sorted by key. A device may send them in any order (up
// to MaxExtras of them per record), so decoding sorts them once, with
// O(n log n) comparisons, before the message id is derived from them and
// before validation checks them.

// countCompare, when set (by a test), is called for every comparison of
// two whole keys.
var countCompare func()

// compareKeys orders two extras keys.
func compareKeys(a, b string) int {
	if countCompare != nil {
		countCompare()
	}
	return strings.Compare(a, b)
}

// extrasSorted reports whether xs is in key order (equal keys allowed),
// with len(xs)-1 comparisons at most.
func extrasSorted(xs []Extra) bool {
	for i := 1; i < len(xs); i++ {
		if compareKeys(xs[i-1].Key, xs[i].Key) > 0 {
			return false
		}
	}
	return true
}

// keyOrder returns the positions of xs in key order; equal keys keep their
// order (a stable sort), whatever the order of xs, in O(n log n)
// comparisons. The result is carved from buf when it is large enough (2n).
//
// Each position is packed with its key's first 7 bytes, as a number that
// sorts as the key does (a key shorter than 7 bytes is padded with zeros,
// which sort first, as a prefix of a longer key does), and those numbers
// are sorted (slices.Sort: pattern-defeating quicksort, cheap comparisons,
// no calls). The position in the low bits keeps equal prefixes in their
// original order. Only keys with equal prefixes are then compared whole,
// run by run, by a merge sort (mergeByKey).
func keyOrder(xs []Extra, buf []uint64) []uint64 {
	n := len(xs)
	if n > 1<<8 {
		return mergeByKey(xs, identity(n), nil) // positions do not fit in 8 bits
	}
	if cap(buf) < 2*n {
		buf = make([]uint64, 2*n)
	}
	order, scratch := buf[:n:n], buf[n:2*n:2*n]
	for i := range xs {
		order[i] = keyPrefix7(xs[i].Key)<<8 | uint64(i)
	}
	slices.Sort(order)
	for lo := 0; lo < n; {
		hi := lo + 1
		for hi < n && order[hi]>>8 == order[lo]>>8 {
			hi++
		}
		run := order[lo:hi]
		for i := range run {
			run[i] &= 0xff
		}
		if len(run) > 1 && !runSorted(xs, run) {
			// Keys that share their first 7 bytes: compared whole.
			mergeByKey(xs, run, scratch[:len(run)])
		}
		lo = hi
	}
	return order
}

// runSorted reports whether the keys at the positions in run are in order.
func runSorted(xs []Extra, run []uint64) bool {
	for i := 1; i < len(run); i++ {
		if compareKeys(xs[run[i-1]].Key, xs[run[i]].Key) > 0 {
			return false
		}
	}
	return true
}

// keyPrefix7 is the first 7 bytes of s, big-endian, padded with zeros.
func keyPrefix7(s string) uint64 {
	if len(s) >= 7 {
		return uint64(s[0])<<48 | uint64(s[1])<<40 | uint64(s[2])<<32 | uint64(s[3])<<24 |
			uint64(s[4])<<16 | uint64(s[5])<<8 | uint64(s[6])
	}
	var p uint64
	for i := 0; i < len(s); i++ {
		p |= uint64(s[i]) << (48 - 8*i)
	}
	return p
}

func identity(n int) []uint64 {
	a := make([]uint64, n)
	for i := range a {
		a[i] = uint64(i)
	}
	return a
}

// mergeByKey sorts the positions in a by the keys of xs, stably, in place:
// a bottom-up merge sort, at most n⌈log2 n⌉ comparisons of whole keys. It
// uses scratch when it is large enough (len(a)).
func mergeByKey(xs []Extra, a, scratch []uint64) []uint64 {
	n := len(a)
	if n < 2 {
		return a
	}
	if cap(scratch) < n {
		scratch = make([]uint64, n)
	}
	in, out := a, scratch[:n:n]
	for width := 1; width < n; width *= 2 {
		for lo := 0; lo < n; lo += 2 * width {
			mid, hi := min(lo+width, n), min(lo+2*width, n)
			i, j, k := lo, mid, lo
			for i < mid && j < hi {
				// Take from the right run only when strictly smaller:
				// equal keys keep their order.
				if compareKeys(xs[in[j]].Key, xs[in[i]].Key) < 0 {
					out[k] = in[j]
					j++
				} else {
					out[k] = in[i]
					i++
				}
				k++
			}
			k += copy(out[k:], in[i:mid])
			copy(out[k:], in[j:hi])
		}
		in, out = out, in
	}
	if &in[0] != &a[0] {
		copy(a, in)
	}
	return a
}

// sortExtras sorts xs by key in place, stably: len(xs)-1 comparisons when
// it is sorted already (the usual case), else those of keyOrder.
func sortExtras(xs []Extra) {
	if extrasSorted(xs) {
		return
	}
	if len(xs) > MaxExtras {
		sorted := make([]Extra, len(xs))
		for i, p := range keyOrder(xs, nil) {
			sorted[i] = xs[p]
		}
		copy(xs, sorted)
		return
	}
	var buf [2 * MaxExtras]uint64
	var tmp [MaxExtras]Extra
	for i, p := range keyOrder(xs, buf[:]) {
		tmp[i] = xs[p]
	}
	copy(xs, tmp[:len(xs)])
}

// sortedExtras returns a copy of xs (at most MaxExtras) in key order,
// stably.
func sortedExtras(xs []Extra) []Extra {
	out := make([]Extra, len(xs))
	if extrasSorted(xs) {
		copy(out, xs)
		return out
	}
	var buf [2 * MaxExtras]uint64
	for i, p := range keyOrder(xs, buf[:]) {
		out[i] = xs[p]
	}
	return out
}
