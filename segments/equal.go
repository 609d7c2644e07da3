package segments

import "slices"

// Equal reports whether two expressions are the same tree, ignoring
// positions (Pos and Operand.At). Values compare as tag.Value.Equal does
// (dates by instant; NaN equals NaN).
func Equal(a, b Node) bool {
	switch a := a.(type) {
	case nil:
		return b == nil
	case *And:
		b, ok := b.(*And)
		return ok && slices.EqualFunc(a.Args, b.Args, Equal)
	case *Or:
		b, ok := b.(*Or)
		return ok && slices.EqualFunc(a.Args, b.Args, Equal)
	case *Not:
		b, ok := b.(*Not)
		return ok && Equal(a.X, b.X)
	case *Since:
		b, ok := b.(*Since)
		return ok && a.Moment == b.Moment && a.Kind == b.Kind && a.Name == b.Name && equalAgo(a.Range, b.Range)
	case *Did:
		b, ok := b.(*Did)
		return ok && a.Kind == b.Kind && a.Name == b.Name && slices.EqualFunc(a.Where, b.Where, equalFilter) &&
			(a.Duration == nil) == (b.Duration == nil) && (a.Duration == nil || equalFilter(*a.Duration, *b.Duration)) &&
			a.Count == b.Count && a.Window == b.Window
	case *Attr:
		b, ok := b.(*Attr)
		return ok && a.Source == b.Source && a.Key == b.Key && a.Op == b.Op && slices.EqualFunc(a.Values, b.Values, equalOperand)
	case *Unchanged:
		b, ok := b.(*Unchanged)
		return ok && a.Key == b.Key && a.Min == b.Min
	case *Ref:
		b, ok := b.(*Ref)
		return ok && a.Name == b.Name
	case *Sample:
		b, ok := b.(*Sample)
		return ok && a.Percent == b.Percent && a.Salt == b.Salt
	}
	return false
}

func equalAgo(a, b Ago) bool {
	return a.Min == b.Min && a.Max == b.Max && a.Absolute == b.Absolute && a.From.Equal(b.From) && a.To.Equal(b.To)
}

func equalFilter(a, b Filter) bool {
	return a.Key == b.Key && a.Op == b.Op && slices.EqualFunc(a.Values, b.Values, equalOperand)
}

func equalOperand(a, b Operand) bool {
	return a.Value.Equal(b.Value) && a.Relative == b.Relative && a.Offset == b.Offset
}
