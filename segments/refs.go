package segments

import (
	"fmt"
	"maps"
	"slices"
	"strings"
)

// CheckRefs finds the reference cycles among one app's segments, given by
// name: a segment that refers, directly or through others, to itself has
// no defined membership. For every segment on a cycle it reports the
// shortest cycle through it, each cycle once, as an *Error such as
// `segments refer to each other in a cycle: "a" → "b" → "a"` (starting at
// the cycle's first name in sorted order); it returns nil if there is no
// cycle. References to segments not in segs are left to Check.
func CheckRefs(segs map[string]Node) error {
	refs := make(map[string][]string, len(segs))
	for name, n := range segs {
		for _, r := range Refs(n) {
			if _, ok := segs[r]; ok {
				refs[name] = append(refs[name], r)
			}
		}
	}
	var errs Errors
	reported := map[string]bool{}
	for _, name := range slices.Sorted(maps.Keys(segs)) {
		cycle := shortestCycle(name, refs)
		if cycle == nil {
			continue
		}
		cycle = rotate(cycle)
		key := strings.Join(cycle, "\x00")
		if reported[key] {
			continue
		}
		reported[key] = true
		quoted := make([]string, 0, len(cycle)+1)
		for _, n := range append(cycle, cycle[0]) {
			quoted = append(quoted, fmt.Sprintf("%q", n))
		}
		errs = append(errs, &Error{Msg: "segments refer to each other in a cycle: " + strings.Join(quoted, " → ")})
	}
	if len(errs) == 0 {
		return nil
	}
	return errs
}

// shortestCycle returns the shortest path of references from start back
// to start (without repeating start at the end), or nil. Breadth first,
// with references in sorted order, so the answer is deterministic.
func shortestCycle(start string, refs map[string][]string) []string {
	prev := map[string]string{}
	queue := []string{start}
	for len(queue) > 0 {
		n := queue[0]
		queue = queue[1:]
		for _, r := range refs[n] {
			if r == start {
				cycle := []string{n}
				for n != start {
					n = prev[n]
					cycle = append(cycle, n)
				}
				slices.Reverse(cycle)
				return cycle
			}
			if _, ok := prev[r]; !ok {
				prev[r] = n
				queue = append(queue, r)
			}
		}
	}
	return nil
}

// rotate returns a copy of cycle starting at its smallest name.
func rotate(cycle []string) []string {
	i := slices.Index(cycle, slices.Min(cycle))
	return append(slices.Clone(cycle[i:]), cycle[:i]...)
}
