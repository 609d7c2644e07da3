package segmentapi

import (
	"bytes"
	"fmt"
	"time"
	"unicode"
	"unicode/utf16"
	"unicode/utf8"

	"github.com/openengage/engage/pipeline/tag"
)

// rawJSON is a JSON value kept undecoded. Unlike json.RawMessage it does not
// copy: it points into the input of json.Unmarshal, which outlives the
// decoding of a request, so it saves an allocation per field on the hot
// path. It must never be filled by a json.Decoder, which reuses its buffer.
// Records never keep it: everything they hold is converted to strings.
type rawJSON []byte

// UnmarshalJSON keeps data as it is.
func (r *rawJSON) UnmarshalJSON(data []byte) error {
	*r = data
	return nil
}

// absent reports whether the value is missing or null.
func (r rawJSON) absent() bool {
	r = bytes.TrimSpace(r)
	return len(r) == 0 || string(r) == "null"
}

// jsonKind names the kind of a JSON value from its first byte.
func jsonKind(b []byte) string {
	if len(b) == 0 {
		return "nothing"
	}
	switch b[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "bool"
	case 'n':
		return "null"
	}
	return "number"
}

// unquote returns the string a JSON string literal holds. Plain ASCII
// strings without escapes, the common case, are converted as they are;
// others go through appendUnquoted, which decodes them as encoding/json
// does (invalid UTF-8 and lone surrogates become U+FFFD).
func unquote(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' || c == '"' || c < 0x20 || c >= 0x80 {
			b, ok := appendUnquoted(make([]byte, 0, len(inner)), inner)
			if !ok {
				return "", false
			}
			return string(b), true
		}
	}
	return string(inner), true
}

// appendUnquoted appends to dst the string that the inside of a JSON string
// literal (without its quotes) holds, decoded by the rules of
// encoding/json's unquote: escapes, surrogate pairs, and U+FFFD for invalid
// UTF-8 and lone surrogates. It reports false for what is not the inside of
// a JSON string (a bare quote, a control character, a bad escape, \' which
// encoding/json's unquote takes but its validation refuses). It is
// what keys and values with escapes cost: no reflection, no allocation
// beyond dst.
func appendUnquoted(dst, s []byte) ([]byte, bool) {
	for r := 0; r < len(s); {
		c := s[r]
		switch {
		case c == '\\':
			r++
			if r >= len(s) {
				return dst, false
			}
			switch s[r] {
			case '"', '\\', '/':
				dst = append(dst, s[r])
			case 'b':
				dst = append(dst, '\b')
			case 'f':
				dst = append(dst, '\f')
			case 'n':
				dst = append(dst, '\n')
			case 'r':
				dst = append(dst, '\r')
			case 't':
				dst = append(dst, '\t')
			case 'u':
				rr := getu4(s[r-1:])
				if rr < 0 {
					return dst, false
				}
				r += 5
				if utf16.IsSurrogate(rr) {
					if dec := utf16.DecodeRune(rr, getu4(s[r:])); dec != unicode.ReplacementChar {
						r += 6
						dst = utf8.AppendRune(dst, dec)
						continue
					}
					rr = unicode.ReplacementChar
				}
				dst = utf8.AppendRune(dst, rr)
				continue
			default:
				return dst, false
			}
			r++
		case c == '"', c < ' ':
			return dst, false
		case c < utf8.RuneSelf:
			dst = append(dst, c)
			r++
		default:
			rr, size := utf8.DecodeRune(s[r:])
			r += size
			dst = utf8.AppendRune(dst, rr)
		}
	}
	return dst, true
}

// getu4 decodes \uXXXX at the start of s, or returns -1.
func getu4(s []byte) rune {
	if len(s) < 6 || s[0] != '\\' || s[1] != 'u' {
		return -1
	}
	var r rune
	for _, c := range s[2:6] {
		switch {
		case '0' <= c && c <= '9':
			c -= '0'
		case 'a' <= c && c <= 'f':
			c = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			c = c - 'A' + 10
		default:
			return -1
		}
		r = r*16 + rune(c)
	}
	return r
}

// parseTime parses a raw JSON time; absent or null is no time. The error has
// no field: the caller names it.
func parseTime(raw rawJSON) (time.Time, bool, *MessageError) {
	raw = bytes.TrimSpace(raw)
	if raw.absent() {
		return time.Time{}, false, nil
	}
	s, ok := unquote(raw)
	if !ok {
		return time.Time{}, false, &MessageError{Reason: "expected an RFC 3339 time string such as 2026-01-31T09:30:00.500Z, got JSON " + jsonKind(raw)}
	}
	t, err := tag.ParseTime(s)
	if err != nil {
		return time.Time{}, false, &MessageError{Reason: fmt.Sprintf("%s is not an RFC 3339 time such as 2026-01-31T09:30:00.500Z", quoteShort(s))}
	}
	return t, true, nil
}

// idString reads an id that Segment accepts as a string or a number.
func idString(raw rawJSON, field string) (string, *MessageError) {
	raw = bytes.TrimSpace(raw)
	if raw.absent() {
		return "", nil
	}
	if s, ok := unquote(raw); ok {
		return s, nil
	}
	if k := jsonKind(raw); k != "number" {
		return "", &MessageError{Field: field, Reason: "expected a string or number, got JSON " + k}
	}
	return string(raw), nil
}

// quoteShort quotes s for a message, cut to 64 bytes.
func quoteShort(s string) string {
	if len(s) > 64 {
		return fmt.Sprintf("%q…", s[:64])
	}
	return fmt.Sprintf("%q", s)
}
