package segments

import (
	"fmt"
	"strings"
)

// Error is one mistake in a segment: a syntax error from Parse, a JSON
// error from UnmarshalNode, or a problem Check found. It says what was
// expected and what was found, or what is wrong and, where it can, what to
// write instead.
type Error struct {
	Pos  Pos    // where in the text; zero if the expression did not come from text
	Path string // JSON pointer to the value concerned, e.g. "/and/1/did/window"; set when Pos is zero
	Msg  string
}

// Error renders the mistake as "line:col: message" for text, "path:
// message" for JSON (e.g. `/and/1/did/window: expected a duration like
// "7d", found 7`), or the bare message when neither is known.
func (e *Error) Error() string {
	switch {
	case e.Pos.Line > 0:
		return fmt.Sprintf("%d:%d: %s", e.Pos.Line, e.Pos.Col, e.Msg)
	case e.Path != "":
		return e.Path + ": " + e.Msg
	}
	return e.Msg
}

// Errors is every problem Check or CheckRefs found, in the order of the
// expression.
type Errors []*Error

// Error renders the problems one a line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap returns the problems, for errors.As.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// String renders a position as "line:col".
func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Line, p.Col) }
