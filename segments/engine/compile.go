package engine

import (
	"encoding/binary"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/twmb/murmur3"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// opcode is what a compiled node does.
type opcode uint8

const (
	opAnd opcode = iota + 1
	opOr
	opNot
	opDid       // count of a did feature's times in a window
	opFirst     // first_session in a range
	opLastSeen  // last_seen in a range
	opLastTag   // newest time of a did feature in a range
	opAttr      // app_info or device field comparison
	opUnchanged // app_info value unchanged for a duration
	opRef       // membership in another segment of the app
	opSample    // deterministic share of devices
)

// cnode is a compiled segment expression node.
type cnode struct {
	op   opcode
	src  segments.Node
	args []*cnode
	feat *feature

	// opDid
	cmp segments.CmpOp
	n   int
	win int64 // seconds; 0 = all the history kept

	// opFirst, opLastSeen, opLastTag
	rng srange

	// opAttr
	vals    []tag.Value  // operands; relative ones are filled in at evaluation
	rel     []relOperand // the relative operands
	scratch []tag.Value  // vals with the relative operands resolved
	version bool         // compare strings as versions

	// opUnchanged
	min int64 // seconds

	// opRef
	refName string
	ref     *cseg

	// opSample
	salt  string
	limit uint64 // hash < limit keeps the device
}

// relOperand is a date operand relative to now: vals[i] = now + off.
type relOperand struct {
	i   int
	off int64 // milliseconds
}

// srange is a compiled segments.Ago, in seconds.
type srange struct {
	abs      bool
	min, max int64 // relative: now-max <= t <= now-min; max == never: unbounded
	from, to int64 // absolute: from <= t < to; math.MinInt64 / never when open
}

// cseg is one compiled, valid segment of an app.
type cseg struct {
	seg     *segments.Segment
	slot    int    // bit in a device's membership set; slots follow dependency order
	hash    uint32 // of the name: how a device's state names its memberships
	sig     uint64 // of name, version and expression: what SetSegments compares
	root    *cnode
	timeDep bool  // some condition can change with time alone
	refBy   []int // slots of the segments that refer to this one
	size    int   // live number of members
}

// featKind is what a feature keeps per device.
type featKind uint8

const (
	featDid     featKind = iota + 1 // the newest times of matching records
	featAppInfo                     // an app_info value
	featDevice                      // a device info field
)

// feature is one piece of per-device state that the active segments read.
// Segments that read the same thing share one feature; a feature is
// identified in device states by a hash of its canonical description, so
// that states survive changes of the segment set.
type feature struct {
	id   uint32
	kind featKind
	desc string   // canonical description; its hash is id
	segs []uint64 // slots of the segments that read it

	// featDid
	kinds   uint32 // bit per tag.Kind matched
	name    string
	anyName bool
	where   []cfilter
	dur     *cfilter
	k       int     // times kept
	span    []int64 // per rank (0 = newest): a time t is kept while t > now-span[rank]; never = always
	scratch []tag.Value

	// featAppInfo, featDevice
	key   string
	field int // index in deviceFields
}

// cfilter is a compiled where (or taking) filter.
type cfilter struct {
	key  string
	op   segments.CmpOp
	vals []tag.Value
	rel  []relOperand
}

// deviceFields are the device info fields segments compare, in the order
// of segments.DeviceFields.
var deviceFields = [...]string{"platform", "app_version", "os_version", "model", "manufacturer", "locale", "country", "timezone"}

func deviceField(d *tag.DeviceInfo, i int) string {
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

// segSet is the compiled set of one app's segments.
type segSet struct {
	app     string
	segs    []*cseg // by slot
	byName  map[string]*cseg
	invalid map[string]*Status // segments that did not compile
	feats   []*feature
	byID    map[uint32]*feature
	kinds   [32]kindIndex
	appInfo map[string]*feature
	device  []*feature
	words   int
	first   []uint64 // segments that read first_session
	last    []uint64 // segments that read last_seen
	timed   []uint64 // segments that can change with time alone
	all     []uint64
	fp      uint32 // fingerprint of the whole set, kept in device states
}

type kindIndex struct {
	named map[string][]*feature
	any   []*feature
}

// matching returns the did features a record of kind k named name may feed.
func (s *segSet) matching(k tag.Kind, name string) ([]*feature, []*feature) {
	if int(k) >= len(s.kinds) {
		return nil, nil
	}
	ix := &s.kinds[k]
	return ix.named[name], ix.any
}

// compiler builds a segSet.
type compiler struct {
	opts  *Options
	name  string // of the segment being compiled
	set   *segSet
	descs map[string]*feature
}

// compileApp compiles one app's segments. Segments that do not compile,
// or refer to one that does not, are left out and reported in
// set.invalid; the others make the set.
func compileApp(app string, segs []*segments.Segment, opts *Options) *segSet {
	set := &segSet{app: app, byName: map[string]*cseg{}, invalid: map[string]*Status{}, byID: map[uint32]*feature{}, appInfo: map[string]*feature{}}
	c := &compiler{opts: opts, set: set, descs: map[string]*feature{}}
	type pending struct {
		seg  *segments.Segment
		root *cnode
		refs []string
	}
	ok := map[string]*pending{}
	hashes := map[uint32]string{}
	for _, s := range segs {
		h := murmur3.StringSum32(s.Name)
		if other, dup := hashes[h]; dup {
			// Two names with one hash would share a membership in stored
			// states; practically never, but refuse it plainly.
			set.invalid[s.Name] = &Status{App: app, Segment: s.Name, Version: s.Version,
				Err: fmt.Errorf("its name hashes like segment %q's: rename one of them", other)}
			continue
		}
		hashes[h] = s.Name
		c.name = s.Name
		root, err := c.node(s.Expr, 0)
		if err != nil {
			set.invalid[s.Name] = &Status{App: app, Segment: s.Name, Version: s.Version, Err: err}
			continue
		}
		ok[s.Name] = &pending{seg: s, root: root, refs: refsOf(root, nil)}
	}
	// Leave out the segments that refer to a missing, invalid or cyclic one,
	// and order the rest so that a segment comes after those it refers to.
	var order []*pending
	state := map[string]int{} // 1 visiting, 2 done
	var visit func(p *pending, path []string) error
	visit = func(p *pending, path []string) error {
		switch state[p.seg.Name] {
		case 1:
			return fmt.Errorf("segment %q refers to itself through %s", p.seg.Name, strings.Join(append(path, p.seg.Name), " → "))
		case 2:
			if _, bad := set.invalid[p.seg.Name]; bad {
				return fmt.Errorf("segment %q is not valid", p.seg.Name)
			}
			return nil
		}
		state[p.seg.Name] = 1
		var err error
		for _, r := range p.refs {
			q := ok[r]
			switch {
			case q == nil && set.invalid[r] != nil:
				err = fmt.Errorf("it refers to segment %q, which is not valid", r)
			case q == nil:
				err = fmt.Errorf("it refers to segment %q, which does not exist in app %q", r, app)
			default:
				if e := visit(q, append(path, p.seg.Name)); e != nil {
					err = fmt.Errorf("it refers to segment %q: %w", r, e)
				}
			}
			if err != nil {
				break
			}
		}
		state[p.seg.Name] = 2
		if err != nil {
			set.invalid[p.seg.Name] = &Status{App: app, Segment: p.seg.Name, Version: p.seg.Version, Err: err}
			return err
		}
		order = append(order, p)
		return nil
	}
	names := make([]string, 0, len(ok))
	for n := range ok {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		_ = visit(ok[n], nil) // an error is recorded in set.invalid
	}
	set.words = (len(order) + 63) / 64
	if set.words == 0 {
		set.words = 1
	}
	set.first, set.last, set.timed, set.all = newBits(set.words), newBits(set.words), newBits(set.words), newBits(set.words)
	for slot, p := range order {
		cs := &cseg{seg: p.seg, slot: slot, hash: murmur3.StringSum32(p.seg.Name), root: p.root}
		set.segs = append(set.segs, cs)
		set.byName[p.seg.Name] = cs
	}
	for _, cs := range set.segs {
		c.link(cs, cs.root)
		cs.timeDep = timeDependent(cs.root)
		cs.sig = segSig(cs.seg)
		setBit(set.all, cs.slot)
		if cs.timeDep {
			setBit(set.timed, cs.slot)
		}
	}
	for _, f := range set.feats {
		f.finish()
	}
	set.fp = fingerprint(set)
	return set
}

func hashName(name string) uint32 { return murmur3.StringSum32(name) }

func refsOf(n *cnode, out []string) []string {
	if n.op == opRef {
		return append(out, n.refName)
	}
	for _, a := range n.args {
		out = refsOf(a, out)
	}
	return out
}

// link resolves references and interns features for a valid segment.
func (c *compiler) link(cs *cseg, n *cnode) {
	set := c.set
	switch n.op {
	case opRef:
		n.ref = set.byName[n.refName]
		n.ref.refBy = append(n.ref.refBy, cs.slot)
	case opFirst:
		setBit(set.first, cs.slot)
	case opLastSeen:
		setBit(set.last, cs.slot)
	}
	if n.feat != nil {
		n.feat = c.intern(n.feat)
		growBits(&n.feat.segs, set.words)
		setBit(n.feat.segs, cs.slot)
	}
	for _, a := range n.args {
		c.link(cs, a)
	}
}

// intern returns the set's feature with f's description, merging f's
// retention needs into it.
func (c *compiler) intern(f *feature) *feature {
	set := c.set
	if g := c.descs[f.desc]; g != nil {
		if f.kind == featDid {
			for i, sp := range f.span {
				g.need(i+1, sp)
			}
		}
		return g
	}
	f.id = murmur3.StringSum32(f.desc)
	for set.byID[f.id] != nil {
		// A hash collision between two descriptions of one app: move on
		// deterministically (the order of descriptions decides nothing, as
		// both are rehashed from their text).
		f.id = murmur3.SeedStringSum32(f.id, f.desc)
	}
	c.descs[f.desc] = f
	set.byID[f.id] = f
	set.feats = append(set.feats, f)
	switch f.kind {
	case featDid:
		for k := range uint32(len(set.kinds)) {
			if f.kinds&(1<<k) == 0 {
				continue
			}
			ix := &set.kinds[k]
			if f.anyName {
				ix.any = append(ix.any, f)
				continue
			}
			if ix.named == nil {
				ix.named = map[string][]*feature{}
			}
			ix.named[f.name] = append(ix.named[f.name], f)
		}
	case featAppInfo:
		set.appInfo[f.key] = f
	case featDevice:
		set.device = append(set.device, f)
	}
	return f
}

// need records that a segment needs the k newest times of a did feature,
// each while it is younger than span.
func (f *feature) need(k int, span int64) {
	for len(f.span) < k {
		f.span = append(f.span, 0)
	}
	for i := range k {
		if span > f.span[i] {
			f.span[i] = span
		}
	}
	if k > f.k {
		f.k = k
	}
}

// finish makes the per-rank spans non-increasing (a time kept for rank i
// is kept for every rank before it too), so that pruning from the oldest
// end is exact.
func (f *feature) finish() {
	for i := len(f.span) - 2; i >= 0; i-- {
		if f.span[i+1] > f.span[i] {
			f.span[i] = f.span[i+1]
		}
	}
}

// keeps reports whether a time of the given rank must be kept at now.
func (f *feature) keeps(rank int, t uint32, now int64) bool {
	if rank >= f.k {
		return false
	}
	s := f.span[rank]
	return s == never || unix(t) > now-s
}

func timeDependent(n *cnode) bool {
	switch n.op {
	case opDid:
		return n.win > 0
	case opFirst, opLastSeen, opLastTag:
		return !n.rng.abs
	case opAttr:
		return len(n.rel) > 0
	case opUnchanged:
		return true
	}
	for _, a := range n.args {
		if timeDependent(a) {
			return true
		}
	}
	return false
}

// segSig identifies a segment's definition: name, version and expression.
func segSig(s *segments.Segment) uint64 {
	var b strings.Builder
	b.WriteString(s.Name)
	b.WriteByte(0)
	b.WriteString(strconv.FormatInt(s.Version, 10))
	b.WriteByte(0)
	canonNode(&b, s.Expr)
	return murmur3.StringSum64(b.String())
}

// fingerprint identifies a compiled set; a device state records the
// fingerprint of the set it was last evaluated under.
func fingerprint(set *segSet) uint32 {
	sigs := make([]uint64, 0, len(set.segs))
	for _, cs := range set.segs {
		sigs = append(sigs, cs.sig)
	}
	sort.Slice(sigs, func(i, j int) bool { return sigs[i] < sigs[j] })
	b := make([]byte, 0, 8*len(sigs))
	for _, s := range sigs {
		b = binary.LittleEndian.AppendUint64(b, s)
	}
	fp := murmur3.Sum32(b)
	if fp == 0 {
		fp = 1
	}
	return fp
}

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
		for i, f := range deviceFields {
			if f == n.Key {
				field = i
			}
		}
		if field < 0 {
			return nil, errAt(n, "unknown device field %q (known: %s)", n.Key, strings.Join(deviceFields[:], ", "))
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
