package segments

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/openengage/engage/pipeline/tag"
)

// tokKind is the kind of a token of the text form.
type tokKind uint8

const (
	tokEOF      tokKind = iota
	tokIllegal          // an unexpected character, or a malformed literal (msg says why)
	tokIdent            // a keyword, device field or extras key
	tokString           // "double-quoted"
	tokNumber           // 12, 12.5, 1e6
	tokDuration         // 30s, 3d, 2w, 1y, 500ms
	tokPercent          // 1%, 12.5%
	tokDate             // 2026-01-31, 2026-01-31T10:00:00Z
	tokOp               // = == != < <= > >=
	tokLParen           // (
	tokRParen           // )
	tokLBrack           // [
	tokRBrack           // ]
	tokComma            // ,
	tokPlus             // +
	tokMinus            // -
)

// token is one token of the text form.
type token struct {
	kind  tokKind
	pos   Pos
	text  string        // as written
	word  string        // tokIdent: lower-cased, for keywords
	str   string        // tokString: the value, escapes resolved
	num   float64       // tokNumber, tokPercent
	whole bool          // tokNumber: written as an integer (no fraction, no exponent)
	dur   time.Duration // tokDuration
	years bool          // tokDuration: written in years
	date  time.Time     // tokDate, in UTC, to the millisecond
	op    CmpOp         // tokOp
	msg   string        // tokIllegal: what is wrong with a malformed literal; "" for an unexpected character
}

// Limits of the text form.
const (
	MaxTextBytes = 64 << 10 // longest segment text Parse accepts
	MaxDepth     = 100      // deepest nesting of parentheses and not, in text and JSON
	maxDuration  = 36500 * day
)

const (
	day  = 24 * time.Hour
	week = 7 * day
	year = 365 * day
)

// durationUnits are the units a duration may be written in, by every name
// the text accepts. There is no month: it has no fixed length.
var durationUnits = map[string]time.Duration{
	"ms": time.Millisecond,
	"s":  time.Second, "sec": time.Second, "secs": time.Second, "second": time.Second, "seconds": time.Second,
	"m": time.Minute, "min": time.Minute, "mins": time.Minute, "minute": time.Minute, "minutes": time.Minute,
	"h": time.Hour, "hour": time.Hour, "hours": time.Hour,
	"d": day, "day": day, "days": day,
	"w": week, "week": week, "weeks": week,
	"y": year, "year": year, "years": year,
}

const unitsHint = "ms, s, m, h, d, w or y"

// punctuation maps one-character tokens to their kinds.
var punctuation = map[byte]tokKind{'(': tokLParen, ')': tokRParen, '[': tokLBrack, ']': tokRBrack, ',': tokComma, '+': tokPlus, '-': tokMinus}

// lexer splits a segment text into tokens. It tracks the line and the
// column (in characters, 1-based) as it goes.
type lexer struct {
	src       string
	off       int // byte offset of the next character
	line, col int // position of the next character
}

// lex returns the tokens of src, ending with tokEOF, or with the first
// tokIllegal if there is one.
func lex(src string) []token {
	l := &lexer{src: src, line: 1, col: 1}
	var toks []token
	for {
		t := l.next()
		toks = append(toks, t)
		if t.kind == tokEOF || t.kind == tokIllegal {
			return toks
		}
	}
}

// peek returns the byte at offset i from the next character, 0 past the end.
func (l *lexer) peek(i int) byte {
	if l.off+i < len(l.src) {
		return l.src[l.off+i]
	}
	return 0
}

// advance moves past n bytes, which hold whole characters.
func (l *lexer) advance(n int) {
	end := l.off + n
	for l.off < end {
		c := l.src[l.off]
		if c == '\n' {
			l.line++
			l.col = 1
			l.off++
			continue
		}
		_, size := utf8.DecodeRuneInString(l.src[l.off:])
		l.off += size
		l.col++
	}
}

func (l *lexer) skipSpaceAndComments() {
	for l.off < len(l.src) {
		switch c := l.src[l.off]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			l.advance(1)
		case c == '#':
			n := strings.IndexByte(l.src[l.off:], '\n')
			if n < 0 {
				n = len(l.src) - l.off
			}
			l.advance(n)
		default:
			return
		}
	}
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }
func isIdent(c byte) bool  { return isLetter(c) || isDigit(c) || c == '_' }

// next returns the next token.
func (l *lexer) next() token {
	l.skipSpaceAndComments()
	start := l.off
	t := token{pos: Pos{l.line, l.col}}
	if l.off >= len(l.src) {
		t.kind = tokEOF
		return t
	}
	c := l.src[l.off]
	switch {
	case isLetter(c) || c == '_':
		n := 1
		for isIdent(l.peek(n)) {
			n++
		}
		l.advance(n)
		t.kind, t.text = tokIdent, l.src[start:l.off]
		t.word = strings.ToLower(t.text)
		return t
	case isDigit(c):
		return l.number(t)
	case c == '"':
		return l.string(t)
	}
	if k, ok := punctuation[c]; ok {
		l.advance(1)
		t.kind, t.text = k, l.src[start:l.off]
		return t
	}
	two := l.src[l.off:min(l.off+2, len(l.src))]
	for _, o := range [...]struct {
		text string
		op   CmpOp
	}{{"==", OpEq}, {"!=", OpNe}, {"<=", OpLe}, {">=", OpGe}, {"=", OpEq}, {"<", OpLt}, {">", OpGt}} {
		if strings.HasPrefix(two, o.text) {
			l.advance(len(o.text))
			t.kind, t.text, t.op = tokOp, o.text, o.op
			return t
		}
	}
	r, size := utf8.DecodeRuneInString(l.src[l.off:])
	t.kind, t.text = tokIllegal, l.src[l.off:l.off+size]
	if r == utf8.RuneError && size == 1 {
		t.msg = "invalid UTF-8 in the text"
	}
	return t
}

// here moves t to the lexer's position, for an error inside a literal.
func (l *lexer) here(t token) token {
	t.pos = Pos{l.line, l.col}
	return t
}

// illegal turns t into a malformed-literal token.
func illegal(t token, format string, args ...any) token {
	t.kind, t.msg = tokIllegal, fmt.Sprintf(format, args...)
	return t
}

// number reads a number, a duration (3d), a percentage (1%) or a date
// (2026-01-31, 2026-01-31T10:00:00Z).
func (l *lexer) number(t token) token {
	start := l.off
	n := 0
	for isDigit(l.peek(n)) {
		n++
	}
	if n == 4 && l.peek(4) == '-' && isDigit(l.peek(5)) {
		return l.date(t)
	}
	whole := true
	if l.peek(n) == '.' && isDigit(l.peek(n+1)) {
		whole = false
		n++
		for isDigit(l.peek(n)) {
			n++
		}
	}
	if e := l.peek(n); e == 'e' || e == 'E' {
		m := n + 1
		if s := l.peek(m); s == '+' || s == '-' {
			m++
		}
		if isDigit(l.peek(m)) {
			whole = false
			for n = m; isDigit(l.peek(n)); n++ {
			}
		}
	}
	digits := l.src[start : start+n]
	suffix := n
	for isIdent(l.peek(suffix)) {
		suffix++
	}
	unit := l.src[start+n : start+suffix]
	if unit == "" && l.peek(n) == '%' {
		suffix++
	}
	l.advance(suffix)
	t.text = l.src[start:l.off]
	f, err := strconv.ParseFloat(digits, 64)
	if err != nil || math.IsInf(f, 0) {
		return illegal(t, "number %s is out of range", digits)
	}
	switch {
	case unit != "":
		return duration(t, digits, unit, whole)
	case strings.HasSuffix(t.text, "%"):
		t.kind, t.num = tokPercent, f
	default:
		t.kind, t.num, t.whole = tokNumber, f, whole
	}
	return t
}

// duration makes t a duration token of digits units, if unit is one.
func duration(t token, digits, unit string, whole bool) token {
	u, ok := durationUnits[strings.ToLower(unit)]
	if !ok {
		return illegal(t, "unknown duration unit %q in %q: use %s (there is no month: write 30d)", unit, t.text, unitsHint)
	}
	if !whole {
		return illegal(t, "expected a whole number of units like 36h, found %q", t.text)
	}
	n, err := strconv.ParseInt(digits, 10, 64)
	if err != nil || n > int64(maxDuration/u) {
		return illegal(t, "duration %s is too long: at most 36500d (100y)", t.text)
	}
	t.kind, t.dur, t.years = tokDuration, time.Duration(n)*u, u == year
	return t
}

// date reads 2026-01-31 (midnight UTC) or an RFC 3339 time such as
// 2026-01-31T10:00:00Z or 2026-01-31T10:00:00.250+02:00.
func (l *lexer) date(t token) token {
	start := l.off
	n := 0
	for c := l.peek(n); isDigit(c) || c == '-' || c == ':' || c == '.' || c == '+' || c == 'T' || c == 't' || c == 'Z' || c == 'z'; c = l.peek(n) {
		n++
	}
	l.advance(n)
	t.text = l.src[start:l.off]
	layout := "2006-01-02"
	if len(t.text) > len(layout) {
		layout = time.RFC3339Nano
	}
	d, err := time.Parse(layout, strings.ToUpper(t.text))
	if err != nil {
		if _, zerr := time.Parse(layout, strings.ToUpper(t.text)+"Z"); zerr == nil {
			return illegal(t, "expected a time zone after the time, such as %sZ or %s+02:00", t.text, t.text)
		}
		return illegal(t, "expected a date like 2026-01-31 or 2026-01-31T10:00:00Z, found %q", t.text)
	}
	d = tag.Date(d).Date
	if y := d.Year(); y < 1 || y > 9999 {
		return illegal(t, "date %s is out of range: years 0001 to 9999 in UTC", t.text)
	}
	t.kind, t.date = tokDate, d
	return t
}

// string reads a double-quoted string. Escapes: \" \\ \n \r \t \uXXXX.
func (l *lexer) string(t token) token {
	start := l.off
	var b strings.Builder
	i := 1
	for {
		if l.off+i >= len(l.src) {
			l.advance(len(l.src) - l.off)
			return illegal(t, "unterminated string: expected a closing \" before the end of the text")
		}
		c := l.src[l.off+i]
		switch {
		case c == '"':
			l.advance(i + 1)
			t.kind, t.text, t.str = tokString, l.src[start:l.off], b.String()
			return t
		case c == '\n' || c == '\r':
			l.advance(i)
			return illegal(t, "unterminated string: expected a closing \" before the end of the line")
		case c == '\\':
			r, n, msg := unescape(l.src[l.off+i:])
			if msg != "" {
				l.advance(i)
				return illegal(l.here(t), "%s", msg)
			}
			b.WriteRune(r)
			i += n
		case c < ' ' && c != '\t' || c == 0x7f:
			l.advance(i)
			return illegal(l.here(t), "control character %U in a string: write it as \\u%04X", rune(c), c)
		default:
			r, size := utf8.DecodeRuneInString(l.src[l.off+i:])
			if r == utf8.RuneError && size == 1 {
				l.advance(i)
				return illegal(l.here(t), "invalid UTF-8 in a string")
			}
			b.WriteRune(r)
			i += size
		}
	}
}

// unescape reads the escape at the start of s (which starts with \) and
// returns the character, the bytes read, or what is wrong.
func unescape(s string) (rune, int, string) {
	if len(s) < 2 {
		return 0, 0, `unterminated string: expected an escape such as \" after \`
	}
	switch s[1] {
	case '"':
		return '"', 2, ""
	case '\\':
		return '\\', 2, ""
	case 'n':
		return '\n', 2, ""
	case 'r':
		return '\r', 2, ""
	case 't':
		return '\t', 2, ""
	case 'u':
		if len(s) >= 6 {
			if v, err := strconv.ParseUint(s[2:6], 16, 32); err == nil {
				if r := rune(v); utf8.ValidRune(r) {
					return r, 6, ""
				}
				return 0, 0, fmt.Sprintf(`\%s is a surrogate half, not a character`, s[1:6])
			}
		}
		return 0, 0, `expected four hexadecimal digits after \u, as in \u00e9`
	}
	r, _ := utf8.DecodeRuneInString(s[1:])
	return 0, 0, fmt.Sprintf(`expected an escape \", \\, \n, \r, \t or \uXXXX, found "\%c"`, r)
}
