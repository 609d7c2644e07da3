package engine

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// TestRandomAgainstReference compares the engine with the naive reference
// evaluator on random segments and random streams with out-of-order,
// future, replayed and retried records and app_info changes, interleaved
// with Advance. After each step it checks the memberships of the device
// the step touched (all devices after an Advance) against the reference,
// that the emitted changes reproduce the memberships, that each timer
// change happened exactly at its instant (the reference says the new value
// at T and the old one at T-1s), and that an engine restored midway from
// the changelog emits exactly the same changes from then on.
func TestRandomAgainstReference(t *testing.T) {
	scenarios, steps := 300, 120
	if testing.Short() {
		scenarios = 40
	}
	for seed := range uint64(scenarios) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) { runRandom(t, seed, steps) })
	}
}

var t0 = time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)

type randomGen struct {
	r     *rand.Rand
	names []string
	grain time.Duration // times are multiples of it, so that ties and window edges are hit
}

func (g *randomGen) at(t time.Time) time.Time { return t.Truncate(g.grain) }

func (g *randomGen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

func (g *randomGen) dur(ds ...time.Duration) time.Duration { return ds[g.r.IntN(len(ds))] }

func (g *randomGen) segment(app, name string, version int64) *segments.Segment {
	s := &segments.Segment{App: app, Name: name, Expr: g.node(0), Version: version}
	g.names = append(g.names, name)
	return s
}

func (g *randomGen) node(depth int) segments.Node {
	if depth < 2 && g.r.IntN(3) == 0 {
		switch g.r.IntN(3) {
		case 0:
			return &segments.And{Args: []segments.Node{g.node(depth + 1), g.node(depth + 1)}}
		case 1:
			return &segments.Or{Args: []segments.Node{g.node(depth + 1), g.node(depth + 1), g.node(depth + 1)}}
		default:
			return &segments.Not{X: g.node(depth + 1)}
		}
	}
	switch g.r.IntN(13) {
	case 0, 1, 2:
		return g.did()
	case 11:
		return &segments.Unchanged{Key: g.pick("level", "topic"), Min: g.dur(time.Hour, 2*time.Hour, 24*time.Hour)}
	case 3, 4:
		return g.since()
	case 5, 6:
		return g.appInfo()
	case 7:
		a := &segments.Attr{Source: segments.SourceDevice}
		if g.r.IntN(2) == 0 {
			a.Key, a.Op = "platform", segments.OpEq
			a.Values = []segments.Operand{{Value: tag.String(g.pick("ios", "android"))}}
		} else {
			a.Key = "app_version"
			a.Op = []segments.CmpOp{segments.OpGe, segments.OpLt, segments.OpSet, segments.OpNotSet}[g.r.IntN(4)]
			if a.Op != segments.OpSet && a.Op != segments.OpNotSet {
				a.Values = []segments.Operand{{Value: tag.String(g.pick("1.9", "1.10", "2.0"))}}
			}
		}
		return a
	case 8:
		return &segments.Unchanged{Key: g.pick("level", "topic"), Min: g.dur(time.Hour, 24*time.Hour, 72*time.Hour)}
	case 9:
		if len(g.names) > 0 {
			return &segments.Ref{Name: g.names[g.r.IntN(len(g.names))]}
		}
		return g.did()
	case 10:
		s := &segments.Sample{Percent: float64(g.pick("30", "70")[0]-'0') * 10}
		if g.r.IntN(2) == 0 {
			s.Salt = "salt"
		}
		return s
	}
	return g.did()
}

var randomWindows = []time.Duration{0, time.Hour, 24 * time.Hour, 72 * time.Hour, 7 * 24 * time.Hour}

func (g *randomGen) did() segments.Node {
	d := &segments.Did{Count: segments.CountCmp{
		Op: []segments.CmpOp{segments.OpGe, segments.OpGt, segments.OpLe, segments.OpLt, segments.OpEq}[g.r.IntN(5)],
		N:  g.r.IntN(4),
	}, Window: randomWindows[g.r.IntN(len(randomWindows))]}
	switch g.r.IntN(6) {
	case 0:
		d.Kind = tag.KindSessionStart
	case 1:
		d.Kind, d.Name = tag.KindActivityStart, g.pick("a0", "a1")
	case 2:
		d.Kind, d.Name = tag.KindJob, "j0"
		if g.r.IntN(2) == 0 {
			d.Duration = &segments.Filter{Key: "duration", Op: segments.OpGt, Values: []segments.Operand{{Value: tag.Number(1000)}}}
		}
	default:
		d.Kind, d.Name = tag.KindEvent, g.pick("e0", "e1", "e2")
	}
	if g.r.IntN(3) == 0 {
		d.Where = append(d.Where, g.filter())
	}
	return d
}

func (g *randomGen) filter() segments.Filter {
	switch g.r.IntN(3) {
	case 0:
		f := segments.Filter{Key: "net"}
		f.Op = []segments.CmpOp{segments.OpEq, segments.OpNe, segments.OpIn, segments.OpNotIn, segments.OpPrefix, segments.OpSet, segments.OpNotSet}[g.r.IntN(7)]
		switch f.Op {
		case segments.OpIn, segments.OpNotIn:
			f.Values = []segments.Operand{{Value: tag.String("fb")}, {Value: tag.String("tw")}}
		case segments.OpSet, segments.OpNotSet:
		case segments.OpPrefix:
			f.Values = []segments.Operand{{Value: tag.String("f")}}
		default:
			f.Values = []segments.Operand{{Value: tag.String(g.pick("fb", "tw", "ig"))}}
		}
		return f
	case 1:
		f := segments.Filter{Key: "n", Op: []segments.CmpOp{segments.OpLt, segments.OpGe, segments.OpBetween}[g.r.IntN(3)]}
		f.Values = []segments.Operand{{Value: tag.Number(float64(g.r.IntN(4)))}}
		if f.Op == segments.OpBetween {
			f.Values = append(f.Values, segments.Operand{Value: tag.Number(f.Values[0].Value.Num + 1)})
		}
		return f
	}
	return segments.Filter{Key: "at", Op: segments.OpGt, Values: []segments.Operand{{Relative: true, Offset: -time.Duration(g.r.IntN(3)) * 24 * time.Hour}}}
}

func (g *randomGen) since() segments.Node {
	s := &segments.Since{}
	switch g.r.IntN(3) {
	case 0:
		s.Moment = segments.MomentFirstSession
	case 1:
		s.Moment = segments.MomentLastSeen
	default:
		s.Moment = segments.MomentLastTag
		s.Kind, s.Name = tag.KindEvent, g.pick("e0", "e1")
		if g.r.IntN(4) == 0 {
			s.Kind, s.Name = tag.KindSessionStart, ""
		}
	}
	a := g.dur(time.Hour, 24*time.Hour, 48*time.Hour, 72*time.Hour+30*time.Second)
	switch g.r.IntN(4) {
	case 0:
		s.Range = segments.Ago{Max: a}
	case 1:
		s.Range = segments.Ago{Min: a, Max: segments.Forever}
	case 2:
		s.Range = segments.Ago{Min: a, Max: a + g.dur(time.Hour, 24*time.Hour)}
	default:
		s.Range = segments.Ago{Absolute: true}
		if g.r.IntN(2) == 0 {
			s.Range.From = t0.Add(time.Duration(g.r.IntN(10)) * 24 * time.Hour)
		}
		if s.Range.From.IsZero() || g.r.IntN(2) == 0 {
			s.Range.To = t0.Add(time.Duration(5+g.r.IntN(10))*24*time.Hour + 500*time.Millisecond)
		}
	}
	return s
}

func (g *randomGen) appInfo() segments.Node {
	a := &segments.Attr{Source: segments.SourceAppInfo}
	switch g.r.IntN(5) {
	case 0:
		a.Key = "level"
		a.Op = []segments.CmpOp{segments.OpEq, segments.OpGe, segments.OpBetween, segments.OpIn, segments.OpSet, segments.OpNotSet}[g.r.IntN(6)]
		switch a.Op {
		case segments.OpBetween:
			a.Values = []segments.Operand{{Value: tag.Number(1)}, {Value: tag.Number(2)}}
		case segments.OpIn:
			a.Values = []segments.Operand{{Value: tag.Number(0)}, {Value: tag.Number(3)}}
		case segments.OpSet, segments.OpNotSet:
		default:
			a.Values = []segments.Operand{{Value: tag.Number(float64(g.r.IntN(4)))}}
		}
	case 1:
		a.Key = "topic"
		a.Op = []segments.CmpOp{segments.OpEq, segments.OpNe, segments.OpIn, segments.OpNotIn, segments.OpPrefix}[g.r.IntN(5)]
		a.Values = []segments.Operand{{Value: tag.String(g.pick("sport", "news", "spa"))}}
		if a.Op == segments.OpPrefix {
			a.Values = []segments.Operand{{Value: tag.String("sp")}}
		}
	case 2:
		a.Key, a.Op = "flag", segments.OpEq
		a.Values = []segments.Operand{{Value: tag.Bool(g.r.IntN(2) == 0)}}
	default:
		a.Key = g.pick("bday", "expiry")
		a.Op = []segments.CmpOp{segments.OpLt, segments.OpGt, segments.OpBetween, segments.OpLe}[g.r.IntN(4)]
		rel := func() segments.Operand {
			if g.r.IntN(4) == 0 {
				return segments.Operand{Value: tag.Date(t0.Add(time.Duration(g.r.IntN(20)) * 24 * time.Hour))}
			}
			return segments.Operand{Relative: true, Offset: time.Duration(g.r.IntN(7)-3)*24*time.Hour + time.Duration(g.r.IntN(3))*time.Hour}
		}
		a.Values = []segments.Operand{rel()}
		if a.Op == segments.OpBetween {
			a.Values = []segments.Operand{{Relative: true, Offset: -24 * time.Hour}, {Relative: true, Offset: 48 * time.Hour}}
		}
	}
	return a
}

// record returns a random record for a device at about clock.
func (g *randomGen) record(app, dev string, clock time.Time, n int) *tag.Record {
	r := &tag.Record{AppID: app, DeviceID: dev, MessageID: "m" + strconv.Itoa(n)}
	switch x := g.r.IntN(10); {
	case x < 2:
		r.Time = clock.Add(-time.Duration(g.r.Int64N(int64(96 * time.Hour)))) // late
	case x < 3:
		r.Time = clock.Add(time.Duration(g.r.Int64N(int64(2 * time.Hour)))) // ahead of the clock
	default:
		r.Time = clock.Add(-time.Duration(g.r.Int64N(int64(time.Minute))))
	}
	r.Time = g.at(r.Time)
	if g.grain == time.Second && g.r.IntN(4) == 0 {
		r.Time = r.Time.Add(time.Duration(g.r.IntN(1e9)))
	}
	switch x := g.r.IntN(20); {
	case x < 3:
		r.Kind = tag.KindSessionStart
	case x < 9:
		r.Kind, r.Name = tag.KindEvent, g.pick("e0", "e1", "e2")
	case x < 11:
		r.Kind, r.Name = tag.KindActivityStart, g.pick("a0", "a1")
	case x < 13:
		r.Kind, r.Name = []tag.Kind{tag.KindJob, tag.KindJobEnd}[g.r.IntN(2)], "j0"
		r.Duration = time.Duration(g.r.IntN(2000)) * time.Millisecond
	case x < 16:
		r.Kind = tag.KindAppInfo
		for _, k := range []string{"bday", "expiry", "flag", "level", "topic"} {
			if g.r.IntN(3) != 0 {
				continue
			}
			var v tag.Value
			switch k {
			case "level":
				v = tag.Number(float64(g.r.IntN(2)))
			case "topic":
				v = tag.String(g.pick("sport", "news"))
			case "flag":
				v = tag.Bool(g.r.IntN(2) == 0)
			default:
				v = tag.Date(clock.Add(time.Duration(g.r.IntN(200)-100) * time.Hour))
			}
			r.AppInfo = append(r.AppInfo, tag.Extra{Key: k, Value: v})
		}
	case x < 17:
		r.Kind = tag.KindDevice
		r.Device = &tag.DeviceInfo{Platform: g.pick("ios", "android", ""), AppVersion: g.pick("1.9", "1.10", "2.0", "")}
	case x < 18:
		r.Kind, r.Name = tag.KindError, "x0"
	default:
		r.Kind, r.Name = tag.KindCrash, "c0"
	}
	if r.Kind != tag.KindAppInfo && r.Kind != tag.KindDevice && g.r.IntN(2) == 0 {
		r.Extras = append(r.Extras, tag.Extra{Key: "at", Value: tag.Date(clock.Add(-time.Duration(g.r.IntN(72)) * time.Hour))})
		if g.r.IntN(2) == 0 {
			r.Extras = append(r.Extras, tag.Extra{Key: "n", Value: tag.Number(float64(g.r.IntN(4)))})
		}
		if g.r.IntN(2) == 0 {
			r.Extras = append(r.Extras, tag.Extra{Key: "net", Value: tag.String(g.pick("fb", "tw", "ig"))})
		}
	}
	return r
}

type sent struct {
	r      *tag.Record
	offset int64
}

type randomRun struct {
	t         *testing.T
	segs      []*segments.Segment
	e, b      *Engine // b: restored midway, nil before
	d         *Engine // restored under a newer segment set, nil before
	ref       *refModel
	recon     map[string]bool // app/device/segment → member, from the changes
	ids       map[ChangeID]Change
	changelog map[string][]byte
}

func runRandom(t *testing.T, seed uint64, steps int) {
	g := &randomGen{r: rand.New(rand.NewPCG(seed, 7)), grain: time.Second}
	if seed%2 == 1 {
		g.grain = time.Hour
	}
	apps := []string{"a", "b"}
	var segs []*segments.Segment
	for _, app := range apps {
		g.names = nil
		for i := range 4 + g.r.IntN(5) {
			segs = append(segs, g.segment(app, "s"+strconv.Itoa(i), int64(i+1)))
		}
	}
	run := &randomRun{t: t, segs: segs, e: New(Options{}), ref: newRefModel(segs), recon: map[string]bool{}, ids: map[ChangeID]Change{}, changelog: map[string][]byte{}}
	clock := t0
	if _, sts, err := run.e.SetSegments(segs, clock); err != nil {
		t.Fatal(err)
	} else {
		for _, st := range sts {
			if st.Err != nil {
				t.Fatalf("segment %s: %v\n%s", st.Segment, st.Err, segments.Format(run.ref.segs[st.App][st.Segment].Expr))
			}
		}
	}
	restoreAt := g.r.IntN(steps)
	restoreFirst := g.r.IntN(2) == 0
	var history []sent
	var offset int64
	changeAt := g.r.IntN(steps)
	for step := range steps {
		if step == restoreAt {
			run.restore(clock, restoreFirst)
		}
		if step == changeAt {
			run.changeSegments(g, clock)
		}
		if g.r.IntN(6) == 0 {
			clock = g.at(clock.Add(time.Duration(g.r.Int64N(int64(5 * 24 * time.Hour)))))
			run.step(clock, nil, 0)
			continue
		}
		clock = g.at(clock.Add(time.Duration(g.r.Int64N(int64(3 * time.Hour)))))
		var s sent
		switch x := g.r.IntN(10); {
		case x == 0 && len(history) > 0: // replay: same record, same offset
			s = history[g.r.IntN(len(history))]
		case x == 1 && len(history) > 0: // client retry: same message id, new offset
			offset++
			s = sent{history[len(history)-1-g.r.IntN(min(len(history), 6))].r, offset}
		default:
			offset++
			app := apps[g.r.IntN(len(apps))]
			s = sent{g.record(app, "d"+strconv.Itoa(g.r.IntN(6)), clock, int(offset)), offset}
			history = append(history, s)
		}
		run.step(clock, s.r, s.offset)
		if g.r.IntN(3) == 0 {
			run.step(clock, nil, 0)
		}
	}
	run.step(clock.Add(30*24*time.Hour), nil, 0)
	if run.d != nil {
		run.checkEngine(run.d, run.e.now)
	}
}

func (run *randomRun) record(out []Change) {
	for _, c := range out {
		if prev, dup := run.ids[c.ID]; dup {
			run.t.Fatalf("changes %v and %v have the same id", prev, c)
		}
		run.ids[c.ID] = c
		key := c.App + "/" + c.DeviceID + "/" + c.Segment
		if run.recon[key] == c.Enter {
			run.t.Fatalf("change %v repeats the membership", c)
		}
		run.recon[key] = c.Enter
	}
}

// checkEngine compares another engine's memberships with the reference.
func (run *randomRun) checkEngine(e *Engine, now int64) {
	for _, d := range run.ref.devs {
		for name := range run.ref.segs[d.app] {
			if got, want := e.Member(d.app, name, d.id), run.ref.member(d, name, now); got != want {
				x, _ := e.Explain(d.app, name, d.id, time.Unix(now, 0))
				run.t.Fatalf("engine restored under the new set: %s/%s in %s: %t, reference %t\n%s", d.app, d.id, name, got, want, x)
			}
		}
	}
}

// restore starts the second engine from the first one's changelog.
func (run *randomRun) restore(now time.Time, restoreFirst bool) {
	run.flush()
	run.b = New(Options{})
	keys := make([]string, 0, len(run.changelog))
	for k := range run.changelog {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if !restoreFirst {
		if _, _, err := run.b.SetSegments(run.segs, now); err != nil {
			run.t.Fatal(err)
		}
	}
	for _, k := range keys {
		if err := run.b.Restore([]byte(k), run.changelog[k]); err != nil {
			run.t.Fatal(err)
		}
	}
	if restoreFirst {
		if out, _, err := run.b.SetSegments(run.segs, now); err != nil || len(out) > 0 {
			run.t.Fatalf("set segments after restore: %v %v", out, err)
		}
	}
}

func (run *randomRun) flush() {
	run.e.Dirty(func(k, st []byte) {
		if st == nil {
			delete(run.changelog, string(k))
			return
		}
		run.changelog[string(k)] = append([]byte(nil), st...)
	})
}

// step applies a record (or, with r nil, advances) at now on the engines
// and the reference, and checks them.
func (run *randomRun) step(now time.Time, r *tag.Record, offset int64) {
	t := run.t
	var out []Change
	if r != nil {
		out = run.e.Apply(r, offset, now, nil)
	} else {
		out = run.e.Advance(now, nil)
	}
	if run.b != nil {
		var outB []Change
		if r != nil {
			outB = run.b.Apply(r, offset, now, nil)
		} else {
			outB = run.b.Advance(now, nil)
		}
		if !reflect.DeepEqual(out, outB) {
			t.Fatalf("restored engine differs at %s:\nfirst:    %v\nrestored: %v", now, out, outB)
		}
	}
	ns := run.e.now
	// Timer changes come before the record: check them against the
	// reference without it.
	for _, c := range out {
		if c.Cause != CauseTimer {
			continue
		}
		d := run.ref.devs[c.App+"/"+c.DeviceID]
		at := c.Time.Unix()
		if d == nil || run.ref.member(d, c.Segment, at) != c.Enter || run.ref.member(d, c.Segment, at-1) == c.Enter {
			t.Fatalf("timer change %v is not at the instant the segment changed", c)
		}
	}
	if r != nil {
		run.ref.apply(r, offset, ns)
	}
	run.record(out)
	run.flush()
	if run.d != nil {
		if r != nil {
			run.d.Apply(r, offset, now, nil)
		} else {
			run.d.Advance(now, nil)
		}
	}
	if r != nil {
		if d := run.ref.devs[r.AppID+"/"+r.DeviceID]; d != nil {
			run.check(d, ns)
		}
		return
	}
	for _, d := range run.ref.devs {
		run.check(d, ns)
	}
	if run.d != nil {
		run.checkEngine(run.d, ns)
	}
	for _, s := range run.segs {
		n, _ := run.e.Size(s.App, s.Name)
		want := 0
		for _, d := range run.ref.devs {
			if d.app == s.App && run.ref.member(d, s.Name, ns) {
				want++
			}
		}
		if n != want {
			t.Fatalf("size of %s/%s: %d, reference %d", s.App, s.Name, n, want)
		}
	}
}

func (run *randomRun) check(d *refDevice, now int64) {
	for name, s := range run.ref.segs[d.app] {
		want := run.ref.member(d, name, now)
		got := run.e.Member(d.app, name, d.id)
		rec := run.recon[d.app+"/"+d.id+"/"+name]
		if got != want || rec != want {
			x, _ := run.e.Explain(d.app, name, d.id, time.Unix(now, 0))
			var recs []string
			for _, rr := range d.recs {
				recs = append(recs, fmt.Sprintf("%s %s %q t=%s %v %v", rr.r.Kind, rr.r.MessageID, rr.r.Name, time.Unix(rr.t, 0).UTC().Format(time.RFC3339), rr.r.Extras, rr.r.AppInfo))
			}
			run.t.Fatalf("%s/%s in %s at %s: engine %t, from changes %t, reference %t\nsegment: %s\n%s\nrecords:\n%s",
				d.app, d.id, name, time.Unix(now, 0).UTC().Format(time.RFC3339), got, rec, want, segments.Format(s.Expr), x, joinLines(recs))
		}
	}
}

func joinLines(xs []string) string {
	out := ""
	for _, x := range xs {
		out += "  " + x + "\n"
	}
	return out
}
