package engine

import (
	"math"
	"strings"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// compareValues orders two values of the same type; ok is false when the
// types differ (a comparison between them is false).
func compareValues(a, b tag.Value, version bool) (int, bool) {
	if a.Type != b.Type {
		return 0, false
	}
	switch a.Type {
	case tag.TypeString:
		if version {
			return segments.CompareVersions(a.Str, b.Str), true
		}
		return strings.Compare(a.Str, b.Str), true
	case tag.TypeNumber:
		switch {
		case math.IsNaN(a.Num) || math.IsNaN(b.Num):
			return 0, false
		case a.Num < b.Num:
			return -1, true
		case a.Num > b.Num:
			return 1, true
		}
		return 0, true
	case tag.TypeBool:
		switch {
		case a.Bool == b.Bool:
			return 0, true
		case b.Bool:
			return -1, true
		}
		return 1, true
	case tag.TypeDate:
		return a.Date.Compare(b.Date), true
	}
	return 0, false
}

// holds evaluates a comparison of a value (set tells whether there is
// one) against operands. A comparison with no value, or between values of
// different types, is false; "is not set" is the only way to match a
// missing value.
func holds(op segments.CmpOp, v tag.Value, set bool, ops []tag.Value, version bool) bool {
	switch op {
	case segments.OpSet:
		return set
	case segments.OpNotSet:
		return !set
	}
	if !set {
		return false
	}
	cmp := func(i int) (int, bool) { return compareValues(v, ops[i], version) }
	switch op {
	case segments.OpEq:
		c, ok := cmp(0)
		return ok && c == 0
	case segments.OpNe:
		c, ok := cmp(0)
		return ok && c != 0
	case segments.OpLt:
		c, ok := cmp(0)
		return ok && c < 0
	case segments.OpLe:
		c, ok := cmp(0)
		return ok && c <= 0
	case segments.OpGt:
		c, ok := cmp(0)
		return ok && c > 0
	case segments.OpGe:
		c, ok := cmp(0)
		return ok && c >= 0
	case segments.OpIn:
		for i := range ops {
			if c, ok := cmp(i); ok && c == 0 {
				return true
			}
		}
		return false
	case segments.OpNotIn:
		for i := range ops {
			if c, ok := cmp(i); !ok || c == 0 {
				return false
			}
		}
		return true
	case segments.OpBetween:
		lo, ok1 := cmp(0)
		hi, ok2 := cmp(1)
		return ok1 && ok2 && lo >= 0 && hi <= 0
	case segments.OpPrefix:
		return v.Type == tag.TypeString && ops[0].Type == tag.TypeString && strings.HasPrefix(v.Str, ops[0].Str)
	}
	return false
}

// countHolds compares a count.
func countHolds(op segments.CmpOp, c, n int) bool {
	switch op {
	case segments.OpGe:
		return c >= n
	case segments.OpGt:
		return c > n
	case segments.OpLe:
		return c <= n
	case segments.OpLt:
		return c < n
	case segments.OpEq:
		return c == n
	}
	return false
}

// matches reports whether a record passes a did feature's filters. In a
// filter, a date relative to now is relative to the record's own time.
func (f *feature) matches(r *tag.Record) bool {
	for i := range f.where {
		w := &f.where[i]
		v, ok := r.Extra(w.key)
		if !holds(w.op, v, ok, f.operands(w, r.Time), false) {
			return false
		}
	}
	if d := f.dur; d != nil {
		ms := tag.Number(float64(r.Duration) / float64(time.Millisecond))
		if !holds(d.op, ms, true, d.vals, false) {
			return false
		}
	}
	return true
}

func (f *feature) operands(w *cfilter, at time.Time) []tag.Value {
	if len(w.rel) == 0 {
		return w.vals
	}
	f.scratch = append(f.scratch[:0], w.vals...)
	ms := at.UnixMilli()
	for _, r := range w.rel {
		f.scratch[r.i] = tag.Value{Type: tag.TypeDate, Date: time.UnixMilli(ms + r.off).UTC()}
	}
	return f.scratch
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if (a%b != 0) && ((a < 0) != (b < 0)) {
		q--
	}
	return q
}

func ceilDiv(a, b int64) int64 { return -floorDiv(-a, b) }
