package segments

import (
	"fmt"
	"math"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

// did reads a Did condition, wrapped in Not for "did not".
//
//	did    = "did" ["not"] kind {clause}
//	clause = "where" filter {"," filter} | "taking" durationComparison
//	       | count ("time" | "times") | ("in" ["the"] "last" | "within") duration
func (p *parser) did() Node {
	at := p.advance().pos
	negated := p.acceptWord("not")
	k := p.kind("not, " + kindList + " after did")
	d := &Did{At: at, Kind: k.kind, Name: k.name, Count: CountCmp{Op: OpGe, N: 1}}
	seen := map[string]Pos{}
	once := func(clause string) {
		t := p.tok()
		if prev, ok := seen[clause]; ok {
			p.errorf(t.pos, "%s is already given at %s: give it once", clause, prev)
		}
		seen[clause] = t.pos
	}
	for {
		t := p.tok()
		switch {
		case t.kind != tokIdent:
		case t.word == "where":
			once("where")
			p.advance()
			d.Where = append(d.Where, p.filter())
			for p.tok().kind == tokComma {
				p.advance()
				d.Where = append(d.Where, p.filter())
			}
			continue
		case t.word == "taking":
			once("taking")
			d.Duration = p.taking()
			continue
		case t.word == "at" || t.word == "exactly" || t.word == "more" || t.word == "fewer" || t.word == "less":
			once("the count")
			d.Count = p.count()
			continue
		case t.word == "in" || t.word == "within":
			once("the window")
			p.advance()
			if t.word == "in" {
				p.acceptWord("the")
				p.expectWord("last", "in (as in in the last 7d)")
			}
			d.Window = p.duration()
			continue
		}
		break
	}
	if negated {
		return &Not{At: at, X: d}
	}
	return d
}

// count reads "at least 3 times", "exactly once" and the like.
func (p *parser) count() CountCmp {
	t := p.advance()
	var c CountCmp
	switch t.word {
	case "at":
		switch {
		case p.acceptWord("least"):
			c.Op = OpGe
		case p.acceptWord("most"):
			c.Op = OpLe
		default:
			p.expected("least or most after at")
		}
	case "exactly":
		c.Op = OpEq
	case "more":
		p.expectWord("than", "more")
		c.Op = OpGt
	default: // fewer, less
		p.expectWord("than", t.text)
		c.Op = OpLt
	}
	switch n := p.tok(); {
	case p.acceptWord("once"):
		c.N = 1
	case p.acceptWord("twice"):
		c.N = 2
	case n.kind == tokNumber && n.whole && n.num <= 1e9:
		p.advance()
		c.N = int(n.num)
		if !p.acceptWord("times") && !p.acceptWord("time") {
			p.expected(fmt.Sprintf("times after %s", n.text))
		}
	case n.kind == tokNumber:
		p.errorf(n.pos, "expected a whole number of times from 0 to 1000, found %s", found(n))
	default:
		p.expected("a number of times, such as 3 times or once")
	}
	return c
}

// taking reads the duration condition of jobs, activities and sessions:
// "taking more than 30s", "taking between 1m and 5m".
func (p *parser) taking() *Filter {
	at := p.advance().pos
	f := &Filter{At: at, Key: "duration"}
	operand := func() Operand {
		vat := p.tok().pos
		d := p.duration()
		return Operand{Value: tag.Number(float64(d.Milliseconds())), At: vat}
	}
	t := p.tok()
	switch {
	case p.acceptWord("more"):
		p.expectWord("than", "more")
		f.Op = OpGt
	case p.acceptWord("less"):
		p.expectWord("than", "less")
		f.Op = OpLt
	case p.acceptWord("at"):
		switch {
		case p.acceptWord("least"):
			f.Op = OpGe
		case p.acceptWord("most"):
			f.Op = OpLe
		default:
			p.expected("least or most after at")
		}
	case p.acceptWord("between"):
		f.Op = OpBetween
		f.Values = append(f.Values, operand())
		p.expectWord("and", "the first duration of between")
	default:
		p.errorf(t.pos, "expected more than, less than, at least, at most or between after taking, found %s", found(t))
	}
	f.Values = append(f.Values, operand())
	return f
}

// filter reads one comparison of an extra: key comparison.
func (p *parser) filter() Filter {
	t := p.tok()
	f := Filter{At: t.pos}
	switch t.kind {
	case tokIdent, tokString:
		p.advance()
		f.Key = t.text
		if t.kind == tokString {
			f.Key = t.str
		}
	default:
		p.expected("the name of an extra, such as category")
	}
	f.Op, f.Values = p.comparison()
	return f
}

// appInfo reads `app_info "key"` and a comparison or "unchanged for 3d".
func (p *parser) appInfo() Node {
	at := p.advance().pos
	key := p.quoted("the app_info key in double quotes, such as \"level\"")
	if p.acceptWord("unchanged") {
		p.expectWord("for", "unchanged")
		return &Unchanged{At: at, Key: key, Min: p.duration()}
	}
	a := &Attr{At: at, Source: SourceAppInfo, Key: key}
	a.Op, a.Values = p.comparison()
	return a
}

// sample reads "sample 1%" and "sample 12.5% salt "x"".
func (p *parser) sample() Node {
	at := p.advance().pos
	t := p.tok()
	if t.kind != tokPercent {
		p.expected("a percentage like 1% or 12.5%")
	}
	p.advance()
	s := &Sample{At: at, Percent: t.num}
	if p.acceptWord("salt") {
		s.Salt = p.quoted("the salt in double quotes, such as \"spring-campaign\"")
	}
	return s
}

// comparison reads the comparison of an attribute or an extra.
//
//	comparison = ("=" | "!=" | "<" | "<=" | ">" | ">=") value | ["not"] "in" list
//	           | "between" value "and" value | "is" ["not"] "set" | "starts" "with" value
func (p *parser) comparison() (CmpOp, []Operand) {
	t := p.tok()
	switch {
	case t.kind == tokOp:
		p.advance()
		return t.op, []Operand{p.value()}
	case p.acceptWord("in"):
		return OpIn, p.list()
	case p.acceptWord("not"):
		p.expectWord("in", "not (as in not in [\"a\", \"b\"])")
		return OpNotIn, p.list()
	case p.acceptWord("between"):
		lo := p.value()
		p.expectWord("and", "the first value of between")
		return OpBetween, []Operand{lo, p.value()}
	case p.acceptWord("is"):
		op := OpSet
		if p.acceptWord("not") {
			op = OpNotSet
		}
		p.expectWord("set", "is")
		return op, nil
	case p.acceptWord("starts"):
		p.expectWord("with", "starts")
		return OpPrefix, []Operand{p.value()}
	}
	p.expected("a comparison: =, !=, <, <=, >, >=, in, not in, between, is set, is not set or starts with")
	return 0, nil
}

// list reads [value, value, ...]; a trailing comma is allowed.
func (p *parser) list() []Operand {
	if p.tok().kind != tokLBrack {
		p.expected("a list of values in brackets, such as [\"FR\", \"BE\"]")
	}
	open := p.advance().pos
	var vs []Operand
	for {
		vs = append(vs, p.value())
		if p.tok().kind != tokComma {
			break
		}
		p.advance()
		if p.tok().kind == tokRBrack {
			break
		}
	}
	if p.tok().kind != tokRBrack {
		p.expected(fmt.Sprintf("\",\" or \"]\" to close the list opened at %s", open))
	}
	p.advance()
	return vs
}

const valueHint = "a value: a \"string\", a number, true, false, a date like 2026-01-31, or now - 3d"

// value reads a literal or a date relative to now.
func (p *parser) value() Operand {
	t := p.tok()
	o := Operand{At: t.pos}
	switch {
	case t.kind == tokString:
		o.Value = tag.String(t.str)
	case t.kind == tokNumber:
		o.Value = tag.Number(t.num)
	case t.kind == tokMinus && p.peek(1).kind == tokNumber:
		p.advance()
		o.Value = tag.Number(-p.tok().num)
	case t.kind == tokDate:
		o.Value = tag.Value{Type: tag.TypeDate, Date: t.date}
	case t.kind == tokIdent && (t.word == "true" || t.word == "false"):
		o.Value = tag.Bool(t.word == "true")
	case t.kind == tokIdent && t.word == "now":
		p.advance()
		o.Relative, o.Value = true, tag.Value{Type: tag.TypeDate}
		if sign := p.tok().kind; sign == tokPlus || sign == tokMinus {
			p.advance()
			d, _ := p.anyDuration()
			o.Offset = d
			if sign == tokMinus {
				o.Offset = -d
			}
		}
		return o
	case t.kind == tokDuration:
		p.errorf(t.pos, "expected %s, found %s (a duration compares only with taking, or in a date such as now - %s)", valueHint, found(t), t.text)
	default:
		p.expected(valueHint)
	}
	p.advance()
	return o
}

// finite reports whether f is a number the text form can write.
func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// msDuration converts a number of milliseconds to a duration, saturating.
func msDuration(ms float64) time.Duration {
	switch {
	case !finite(ms) || ms >= float64(math.MaxInt64/int64(time.Millisecond)):
		return time.Duration(math.MaxInt64)
	case ms <= float64(math.MinInt64/int64(time.Millisecond)):
		return time.Duration(math.MinInt64)
	}
	return time.Duration(ms * float64(time.Millisecond))
}
