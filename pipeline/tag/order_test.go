package tag

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// countComparisons counts the whole-key comparisons that fn makes.
func countComparisons(t *testing.T, fn func()) int {
	t.Helper()
	n := 0
	countCompare = func() { n++ }
	defer func() { countCompare = nil }()
	fn()
	return n
}

// A record's extras are sorted with O(n log n) comparisons whatever their
// order: decoding, the message id and validation together stay within one
// merge sort (n⌈log2 n⌉) and a few linear passes. Keys sharing a long
// prefix make every comparison a whole-key one, so that all are counted.
// (The insertion sort this replaced made n(n-1)/2 = 2016 comparisons for
// 64 keys in reverse order, in the message id alone.)
func TestExtrasSortComparisonsAreNLogN(t *testing.T) {
	const n = MaxExtras
	limit := n*bits.Len(uint(n-1)) + 4*n
	orders := map[string][]int{"sorted": make([]int, n), "reversed": make([]int, n)}
	for i := range n {
		orders["sorted"][i], orders["reversed"][i] = i, n-1-i
	}
	for seed := range uint64(5) {
		orders[fmt.Sprintf("shuffled-%d", seed)] = rand.New(rand.NewPCG(seed, 7)).Perm(n)
	}
	for name, perm := range orders {
		var b strings.Builder
		b.WriteString(`{"type":"event","deviceId":"d","name":"e","time":"2026-11-28T09:00:00Z","extras":{`)
		xs := make([]Extra, n)
		for i, k := range perm {
			if i > 0 {
				b.WriteByte(',')
			}
			key := fmt.Sprintf("a_rather_long_shared_prefix_%02d", k)
			fmt.Fprintf(&b, `"%s":%d`, key, i)
			xs[i] = Extra{Key: key, Value: Number(float64(i))}
		}
		b.WriteString(`}}`)
		var rec Record
		var err error
		if c := countComparisons(t, func() { rec, err = DecodeJSON([]byte(b.String()), env) }); c > limit {
			t.Errorf("%s: DecodeJSON made %d key comparisons for %d extras, more than %d", name, c, n, limit)
		}
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !slices.IsSortedFunc(rec.Extras, func(a, b Extra) int { return strings.Compare(a.Key, b.Key) }) {
			t.Fatalf("%s: extras not sorted", name)
		}
		// GenerateID over extras in the device's order: no copy sorted
		// one swap at a time.
		r := Record{Kind: KindEvent, AppID: "a", DeviceID: "d", Name: "e", Extras: xs}
		var id string
		if c := countComparisons(t, func() { id = GenerateID(&r, time.Unix(1, 0)) }); c > n*bits.Len(uint(n-1))+2*n {
			t.Errorf("%s: GenerateID made %d key comparisons for %d extras", name, c, n)
		}
		sorted := Record{Kind: KindEvent, AppID: "a", DeviceID: "d", Name: "e", Extras: slices.Clone(rec.Extras)}
		for i := range sorted.Extras {
			sorted.Extras[i].Value = Number(float64(slices.Index(perm, i)))
		}
		if want := GenerateID(&sorted, time.Unix(1, 0)); id != want {
			t.Errorf("%s: id %s over unsorted extras, %s over the same sorted", name, id, want)
		}
	}
}

// keyOrder and sortExtras sort as a stable sort by key does: keys that
// share prefixes of every length, shorter keys that prefix longer ones,
// zero bytes, duplicates.
func TestKeyOrderIsAStableSortByKey(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	alphabet := []string{"", "a", "b", "\x00", "abcdefg", "abcdefgh", "abcdef", "k0", "k1", "zz", "\xff"}
	for trial := range 2000 {
		n := rng.IntN(MaxExtras + 1)
		if trial%50 == 0 {
			n = 300 // more positions than 8 bits hold
		}
		xs := make([]Extra, n)
		for i := range xs {
			k := alphabet[rng.IntN(len(alphabet))] + alphabet[rng.IntN(len(alphabet))]
			xs[i] = Extra{Key: k, Value: Number(float64(i))}
		}
		want := slices.Clone(xs)
		slices.SortStableFunc(want, func(a, b Extra) int { return strings.Compare(a.Key, b.Key) })
		var buf [2 * MaxExtras]uint64
		got := make([]Extra, n)
		for i, p := range keyOrder(xs, buf[:]) {
			got[i] = xs[p]
		}
		if !slices.Equal(got, want) {
			t.Fatalf("keyOrder of %q:\n got %v\nwant %v", keys(xs), keys(got), keys(want))
		}
		if n <= MaxExtras {
			if got := sortedExtras(xs); !slices.Equal(got, want) {
				t.Fatalf("sortedExtras of %q: %v", keys(xs), keys(got))
			}
		}
		sortExtras(xs)
		if !slices.Equal(xs, want) {
			t.Fatalf("sortExtras: %v, want %v", keys(xs), keys(want))
		}
	}
}

func keys(xs []Extra) []string {
	ks := make([]string, len(xs))
	for i, x := range xs {
		ks[i] = x.Key
	}
	return ks
}

// The shortcuts for integers write and read what strconv does.
func TestIntegerShortcuts(t *testing.T) {
	for _, f := range []float64{0, math.Copysign(0, -1), 1, -1, 7, 300, 99999, 999999, -999999, 1e6, -1e6, 1234567, 0.5, -2.5, 1e21, 123456789012345, 1e15 - 1} {
		if got, want := string(Number(f).AppendJSON(nil)), strconv.FormatFloat(f, 'g', -1, 64); got != want {
			t.Errorf("AppendJSON(%v) = %s, want %s", f, got, want)
		}
	}
	for _, s := range []string{"0", "-0", "7", "-12", "999999999999999", "-999999999999999", "1000000000000000", "12345678901234567890", "9007199254740993", "1.5", "1e3", "-0.0"} {
		sc := scanner{b: []byte(s)}
		got, err := sc.number()
		want, _ := strconv.ParseFloat(s, 64)
		if err != nil || got != want || math.Signbit(got) != math.Signbit(want) || sc.pos != len(s) {
			t.Errorf("number(%s) = %v, %v (pos %d), want %v", s, got, err, sc.pos, want)
		}
	}
}
