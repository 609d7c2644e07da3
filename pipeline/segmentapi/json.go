package segmentapi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"time"

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
// strings without escapes, the common case, are converted without the
// decoder; others go through encoding/json, which also turns invalid UTF-8
// into U+FFFD.
func unquote(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	for _, c := range inner {
		if c == '\\' || c == '"' || c < 0x20 || c >= 0x80 {
			var s string
			if err := json.Unmarshal(raw, &s); err != nil {
				return "", false
			}
			return s, true
		}
	}
	return string(inner), true
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
