package tagplan

import (
	"fmt"
	"slices"
	"strconv"
	"unsafe"

	"github.com/openengage/engage/pipeline/tag"
)

// Apply holds one record to the plan, after tag.Record.Validate. It may
// change the values of r.Extras and r.AppInfo in place (coercion) and
// append to r.Unplanned (warn mode); see the package doc for the rules and
// the marks. In enforce mode it returns a *tag.FieldError for the first
// unplanned thing in r; otherwise it returns nil. A nil plan, or one in
// ModeOff, leaves r as it is.
//
// Apply does not allocate when r is fully planned and needs no coercion.
func (p *Plan) Apply(r *tag.Record) error {
	if p == nil || p.Mode == ModeOff {
		return nil
	}
	if r.Kind == tag.KindAppInfo {
		return p.applyAppInfo(r)
	}
	sec, ok := sectionOf(r.Kind)
	if !ok {
		return nil // sessions, device info and push feedback are not planned
	}
	mk := marks{sec: sec}
	defer mk.flush(r)
	var own typeMap // the tag's own extras; the global ones apply to every tag
	strict := false // undeclared extras keys are marked
	switch m, planned := p.tags[sec][r.Name]; {
	case planned:
		own, strict = m, true
	case sec == secCrashes && p.anyCrash:
		// Any crash name, with any extras: only the global ones are checked.
	case p.Mode == ModeEnforce:
		return &tag.FieldError{Field: "name", Reason: fmt.Sprintf("%s %q is not in the tag plan of app %q (mode enforce)", sectionMarks[sec], r.Name, p.App)}
	default:
		// An unplanned tag is marked once, not each of its extras; the
		// global extras are still coerced and checked on it.
		mk.add(markTag, 0)
	}
	for i := range r.Extras {
		x := &r.Extras[i]
		want, ok := own[x.Key]
		if !ok {
			want, ok = p.extras[x.Key]
		}
		switch {
		case ok && (x.Value.Type == want || coerce(&x.Value, want)):
		case !ok && !strict:
		case p.Mode == ModeEnforce:
			if !ok {
				return &tag.FieldError{Field: "extras." + x.Key, Reason: fmt.Sprintf("not in the tag plan of app %q for %s %q (mode enforce)", p.App, sectionMarks[sec], r.Name)}
			}
			return &tag.FieldError{Field: "extras." + x.Key, Reason: mismatch(want, x.Value)}
		case !ok:
			mk.add(markExtra, i)
		default:
			mk.add(markExtraType, i)
		}
	}
	return nil
}

func (p *Plan) applyAppInfo(r *tag.Record) error {
	var mk marks
	defer mk.flush(r)
	for i := range r.AppInfo {
		x := &r.AppInfo[i]
		want, ok := p.appInfo[x.Key]
		switch {
		case ok && (x.Value.Type == want || coerce(&x.Value, want)):
		case p.Mode == ModeEnforce:
			if !ok {
				return &tag.FieldError{Field: "appInfo." + x.Key, Reason: fmt.Sprintf("not in the tag plan of app %q (mode enforce)", p.App)}
			}
			return &tag.FieldError{Field: "appInfo." + x.Key, Reason: mismatch(want, x.Value)}
		case !ok:
			mk.add(markAppInfo, i)
		default:
			mk.add(markAppInfoType, i)
		}
	}
	return nil
}

// marks gathers the marks of one record, noted as what they are about
// (on the caller's stack for up to tag.MaxExtras+1 of them), and writes
// them out at the end in one string of the exact size: a record with many
// unplanned extras costs that string and the slice of its marks.
type marks struct {
	sec  section
	n    int
	refs [tag.MaxExtras + 1]markRef
	more []markRef // past len(refs): more extras than a valid record has
}

// markRef is one mark: its kind and the extra (or app-info key) it is on.
type markRef struct {
	kind markKind
	i    int
}

type markKind uint8

const (
	markTag         markKind = iota // <section>:<name>
	markExtra                       // extra:<section>:<name>:<key>
	markExtraType                   // type:extra:<section>:<name>:<key>:<type>
	markAppInfo                     // app_info:<key>
	markAppInfoType                 // type:app_info:<key>:<type>
)

func (m *marks) add(kind markKind, i int) {
	if m.n < len(m.refs) {
		m.refs[m.n] = markRef{kind, i}
		m.n++
		return
	}
	m.more = append(m.more, markRef{kind, i})
}

func (m *marks) ref(j int) *markRef {
	if j < len(m.refs) {
		return &m.refs[j]
	}
	return &m.more[j-len(m.refs)]
}

// write appends the mark ref to b.
func (m *marks) write(b []byte, r *tag.Record, ref *markRef) []byte {
	sec := sectionMarks[m.sec]
	switch ref.kind {
	case markTag:
		b = append(append(append(b, sec...), ':'), r.Name...)
	case markExtra, markExtraType:
		x := &r.Extras[ref.i]
		if ref.kind == markExtraType {
			b = append(b, "type:"...)
		}
		b = append(append(append(b, "extra:"...), sec...), ':')
		b = append(append(append(b, r.Name...), ':'), x.Key...)
		if ref.kind == markExtraType {
			b = append(append(b, ':'), x.Value.Type.String()...)
		}
	case markAppInfo, markAppInfoType:
		x := &r.AppInfo[ref.i]
		if ref.kind == markAppInfoType {
			b = append(b, "type:"...)
		}
		b = append(append(b, "app_info:"...), x.Key...)
		if ref.kind == markAppInfoType {
			b = append(append(b, ':'), x.Value.Type.String()...)
		}
	}
	return b
}

// size is the length of the mark ref.
func (m *marks) size(r *tag.Record, ref *markRef) int {
	sec := len(sectionMarks[m.sec])
	switch ref.kind {
	case markTag:
		return sec + 1 + len(r.Name)
	case markExtra:
		return len("extra:") + sec + 1 + len(r.Name) + 1 + len(r.Extras[ref.i].Key)
	case markExtraType:
		x := &r.Extras[ref.i]
		return len("type:extra:") + sec + 1 + len(r.Name) + 1 + len(x.Key) + 1 + len(x.Value.Type.String())
	case markAppInfo:
		return len("app_info:") + len(r.AppInfo[ref.i].Key)
	}
	x := &r.AppInfo[ref.i]
	return len("type:app_info:") + len(x.Key) + 1 + len(x.Value.Type.String())
}

// flush appends the marks to r.Unplanned.
func (m *marks) flush(r *tag.Record) {
	n := m.n + len(m.more)
	if n == 0 {
		return
	}
	total := 0
	for j := range n {
		total += m.size(r, m.ref(j))
	}
	b := make([]byte, 0, total)
	for j := range n {
		b = m.write(b, r, m.ref(j))
	}
	// b is not written again: the string is made of its bytes rather
	// than a copy of them (on a Segment batch of 64 unplanned extras a
	// message, the copy was 0.5 MB a request).
	all := unsafe.String(unsafe.SliceData(b), len(b))
	r.Unplanned = slices.Grow(r.Unplanned, n)
	start := 0
	for j := range n {
		end := start + m.size(r, m.ref(j))
		r.Unplanned = append(r.Unplanned, all[start:end])
		start = end
	}
}

// mismatch explains why v is not of the declared type want.
func mismatch(want tag.Type, v tag.Value) string {
	reason := fmt.Sprintf("declared %s in the tag plan, got %s", want, v.Type)
	if v.Type != tag.TypeString {
		return reason
	}
	switch want {
	case tag.TypeDate:
		return fmt.Sprintf("%s %.40q, not an RFC 3339 time such as 2026-01-31T09:30:00Z", reason, v.Str)
	case tag.TypeNumber:
		return fmt.Sprintf("%s %.40q, not a number", reason, v.Str)
	case tag.TypeBool:
		return fmt.Sprintf("%s %.40q, not true or false", reason, v.Str)
	}
	return reason
}

// coerce converts a string value to the declared type want, as SDKs that
// send everything as strings (Segment's dates) need: an RFC 3339 time to a
// date, a decimal number to a number, "true" or "false" to a bool. It
// reports whether v now has type want.
func coerce(v *tag.Value, want tag.Type) bool {
	if v.Type != tag.TypeString {
		return false
	}
	switch want {
	case tag.TypeDate:
		if !maybeTime(v.Str) {
			return false
		}
		t, err := tag.ParseTime(v.Str)
		if err != nil {
			return false
		}
		*v = tag.Date(t)
	case tag.TypeNumber:
		if !isDecimal(v.Str) {
			return false
		}
		f, err := strconv.ParseFloat(v.Str, 64)
		if err != nil { // out of range
			return false
		}
		*v = tag.Number(f)
	case tag.TypeBool:
		switch v.Str {
		case "true":
			*v = tag.Bool(true)
		case "false":
			*v = tag.Bool(false)
		default:
			return false
		}
	default:
		return false
	}
	return true
}

// maybeTime is a cheap test that spares tag.ParseTime (and its error) for
// strings that cannot be RFC 3339 times: they start with "dddd-dd-dd".
func maybeTime(s string) bool {
	if len(s) < len("2006-01-02T15:04:05Z") || s[4] != '-' || s[7] != '-' {
		return false
	}
	for _, i := range [...]int{0, 1, 2, 3, 5, 6, 8, 9} {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// isDecimal reports whether s is a number as JSON writes them:
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?. strconv.ParseFloat alone
// would also take "NaN", "Inf", hexadecimal and underscores.
func isDecimal(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		start := i
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
		}
		return i - start
	}
	switch n := digits(); {
	case n == 0, n > 1 && s[i-n] == '0':
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}
