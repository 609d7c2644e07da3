package collector

import (
	"slices"
	"testing"
)

// adversarial returns the rejections of a request whose first k records the
// tag plan refused and whose n records after them the decoder refused, in
// the order the handler collects them (the decoder's first).
func adversarial(k, n int) []Rejection {
	rs := make([]Rejection, 0, k+n)
	for i := k; i < k+n; i++ {
		rs = append(rs, Rejection{Index: i, Field: "type", Reason: "missing"})
	}
	for i := 0; i < k; i++ {
		rs = append(rs, Rejection{Index: i, Field: "name", Reason: "not in the plan"})
	}
	return rs
}

// Ordering the rejections costs work linear in their number, whatever
// their order: 8 times the rejections may cost at most 12 times the steps
// (a quadratic ordering costs 64 times).
func TestRejectionOrderIsLinear(t *testing.T) {
	steps := func(k, n int) int64 {
		rs := adversarial(k, n)
		orderSteps.Store(0)
		rs = orderRejections(rs)
		if !slices.IsSortedFunc(rs, func(a, b Rejection) int { return a.Index - b.Index }) {
			t.Fatalf("rejections of %d+%d not ordered", k, n)
		}
		for i, r := range rs {
			if r.Index != i {
				t.Fatalf("rejection %d has index %d", i, r.Index)
			}
		}
		return orderSteps.Load()
	}
	small, large := steps(500, 2000), steps(8*500, 8*2000)
	t.Logf("steps: %d for 2,500 rejections, %d for 20,000 (%.1fx)", small, large, float64(large)/float64(small))
	if small == 0 || large > 12*small {
		t.Fatalf("ordering 8x the rejections took %d steps, %.1fx the %d of the smaller body: not linear", large, float64(large)/float64(small), small)
	}
}
