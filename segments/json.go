package segments

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/openengage/engage/pipeline/tag"
)

// The JSON form mirrors the tree: every node is an object with one key
// that names it. See docs/segments.md for the full form.
//
//	{"and": [node, node, ...]}          {"or": [node, node, ...]}          {"not": node}
//	{"since": {"moment": "first_session" | "last_seen" | "last", "kind": "event", "name": "purchase",
//	           "min": "3d", "max": "4d"}}            or "after" / "before": a date
//	{"did": {"kind": "event", "name": "share", "where": [filter, ...], "taking": {"op": ">", "values": ["30s"]},
//	         "count": {"op": ">=", "n": 3}, "window": "7d"}}
//	{"attr": {"source": "app_info" | "device", "key": "level", "op": ">=", "values": [5]}}
//	{"unchanged": {"key": "level", "for": "3d"}}
//	{"segment": {"name": "engaged"}}
//	{"sample": {"percent": 1, "salt": "spring"}}
//
// A filter is {"key": "network", "op": "=", "values": ["facebook"]}. A
// value is a JSON string, number or bool, {"date": "2026-01-31"} or
// {"now": "-18y"}. Durations are strings in the text form's units.

// MaxJSONBytes is the largest JSON form UnmarshalNode accepts.
const MaxJSONBytes = 256 << 10

// MarshalNode returns the JSON form of an expression. It fails, naming the
// path, on what JSON cannot hold: a nil node, an unknown kind or operator,
// a number that is not finite.
func MarshalNode(n Node) (data []byte, err error) {
	defer recoverJSON(&err)
	return appendJSON(nil, marshalNode(n, "")), nil
}

// object is a JSON object that keeps its keys in order.
type object []member

type member struct {
	key   string
	value any
}

// appendJSON writes the values marshalNode builds: objects, lists of
// objects or values, strings, numbers, ints and bools. Unlike
// encoding/json it leaves <, > and & as they are: the JSON form is read by
// people too.
func appendJSON(b []byte, v any) []byte {
	switch v := v.(type) {
	case object:
		b = append(b, '{')
		for i, m := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, m.key)
			b = append(b, ':')
			b = appendJSON(b, m.value)
		}
		return append(b, '}')
	case []object:
		b = append(b, '[')
		for i, o := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, o)
		}
		return append(b, ']')
	case []any:
		b = append(b, '[')
		for i, x := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSON(b, x)
		}
		return append(b, ']')
	case []string:
		b = append(b, '[')
		for i, s := range v {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendJSONString(b, s)
		}
		return append(b, ']')
	case string:
		return appendJSONString(b, v)
	case json.Number:
		return append(b, v...)
	case int:
		return strconv.AppendInt(b, int64(v), 10)
	case bool:
		return strconv.AppendBool(b, v)
	}
	panic(fmt.Sprintf("segments: appendJSON of %T", v))
}

// appendJSONString writes s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"' || r == '\\':
			b = append(b, '\\', byte(r))
		case r == '\n':
			b = append(b, `\n`...)
		case r == '\r':
			b = append(b, `\r`...)
		case r == '\t':
			b = append(b, `\t`...)
		case r < ' ' || r == '\u2028' || r == '\u2029':
			b = fmt.Appendf(b, `\u%04x`, r)
		default:
			b = utf8.AppendRune(b, r)
		}
	}
	return append(b, '"')
}

func jsonFail(path, format string, args ...any) {
	panic(bailout{&Error{Path: path, Msg: fmt.Sprintf(format, args...)}})
}

func recoverJSON(err *error) {
	if r := recover(); r != nil {
		b, ok := r.(bailout)
		if !ok {
			panic(r)
		}
		*err = b.err
	}
}

func marshalNode(n Node, path string) object {
	switch n := n.(type) {
	case *And:
		return object{{"and", marshalList(n.Args, path+"/and")}}
	case *Or:
		return object{{"or", marshalList(n.Args, path+"/or")}}
	case *Not:
		return object{{"not", marshalNode(n.X, path+"/not")}}
	case *Since:
		return object{{"since", marshalSince(n, path+"/since")}}
	case *Did:
		return object{{"did", marshalDid(n, path+"/did")}}
	case *Attr:
		path += "/attr"
		source := map[Source]string{SourceAppInfo: "app_info", SourceDevice: "device"}[n.Source]
		if source == "" {
			jsonFail(path+"/source", "unknown source %d", n.Source)
		}
		o := object{{"source", source}, {"key", n.Key}}
		return object{{"attr", append(o, marshalComparison(n.Op, n.Values, path)...)}}
	case *Unchanged:
		return object{{"unchanged", object{{"key", n.Key}, {"for", FormatDuration(n.Min)}}}}
	case *Ref:
		return object{{"segment", object{{"name", n.Name}}}}
	case *Sample:
		o := object{{"percent", marshalNumber(n.Percent, path+"/sample/percent")}}
		if n.Salt != "" {
			o = append(o, member{"salt", n.Salt})
		}
		return object{{"sample", o}}
	case nil:
		jsonFail(path, "no expression (nil node)")
	}
	jsonFail(path, "unknown node %T", n)
	return nil
}

func marshalList(ns []Node, path string) []object {
	objs := make([]object, len(ns))
	for i, n := range ns {
		objs[i] = marshalNode(n, path+"/"+strconv.Itoa(i))
	}
	return objs
}

func marshalKind(k tag.Kind, path string) string {
	w, ok := KindWord(k)
	if !ok {
		jsonFail(path, "kind %s is not one of %s", k, kindList)
	}
	return w
}

func marshalSince(s *Since, path string) object {
	var o object
	switch s.Moment {
	case MomentFirstSession:
		o = object{{"moment", "first_session"}}
	case MomentLastSeen:
		o = object{{"moment", "last_seen"}}
	case MomentLastTag:
		o = object{{"moment", "last"}, {"kind", marshalKind(s.Kind, path+"/kind")}}
		if s.Kind != tag.KindSessionStart || s.Name != "" {
			o = append(o, member{"name", s.Name})
		}
	default:
		jsonFail(path+"/moment", "unknown moment %d", s.Moment)
	}
	r := s.Range
	if r.Absolute {
		if !r.From.IsZero() {
			o = append(o, member{"after", formatDate(r.From)})
		}
		if !r.To.IsZero() {
			o = append(o, member{"before", formatDate(r.To)})
		}
		return o
	}
	if r.Min != 0 || r.Max == Forever {
		o = append(o, member{"min", FormatDuration(r.Min)})
	}
	if r.Max != Forever {
		o = append(o, member{"max", FormatDuration(r.Max)})
	}
	return o
}

func marshalDid(d *Did, path string) object {
	o := object{{"kind", marshalKind(d.Kind, path+"/kind")}}
	if d.Kind != tag.KindSessionStart || d.Name != "" {
		o = append(o, member{"name", d.Name})
	}
	if len(d.Where) > 0 {
		fs := make([]object, len(d.Where))
		for i, f := range d.Where {
			fp := fmt.Sprintf("%s/where/%d", path, i)
			fs[i] = append(object{{"key", f.Key}}, marshalComparison(f.Op, f.Values, fp)...)
		}
		o = append(o, member{"where", fs})
	}
	if f := d.Duration; f != nil {
		if _, ok := durationOps[f.Op.String()]; !ok {
			jsonFail(path+"/taking/op", "operator %s does not compare durations", f.Op)
		}
		vs := make([]string, len(f.Values))
		for i, v := range f.Values {
			vs[i] = FormatDuration(msDuration(v.Value.Num))
		}
		o = append(o, member{"taking", object{{"op", f.Op.String()}, {"values", vs}}})
	}
	if d.Count != (CountCmp{Op: OpGe, N: 1}) {
		if _, ok := countOpWords[d.Count.Op]; !ok {
			jsonFail(path+"/count/op", "operator %s does not compare counts", d.Count.Op)
		}
		o = append(o, member{"count", object{{"op", d.Count.Op.String()}, {"n", d.Count.N}}})
	}
	if d.Window != 0 {
		o = append(o, member{"window", FormatDuration(d.Window)})
	}
	return o
}

func marshalComparison(op CmpOp, vs []Operand, path string) object {
	if _, ok := opNames[op]; !ok {
		jsonFail(path+"/op", "unknown operator %d", op)
	}
	o := object{{"op", op.String()}}
	if op == OpSet || op == OpNotSet {
		return o
	}
	values := make([]any, len(vs))
	for i, v := range vs {
		values[i] = marshalOperand(v, fmt.Sprintf("%s/values/%d", path, i))
	}
	return append(o, member{"values", values})
}

func marshalOperand(o Operand, path string) any {
	if o.Relative {
		switch {
		case o.Offset > 0:
			return object{{"now", "+" + formatOffset(o.Offset)}}
		case o.Offset < 0:
			return object{{"now", "-" + formatOffset(-o.Offset)}}
		}
		return object{{"now", "0s"}}
	}
	switch v := o.Value; v.Type {
	case tag.TypeString:
		return v.Str
	case tag.TypeNumber:
		return marshalNumber(v.Num, path)
	case tag.TypeBool:
		return v.Bool
	case tag.TypeDate:
		return object{{"date", formatDate(v.Date)}}
	}
	jsonFail(path, "value of no type")
	return nil
}

func marshalNumber(f float64, path string) json.Number {
	if !finite(f) {
		jsonFail(path, "number %v cannot be written in JSON", f)
	}
	return json.Number(formatNumber(f))
}

// UnmarshalNode reads the JSON form of an expression. It accepts exactly
// what the text form can say: known node names, kinds, operators and
// device fields, the right number of values for each operator, and no
// unknown fields. Errors are *Error with the JSON path of the value,
// e.g. `/and/1/did/window: expected a duration like "7d", found 7`.
// Like Parse, it checks the form only: Check holds the expression to a
// tag plan and the language's limits.
func UnmarshalNode(data []byte) (n Node, err error) {
	if len(data) > MaxJSONBytes {
		return nil, &Error{Msg: fmt.Sprintf("the JSON is %d bytes long: at most %d", len(data), MaxJSONBytes)}
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, &Error{Msg: "invalid JSON: " + strings.TrimPrefix(err.Error(), "json: ")}
	}
	if dec.More() {
		return nil, &Error{Msg: "invalid JSON: more than one value"}
	}
	defer recoverJSON(&err)
	u := &unmarshaler{}
	return u.node(v, ""), nil
}

// jsonDuration reads a duration string of the text form ("7d", "36h").
func jsonDuration(v any, path string) time.Duration {
	s, ok := v.(string)
	if ok {
		if d, err := parseWhole(s, (*parser).duration); err == nil {
			return d
		}
	}
	jsonFail(path, "expected a duration like \"7d\", found %s", describeJSON(v))
	return 0
}

// jsonDate reads a date string of the text form ("2026-01-31" or RFC 3339).
func jsonDate(v any, path string) time.Time {
	s, ok := v.(string)
	if ok {
		if t, err := parseWhole(s, (*parser).date); err == nil {
			return t
		}
	}
	jsonFail(path, "expected a date like \"2026-01-31\" or \"2026-01-31T10:00:00Z\", found %s", describeJSON(v))
	return time.Time{}
}

// parseWhole runs read on the tokens of s and requires that they are all
// read.
func parseWhole[T any](s string, read func(*parser) T) (v T, err error) {
	p := &parser{toks: lex(s)}
	defer func() {
		if r := recover(); r != nil {
			b, ok := r.(bailout)
			if !ok {
				panic(r)
			}
			err = b.err
		}
	}()
	v = read(p)
	if p.tok().kind != tokEOF {
		p.expected("the end")
	}
	return v, nil
}

// describeJSON names a JSON value for an error message.
func describeJSON(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case string:
		if len(v) > 40 {
			v = v[:40] + "…"
		}
		return strconv.Quote(v)
	case json.Number:
		return v.String()
	case bool:
		return strconv.FormatBool(v)
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// pointer escapes a key for a JSON pointer (RFC 6901).
func pointer(path, key string) string {
	return path + "/" + strings.NewReplacer("~", "~0", "/", "~1").Replace(key)
}
