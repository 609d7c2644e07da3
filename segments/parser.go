package segments

import (
	"fmt"
	"strconv"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/pipeline/tagplan"
)

// Parse parses the text form of a segment expression (see the package doc
// and docs/segments.md for the language). Every node has its Pos set. The
// first syntax error is returned as an *Error that says where, what was
// expected and what was found, e.g. `1:27: expected a duration like 3d,
// found "abc"`. Parse checks the syntax only: Check holds the expression
// to an app's tag plan and to the language's limits.
func Parse(text string) (Node, error) {
	if len(text) > MaxTextBytes {
		return nil, &Error{Pos: Pos{1, 1}, Msg: fmt.Sprintf("the text is %d bytes long: at most %d", len(text), MaxTextBytes)}
	}
	p := &parser{toks: lex(text)}
	return p.parse()
}

// parser is a recursive-descent parser over the tokens of one text. Its
// methods report the first error by panicking with a bailout, which parse
// recovers.
type parser struct {
	toks  []token
	i     int
	depth int
}

type bailout struct{ err *Error }

func (p *parser) parse() (n Node, err error) {
	defer func() {
		if r := recover(); r != nil {
			b, ok := r.(bailout)
			if !ok {
				panic(r)
			}
			n, err = nil, b.err
		}
	}()
	if p.tok().kind == tokEOF {
		p.expected("a condition such as did event \"purchase\"")
	}
	n = p.or()
	switch t := p.tok(); {
	case t.kind == tokRParen:
		p.errorf(t.pos, "found \")\" with no \"(\" before it to close")
	case t.kind != tokEOF:
		p.expected("and, or or the end of the text")
	}
	return n, nil
}

// tok returns the current token; the last token (tokEOF or tokIllegal)
// repeats forever.
func (p *parser) tok() token { return p.peek(0) }

func (p *parser) peek(i int) token {
	if p.i+i < len(p.toks) {
		return p.toks[p.i+i]
	}
	return p.toks[len(p.toks)-1]
}

func (p *parser) advance() token {
	t := p.tok()
	if p.i < len(p.toks)-1 {
		p.i++
	}
	return t
}

// isWord reports whether the token i ahead is the keyword w.
func (p *parser) isWord(i int, w string) bool {
	t := p.peek(i)
	return t.kind == tokIdent && t.word == w
}

func (p *parser) acceptWord(w string) bool {
	if p.isWord(0, w) {
		p.advance()
		return true
	}
	return false
}

// expectWord consumes the keyword w, or fails saying what it follows.
func (p *parser) expectWord(w, after string) {
	if !p.acceptWord(w) {
		p.expected(fmt.Sprintf("%s after %s", w, after))
	}
}

func (p *parser) errorf(pos Pos, format string, args ...any) {
	panic(bailout{&Error{Pos: pos, Msg: fmt.Sprintf(format, args...)}})
}

// expected fails at the current token: "expected <what>, found <token>",
// or with the lexer's own message when the token is a malformed literal.
func (p *parser) expected(what string) {
	t := p.tok()
	if t.kind == tokIllegal && t.msg != "" {
		p.errorf(t.pos, "%s", t.msg)
	}
	p.errorf(t.pos, "expected %s, found %s", what, found(t))
}

// found describes a token for an error message.
func found(t token) string {
	if t.kind == tokEOF {
		return "the end of the text"
	}
	s := t.text
	if len(s) > 40 {
		s = s[:40] + "…"
	}
	if t.kind == tokString {
		return "the string " + s // already in quotes
	}
	return strconv.Quote(s)
}

// enter and leave bound the nesting of parentheses and not.
func (p *parser) enter() {
	if p.depth++; p.depth > MaxDepth {
		p.errorf(p.tok().pos, "expression nested too deeply: at most %d levels of parentheses and not", MaxDepth)
	}
}

func (p *parser) leave() { p.depth-- }

// or = and {"or" and}
func (p *parser) or() Node {
	at := p.tok().pos
	first := p.and()
	if !p.isWord(0, "or") {
		return first
	}
	n := &Or{At: at, Args: []Node{first}}
	for p.acceptWord("or") {
		n.Args = append(n.Args, p.and())
	}
	return n
}

// and = unary {"and" unary}
func (p *parser) and() Node {
	at := p.tok().pos
	first := p.unary()
	if !p.isWord(0, "and") {
		return first
	}
	n := &And{At: at, Args: []Node{first}}
	for p.acceptWord("and") {
		n.Args = append(n.Args, p.unary())
	}
	return n
}

// unary = "not" unary | "(" or ")" | condition
func (p *parser) unary() Node {
	t := p.tok()
	switch {
	case p.acceptWord("not"):
		p.enter()
		defer p.leave()
		return &Not{At: t.pos, X: p.unary()}
	case t.kind == tokLParen:
		p.advance()
		p.enter()
		defer p.leave()
		n := p.or()
		if p.tok().kind != tokRParen {
			p.expected(fmt.Sprintf("and, or or \")\" to close the \"(\" at %s", t.pos))
		}
		p.advance()
		return n
	}
	return p.condition()
}

// kindWords are the kinds of records a condition can name.
var kindWords = map[string]tag.Kind{
	"session":  tag.KindSessionStart,
	"activity": tag.KindActivityStart,
	"event":    tag.KindEvent,
	"job":      tag.KindJob,
	"error":    tag.KindError,
	"crash":    tag.KindCrash,
}

const kindList = "session, activity, event, job, error or crash"

// DeviceFields are the device info fields a condition can compare, by
// their names in the language.
var DeviceFields = []string{"platform", "app_version", "os_version", "model", "manufacturer", "locale", "country", "timezone"}

// DeviceField returns d's value of the device field at index i of
// DeviceFields ("" for an index out of range).
func DeviceField(d *tag.DeviceInfo, i int) string {
	switch i {
	case 0:
		return d.Platform
	case 1:
		return d.AppVersion
	case 2:
		return d.OSVersion
	case 3:
		return d.Model
	case 4:
		return d.Manufacturer
	case 5:
		return d.Locale
	case 6:
		return d.Country
	case 7:
		return d.TimeZone
	}
	return ""
}

// deviceWords maps every name of a device field, the spellings the text
// accepts included, to its name in DeviceFields.
var deviceWords = map[string]string{
	"platform": "platform", "app_version": "app_version", "os_version": "os_version", "model": "model",
	"manufacturer": "manufacturer", "locale": "locale", "country": "country", "timezone": "timezone", "time_zone": "timezone",
}

// conditionWords start a condition; they are suggested for typos.
var conditionWords = append([]string{"did", "first_session", "last_seen", "last", "app_info", "segment", "sample", "not"}, DeviceFields...)

// condition is one of the conditions (everything but and, or, not).
func (p *parser) condition() Node {
	t := p.tok()
	if t.kind != tokIdent {
		p.expected("a condition such as did, first_session, last_seen, last, app_info, platform, segment, sample, not or \"(\"")
	}
	switch t.word {
	case "first_session", "last_seen":
		p.advance()
		return p.since(t.pos, map[string]Moment{"first_session": MomentFirstSession, "last_seen": MomentLastSeen}[t.word])
	case "first":
		p.advance()
		p.expectWord("session", "first")
		return p.since(t.pos, MomentFirstSession)
	case "last":
		p.advance()
		if p.acceptWord("seen") {
			return p.since(t.pos, MomentLastSeen)
		}
		kind := p.kind("seen, " + kindList + " after last")
		s := p.since(t.pos, MomentLastTag)
		s.Kind, s.Name = kind.kind, kind.name
		return s
	case "did":
		return p.did()
	case "app_info":
		return p.appInfo()
	case "segment":
		p.advance()
		return &Ref{At: t.pos, Name: p.quoted("the segment's name in double quotes, such as \"engaged\"")}
	case "sample":
		return p.sample()
	}
	if field, ok := deviceWords[t.word]; ok {
		p.advance()
		a := &Attr{At: t.pos, Source: SourceDevice, Key: field}
		a.Op, a.Values = p.comparison()
		return a
	}
	p.unknownCondition(t)
	return nil
}

// unknownCondition fails on a word that starts no condition, with a hint
// when it is likely a typo, or a second filter written with "and".
func (p *parser) unknownCondition(t token) {
	msg := fmt.Sprintf("expected a condition such as did, first_session, last_seen, last, app_info, platform, segment, sample, not or \"(\", found %s", found(t))
	if w, ok := tagplan.Suggest(t.word, conditionWords); ok {
		msg += fmt.Sprintf(" (did you mean %s?)", w)
	} else if p.i > 0 && p.toks[p.i-1].word == "and" && startsComparison(p.peek(1)) {
		msg += fmt.Sprintf(" (to filter on several extras, separate them with commas: where a = 1, %s ...)", t.text)
	}
	p.errorf(t.pos, "%s", msg)
}

func startsComparison(t token) bool {
	return t.kind == tokOp || t.kind == tokIdent && (t.word == "in" || t.word == "between" || t.word == "is" || t.word == "starts")
}

// namedKind is a kind of record and, except for sessions, its name.
type namedKind struct {
	kind tag.Kind
	name string
}

// kind reads a kind of record and its name: session, or activity "x" etc.
func (p *parser) kind(what string) namedKind {
	t := p.tok()
	k, ok := kindWords[t.word]
	if t.kind != tokIdent || !ok {
		p.expected(what)
	}
	p.advance()
	if k == tag.KindSessionStart {
		if n := p.tok(); n.kind == tokString {
			p.errorf(n.pos, "sessions have no name: remove %s", n.text)
		}
		return namedKind{kind: k}
	}
	return namedKind{k, p.quoted(fmt.Sprintf("the %s's name in double quotes, such as \"%s\"", t.word, exampleNames[k]))}
}

var exampleNames = map[tag.Kind]string{tag.KindActivityStart: "home", tag.KindEvent: "purchase", tag.KindJob: "download", tag.KindError: "connection_failure", tag.KindCrash: "oom"}

// quoted reads a string; what describes it in the error.
func (p *parser) quoted(what string) string {
	t := p.tok()
	if t.kind == tokIdent {
		p.errorf(t.pos, "expected %s, found %s: write \"%s\"", what, t.text, t.text)
	}
	if t.kind != tokString {
		p.expected(what)
	}
	p.advance()
	return t.str
}

// since reads the time range of a Since condition.
//
//	range = "within" dur | ("more" | "less") "than" dur "ago" | "at" ("least" | "most") dur "ago"
//	      | "between" dur "and" dur "ago" | "between" date "and" date | "before" date | "after" date
func (p *parser) since(at Pos, m Moment) *Since {
	s := &Since{At: at, Moment: m}
	t := p.tok()
	switch {
	case p.acceptWord("within"):
		s.Range.Max = p.duration()
	case p.isWord(0, "more") || p.isWord(0, "less") || p.isWord(0, "at"):
		more := p.isWord(0, "more") || p.isWord(1, "least")
		p.advance()
		switch t.word {
		case "at":
			if !p.acceptWord("least") && !p.acceptWord("most") {
				p.expected("least or most after at")
			}
		default:
			p.expectWord("than", t.text)
		}
		d := p.duration()
		p.expectWord("ago", "the duration (as in more than 7d ago)")
		if more {
			s.Range.Min, s.Range.Max = d, Forever
		} else {
			s.Range.Max = d
		}
	case p.acceptWord("between"):
		if p.tok().kind == tokDate {
			s.Range.Absolute = true
			s.Range.From = p.date()
			p.expectWord("and", "the first date of between")
			s.Range.To = p.date()
			break
		}
		s.Range.Min = p.duration()
		p.expectWord("and", "the first duration of between")
		s.Range.Max = p.duration()
		p.expectWord("ago", "the durations (as in between 3d and 4d ago)")
	case p.acceptWord("before"):
		s.Range.Absolute, s.Range.To = true, p.date()
	case p.acceptWord("after"):
		s.Range.Absolute, s.Range.From = true, p.date()
	default:
		p.expected("a time range: within, more than, less than, at least, at most, between, before or after")
	}
	return s
}

// duration reads a duration: 3d, or 3 days. Years are refused: they are
// only for dates relative to now.
func (p *parser) duration() time.Duration {
	at := p.tok().pos
	d, years := p.anyDuration()
	if years {
		p.errorf(at, "years are only for dates relative to now, such as now - 18y: write days, such as 365d")
	}
	return d
}

// anyDuration reads a duration in any unit, and whether it is in years.
func (p *parser) anyDuration() (time.Duration, bool) {
	t := p.tok()
	switch {
	case t.kind == tokDuration:
		p.advance()
		return t.dur, t.years
	case t.kind == tokNumber && p.peek(1).kind == tokIdent:
		if _, ok := durationUnits[p.peek(1).word]; ok {
			if !t.whole {
				p.errorf(t.pos, "expected a whole number of units like 36h, found %s", found(t))
			}
			p.advance()
			u := p.advance()
			d := duration(token{pos: t.pos, text: t.text + " " + u.text}, t.text, u.word, true)
			if d.kind == tokIllegal {
				p.errorf(t.pos, "%s", d.msg)
			}
			return d.dur, d.years
		}
	case t.kind == tokNumber:
		p.errorf(t.pos, "expected a duration like 3d, found %s: add a unit (%s)", found(t), unitsHint)
	}
	p.expected("a duration like 3d")
	return 0, false
}

// date reads a date that bounds a range: the zero time would read as an
// open bound, so it is refused.
func (p *parser) date() time.Time {
	t := p.tok()
	if t.kind == tokDate && t.date.IsZero() {
		p.errorf(t.pos, "expected a date after 0001-01-01T00:00:00Z, found %s", found(t))
	}
	return p.anyDate()
}

// anyDate reads a date.
func (p *parser) anyDate() time.Time {
	t := p.tok()
	if t.kind != tokDate {
		p.expected("a date like 2026-01-31 or 2026-01-31T10:00:00Z")
	}
	p.advance()
	return t.date
}
