package segments

import (
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/pipeline/tagplan"
)

// unmarshaler reads the JSON form, decoded into any with UseNumber. Its
// methods fail by panicking with a bailout that UnmarshalNode recovers.
type unmarshaler struct {
	depth int
}

var nodeNames = []string{"and", "or", "not", "since", "did", "attr", "unchanged", "segment", "sample"}

func (u *unmarshaler) node(v any, path string) Node {
	m, ok := v.(map[string]any)
	if !ok || len(m) != 1 {
		what := describeJSON(v)
		if ok {
			what = fmt.Sprintf("an object with %d keys", len(m))
		}
		jsonFail(path, "expected a node: an object with one key among %s; found %s", strings.Join(nodeNames, ", "), what)
	}
	var name string
	var x any
	for name, x = range m {
	}
	p := pointer(path, name)
	switch name {
	case "and", "or":
		u.enter(p)
		defer u.leave()
		args := u.nodes(x, p)
		if name == "and" {
			return &And{Args: args}
		}
		return &Or{Args: args}
	case "not":
		u.enter(p)
		defer u.leave()
		return &Not{X: u.node(x, p)}
	case "since":
		return u.since(x, p)
	case "did":
		return u.did(x, p)
	case "attr":
		return u.attr(x, p)
	case "unchanged":
		o := fields(x, p, []string{"key", "for"}, "key", "for")
		return &Unchanged{Key: str(o["key"], p+"/key"), Min: jsonDuration(o["for"], p+"/for")}
	case "segment":
		o := fields(x, p, []string{"name"}, "name")
		return &Ref{Name: str(o["name"], p+"/name")}
	case "sample":
		o := fields(x, p, []string{"percent", "salt"}, "percent")
		s := &Sample{Percent: number(o["percent"], p+"/percent")}
		if salt, ok := o["salt"]; ok {
			s.Salt = str(salt, p+"/salt")
		}
		return s
	}
	hint := ""
	if s, ok := tagplan.Suggest(name, nodeNames); ok {
		hint = fmt.Sprintf(" (did you mean %q?)", s)
	}
	jsonFail(p, "unknown node %q: expected %s%s", name, strings.Join(nodeNames, ", "), hint)
	return nil
}

func (u *unmarshaler) enter(path string) {
	if u.depth++; u.depth > MaxDepth {
		jsonFail(path, "expression nested too deeply: at most %d levels of and, or and not", MaxDepth)
	}
}

func (u *unmarshaler) leave() { u.depth-- }

func (u *unmarshaler) nodes(v any, path string) []Node {
	l, ok := v.([]any)
	if !ok || len(l) < 2 {
		what := describeJSON(v)
		if ok {
			what = fmt.Sprintf("%d", len(l))
		}
		jsonFail(path, "expected a list of at least 2 conditions, found %s", what)
	}
	ns := make([]Node, len(l))
	for i, x := range l {
		ns[i] = u.node(x, path+"/"+strconv.Itoa(i))
	}
	return ns
}

// fields reads an object with the given allowed keys, of which required
// must be present.
func fields(v any, path string, allowed []string, required ...string) map[string]any {
	m, ok := v.(map[string]any)
	if !ok {
		jsonFail(path, "expected an object, found %s", describeJSON(v))
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(allowed, k) {
			hint := ""
			if s, ok := tagplan.Suggest(k, allowed); ok {
				hint = fmt.Sprintf(" (did you mean %q?)", s)
			}
			jsonFail(pointer(path, k), "unknown field: expected %s%s", strings.Join(allowed, ", "), hint)
		}
	}
	for _, k := range required {
		if _, ok := m[k]; !ok {
			jsonFail(path, "missing field %q", k)
		}
	}
	return m
}

func str(v any, path string) string {
	s, ok := v.(string)
	if !ok {
		jsonFail(path, "expected a string, found %s", describeJSON(v))
	}
	return s
}

func number(v any, path string) float64 {
	if n, ok := v.(json.Number); ok {
		if f, err := n.Float64(); err == nil && !math.IsInf(f, 0) {
			return f
		}
		jsonFail(path, "number %s is out of range", n)
	}
	jsonFail(path, "expected a number, found %s", describeJSON(v))
	return 0
}

// kind reads a kind word; session takes no name, the others require one.
func (u *unmarshaler) kind(o map[string]any, path string) (tag.Kind, string) {
	w := str(o["kind"], path+"/kind")
	k, ok := kindWords[w]
	if !ok {
		jsonFail(path+"/kind", "expected %s, found %q", kindList, w)
	}
	name, hasName := o["name"]
	switch {
	case k == tag.KindSessionStart && hasName:
		jsonFail(path+"/name", "sessions have no name: remove the field")
	case k != tag.KindSessionStart && !hasName:
		jsonFail(path, "missing field \"name\": the %s's name", w)
	case hasName:
		return k, str(name, path+"/name")
	}
	return k, ""
}

func (u *unmarshaler) since(v any, path string) Node {
	o := fields(v, path, []string{"moment", "kind", "name", "min", "max", "after", "before"}, "moment")
	s := &Since{}
	switch m := str(o["moment"], path+"/moment"); m {
	case "first_session", "last_seen":
		s.Moment = MomentFirstSession
		if m == "last_seen" {
			s.Moment = MomentLastSeen
		}
		for _, k := range []string{"kind", "name"} {
			if _, ok := o[k]; ok {
				jsonFail(pointer(path, k), "only the moment \"last\" takes a %s", k)
			}
		}
	case "last":
		s.Moment = MomentLastTag
		if _, ok := o["kind"]; !ok {
			jsonFail(path, "missing field \"kind\": moment \"last\" needs the kind of record, %s", kindList)
		}
		s.Kind, s.Name = u.kind(o, path)
	default:
		jsonFail(path+"/moment", "expected first_session, last_seen or last, found %q", m)
	}
	_, min := o["min"]
	_, max := o["max"]
	_, after := o["after"]
	_, before := o["before"]
	switch {
	case (min || max) && (after || before):
		jsonFail(path, "a range is either min/max (ages) or after/before (dates), not both")
	case min || max:
		s.Range.Max = Forever
		if min {
			s.Range.Min = jsonDuration(o["min"], path+"/min")
		}
		if max {
			s.Range.Max = jsonDuration(o["max"], path+"/max")
		}
	case after || before:
		s.Range.Absolute = true
		if after {
			s.Range.From = jsonDate(o["after"], path+"/after")
		}
		if before {
			s.Range.To = jsonDate(o["before"], path+"/before")
		}
	default:
		jsonFail(path, "missing the range: min and/or max (ages, like \"3d\"), or after and/or before (dates)")
	}
	return s
}

var (
	countOps    = map[string]CmpOp{">=": OpGe, "<=": OpLe, "=": OpEq, ">": OpGt, "<": OpLt}
	durationOps = map[string]CmpOp{">": OpGt, "<": OpLt, ">=": OpGe, "<=": OpLe, "between": OpBetween}
)

func (u *unmarshaler) did(v any, path string) Node {
	o := fields(v, path, []string{"kind", "name", "where", "taking", "count", "window"}, "kind")
	d := &Did{Count: CountCmp{Op: OpGe, N: 1}}
	d.Kind, d.Name = u.kind(o, path)
	if w, ok := o["where"]; ok {
		l, ok := w.([]any)
		switch {
		case !ok:
			jsonFail(path+"/where", "expected a list of filters, found %s", describeJSON(w))
		case len(l) == 0:
			jsonFail(path+"/where", "expected at least one filter, found none: remove the field")
		}
		for i, x := range l {
			fp := fmt.Sprintf("%s/where/%d", path, i)
			f := fields(x, fp, []string{"key", "op", "values"}, "key", "op")
			flt := Filter{Key: str(f["key"], fp+"/key")}
			flt.Op, flt.Values = comparison(f, fp)
			d.Where = append(d.Where, flt)
		}
	}
	if t, ok := o["taking"]; ok {
		tp := path + "/taking"
		f := fields(t, tp, []string{"op", "values"}, "op", "values")
		op, ok := durationOps[str(f["op"], tp+"/op")]
		if !ok {
			jsonFail(tp+"/op", "expected >, <, >=, <= or between, found %s", describeJSON(f["op"]))
		}
		d.Duration = &Filter{Key: "duration", Op: op}
		for i, x := range values(f["values"], tp, arity(op)) {
			ms := jsonDuration(x, fmt.Sprintf("%s/values/%d", tp, i)).Milliseconds()
			d.Duration.Values = append(d.Duration.Values, Operand{Value: tag.Number(float64(ms))})
		}
	}
	if c, ok := o["count"]; ok {
		cp := path + "/count"
		f := fields(c, cp, []string{"op", "n"}, "op", "n")
		op, ok := countOps[str(f["op"], cp+"/op")]
		if !ok {
			jsonFail(cp+"/op", "expected >=, <=, =, > or <, found %s", describeJSON(f["op"]))
		}
		n := number(f["n"], cp+"/n")
		if n != math.Trunc(n) || n < 0 || n > 1e9 {
			jsonFail(cp+"/n", "expected a whole number of times from 0 to 1000, found %s", describeJSON(f["n"]))
		}
		d.Count = CountCmp{Op: op, N: int(n)}
	}
	if w, ok := o["window"]; ok {
		d.Window = jsonDuration(w, path+"/window")
	}
	return d
}

func (u *unmarshaler) attr(v any, path string) Node {
	o := fields(v, path, []string{"source", "key", "op", "values"}, "source", "key", "op")
	a := &Attr{Key: str(o["key"], path+"/key")}
	switch s := str(o["source"], path+"/source"); s {
	case "app_info":
		a.Source = SourceAppInfo
	case "device":
		a.Source = SourceDevice
		if !slices.Contains(DeviceFields, a.Key) {
			jsonFail(path+"/key", "expected one of the device fields %s; found %q", strings.Join(DeviceFields, ", "), a.Key)
		}
	default:
		jsonFail(path+"/source", "expected app_info or device, found %q", s)
	}
	a.Op, a.Values = comparison(o, path)
	return a
}

// arity is the number of values an operator takes; -1 for one or more.
func arity(op CmpOp) int {
	switch op {
	case OpSet, OpNotSet:
		return 0
	case OpBetween:
		return 2
	case OpIn, OpNotIn:
		return -1
	}
	return 1
}

// values reads the list of values of an operator that takes n of them.
func values(v any, path string, n int) []any {
	l, ok := v.([]any)
	switch {
	case !ok:
		jsonFail(path+"/values", "expected a list of values, found %s", describeJSON(v))
	case n < 0 && len(l) == 0:
		jsonFail(path+"/values", "expected at least one value, found none")
	case n >= 0 && len(l) != n:
		jsonFail(path+"/values", "expected %d value%s, found %d", n, map[bool]string{true: "s"}[n != 1], len(l))
	}
	return l
}

// comparison reads "op" and "values" of an attribute or a filter.
func comparison(o map[string]any, path string) (CmpOp, []Operand) {
	name := str(o["op"], path+"/op")
	var op CmpOp
	for o, n := range opNames {
		if n == name {
			op = o
		}
	}
	if op == 0 {
		jsonFail(path+"/op", "expected =, !=, <, <=, >, >=, in, not in, between, is set, is not set or starts with, found %q", name)
	}
	n := arity(op)
	vs, ok := o["values"]
	if n == 0 {
		if ok {
			jsonFail(path+"/values", "%s takes no values: remove the field", op)
		}
		return op, nil
	}
	if !ok {
		jsonFail(path, "missing field \"values\"")
	}
	l := values(vs, path, n)
	ops := make([]Operand, len(l))
	for i, x := range l {
		ops[i] = operand(x, fmt.Sprintf("%s/values/%d", path, i))
	}
	return op, ops
}

func operand(v any, path string) Operand {
	switch v := v.(type) {
	case string:
		return Operand{Value: tag.String(v)}
	case json.Number:
		return Operand{Value: tag.Number(number(v, path))}
	case bool:
		return Operand{Value: tag.Bool(v)}
	case map[string]any:
		if x, ok := v["now"]; ok && len(v) == 1 {
			return Operand{Relative: true, Value: tag.Value{Type: tag.TypeDate}, Offset: jsonOffset(x, path+"/now")}
		}
		if x, ok := v["date"]; ok && len(v) == 1 {
			s, _ := x.(string)
			t, err := parseWhole(s, (*parser).anyDate)
			if err != nil {
				jsonFail(path+"/date", "expected a date like \"2026-01-31\" or \"2026-01-31T10:00:00Z\", found %s", describeJSON(x))
			}
			return Operand{Value: tag.Value{Type: tag.TypeDate, Date: t}}
		}
	}
	jsonFail(path, "expected a value: a string, a number, true, false, {\"date\": \"2026-01-31\"} or {\"now\": \"-3d\"}, found %s", describeJSON(v))
	return Operand{}
}

// jsonOffset reads the offset of a date relative to now: "-18y", "+2d",
// "0s". A non-zero offset needs its sign: past or future must be said.
func jsonOffset(v any, path string) time.Duration {
	if s, ok := v.(string); ok {
		sign, rest := time.Duration(0), s
		switch {
		case strings.HasPrefix(s, "-"):
			sign, rest = -1, s[1:]
		case strings.HasPrefix(s, "+"):
			sign, rest = 1, s[1:]
		}
		d, err := parseWhole(rest, func(p *parser) time.Duration { d, _ := p.anyDuration(); return d })
		switch {
		case err == nil && d == 0:
			return 0
		case err == nil && sign != 0:
			return sign * d
		}
	}
	jsonFail(path, "expected an offset from now like \"-18y\", \"+2d\" or \"0s\", found %s", describeJSON(v))
	return 0
}
