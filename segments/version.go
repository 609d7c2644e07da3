package segments

import "strings"

// CompareVersions compares two version strings such as app and OS
// versions and returns -1, 0 or +1. A leading v is ignored; the rest is
// split at dots and compared part by part: first the part's leading digits
// as a number (of any length), then the rest of the part as text, where a
// part with no rest sorts after one with a rest, so 1.0-beta < 1.0. A
// missing part counts as 0, so "2.1" equals "2.1.0". Examples, in order:
// 1.9 < 1.10 < 2.0-beta < 2 = 2.0 = v2.0.0 < 2.0.1.
func CompareVersions(a, b string) int {
	a, b = trimV(a), trimV(b)
	for a != "" || b != "" {
		var pa, pb string
		pa, a = cutPart(a)
		pb, b = cutPart(b)
		if c := comparePart(pa, pb); c != 0 {
			return c
		}
	}
	return 0
}

func trimV(s string) string {
	if len(s) > 1 && (s[0] == 'v' || s[0] == 'V') && isDigit(s[1]) {
		return s[1:]
	}
	return s
}

// cutPart returns the part before the first dot (or "0" if s is empty)
// and what follows the dot.
func cutPart(s string) (part, rest string) {
	if s == "" {
		return "0", ""
	}
	part, rest, _ = strings.Cut(s, ".")
	return part, rest
}

func comparePart(a, b string) int {
	da, ra := splitDigits(a)
	db, rb := splitDigits(b)
	da, db = strings.TrimLeft(da, "0"), strings.TrimLeft(db, "0")
	switch {
	case len(da) != len(db):
		return sign(len(da) - len(db))
	case da != db:
		return strings.Compare(da, db)
	case ra == rb:
		return 0
	case ra == "":
		return 1
	case rb == "":
		return -1
	}
	return strings.Compare(ra, rb)
}

func splitDigits(s string) (digits, rest string) {
	i := 0
	for i < len(s) && isDigit(s[i]) {
		i++
	}
	return s[:i], s[i:]
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// ValidVersion reports whether s reads as a version that CompareVersions
// orders meaningfully: an optional v, then a digit, at most 64 bytes, no
// spaces.
func ValidVersion(s string) bool {
	s = trimV(s)
	return s != "" && len(s) <= 64 && isDigit(s[0]) && !strings.ContainsAny(s, " \t\n\r")
}
