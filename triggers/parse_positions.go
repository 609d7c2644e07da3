package triggers

import (
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"
)

// Pos is a position in a campaign file: 1-based line and column, the
// column in characters.
type Pos struct{ Line, Col int }

// Positions says where each field of a parsed campaign was written, so
// that Check reports its mistakes at their line and column. Fields are
// named by paths such as "who.segments[0]" and "what.content.fr.title".
type Positions struct {
	File  string
	at    map[string]Pos     // path → where its value was written ("" is the document)
	texts map[string]textLoc // path of each template text → where and how it was written
	lines []string           // the file, a line each, to place columns inside texts
}

// textLoc is where a text was written, and in which style (plain,
// quoted, literal block ...): what it takes to find a character of the
// text in the file.
type textLoc struct {
	at    Pos
	style yaml.Style
}

// Of returns where the field at path was written or, when it was not
// (a default), where the nearest enclosing field was; false when even the
// document has no position (p is nil).
func (p *Positions) Of(path string) (Pos, bool) {
	if p == nil {
		return Pos{}, false
	}
	for {
		if at, ok := p.at[path]; ok {
			return at, true
		}
		if path == "" {
			return Pos{}, false
		}
		path = parentPath(path)
	}
}

// parentPath returns the path of the field that holds path's field:
// "who" for "who.sample", "who.segments" for "who.segments[0]".
func parentPath(path string) string {
	if i := strings.LastIndexAny(path, ".["); i >= 0 {
		return path[:i]
	}
	return ""
}

// placeError makes the mistake at line, col of the text at path a
// mistake of the file: at its place when it can be found (plain, quoted
// and literal block texts without escapes before it), else at the text's
// start with the column of the text in the message. p may be nil: then
// the mistake has only its path.
func (p *Positions) placeError(path, text string, line, col int, msg string) *Error {
	at, exact := p.place(path, text, line, col)
	if !exact {
		if strings.Contains(strings.TrimRight(text, "\n"), "\n") {
			msg += " (line " + strconv.Itoa(line) + ", column " + strconv.Itoa(col) + " of the text)"
		} else {
			msg += " (column " + strconv.Itoa(col) + " of the text)"
		}
	}
	e := &Error{Line: at.Line, Col: at.Col, Path: path, Msg: msg}
	if p != nil {
		e.File = p.File
	}
	return e
}

// place returns where the character at line, col (1-based, col in
// characters) of the text at path was written; exact is false when it
// cannot say, and then it returns where the text starts.
func (p *Positions) place(path, text string, line, col int) (at Pos, exact bool) {
	if p == nil {
		return Pos{}, false
	}
	loc, ok := p.texts[path]
	if !ok {
		at, _ := p.Of(path)
		return at, false
	}
	vlines := strings.Split(text, "\n")
	if line < 1 || line > len(vlines) || col < 1 {
		return loc.at, false
	}
	prefix := vlines[line-1]
	if k := runeOffset(prefix, col-1); k >= 0 {
		prefix = prefix[:k]
	} else {
		return loc.at, false
	}
	switch {
	case loc.style&yaml.LiteralStyle != 0:
		first := loc.at.Line + 1 // the file line of the text's first line
		indent := -1
		for l := first; l <= len(p.lines); l++ {
			if s := strings.TrimRight(p.lines[l-1], "\r"); strings.TrimSpace(s) != "" {
				indent = len(s) - len(strings.TrimLeft(s, " "))
				break
			}
		}
		if fl := first + line - 1; indent >= 0 && fl <= len(p.lines) {
			if raw := p.lines[fl-1]; len(raw) >= indent && strings.HasPrefix(raw[indent:], prefix) {
				return Pos{fl, indent + col}, true
			}
		}
	case loc.style&yaml.FoldedStyle != 0 || line != 1 || loc.at.Line < 1 || loc.at.Line > len(p.lines):
	default: // on one line: plain, or quoted
		raw := p.lines[loc.at.Line-1]
		q := 0
		if loc.style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
			q = 1
		}
		if start := runeOffset(raw, loc.at.Col-1+q); start >= 0 && strings.HasPrefix(raw[start:], prefix) {
			return Pos{loc.at.Line, loc.at.Col + q + col - 1}, true
		}
	}
	return loc.at, false
}

// runeOffset returns the byte offset of the n-th character of s (n from
// 0), len(s) for the end, -1 past it.
func runeOffset(s string, n int) int {
	for i := range s {
		if n == 0 {
			return i
		}
		n--
	}
	if n == 0 {
		return len(s)
	}
	return -1
}
