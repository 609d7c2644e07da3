package engine

import (
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// node compiles one expression node.
func (c *compiler) node(n segments.Node, depth int) (*cnode, error) {
	if depth > 64 {
		return nil, errAt(n, "expression nested more than 64 levels deep")
	}
	switch n := n.(type) {
	case *segments.And:
		return c.list(opAnd, n, n.Args, depth)
	case *segments.Or:
		return c.list(opOr, n, n.Args, depth)
	case *segments.Not:
		x, err := c.node(n.X, depth+1)
		if err != nil {
			return nil, err
		}
		return &cnode{op: opNot, src: n, args: []*cnode{x}}, nil
	case *segments.Did:
		return c.did(n)
	case *segments.Since:
		return c.since(n)
	case *segments.Attr:
		return c.attr(n)
	case *segments.Unchanged:
		if n.Key == "" {
			return nil, errAt(n, "unchanged needs an app_info key")
		}
		if n.Min < time.Second {
			return nil, errAt(n, "unchanged for %s: the engine counts in whole seconds, give at least 1s", n.Min)
		}
		return &cnode{op: opUnchanged, src: n, min: int64(n.Min / time.Second), feat: appInfoFeature(n.Key)}, nil
	case *segments.Ref:
		if n.Name == "" {
			return nil, errAt(n, "segment reference without a name")
		}
		return &cnode{op: opRef, src: n, refName: n.Name}, nil
	case *segments.Sample:
		if !(n.Percent > 0 && n.Percent <= 100) {
			return nil, errAt(n, "sample %v%%: give a share in (0, 100]", n.Percent)
		}
		salt := n.Salt
		if salt == "" {
			salt = c.name
		}
		return &cnode{op: opSample, src: n, salt: salt, limit: uint64(n.Percent / 100 * (1 << 32))}, nil
	case nil:
		return nil, fmt.Errorf("empty expression")
	}
	return nil, errAt(n, "unknown condition %T", n)
}

func (c *compiler) list(op opcode, n segments.Node, args []segments.Node, depth int) (*cnode, error) {
	if len(args) == 0 {
		return nil, errAt(n, "%s without arguments", map[opcode]string{opAnd: "and", opOr: "or"}[op])
	}
	cn := &cnode{op: op, src: n}
	for _, a := range args {
		x, err := c.node(a, depth+1)
		if err != nil {
			return nil, err
		}
		cn.args = append(cn.args, x)
	}
	return cn, nil
}

func errAt(n segments.Node, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if n != nil {
		if p := n.Position(); p.Line > 0 {
			return &segments.Error{Pos: p, Msg: msg}
		}
	}
	return &segments.Error{Msg: msg}
}

// recordKinds maps the kind a condition names to the kinds of records that
// count: a job is a job record or the end of a job.
func recordKinds(k tag.Kind) uint32 {
	switch k {
	case tag.KindJob, tag.KindJobEnd:
		return 1<<tag.KindJob | 1<<tag.KindJobEnd
	}
	return 1 << k
}

// didFeature returns the (not yet interned) feature that keeps the times of
// the records a Did (or a last-tag Since) matches.
func (c *compiler) didFeature(src segments.Node, kind tag.Kind, name string, where []segments.Filter, dur *segments.Filter) (*feature, error) {
	if kind == tag.KindInvalid || int(kind) >= 32 {
		return nil, errAt(src, "unknown kind of record %d", kind)
	}
	f := &feature{kind: featDid, kinds: recordKinds(kind), name: name, anyName: name == "" || !kind.Named()}
	var b strings.Builder
	fmt.Fprintf(&b, "did|%d|", f.kinds)
	if !f.anyName {
		b.WriteString(strconv.Quote(name))
	}
	var fs []string
	for i := range where {
		cf, err := compileFilter(src, &where[i])
		if err != nil {
			return nil, err
		}
		f.where = append(f.where, cf)
		var fb strings.Builder
		canonFilter(&fb, &where[i])
		fs = append(fs, fb.String())
	}
	sort.Strings(fs)
	for _, s := range fs {
		b.WriteString("|w:")
		b.WriteString(s)
	}
	if dur != nil {
		cf, err := compileFilter(src, dur)
		if err != nil {
			return nil, err
		}
		for _, v := range cf.vals {
			if v.Type != tag.TypeNumber {
				return nil, errAt(src, "taking: durations are numbers of milliseconds")
			}
		}
		cf.key = ""
		f.dur = &cf
		b.WriteString("|d:")
		canonFilter(&b, dur)
	}
	f.desc = b.String()
	return f, nil
}

func compileFilter(src segments.Node, f *segments.Filter) (cfilter, error) {
	cf := cfilter{key: f.Key, op: f.Op}
	if err := checkOperands(src, f.Op, f.Values); err != nil {
		return cf, err
	}
	for i, o := range f.Values {
		cf.vals = append(cf.vals, o.Value)
		if o.Relative {
			cf.rel = append(cf.rel, relOperand{i: i, off: int64(o.Offset / time.Millisecond)})
			cf.vals[i] = tag.Value{Type: tag.TypeDate}
		}
	}
	return cf, nil
}

func checkOperands(src segments.Node, op segments.CmpOp, vals []segments.Operand) error {
	want := -1
	switch op {
	case segments.OpEq, segments.OpNe, segments.OpLt, segments.OpLe, segments.OpGt, segments.OpGe, segments.OpPrefix:
		want = 1
	case segments.OpBetween:
		want = 2
	case segments.OpSet, segments.OpNotSet:
		want = 0
	case segments.OpIn, segments.OpNotIn:
		if len(vals) == 0 {
			return errAt(src, "%s needs at least one value", op)
		}
	default:
		return errAt(src, "unknown comparison %d", op)
	}
	if want >= 0 && len(vals) != want {
		return errAt(src, "%s needs %d value(s), found %d", op, want, len(vals))
	}
	return nil
}

func (c *compiler) did(n *segments.Did) (*cnode, error) {
	f, err := c.didFeature(n, n.Kind, n.Name, n.Where, n.Duration)
	if err != nil {
		return nil, err
	}
	cn := &cnode{op: opDid, src: n, cmp: n.Count.Op, n: n.Count.N}
	if n.Count.N < 0 {
		return nil, errAt(n, "count %d: counts are not negative", n.Count.N)
	}
	var k int
	switch n.Count.Op {
	case segments.OpGe, segments.OpLt:
		k = n.Count.N
	case segments.OpGt, segments.OpLe, segments.OpEq:
		k = n.Count.N + 1
	default:
		return nil, errAt(n, "unknown count comparison %s", n.Count.Op)
	}
	if k > c.opts.MaxCount {
		return nil, errAt(n, "count %d: the engine keeps at most %d times per condition (Options.MaxCount)", n.Count.N, c.opts.MaxCount)
	}
	if n.Window < 0 || n.Window > 0 && n.Window < time.Second {
		return nil, errAt(n, "window %s: the engine counts in whole seconds, give at least 1s", n.Window)
	}
	cn.win = int64(n.Window / time.Second)
	span := never
	if cn.win > 0 {
		span = cn.win
	}
	f.need(k, span)
	cn.feat = f
	return cn, nil
}

func (c *compiler) since(n *segments.Since) (*cnode, error) {
	cn := &cnode{src: n}
	r := n.Range
	if r.Absolute {
		cn.rng = srange{abs: true, from: math.MinInt64, to: never}
		if !r.From.IsZero() {
			cn.rng.from = ceilSec(r.From)
		}
		if !r.To.IsZero() {
			cn.rng.to = ceilSec(r.To)
		}
	} else {
		if r.Min < 0 || r.Max < r.Min {
			return nil, errAt(n, "time range from %s to %s ago is empty", r.Min, r.Max)
		}
		cn.rng = srange{min: int64(r.Min / time.Second), max: never}
		if r.Max != segments.Forever {
			cn.rng.max = int64(r.Max / time.Second)
		}
	}
	switch n.Moment {
	case segments.MomentFirstSession:
		cn.op = opFirst
	case segments.MomentLastSeen:
		cn.op = opLastSeen
	case segments.MomentLastTag:
		cn.op = opLastTag
		f, err := c.didFeature(n, n.Kind, n.Name, nil, nil)
		if err != nil {
			return nil, err
		}
		span := never
		if !cn.rng.abs && cn.rng.max != never {
			span = cn.rng.max + 1
		}
		f.need(1, span)
		cn.feat = f
	default:
		return nil, errAt(n, "unknown moment %d", n.Moment)
	}
	return cn, nil
}

// ceilSec returns t in whole seconds, rounded up: a time in seconds is at
// or after t exactly when it is at or after ceilSec(t).
func ceilSec(t time.Time) int64 {
	s := t.Unix()
	if t.Nanosecond() > 0 {
		s++
	}
	return s
}

func appInfoFeature(key string) *feature {
	return &feature{kind: featAppInfo, key: key, desc: "app_info|" + key}
}

func (c *compiler) attr(n *segments.Attr) (*cnode, error) {
	if err := checkOperands(n, n.Op, n.Values); err != nil {
		return nil, err
	}
	cn := &cnode{op: opAttr, src: n, cmp: n.Op}
	switch n.Source {
	case segments.SourceAppInfo:
		if n.Key == "" {
			return nil, errAt(n, "app_info needs a key")
		}
		cn.feat = appInfoFeature(n.Key)
	case segments.SourceDevice:
		field := -1
		for i, f := range segments.DeviceFields {
			if f == n.Key {
				field = i
			}
		}
		if field < 0 {
			return nil, errAt(n, "unknown device field %q (known: %s)", n.Key, strings.Join(segments.DeviceFields, ", "))
		}
		cn.feat = &feature{kind: featDevice, key: n.Key, field: field, desc: "device|" + n.Key}
		cn.version = n.Key == "app_version" || n.Key == "os_version"
	default:
		return nil, errAt(n, "unknown attribute source %d", n.Source)
	}
	for i, o := range n.Values {
		cn.vals = append(cn.vals, o.Value)
		if o.Relative {
			cn.rel = append(cn.rel, relOperand{i: i, off: int64(o.Offset / time.Millisecond)})
			cn.vals[i] = tag.Value{Type: tag.TypeDate}
		}
	}
	if len(cn.rel) > 0 {
		cn.scratch = make([]tag.Value, len(cn.vals))
	}
	return cn, nil
}

// canonNode writes a stable text of an expression, for signatures. It is
// the engine's own, not segments.Format, so that a change of the text
// form's spelling never changes stored identities.
func canonNode(b *strings.Builder, n segments.Node) {
	switch n := n.(type) {
	case *segments.And:
		b.WriteString("(and")
		for _, a := range n.Args {
			b.WriteByte(' ')
			canonNode(b, a)
		}
		b.WriteByte(')')
	case *segments.Or:
		b.WriteString("(or")
		for _, a := range n.Args {
			b.WriteByte(' ')
			canonNode(b, a)
		}
		b.WriteByte(')')
	case *segments.Not:
		b.WriteString("(not ")
		canonNode(b, n.X)
		b.WriteByte(')')
	case *segments.Did:
		fmt.Fprintf(b, "(did %d %q", n.Kind, n.Name)
		for i := range n.Where {
			b.WriteByte(' ')
			canonFilter(b, &n.Where[i])
		}
		if n.Duration != nil {
			b.WriteString(" taking ")
			canonFilter(b, n.Duration)
		}
		fmt.Fprintf(b, " %d %d %d)", n.Count.Op, n.Count.N, n.Window)
	case *segments.Since:
		r := n.Range
		fmt.Fprintf(b, "(since %d %d %q %d %d %t %d %d)", n.Moment, n.Kind, n.Name, r.Min, r.Max, r.Absolute, r.From.UnixNano(), r.To.UnixNano())
	case *segments.Attr:
		fmt.Fprintf(b, "(attr %d %q %d", n.Source, n.Key, n.Op)
		canonOperands(b, n.Values)
		b.WriteByte(')')
	case *segments.Unchanged:
		fmt.Fprintf(b, "(unchanged %q %d)", n.Key, n.Min)
	case *segments.Ref:
		fmt.Fprintf(b, "(segment %q)", n.Name)
	case *segments.Sample:
		fmt.Fprintf(b, "(sample %v %q)", n.Percent, n.Salt)
	default:
		fmt.Fprintf(b, "(%T)", n)
	}
}

func canonFilter(b *strings.Builder, f *segments.Filter) {
	fmt.Fprintf(b, "%q %d", f.Key, f.Op)
	canonOperands(b, f.Values)
}

func canonOperands(b *strings.Builder, vs []segments.Operand) {
	for _, o := range vs {
		b.WriteByte(' ')
		if o.Relative {
			fmt.Fprintf(b, "now%+d", o.Offset)
			continue
		}
		v := o.Value
		switch v.Type {
		case tag.TypeString:
			fmt.Fprintf(b, "s%q", v.Str)
		case tag.TypeNumber:
			b.WriteString("n" + strconv.FormatFloat(v.Num, 'g', -1, 64))
		case tag.TypeBool:
			fmt.Fprintf(b, "b%t", v.Bool)
		case tag.TypeDate:
			fmt.Fprintf(b, "d%d", v.Date.UnixMilli())
		default:
			b.WriteString("?")
		}
	}
}
