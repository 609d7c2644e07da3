package triggers

import (
	"cmp"
	"fmt"
	"slices"
	"strings"
)

// Error is one mistake in a campaign file, a campaign or a template: where
// it is, and what is wrong and, where it can say, what to write instead.
type Error struct {
	// File is the campaign file; empty for a campaign not parsed from one
	// and for a template alone.
	File string
	// Line and Col are 1-based, Col in characters: in the file, or in the
	// text for a template alone. Zero when not known (YAML syntax errors
	// have no column; a campaign built in Go has no positions).
	Line, Col int
	// Path names the field, e.g. "who.variants[1].weight" or
	// "what.content.fr.title"; empty for a template alone.
	Path string
	Msg  string
}

// Error renders the mistake as "file:line:col: message", the form editors
// jump to; "file:line: message" without a column; "path: message" for a
// campaign without positions; "line:col: message" for a template alone.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		b.WriteString(":")
		switch {
		case e.Line > 0 && e.Col > 0:
			fmt.Fprintf(&b, "%d:%d: ", e.Line, e.Col)
		case e.Line > 0:
			fmt.Fprintf(&b, "%d: ", e.Line)
		default:
			b.WriteString(" ")
			if e.Path != "" {
				b.WriteString(e.Path + ": ")
			}
		}
		b.WriteString(e.Msg)
		return b.String()
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	if e.Line > 0 {
		fmt.Fprintf(&b, "%d:%d: ", e.Line, e.Col)
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Errors is every mistake found, in the order of the file.
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

// maxCampaignErrors bounds the mistakes reported for one campaign: past
// it, the file is likely not a campaign at all.
const maxCampaignErrors = 50

// sorted returns es in file order (mistakes without a position keep the
// order they were found in, after the others; mistakes at one place by
// message), without repeats (a node
// reached through several aliases is reported once), cut at
// maxCampaignErrors.
func (es Errors) sorted() Errors {
	slices.SortStableFunc(es, func(a, b *Error) int {
		switch {
		case a.Line == 0 && b.Line == 0:
			return 0
		case a.Line == 0:
			return 1
		case b.Line == 0:
			return -1
		}
		return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col), strings.Compare(a.Msg, b.Msg))
	})
	es = slices.CompactFunc(es, func(a, b *Error) bool { return *a == *b })
	if len(es) > maxCampaignErrors {
		last := es[maxCampaignErrors-1]
		es = append(es[:maxCampaignErrors:maxCampaignErrors], &Error{File: last.File, Line: last.Line, Col: last.Col,
			Msg: fmt.Sprintf("too many errors (more than %d); fix these first", maxCampaignErrors)})
	}
	return es
}
