package tagplan

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one mistake in a plan file, at the YAML node it is about.
type Error struct {
	File string
	Line int // 1-based; 0 if the YAML parser did not say where
	Col  int // 1-based; 0 for syntax errors, whose column is not known
	Msg  string
}

// Error renders the mistake as "file:line:col: message", the form editors
// jump to ("file:line: message" without a column, "file: message" without
// a line).
func (e *Error) Error() string {
	switch {
	case e.Line <= 0:
		return e.File + ": " + e.Msg
	case e.Col <= 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Col, e.Msg)
}

// Errors is every mistake found in a plan file, in file order.
type Errors []*Error

// Error renders the mistakes one a line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the mistakes, for errors.As.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// maxErrors bounds the mistakes reported for one file: past it, the file
// is likely not a tag plan at all.
const maxErrors = 50

// sorted returns es in file order (and by message at one place), without repeats (a node reached through
// several aliases is reported once), and cut at maxErrors.
func (es Errors) sorted() Errors {
	slices.SortFunc(es, func(a, b *Error) int {
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col), strings.Compare(a.Msg, b.Msg))
	})
	es = slices.CompactFunc(es, func(a, b *Error) bool { return *a == *b })
	if len(es) > maxErrors {
		last := es[maxErrors-1]
		es = append(es[:maxErrors:maxErrors], &Error{File: last.File, Line: last.Line, Col: last.Col,
			Msg: fmt.Sprintf("too many errors (more than %d); fix these first", maxErrors)})
	}
	return es
}

// suggest returns ` (did you mean "x"?)` for the option closest to s if it
// is a likely typo of it, "" otherwise.
func suggest(s string, options ...string) string {
	if best, ok := closest(s, options); ok {
		return fmt.Sprintf(" (did you mean %q?)", best)
	}
	return ""
}

// closest returns the option closest to s if s is a likely typo of it: at
// most two edits away, and longer than that distance.
func closest(s string, options []string) (string, bool) {
	best, bestDist := "", 3 // at most two edits
	for _, o := range options {
		if d := editDistance(s, o, bestDist); d < bestDist {
			best, bestDist = o, d
		}
	}
	if best == "" || len(s) <= bestDist {
		return "", false
	}
	return best, true
}

// editDistance returns the Levenshtein distance between a and b, or max if
// it is at least max.
func editDistance(a, b string, max int) int {
	if len(a)-len(b) >= max || len(b)-len(a) >= max {
		return max
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return min(prev[len(b)], max)
}
