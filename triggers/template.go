package triggers

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/pipeline/tagplan"
	"github.com/openengage/engage/segments"
)

// The template language: a message text is plain text with fields in
// double braces, each naming where its value comes from, with an optional
// default:
//
//	Welcome {{app_info.first_name | default "reader"}}!
//	Your {{trigger.category}} deals, in {{ device.country }}
//
// app_info.<key> is the device's app-info value, device.<field> one of
// the device fields of segments (platform, app_version, os_version, model,
// manufacturer, locale, country, timezone), trigger.<key> an extra of the
// record whose segment entry started the send. Spaces inside the braces
// do not matter. {{{{ writes a literal {{ (a lone }} is literal as it is).
// A default is a double- or single-quoted string; inside it, \ escapes
// the quote and the backslash.
//
// Rendering: a field with a value renders it (strings as they are,
// numbers in decimal without a trailing .0, dates as their UTC date
// 2006-01-02, bools true or false); an empty string counts as no value. A
// field without a value renders its default; a field with neither renders
// nothing and is reported missing. What a missing field does to a send is
// the campaign's: with `missing: skip` the device is skipped; with
// `missing: default` Check requires a default on every field, so that no
// field can be missing (and a scheduler that meets one anyway, in a
// campaign that was not checked, skips the device too).

// FieldSource is where a template field takes its value.
type FieldSource uint8

// The field sources.
const (
	FromAppInfo FieldSource = iota + 1 // app_info.<key>
	FromDevice                         // device.<field>
	FromTrigger                        // trigger.<key>: an extra of the triggering record
)

var fieldSourceNames = [...]string{FromAppInfo: "app_info", FromDevice: "device", FromTrigger: "trigger"}

// String returns the source as templates write it: app_info, device or
// trigger.
func (s FieldSource) String() string {
	if s >= FromAppInfo && s <= FromTrigger {
		return fieldSourceNames[s]
	}
	return "source(" + strconv.Itoa(int(s)) + ")"
}

// Field is one field of a template.
type Field struct {
	Source     FieldSource
	Key        string // the app-info or extras key, or the device field
	Default    string
	HasDefault bool
	// Where the field's {{ is in the text: Offset in bytes, Line and Col
	// 1-based, Col in characters.
	Offset, Line, Col int

	name   string // Source.Key, for Name and missing lists
	device int    // FromDevice: index in segments.DeviceFields
}

// Name returns the field as the template writes it, e.g.
// app_info.first_name.
func (f *Field) Name() string { return f.name }

// Template is a parsed message text. It is immutable, and safe for
// concurrent use.
type Template struct {
	text   string
	parts  []tplPart
	fields []Field
}

// tplPart is a literal (field < 0) or a field of a template.
type tplPart struct {
	lit   string
	field int
}

// Values are what a template reads for one device. Render only reads
// them.
type Values struct {
	// AppInfo is the device's app-info, sorted by key (as app_info
	// records hold it).
	AppInfo []tag.Extra
	// Device is the device's info; nil when unknown.
	Device *tag.DeviceInfo
	// Trigger are the extras of the record that started the send, sorted
	// by key (as records hold them); nil when no record did (a timer, a
	// once or recurring send).
	Trigger []tag.Extra
}

// ParseTemplate parses a message text. If it has mistakes, it returns
// every one of them as Errors, each at its line and column in the text
// (Path and File empty).
func ParseTemplate(text string) (*Template, error) {
	p := &tplParser{text: text}
	p.parse()
	if len(p.errs) > 0 {
		return nil, p.errs
	}
	return &Template{text: text, parts: p.parts, fields: p.fields}, nil
}

// String returns the template's text as written.
func (t *Template) String() string { return t.text }

// Fields returns the template's fields in the order of the text, one per
// occurrence.
func (t *Template) Fields() []Field { return slices.Clone(t.fields) }

// Render renders the template with the values of one device. missing
// lists, once each, the fields that had neither a value nor a default
// (they render as nothing). It allocates the result and, when fields are
// missing, their list; a text without fields costs nothing.
func (t *Template) Render(v Values) (text string, missing []string) {
	switch {
	case len(t.parts) == 0:
		return "", nil
	case len(t.fields) == 0 && len(t.parts) == 1:
		return t.parts[0].lit, nil
	}
	var stack [256]byte
	b, missing := t.Append(stack[:0], v)
	return string(b), missing
}

// Append is Render appending to b, for callers that reuse a buffer.
func (t *Template) Append(b []byte, v Values) ([]byte, []string) {
	var missing []string
	for _, p := range t.parts {
		if p.field < 0 {
			b = append(b, p.lit...)
			continue
		}
		f := &t.fields[p.field]
		n := len(b)
		b = f.appendValue(b, &v)
		switch {
		case len(b) > n:
		case f.HasDefault:
			b = append(b, f.Default...)
		case !slices.Contains(missing, f.name):
			missing = append(missing, f.name)
		}
	}
	return b, missing
}

// appendValue appends the field's value, if it has one.
func (f *Field) appendValue(b []byte, v *Values) []byte {
	switch f.Source {
	case FromAppInfo:
		if x, ok := findExtra(v.AppInfo, f.Key); ok {
			return appendTagValue(b, x)
		}
	case FromTrigger:
		if x, ok := findExtra(v.Trigger, f.Key); ok {
			return appendTagValue(b, x)
		}
	case FromDevice:
		if v.Device != nil {
			return append(b, segments.DeviceField(v.Device, f.device)...)
		}
	}
	return b
}

// findExtra looks key up in extras sorted by key.
func findExtra(xs []tag.Extra, key string) (tag.Value, bool) {
	lo, hi := 0, len(xs)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		switch c := strings.Compare(xs[m].Key, key); {
		case c == 0:
			return xs[m].Value, true
		case c < 0:
			lo = m + 1
		default:
			hi = m
		}
	}
	return tag.Value{}, false
}

// appendTagValue renders a value for a person: numbers without exponent
// or trailing .0 (up to 1e21), dates as their UTC date. A number that is
// not finite is no value.
func appendTagValue(b []byte, x tag.Value) []byte {
	switch x.Type {
	case tag.TypeString:
		return append(b, x.Str...)
	case tag.TypeNumber:
		switch f := x.Num; {
		case math.IsNaN(f) || math.IsInf(f, 0):
			return b
		case f == math.Trunc(f) && math.Abs(f) < 1e15:
			return strconv.AppendInt(b, int64(f), 10)
		case math.Abs(f) < 1e21:
			return strconv.AppendFloat(b, f, 'f', -1, 64)
		default:
			return strconv.AppendFloat(b, f, 'g', -1, 64)
		}
	case tag.TypeBool:
		return strconv.AppendBool(b, x.Bool)
	case tag.TypeDate:
		return x.Date.UTC().AppendFormat(b, time.DateOnly)
	}
	return b
}

// tplParser parses one template, collecting every mistake.
type tplParser struct {
	text   string
	lit    []byte // literal text since the last field
	parts  []tplPart
	fields []Field
	errs   Errors
}

// maxTemplateErrors bounds the mistakes reported for one text.
const maxTemplateErrors = 20

func (p *tplParser) errorf(off int, format string, args ...any) {
	if len(p.errs) >= maxTemplateErrors {
		return
	}
	line, col := textPosition(p.text, off)
	p.errs = append(p.errs, &Error{Line: line, Col: col, Msg: fmt.Sprintf(format, args...)})
}

// textPosition returns the 1-based line and column (in characters) of the
// byte offset off of text.
func textPosition(text string, off int) (line, col int) {
	off = min(off, len(text))
	start := strings.LastIndexByte(text[:off], '\n') + 1
	return strings.Count(text[:start], "\n") + 1, utf8.RuneCountInString(text[start:off]) + 1
}

func (p *tplParser) parse() {
	i := 0
	for i < len(p.text) {
		j := strings.Index(p.text[i:], "{{")
		if j < 0 {
			p.lit = append(p.lit, p.text[i:]...)
			break
		}
		p.lit = append(p.lit, p.text[i:i+j]...)
		i += j
		if strings.HasPrefix(p.text[i:], "{{{{") {
			p.lit = append(p.lit, "{{"...)
			i += 4
			continue
		}
		i = p.field(i)
	}
	p.flush()
}

// flush ends the literal text collected so far.
func (p *tplParser) flush() {
	if len(p.lit) > 0 {
		p.parts = append(p.parts, tplPart{lit: string(p.lit), field: -1})
		p.lit = p.lit[:0]
	}
}

// field parses the field whose {{ is at start and returns the offset
// after its }} (after the next }} when the field has a mistake, or the end
// of the text).
func (p *tplParser) field(start int) int {
	text := p.text
	i := skipSpace(text, start+2)
	closeAt := func(i int) int { // recovery: after the next }}
		if k := strings.Index(text[i:], "}}"); k >= 0 {
			return i + k + 2
		}
		return len(text)
	}
	if !strings.Contains(text[start+2:], "}}") {
		p.errorf(start, "{{ is not closed: end the field with }} (write {{{{ for a literal {{)")
		return len(text)
	}
	j := i
	for j < len(text) && isNameByte(text[j]) {
		j++
	}
	if j == i {
		if strings.HasPrefix(text[i:], "}}") {
			p.errorf(start, "empty field {{}}: write {{app_info.<key>}}, {{device.<field>}} or {{trigger.<key>}} (or {{{{ for a literal {{)")
		} else {
			p.errorf(i, "unexpected %s in a field: expected app_info.<key>, device.<field> or trigger.<key> (write {{{{ for a literal {{)", quoteRune(text[i:]))
		}
		return closeAt(i)
	}
	f, ok := p.fieldName(i, text[i:j])
	if !ok {
		return closeAt(j)
	}
	f.Offset = start
	f.Line, f.Col = textPosition(text, start)
	i = skipSpace(text, j)
	if i < len(text) && text[i] == '|' {
		if i, ok = p.filter(&f, skipSpace(text, i+1)); !ok {
			return closeAt(i)
		}
		i = skipSpace(text, i)
	}
	if !strings.HasPrefix(text[i:], "}}") {
		p.errorf(i, "expected }} to close the field %s, found %s", f.name, quoteRune(text[i:]))
		return closeAt(i)
	}
	p.flush()
	p.parts = append(p.parts, tplPart{field: len(p.fields)})
	p.fields = append(p.fields, f)
	return i + 2
}

// fieldName reads source.key at offset at.
func (p *tplParser) fieldName(at int, name string) (Field, bool) {
	src, key, dotted := strings.Cut(name, ".")
	f := Field{Key: key, name: name}
	switch src {
	case "app_info":
		f.Source = FromAppInfo
	case "device":
		f.Source = FromDevice
	case "trigger":
		f.Source = FromTrigger
	default:
		switch {
		case !dotted && slices.Contains(segments.DeviceFields, name):
			p.errorf(at, "field %q needs its source: write device.%s", name, name)
		case !dotted:
			p.errorf(at, "field %q needs its source: write app_info.%s (the device's app-info) or trigger.%s (an extra of the triggering record)", name, name, name)
		default:
			p.errorf(at, "unknown field source %q: use app_info, device or trigger%s", src, didYouMean(src, fieldSourceNames[1:]))
		}
		return f, false
	}
	keyAt := at + len(src) + 1
	switch {
	case !dotted || key == "":
		p.errorf(at, "field %s needs a key: %s.<key>", src, src)
		return f, false
	case f.Source == FromDevice:
		f.device = slices.Index(segments.DeviceFields, key)
		if f.device < 0 {
			p.errorf(keyAt, "unknown device field %q: use %s%s", key, strings.Join(segments.DeviceFields, ", "), didYouMean(key, segments.DeviceFields))
			return f, false
		}
	case !tag.ValidKey(key):
		p.errorf(keyAt, "invalid %s key %q: keys match ^[A-Za-z][A-Za-z0-9_]*$ and have at most %d bytes", src, key, tag.MaxKeyLen)
		return f, false
	}
	return f, true
}

// filter reads `default "text"` at offset i and returns the offset after
// it.
func (p *tplParser) filter(f *Field, i int) (int, bool) {
	text := p.text
	j := i
	for j < len(text) && isNameByte(text[j]) {
		j++
	}
	switch word := text[i:j]; {
	case word == "":
		p.errorf(i, "expected default after | in field %s, found %s", f.name, quoteRune(text[i:]))
		return i, false
	case word != "default":
		p.errorf(i, "unknown filter %q: the only filter is default, as in {{%s | default \"text\"}}%s", word, f.name, didYouMean(word, []string{"default"}))
		return i, false
	}
	i = skipSpace(text, j)
	if i >= len(text) || (text[i] != '"' && text[i] != '\'') {
		p.errorf(i, "expected a quoted text after default, as in default \"there\", found %s", quoteRune(text[i:]))
		return i, false
	}
	q := text[i]
	var b strings.Builder
	for j = i + 1; j < len(text); j++ {
		switch c := text[j]; {
		case c == q:
			f.Default, f.HasDefault = b.String(), true
			return j + 1, true
		case c == '\\' && j+1 < len(text) && (text[j+1] == q || text[j+1] == '\\'):
			j++
			b.WriteByte(text[j])
		default:
			b.WriteByte(c)
		}
	}
	p.errorf(i, "the default's quote %c is not closed", q)
	return len(text), false
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

func isNameByte(c byte) bool {
	return c == '_' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z'
}

// quoteRune names the first character of s for an error, or "the end".
func quoteRune(s string) string {
	if s == "" {
		return "the end of the text"
	}
	r, _ := utf8.DecodeRuneInString(s)
	return strconv.QuoteRune(r)
}

// didYouMean returns ` (did you mean "x"?)` when s is likely a typo of
// one of options.
func didYouMean(s string, options []string) string {
	if best, ok := tagplan.Suggest(s, options); ok {
		return ` (did you mean "` + best + `"?)`
	}
	return ""
}
