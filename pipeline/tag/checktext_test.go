package tag

import (
	"fmt"
	"strings"
	"testing"
	"unicode/utf8"
)

// checkTextReference is checkText as it was before its ASCII fast path:
// UTF-8 first, then control characters.
func checkTextReference(field, v string, max int) *FieldError {
	if len(v) > max {
		return fieldErr(field, "%d bytes, more than the limit of %d", len(v), max)
	}
	if !utf8.ValidString(v) {
		return fieldErr(field, "not valid UTF-8")
	}
	for i := 0; i < len(v); i++ {
		if v[i] < 0x20 || v[i] == 0x7f {
			return fieldErr(field, "contains control character 0x%02x", v[i])
		}
	}
	return nil
}

// Printable ASCII is checked in one pass; anything else gets the same
// answer as before, invalid UTF-8 named before a control character that
// comes earlier, DEL (0x7f) refused as 0x1f is and ~ (0x7e) accepted.
func TestCheckTextAsReference(t *testing.T) {
	cases := []string{"", "u1", "h-0123456789abcdef", " ~", "a\x7f", "\x7fa", "a\x1f", "\x00", "é", "aé\x01",
		"a\x01\xff", "\xff", "a\xc3", "tab\there", strings.Repeat("x", MaxIDLen), strings.Repeat("x", MaxIDLen+1)}
	for c := range 256 {
		cases = append(cases, "ab"+string(rune(c)), "ab"+string([]byte{byte(c)}))
	}
	for _, v := range cases {
		got, want := checkText("f", v, MaxIDLen), checkTextReference("f", v, MaxIDLen)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("checkText(%q) = %v, want %v", v, got, want)
		}
	}
}
