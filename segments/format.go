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

// Format returns the canonical text of an expression, on one line, in
// lower case, with the shortest spelling of each construct: `did not` for
// Not{Did}, `within 2d`, `in the last 7d`, durations in their largest
// exact unit (days, not weeks). Parentheses are written where the tree
// needs them and only there, and an And in an And (or an Or in an Or) keeps
// its parentheses, so Parse(Format(n)) is Equal to n for every n that Parse
// returns, and for every valid tree (see Check). Durations are written to
// the millisecond.
func Format(n Node) string {
	var b strings.Builder
	writeNode(&b, n, ctxTop)
	return b.String()
}

// context is where a node is written, which decides its parentheses.
type context uint8

const (
	ctxTop context = iota
	ctxOr
	ctxAnd
	ctxNot
)

func writeNode(b *strings.Builder, n Node, ctx context) {
	switch n := n.(type) {
	case *Or:
		writeList(b, n.Args, " or ", ctxOr, ctx != ctxTop)
	case *And:
		writeList(b, n.Args, " and ", ctxAnd, ctx == ctxAnd || ctx == ctxNot)
	case *Not:
		if d, ok := n.X.(*Did); ok {
			writeDid(b, d, true)
			return
		}
		b.WriteString("not ")
		writeNode(b, n.X, ctxNot)
	case *Did:
		writeDid(b, n, false)
	case *Since:
		writeSince(b, n)
	case *Attr:
		if n.Source == SourceAppInfo {
			b.WriteString("app_info ")
			b.WriteString(Quote(n.Key))
		} else {
			b.WriteString(n.Key)
		}
		writeComparison(b, n.Op, n.Values)
	case *Unchanged:
		fmt.Fprintf(b, "app_info %s unchanged for %s", Quote(n.Key), FormatDuration(n.Min))
	case *Ref:
		b.WriteString("segment ")
		b.WriteString(Quote(n.Name))
	case *Sample:
		fmt.Fprintf(b, "sample %s%%", formatNumber(n.Percent))
		if n.Salt != "" {
			b.WriteString(" salt ")
			b.WriteString(Quote(n.Salt))
		}
	case nil:
		b.WriteString("<nil>")
	default:
		fmt.Fprintf(b, "<%T>", n)
	}
}

func writeList(b *strings.Builder, args []Node, sep string, ctx context, parens bool) {
	if parens {
		b.WriteByte('(')
	}
	for i, a := range args {
		if i > 0 {
			b.WriteString(sep)
		}
		writeNode(b, a, ctx)
	}
	if parens {
		b.WriteByte(')')
	}
}

// KindWord returns the word the language uses for a kind of record
// (session, activity, event, job, error, crash), or false for the kinds
// that conditions do not name.
func KindWord(k tag.Kind) (string, bool) {
	for w, kk := range kindWords {
		if kk == k {
			return w, true
		}
	}
	return "", false
}

func kindWord(k tag.Kind) string {
	if w, ok := KindWord(k); ok {
		return w
	}
	return k.String()
}

func writeDid(b *strings.Builder, d *Did, negated bool) {
	b.WriteString("did ")
	if negated {
		b.WriteString("not ")
	}
	b.WriteString(kindWord(d.Kind))
	if d.Kind != tag.KindSessionStart || d.Name != "" {
		b.WriteByte(' ')
		b.WriteString(Quote(d.Name))
	}
	for i, f := range d.Where {
		if i == 0 {
			b.WriteString(" where ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(formatKey(f.Key))
		writeComparison(b, f.Op, f.Values)
	}
	if f := d.Duration; f != nil {
		b.WriteString(" taking ")
		ms := func(i int) string {
			if i < len(f.Values) {
				return FormatDuration(msDuration(f.Values[i].Value.Num))
			}
			return "<missing>"
		}
		switch f.Op {
		case OpBetween:
			fmt.Fprintf(b, "between %s and %s", ms(0), ms(1))
		default:
			fmt.Fprintf(b, "%s %s", durationOpWords[f.Op], ms(0))
		}
	}
	if c := d.Count; c != (CountCmp{Op: OpGe, N: 1}) {
		b.WriteByte(' ')
		b.WriteString(countOpWords[c.Op])
		if c.N == 1 {
			b.WriteString(" once")
		} else {
			fmt.Fprintf(b, " %d times", c.N)
		}
	}
	if d.Window != 0 {
		b.WriteString(" in the last ")
		b.WriteString(FormatDuration(d.Window))
	}
}

var (
	countOpWords    = map[CmpOp]string{OpGe: "at least", OpLe: "at most", OpEq: "exactly", OpGt: "more than", OpLt: "fewer than"}
	durationOpWords = map[CmpOp]string{OpGt: "more than", OpLt: "less than", OpGe: "at least", OpLe: "at most"}
)

func writeSince(b *strings.Builder, s *Since) {
	switch s.Moment {
	case MomentFirstSession:
		b.WriteString("first_session ")
	case MomentLastSeen:
		b.WriteString("last_seen ")
	default:
		b.WriteString("last ")
		b.WriteString(kindWord(s.Kind))
		if s.Kind != tag.KindSessionStart || s.Name != "" {
			b.WriteByte(' ')
			b.WriteString(Quote(s.Name))
		}
		b.WriteByte(' ')
	}
	b.WriteString(FormatRange(s.Range))
}

// FormatRange returns the text of a time range: "within 2d", "more than 7d
// ago", "between 3d and 4d ago", "before 2026-01-01", "after 2026-01-01"
// or "between 2026-01-01 and 2026-02-01".
func FormatRange(r Ago) string {
	switch {
	case r.Absolute && !r.From.IsZero() && !r.To.IsZero():
		return "between " + formatDate(r.From) + " and " + formatDate(r.To)
	case r.Absolute && r.From.IsZero():
		return "before " + formatDate(r.To)
	case r.Absolute:
		return "after " + formatDate(r.From)
	case r.Max == Forever:
		return "more than " + FormatDuration(r.Min) + " ago"
	case r.Min == 0:
		return "within " + FormatDuration(r.Max)
	}
	return "between " + FormatDuration(r.Min) + " and " + FormatDuration(r.Max) + " ago"
}

func writeComparison(b *strings.Builder, op CmpOp, vs []Operand) {
	v := func(i int) string {
		if i < len(vs) {
			return formatOperand(vs[i])
		}
		return "<missing>"
	}
	switch op {
	case OpIn, OpNotIn:
		fmt.Fprintf(b, " %s [", op)
		for i := range vs {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(v(i))
		}
		b.WriteByte(']')
	case OpBetween:
		fmt.Fprintf(b, " between %s and %s", v(0), v(1))
	case OpSet, OpNotSet:
		fmt.Fprintf(b, " %s", op)
	default:
		fmt.Fprintf(b, " %s %s", op, v(0))
	}
}

var opNames = map[CmpOp]string{
	OpEq: "=", OpNe: "!=", OpLt: "<", OpLe: "<=", OpGt: ">", OpGe: ">=",
	OpIn: "in", OpNotIn: "not in", OpBetween: "between", OpSet: "is set", OpNotSet: "is not set", OpPrefix: "starts with",
}

// String returns the operator as the text and JSON forms write it: "=",
// "!=", "<", "<=", ">", ">=", "in", "not in", "between", "is set", "is not
// set", "starts with".
func (op CmpOp) String() string {
	if s, ok := opNames[op]; ok {
		return s
	}
	return fmt.Sprintf("op(%d)", uint8(op))
}

// formatOperand writes a value as the text form reads it.
func formatOperand(o Operand) string {
	if o.Relative {
		switch {
		case o.Offset > 0:
			return "now + " + formatOffset(o.Offset)
		case o.Offset < 0:
			return "now - " + formatOffset(-o.Offset)
		}
		return "now"
	}
	return formatValue(o.Value)
}

func formatValue(v tag.Value) string {
	switch v.Type {
	case tag.TypeString:
		return Quote(v.Str)
	case tag.TypeNumber:
		return formatNumber(v.Num)
	case tag.TypeBool:
		return strconv.FormatBool(v.Bool)
	case tag.TypeDate:
		return formatDate(v.Date)
	}
	return "<invalid>"
}

// formatNumber writes plain decimals where they are short enough, the
// exponent form otherwise, and always the shortest form that reads back
// as the same number.
func formatNumber(f float64) string {
	if a := math.Abs(f); a == 0 || a >= 1e-6 && a < 1e21 {
		return strconv.FormatFloat(f, 'f', -1, 64)
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

// formatDate writes 2026-01-31 for midnight UTC, else RFC 3339 in UTC to
// the millisecond.
func formatDate(t time.Time) string {
	t = t.UTC()
	if t.Equal(t.Truncate(day)) {
		return t.Format("2006-01-02")
	}
	return t.Truncate(time.Millisecond).Format(time.RFC3339Nano)
}

// FormatDuration writes a duration in its largest exact unit among d, h,
// m, s and ms, e.g. 14d, 36h, 90s, 1500ms; "0s" for zero. Below the
// millisecond it is truncated.
func FormatDuration(d time.Duration) string {
	return formatUnits(d, false)
}

// formatOffset is FormatDuration, also using years: for dates relative to now.
func formatOffset(d time.Duration) string {
	return formatUnits(d, true)
}

func formatUnits(d time.Duration, years bool) string {
	if d == 0 {
		return "0s"
	}
	if d == Forever {
		return "forever"
	}
	units := [...]struct {
		name string
		d    time.Duration
	}{{"y", year}, {"d", day}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}, {"ms", time.Millisecond}}
	for _, u := range units {
		if (u.name != "y" || years) && d%u.d == 0 {
			return strconv.FormatInt(int64(d/u.d), 10) + u.name
		}
	}
	return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
}

// Quote writes s as a string of the text form: in double quotes, with \"
// \\ \n \r \t and \uXXXX for the other control characters.
func Quote(s string) string {
	var b strings.Builder
	b.Grow(len(s) + 2)
	b.WriteByte('"')
	for _, r := range s {
		switch {
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\r':
			b.WriteString(`\r`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(&b, `\u%04x`, r)
		case r == utf8.RuneError:
			b.WriteString(`\ufffd`)
		default:
			b.WriteRune(r)
		}
	}
	b.WriteByte('"')
	return b.String()
}

// formatKey writes an extras key bare when it reads back as one and is
// not a word of the language (which would read oddly: where "and" = 1),
// else quoted.
func formatKey(k string) string {
	if k == "" || !(isLetter(k[0]) || k[0] == '_') || keywords[strings.ToLower(k)] {
		return Quote(k)
	}
	for i := 1; i < len(k); i++ {
		if !isIdent(k[i]) {
			return Quote(k)
		}
	}
	return k
}

// keywords are the words of the language, quoted when they are keys.
var keywords = func() map[string]bool {
	m := map[string]bool{}
	for _, w := range strings.Fields(`and or not did where taking at least most exactly more fewer less than in the last
		within time times once twice ago between before after is set starts with now true false unchanged for
		segment sample salt first last seen first_session last_seen app_info`) {
		m[w] = true
	}
	for w := range kindWords {
		m[w] = true
	}
	for w := range deviceWords {
		m[w] = true
	}
	return m
}()
