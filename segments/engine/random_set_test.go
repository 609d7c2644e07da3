package engine

import (
	"math/rand/v2"
	"reflect"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// changeSegments changes some segments of app "a" (a new expression, a
// deletion, an addition) on the engines and the reference. A third engine,
// d, starts with the new set and restores the changelog as it was before
// the change: its states are re-evaluated (the stale path) and must give
// the same memberships.
func (run *randomRun) changeSegments(g *randomGen, now time.Time) {
	run.flush()
	old := map[string][]byte{}
	for k, v := range run.changelog {
		old[k] = v
	}
	var next []*segments.Segment
	for {
		next = run.mutate(g)
		if run.compatible(next) {
			break
		}
	}
	out, sts, err := run.e.SetSegments(next, now)
	if err != nil {
		run.t.Fatal(err)
	}
	for _, st := range sts {
		if st.Err != nil {
			run.t.Fatalf("segment %s: %v", st.Segment, st.Err)
		}
	}
	if run.b != nil {
		outB, _, err := run.b.SetSegments(next, now)
		if err != nil || !reflect.DeepEqual(out, outB) {
			run.t.Fatalf("restored engine differs on set segments: %v\n%v\n%v", err, out, outB)
		}
	}
	run.ref.setSegments(next)
	run.segs = next
	run.record(out)
	run.flush()
	ns := run.e.now
	for _, d := range run.ref.devs {
		run.check(d, ns)
	}
	run.d = New(Options{})
	if _, _, err := run.d.SetSegments(next, now); err != nil {
		run.t.Fatal(err)
	}
	keys := make([]string, 0, len(old))
	for k := range old {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := run.d.Restore([]byte(k), old[k]); err != nil {
			run.t.Fatal(err)
		}
	}
	run.d.Advance(now, nil)
	run.checkEngine(run.d, ns)
}

// mutate returns the segments with some of app "a"'s changed.
func (run *randomRun) mutate(g *randomGen) []*segments.Segment {
	var a, rest []*segments.Segment
	for _, s := range run.segs {
		if s.App == "a" {
			a = append(a, s)
		} else {
			rest = append(rest, s)
		}
	}
	out := append([]*segments.Segment(nil), a...)
	// Replace the expression of one segment; it may refer only to the
	// segments before it (no cycles).
	i := g.r.IntN(len(out))
	g.names = nil
	for _, s := range out[:i] {
		g.names = append(g.names, s.Name)
	}
	out[i] = &segments.Segment{App: "a", Name: out[i].Name, Expr: g.node(0), Version: out[i].Version + 100}
	// Delete the last one if nothing refers to it; add one.
	last := out[len(out)-1]
	if len(out) > 2 && g.r.IntN(2) == 0 && !refersTo(out[:len(out)-1], last.Name) {
		out = out[:len(out)-1]
	}
	g.names = nil
	for _, s := range out {
		g.names = append(g.names, s.Name)
	}
	out = append(out, &segments.Segment{App: "a", Name: "n" + strconv.Itoa(g.r.IntN(1000)), Expr: g.node(0), Version: 1000})
	return append(out, rest...)
}

func refersTo(segs []*segments.Segment, name string) bool {
	var walk func(n segments.Node) bool
	walk = func(n segments.Node) bool {
		switch n := n.(type) {
		case *segments.Ref:
			return n.Name == name
		case *segments.And:
			for _, a := range n.Args {
				if walk(a) {
					return true
				}
			}
		case *segments.Or:
			for _, a := range n.Args {
				if walk(a) {
					return true
				}
			}
		case *segments.Not:
			return walk(n.X)
		}
		return false
	}
	for _, s := range segs {
		if walk(s.Expr) {
			return true
		}
	}
	return false
}

// compatible reports whether a new set keeps every feature the old one
// had at most as demanding: a feature that must keep more times, or keep
// them longer, has a partial history that the reference does not model.
// Names must be unique too.
func (run *randomRun) compatible(next []*segments.Segment) bool {
	seen := map[string]bool{}
	for _, s := range next {
		if seen[s.App+"/"+s.Name] {
			return false
		}
		seen[s.App+"/"+s.Name] = true
	}
	opts := &Options{MaxCount: DefaultMaxCount}
	var oldA, newA []*segments.Segment
	for _, s := range run.segs {
		if s.App == "a" {
			oldA = append(oldA, s)
		}
	}
	for _, s := range next {
		if s.App == "a" {
			newA = append(newA, s)
		}
	}
	o, n := compileApp("a", oldA, opts), compileApp("a", newA, opts)
	if len(n.invalid) > 0 {
		return false
	}
	for id, f := range n.byID {
		g := o.byID[id]
		if g == nil || f.kind != featDid {
			continue
		}
		if f.k > g.k {
			return false
		}
		for i := range f.k {
			if f.span[i] > g.span[i] {
				return false
			}
		}
	}
	return true
}

// TestApplyBatchEqualsApply checks that ApplyBatch gives exactly what
// Apply gives record by record, replays and retries included.
func TestApplyBatchEqualsApply(t *testing.T) {
	for seed := range uint64(40) {
		g := &randomGen{r: rand.New(rand.NewPCG(seed, 9)), grain: time.Second}
		var segs []*segments.Segment
		for i := range 6 {
			segs = append(segs, g.segment("a", "s"+strconv.Itoa(i), 1))
		}
		a, c := New(Options{}), New(Options{})
		clock := t0
		for _, e := range []*Engine{a, c} {
			if _, _, err := e.SetSegments(segs, clock); err != nil {
				t.Fatal(err)
			}
		}
		var offset int64
		var history []sent
		for range 60 {
			clock = clock.Add(time.Duration(g.r.Int64N(int64(6 * time.Hour))))
			var recs []*tag.Record
			var offs []int64
			var outA []Change
			for range 1 + g.r.IntN(20) {
				var s sent
				if len(history) > 0 && g.r.IntN(8) == 0 {
					s = history[g.r.IntN(len(history))]
					if g.r.IntN(2) == 0 {
						offset++
						s.offset = offset
					}
				} else {
					offset++
					s = sent{g.record("a", "d"+strconv.Itoa(g.r.IntN(5)), clock, int(offset)), offset}
					history = append(history, s)
				}
				recs, offs = append(recs, s.r), append(offs, s.offset)
				outA = a.Apply(s.r, s.offset, clock, outA)
			}
			outC := c.ApplyBatch(recs, offs, clock, nil)
			outA = a.Advance(clock, outA)
			outC = c.Advance(clock, outC)
			if !reflect.DeepEqual(outA, outC) {
				t.Fatalf("seed %d: Apply gave\n%v\nApplyBatch gave\n%v", seed, outA, outC)
			}
		}
	}
}
