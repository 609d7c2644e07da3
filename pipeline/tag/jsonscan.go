package tag

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// scanner reads JSON from a byte slice without reflection. The collector
// decodes every record it receives with it: it is the hot path, several
// times faster than encoding/json with struct tags (see bench_test.go).
type scanner struct {
	b   []byte
	pos int
}

// syntaxError is malformed JSON at an offset.
type syntaxError struct {
	Offset int
	Msg    string
}

func (e *syntaxError) Error() string { return fmt.Sprintf("%s at byte %d", e.Msg, e.Offset) }

func (s *scanner) fail(format string, args ...any) error {
	return &syntaxError{Offset: s.pos, Msg: fmt.Sprintf(format, args...)}
}

func (s *scanner) ws() {
	for s.pos < len(s.b) {
		switch s.b[s.pos] {
		case ' ', '\t', '\n', '\r':
			s.pos++
		default:
			return
		}
	}
}

// peek returns the next non-space byte, 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.pos < len(s.b) {
		return s.b[s.pos]
	}
	return 0
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		if s.pos >= len(s.b) {
			return s.fail("unexpected end of JSON, expected %q", c)
		}
		return s.fail("invalid character %q, expected %q", s.b[s.pos], c)
	}
	s.pos++
	return nil
}

// kindAt names the JSON kind of the value starting at the next byte.
func (s *scanner) kindAt() string {
	switch s.peek() {
	case '"':
		return "string"
	case '{':
		return "object"
	case '[':
		return "array"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	if s.pos >= len(s.b) {
		return "nothing"
	}
	return "number"
}

// str reads a string.
func (s *scanner) str() (string, error) {
	if err := s.expect('"'); err != nil {
		return "", err
	}
	start := s.pos
	for s.pos < len(s.b) {
		c := s.b[s.pos]
		switch {
		case c == '"':
			v := string(s.b[start:s.pos])
			s.pos++
			return v, nil
		case c == '\\':
			return s.strSlow(start)
		case c < 0x20:
			return "", s.fail("control character 0x%02x in string", c)
		}
		s.pos++
	}
	return "", s.fail("unterminated string")
}

func (s *scanner) strSlow(start int) (string, error) {
	out := append([]byte(nil), s.b[start:s.pos]...)
	for s.pos < len(s.b) {
		c := s.b[s.pos]
		switch {
		case c == '"':
			s.pos++
			return string(out), nil
		case c < 0x20:
			return "", s.fail("control character 0x%02x in string", c)
		case c != '\\':
			out = append(out, c)
			s.pos++
			continue
		}
		if s.pos+1 >= len(s.b) {
			return "", s.fail("unterminated string")
		}
		e := s.b[s.pos+1]
		s.pos += 2
		switch e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return "", s.fail("invalid \\u escape")
			}
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if s.pos+1 < len(s.b) && s.b[s.pos] == '\\' && s.b[s.pos+1] == 'u' {
					save := s.pos
					s.pos += 2
					if r2, ok = s.hex4(); !ok {
						return "", s.fail("invalid \\u escape")
					}
					if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
						out = utf8.AppendRune(out, d)
						continue
					}
					s.pos = save
				}
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
		default:
			return "", s.fail("invalid escape \\%c", e)
		}
	}
	return "", s.fail("unterminated string")
}

func (s *scanner) hex4() (rune, bool) {
	if s.pos+4 > len(s.b) {
		return 0, false
	}
	var r rune
	for _, c := range s.b[s.pos : s.pos+4] {
		switch {
		case c >= '0' && c <= '9':
			r = r<<4 | rune(c-'0')
		case c >= 'a' && c <= 'f':
			r = r<<4 | rune(c-'a'+10)
		case c >= 'A' && c <= 'F':
			r = r<<4 | rune(c-'A'+10)
		default:
			return 0, false
		}
	}
	s.pos += 4
	return r, true
}

// number reads a JSON number.
func (s *scanner) number() (float64, error) {
	s.ws()
	start := s.pos
	if s.pos < len(s.b) && s.b[s.pos] == '-' {
		s.pos++
	}
	digits := func() int {
		n := 0
		for s.pos < len(s.b) && s.b[s.pos] >= '0' && s.b[s.pos] <= '9' {
			s.pos++
			n++
		}
		return n
	}
	intStart := s.pos
	if digits() == 0 {
		return 0, s.fail("invalid number")
	}
	if s.b[intStart] == '0' && s.pos-intStart > 1 {
		return 0, &syntaxError{Offset: intStart + 1, Msg: "invalid number: leading zero"}
	}
	if n := s.pos - intStart; n <= 15 && (s.pos >= len(s.b) || s.b[s.pos] != '.' && s.b[s.pos] != 'e' && s.b[s.pos] != 'E') {
		// An integer of at most 15 digits is exact in a float64: what
		// strconv.ParseFloat would return, without it.
		var v int64
		for _, c := range s.b[intStart:s.pos] {
			v = v*10 + int64(c-'0')
		}
		if intStart > start {
			return math.Copysign(float64(v), -1), nil // -0 too
		}
		return float64(v), nil
	}
	if s.pos < len(s.b) && s.b[s.pos] == '.' {
		s.pos++
		if digits() == 0 {
			return 0, s.fail("invalid number: no digits after the decimal point")
		}
	}
	if s.pos < len(s.b) && (s.b[s.pos] == 'e' || s.b[s.pos] == 'E') {
		s.pos++
		if s.pos < len(s.b) && (s.b[s.pos] == '+' || s.b[s.pos] == '-') {
			s.pos++
		}
		if digits() == 0 {
			return 0, s.fail("invalid number: no digits in the exponent")
		}
	}
	f, err := strconv.ParseFloat(string(s.b[start:s.pos]), 64)
	if err != nil || math.IsInf(f, 0) {
		return 0, &syntaxError{Offset: start, Msg: "number out of range"}
	}
	return f, nil
}

// literal reads true, false or null.
func (s *scanner) literal() (string, error) {
	s.ws()
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(s.b)-s.pos >= len(lit) && string(s.b[s.pos:s.pos+len(lit)]) == lit {
			s.pos += len(lit)
			return lit, nil
		}
	}
	if s.pos >= len(s.b) {
		return "", s.fail("unexpected end of JSON")
	}
	return "", s.fail("invalid character %q looking for a value", s.b[s.pos])
}

// null consumes a null if one is next.
func (s *scanner) null() bool {
	if s.peek() == 'n' && len(s.b)-s.pos >= 4 && string(s.b[s.pos:s.pos+4]) == "null" {
		s.pos += 4
		return true
	}
	return false
}

const maxDepth = 64

// skip reads over one value of any kind, checking its syntax.
func (s *scanner) skip(depth int) error {
	if depth > maxDepth {
		return s.fail("JSON nested deeper than %d levels", maxDepth)
	}
	switch s.peek() {
	case '"':
		_, err := s.str()
		return err
	case '{':
		return s.object(func(string) error { return s.skip(depth + 1) })
	case '[':
		return s.array(func() error { return s.skip(depth + 1) })
	case 't', 'f', 'n':
		_, err := s.literal()
		return err
	}
	if s.pos >= len(s.b) {
		return s.fail("unexpected end of JSON")
	}
	_, err := s.number()
	return err
}

// object reads an object, calling member after each key with the scanner
// at the value, which member must consume.
func (s *scanner) object(member func(key string) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.pos++
		return nil
	}
	for {
		if s.peek() != '"' {
			return s.fail("expected a string key")
		}
		k, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := member(k); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case '}':
			s.pos++
			return nil
		default:
			return s.fail("expected ',' or '}' after an object member")
		}
	}
}

// array reads an array, calling elem with the scanner at each element.
func (s *scanner) array(elem func() error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.peek() == ']' {
		s.pos++
		return nil
	}
	for {
		if err := elem(); err != nil {
			return err
		}
		switch s.peek() {
		case ',':
			s.pos++
		case ']':
			s.pos++
			return nil
		default:
			return s.fail("expected ',' or ']' after an array element")
		}
	}
}

// end checks that only white space is left.
func (s *scanner) end() error {
	if s.ws(); s.pos < len(s.b) {
		return s.fail("invalid character %q after the top-level value", s.b[s.pos])
	}
	return nil
}

// SplitArray splits a JSON array into its elements (raw, unparsed) after
// checking the syntax of the whole body. A single object is returned as the
// only element. Errors give the byte offset in the body.
func SplitArray(body []byte) ([][]byte, error) {
	s := scanner{b: body}
	if s.peek() == '{' {
		if err := s.skip(0); err != nil {
			return nil, err
		}
		return [][]byte{body}, s.end()
	}
	if s.peek() != '[' {
		if s.pos >= len(s.b) {
			return nil, s.fail("empty body")
		}
		return nil, s.fail("invalid character %q: expected a JSON array of records", s.b[s.pos])
	}
	var out [][]byte
	err := s.array(func() error {
		s.ws()
		start := s.pos
		if err := s.skip(0); err != nil {
			return err
		}
		out = append(out, body[start:s.pos])
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, s.end()
}

// SyntaxOffset returns the byte offset of a JSON syntax error returned by
// SplitArray or DecodeJSON, if err is one.
func SyntaxOffset(err error) (int, bool) {
	var se *syntaxError
	if errors.As(err, &se) {
		return se.Offset, true
	}
	return 0, false
}

// CheckJSON checks that b is exactly one JSON value.
func CheckJSON(b []byte) error {
	s := scanner{b: b}
	if err := s.skip(0); err != nil {
		return err
	}
	return s.end()
}
