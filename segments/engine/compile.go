package engine

import (
	"encoding/binary"
	"fmt"
	"sort"
	"strconv"
	"strings"

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
	field int // index in segments.DeviceFields

	// histBefore is, while the feature is being filled, the fill's seam:
	// records at lower input offsets come from history. 0 otherwise.
	histBefore int64
}

// cfilter is a compiled where (or taking) filter.
type cfilter struct {
	key  string
	op   segments.CmpOp
	vals []tag.Value
	rel  []relOperand
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
	look    int64  // longest look-back of its segments, seconds; never: unbounded (evict.go)
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
	set.look = lookBackOf(set)
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
