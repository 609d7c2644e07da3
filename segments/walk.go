package segments

import "slices"

// Walk calls fn on n and, when fn returns true, on each of n's children
// in order, depth first. It skips nil nodes.
func Walk(n Node, fn func(Node) bool) {
	if n == nil || !fn(n) {
		return
	}
	switch n := n.(type) {
	case *And:
		for _, a := range n.Args {
			Walk(a, fn)
		}
	case *Or:
		for _, a := range n.Args {
			Walk(a, fn)
		}
	case *Not:
		Walk(n.X, fn)
	}
}

// Refs returns the names of the segments that n refers to, sorted and
// without repeats: the segments it depends on.
func Refs(n Node) []string {
	var names []string
	Walk(n, func(n Node) bool {
		if r, ok := n.(*Ref); ok {
			names = append(names, r.Name)
		}
		return true
	})
	slices.Sort(names)
	return slices.Compact(names)
}
