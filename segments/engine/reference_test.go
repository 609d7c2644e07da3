package engine

import (
	"strconv"
	"strings"
	"time"

	"github.com/twmb/murmur3"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// refModel is the naive reference evaluator: it keeps every accepted
// record of every device and evaluates a segment's expression tree
// directly from them. It applies the engine's documented semantics:
//
//   - a record is skipped when its offset is at or before the device's last
//     one, or when its message id is among the last 4 accepted ids;
//   - a record's time is its event time in whole seconds, no later than the
//     now it was applied at, no earlier than 2000-01-01T00:00:01Z;
//   - an attribute's value is that of its newest record (a later arrival
//     wins a tie); its run start (unchanged) follows the documented fold;
//   - comparisons of a missing value or of different types are false.
type refModel struct {
	segs map[string]map[string]*segments.Segment // app → name → segment
	devs map[string]*refDevice
	// A feature counts the records accepted since it was first read by a
	// segment of the current set: since[app + "\x00" + description] is the
	// sequence number of the first such record.
	seq   int
	since map[string]int
	descs map[segments.Node]string
}

type refDevice struct {
	app, id string
	offset  int64
	ids     []string // accepted message ids, oldest first
	recs    []refRecord
}

type refRecord struct {
	r   *tag.Record
	t   int64 // seconds
	seq int
}

func newRefModel(segs []*segments.Segment) *refModel {
	m := &refModel{devs: map[string]*refDevice{}, since: map[string]int{}, descs: map[segments.Node]string{}}
	m.setSegments(segs)
	return m
}

// setSegments changes the segments; features that no segment read
// before count from now on.
func (m *refModel) setSegments(segs []*segments.Segment) {
	m.segs = map[string]map[string]*segments.Segment{}
	feats := map[string]bool{}
	for _, s := range segs {
		if m.segs[s.App] == nil {
			m.segs[s.App] = map[string]*segments.Segment{}
		}
		m.segs[s.App][s.Name] = s
		m.walkFeatures(s.Expr, func(n segments.Node, desc string) { feats[s.App+"\x00"+desc] = true })
	}
	for f := range m.since {
		if !feats[f] {
			delete(m.since, f)
		}
	}
	for f := range feats {
		if _, ok := m.since[f]; !ok {
			m.since[f] = m.seq
		}
	}
}

// walkFeatures calls fn with each condition that reads a feature and the
// feature's description (the engine's, which identifies features).
func (m *refModel) walkFeatures(n segments.Node, fn func(segments.Node, string)) {
	c := &compiler{opts: &Options{MaxCount: DefaultMaxCount}}
	var desc string
	switch n := n.(type) {
	case *segments.And:
		for _, a := range n.Args {
			m.walkFeatures(a, fn)
		}
		return
	case *segments.Or:
		for _, a := range n.Args {
			m.walkFeatures(a, fn)
		}
		return
	case *segments.Not:
		m.walkFeatures(n.X, fn)
		return
	case *segments.Did:
		f, err := c.didFeature(n, n.Kind, n.Name, n.Where, n.Duration)
		if err != nil {
			panic(err)
		}
		desc = f.desc
	case *segments.Since:
		if n.Moment != segments.MomentLastTag {
			return
		}
		f, err := c.didFeature(n, n.Kind, n.Name, nil, nil)
		if err != nil {
			panic(err)
		}
		desc = f.desc
	case *segments.Attr:
		desc = "app_info|" + n.Key
		if n.Source == segments.SourceDevice {
			desc = "device|" + n.Key
		}
	case *segments.Unchanged:
		desc = "app_info|" + n.Key
	default:
		return
	}
	m.descs[n] = desc
	fn(n, desc)
}

// counts reports whether a record counts for the feature a condition reads.
func (m *refModel) counts(d *refDevice, n segments.Node, rr refRecord) bool {
	return rr.seq >= m.since[d.app+"\x00"+m.descs[n]]
}

func (m *refModel) apply(r *tag.Record, offset int64, now int64) {
	if m.segs[r.AppID] == nil {
		return
	}
	key := r.AppID + "/" + r.DeviceID
	d := m.devs[key]
	if d == nil {
		d = &refDevice{app: r.AppID, id: r.DeviceID, offset: -1}
		m.devs[key] = d
	}
	if offset <= d.offset {
		return
	}
	d.offset = offset
	if r.MessageID != "" {
		recent := d.ids
		if len(recent) > 4 {
			recent = recent[len(recent)-4:]
		}
		for _, id := range recent {
			if id == r.MessageID {
				return
			}
		}
		d.ids = append(d.ids, r.MessageID)
	}
	t := r.Time.Unix()
	t = min(t, now)
	t = max(t, epoch+1)
	d.recs = append(d.recs, refRecord{r: r, t: t, seq: m.seq})
	m.seq++
}

// member evaluates a segment for a device at now.
func (m *refModel) member(d *refDevice, seg string, now int64) bool {
	s := m.segs[d.app][seg]
	return m.eval(d, s, s.Expr, now, 0)
}

func (m *refModel) eval(d *refDevice, s *segments.Segment, n segments.Node, now int64, depth int) bool {
	switch n := n.(type) {
	case *segments.And:
		for _, a := range n.Args {
			if !m.eval(d, s, a, now, depth) {
				return false
			}
		}
		return true
	case *segments.Or:
		for _, a := range n.Args {
			if m.eval(d, s, a, now, depth) {
				return true
			}
		}
		return false
	case *segments.Not:
		return !m.eval(d, s, n.X, now, depth)
	case *segments.Did:
		c := 0
		w := int64(n.Window / time.Second)
		for _, rr := range d.recs {
			if m.counts(d, n, rr) && refMatches(rr.r, n.Kind, n.Name, n.Where, n.Duration) && rr.t <= now && (w == 0 || rr.t > now-w) {
				c++
			}
		}
		switch n.Count.Op {
		case segments.OpGe:
			return c >= n.Count.N
		case segments.OpGt:
			return c > n.Count.N
		case segments.OpLe:
			return c <= n.Count.N
		case segments.OpLt:
			return c < n.Count.N
		case segments.OpEq:
			return c == n.Count.N
		}
		panic("count op")
	case *segments.Since:
		var t int64
		found := false
		for _, rr := range d.recs {
			var ok bool
			switch n.Moment {
			case segments.MomentFirstSession:
				ok = rr.r.Kind == tag.KindSessionStart && (!found || rr.t < t)
			case segments.MomentLastSeen:
				ok = !found || rr.t > t
			case segments.MomentLastTag:
				ok = m.counts(d, n, rr) && refMatches(rr.r, n.Kind, n.Name, nil, nil) && (!found || rr.t > t)
			}
			if ok {
				t, found = rr.t, true
			}
		}
		if !found {
			return false
		}
		r := n.Range
		if r.Absolute {
			return (r.From.IsZero() || t >= ceilSec(r.From)) && (r.To.IsZero() || t < ceilSec(r.To))
		}
		if t > now-int64(r.Min/time.Second) {
			return false
		}
		return r.Max == segments.Forever || t >= now-int64(r.Max/time.Second)
	case *segments.Attr:
		v, ok := m.attr(d, n, n.Source, n.Key)
		ops := make([]tag.Value, len(n.Values))
		for i, o := range n.Values {
			ops[i] = o.Value
			if o.Relative {
				ops[i] = tag.Value{Type: tag.TypeDate, Date: time.UnixMilli(now*1000 + o.Offset.Milliseconds()).UTC()}
			}
		}
		version := n.Key == "app_version" || n.Key == "os_version"
		return refHolds(n.Op, v, ok, ops, version)
	case *segments.Unchanged:
		since, ok := m.runStart(d, n, n.Key)
		return ok && since <= now-int64(n.Min/time.Second)
	case *segments.Ref:
		r := m.segs[d.app][n.Name]
		return m.eval(d, r, r.Expr, now, depth+1)
	case *segments.Sample:
		salt := n.Salt
		if salt == "" {
			salt = s.Name
		}
		h := murmur3.Sum32([]byte(salt + "/" + d.id))
		return float64(h) < n.Percent/100*(1<<32)
	}
	panic("unknown node")
}

func refMatches(r *tag.Record, kind tag.Kind, name string, where []segments.Filter, dur *segments.Filter) bool {
	switch kind {
	case tag.KindJob:
		if r.Kind != tag.KindJob && r.Kind != tag.KindJobEnd {
			return false
		}
	default:
		if r.Kind != kind {
			return false
		}
	}
	if kind.Named() && name != "" && r.Name != name {
		return false
	}
	for _, f := range where {
		var v tag.Value
		ok := false
		for _, x := range r.Extras {
			if x.Key == f.Key {
				v, ok = x.Value, true
			}
		}
		ops := make([]tag.Value, len(f.Values))
		for i, o := range f.Values {
			ops[i] = o.Value
			if o.Relative {
				ops[i] = tag.Value{Type: tag.TypeDate, Date: time.UnixMilli(r.Time.UnixMilli() + o.Offset.Milliseconds()).UTC()}
			}
		}
		if !refHolds(f.Op, v, ok, ops, false) {
			return false
		}
	}
	if dur != nil {
		ops := []tag.Value{}
		for _, o := range dur.Values {
			ops = append(ops, o.Value)
		}
		if !refHolds(dur.Op, tag.Number(float64(r.Duration)/1e6), true, ops, false) {
			return false
		}
	}
	return true
}

// attr returns the value of the newest record (by time, then arrival)
// that sets an attribute.
func (m *refModel) attr(d *refDevice, n segments.Node, src segments.Source, key string) (tag.Value, bool) {
	var best tag.Value
	var bt int64 = -1
	for _, rr := range d.recs {
		if !m.counts(d, n, rr) {
			continue
		}
		var v tag.Value
		switch {
		case src == segments.SourceAppInfo && rr.r.Kind == tag.KindAppInfo:
			found := false
			for _, x := range rr.r.AppInfo {
				if x.Key == key {
					v, found = x.Value, true
				}
			}
			if !found {
				continue
			}
		case src == segments.SourceDevice && rr.r.Kind == tag.KindDevice && rr.r.Device != nil:
			if s := refDeviceField(rr.r.Device, key); s != "" {
				v = tag.String(s)
			}
		default:
			continue
		}
		if rr.t >= bt {
			best, bt = v, rr.t
		}
	}
	return best, best.Type != tag.TypeInvalid
}

func refDeviceField(d *tag.DeviceInfo, key string) string {
	switch key {
	case "platform":
		return d.Platform
	case "app_version":
		return d.AppVersion
	case "os_version":
		return d.OSVersion
	case "locale":
		return d.Locale
	case "country":
		return d.Country
	}
	panic("device field " + key)
}

// runStart folds an app_info key's records in arrival order with the
// documented rule, returning the start of the current value's run.
func (m *refModel) runStart(d *refDevice, n segments.Node, key string) (int64, bool) {
	var cur tag.Value
	var at, since, prev int64
	set := false
	for _, rr := range d.recs {
		if rr.r.Kind != tag.KindAppInfo || !m.counts(d, n, rr) {
			continue
		}
		for _, x := range rr.r.AppInfo {
			if x.Key != key {
				continue
			}
			t, same := rr.t, set && x.Value.Equal(cur)
			switch {
			case !set:
				cur, at, since, prev, set = x.Value, t, t, 0, true
			case t >= at && same:
				at = t
			case t >= at:
				prev, cur, at, since = at, x.Value, t, t
			case same && t < since && t > prev:
				since = t
			case same:
			case t >= since:
				// Another value inside the run: it restarts at the newest record.
				prev, since = t, at
			case t > prev:
				prev = t
			}
		}
	}
	return since, set
}

func refHolds(op segments.CmpOp, v tag.Value, set bool, ops []tag.Value, version bool) bool {
	switch op {
	case segments.OpSet:
		return set
	case segments.OpNotSet:
		return !set
	}
	if !set {
		return false
	}
	cmp := func(w tag.Value) (int, bool) {
		if v.Type != w.Type {
			return 0, false
		}
		switch v.Type {
		case tag.TypeString:
			if version {
				return refVersionCmp(v.Str, w.Str), true
			}
			return strings.Compare(v.Str, w.Str), true
		case tag.TypeNumber:
			switch {
			case v.Num < w.Num:
				return -1, true
			case v.Num > w.Num:
				return 1, true
			}
			return 0, true
		case tag.TypeBool:
			a, b := 0, 0
			if v.Bool {
				a = 1
			}
			if w.Bool {
				b = 1
			}
			return a - b, true
		case tag.TypeDate:
			return v.Date.Compare(w.Date), true
		}
		return 0, false
	}
	switch op {
	case segments.OpEq, segments.OpNe, segments.OpLt, segments.OpLe, segments.OpGt, segments.OpGe:
		c, ok := cmp(ops[0])
		if !ok {
			return false
		}
		return map[segments.CmpOp]bool{segments.OpEq: c == 0, segments.OpNe: c != 0, segments.OpLt: c < 0,
			segments.OpLe: c <= 0, segments.OpGt: c > 0, segments.OpGe: c >= 0}[op]
	case segments.OpIn:
		for _, o := range ops {
			if c, ok := cmp(o); ok && c == 0 {
				return true
			}
		}
		return false
	case segments.OpNotIn:
		for _, o := range ops {
			if c, ok := cmp(o); !ok || c == 0 {
				return false
			}
		}
		return true
	case segments.OpBetween:
		a, ok1 := cmp(ops[0])
		b, ok2 := cmp(ops[1])
		return ok1 && ok2 && a >= 0 && b <= 0
	case segments.OpPrefix:
		return v.Type == tag.TypeString && strings.HasPrefix(v.Str, ops[0].Str)
	}
	panic("op")
}

// refVersionCmp compares dotted numeric versions (what the random test
// generates).
func refVersionCmp(a, b string) int {
	pa, pb := strings.Split(a, "."), strings.Split(b, ".")
	for i := 0; i < len(pa) || i < len(pb); i++ {
		var x, y int
		if i < len(pa) {
			x, _ = strconv.Atoi(pa[i])
		}
		if i < len(pb) {
			y, _ = strconv.Atoi(pb[i])
		}
		if x != y {
			if x < y {
				return -1
			}
			return 1
		}
	}
	return 0
}
