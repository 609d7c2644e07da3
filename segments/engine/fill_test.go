package engine

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// TestFillAgainstReference adds and changes segments mid-stream, over data
// that is partly history (records before the change, read back from a
// store as the sink wrote them) and partly live (records that keep coming
// while the fill runs), and checks that once the fill is done the engine's
// memberships are exactly those of the reference evaluator that had the
// final segments from the start. App "a" has segments from the start and
// changes some; app "b" gets its first segments mid-stream (first_session
// and last_seen come from history too). In half the scenarios the engine
// crashes during the fill: a new one restores the changelog as last
// flushed, resumes from the last commit and starts the fill over.
func TestFillAgainstReference(t *testing.T) {
	scenarios, steps := 300, 140
	if testing.Short() {
		scenarios = 40
	}
	for seed := range uint64(scenarios) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) { runFill(t, seed, steps) })
	}
}

// stored is a record as the history store holds it.
type stored struct {
	r       *tag.Record
	offset  int64
	arrived time.Time
}

type fillRun struct {
	t       *testing.T
	g       *randomGen
	e       *Engine
	ref     *refModel
	final   []*segments.Segment
	log     []stored // every input message, in offset order (replays excluded)
	store   []stored // what the sink wrote: the log, some rows twice
	clog    map[string][]byte
	commit  int64 // the offset after the last flushed input
	next    int64 // the next input offset
	history []stored
}

func runFill(t *testing.T, seed uint64, steps int) {
	g := &randomGen{r: rand.New(rand.NewPCG(seed, 11)), grain: time.Second}
	if seed%2 == 1 {
		g.grain = time.Hour
	}
	var initial []*segments.Segment
	g.names = nil
	for i := range 4 + g.r.IntN(4) {
		initial = append(initial, g.segment("a", "s"+strconv.Itoa(i), int64(i+1)))
	}
	final := fillMutate(g, initial)
	run := &fillRun{t: t, g: g, e: New(Options{Fill: true}), ref: newRefModel(final), final: final, clog: map[string][]byte{}}
	clock := t0
	if _, _, err := run.e.SetSegments(initial, clock); err != nil {
		t.Fatal(err)
	}
	changeAt := steps/4 + g.r.IntN(steps/2)
	crash := seed%4 < 2
	var fills []Fill
	var queue []fillDevice // history not handed over yet
	finished := false
	for step := range steps {
		if step == changeAt {
			run.flush()
			out, _, err := run.e.SetSegments(final, clock)
			if err != nil {
				t.Fatal(err)
			}
			_ = out
			fills, _ = run.e.Fills(clock, nil)
			if len(fills) == 0 {
				t.Fatal("no fill for the new segments")
			}
			queue = run.historyOf(fills)
		}
		if step > changeAt && !finished {
			if crash && step == changeAt+2 {
				run.flush() // mid-fill: states hold part of the history
			}
			if crash && step == changeAt+3 {
				fills, queue = run.crash(clock)
			}
			// Hand over some devices' history, between live records.
			for n := g.r.IntN(3); n > 0 && len(queue) > 0; n-- {
				fd := queue[0]
				queue = queue[1:]
				if _, err := run.e.ApplyHistory(fd.fill, fd.device, fd.recs, nil); err != nil {
					t.Fatal(err)
				}
			}
			if len(queue) == 0 {
				for _, f := range fills {
					if _, err := run.e.FinishFill(f.ID, clock, nil); err != nil {
						t.Fatal(err)
					}
				}
				finished = true
				run.checkAll(clock)
			}
		}
		clock = run.live(clock)
		if finished {
			run.checkAll(clock)
		}
	}
	if !finished {
		t.Fatalf("the fill did not finish in %d steps (%d devices left)", steps, len(queue))
	}
	clock = clock.Add(30 * 24 * time.Hour)
	run.checkAll(clock)
	for _, st := range run.e.Statuses() {
		if !st.Complete || st.Filling {
			t.Errorf("after the fill, segment %s/%s: complete %v, filling %v: %s", st.App, st.Segment, st.Complete, st.Filling, st.Why)
		}
	}
}

// fillMutate changes one of app a's segments, maybe adds one, and gives
// app b its first segments.
func fillMutate(g *randomGen, initial []*segments.Segment) []*segments.Segment {
	out := append([]*segments.Segment(nil), initial...)
	i := g.r.IntN(len(out))
	g.names = nil
	for _, s := range out[:i] {
		g.names = append(g.names, s.Name)
	}
	out[i] = &segments.Segment{App: "a", Name: out[i].Name, Expr: g.node(0), Version: out[i].Version + 100}
	g.names = nil
	for _, s := range out {
		g.names = append(g.names, s.Name)
	}
	if g.r.IntN(2) == 0 {
		out = append(out, g.segment("a", "n1", 1000))
	}
	g.names = nil
	for i := range 3 + g.r.IntN(3) {
		out = append(out, g.segment("b", "b"+strconv.Itoa(i), int64(2000+i)))
	}
	return out
}

// live sends one step of input (or only advances the clock) and returns
// the new clock.
func (run *fillRun) live(clock time.Time) time.Time {
	g := run.g
	if g.r.IntN(6) == 0 {
		clock = g.at(clock.Add(time.Duration(g.r.Int64N(int64(3 * 24 * time.Hour)))))
		run.e.Advance(clock, nil)
		return clock
	}
	clock = g.at(clock.Add(time.Duration(g.r.Int64N(int64(3 * time.Hour)))))
	var s stored
	switch x := g.r.IntN(10); {
	case x == 0 && len(run.log) > 0: // a replay: same record, same offset
		s = run.log[g.r.IntN(len(run.log))]
		run.send(s, clock)
		return clock
	case x == 1 && len(run.history) > 0: // a client retry of one of the device's last 3
		last := run.history[len(run.history)-1]
		var mine []stored
		for i := len(run.history) - 1; i >= 0 && len(mine) < 3; i-- {
			if h := run.history[i]; h.r.AppID == last.r.AppID && h.r.DeviceID == last.r.DeviceID {
				mine = append(mine, h)
			}
		}
		s = stored{r: mine[g.r.IntN(len(mine))].r, offset: run.next, arrived: clock}
	default:
		app := []string{"a", "b"}[g.r.IntN(2)]
		s = stored{r: g.record(app, "d"+strconv.Itoa(g.r.IntN(8)), clock, int(run.next)), offset: run.next, arrived: clock}
		run.history = append(run.history, s)
	}
	run.next++
	run.log = append(run.log, s)
	run.store = append(run.store, s)
	if g.r.IntN(8) == 0 { // the sink wrote it twice (a redelivery)
		run.store = append(run.store, s)
	}
	run.send(s, clock)
	return clock
}

func (run *fillRun) send(s stored, clock time.Time) {
	run.e.Apply(s.r, s.offset, clock, nil)
	run.ref.apply(s.r, s.offset, run.e.now)
}

// flush writes the changelog and commits the input read so far.
func (run *fillRun) flush() {
	run.e.Dirty(func(k, st []byte) {
		if st == nil {
			delete(run.clog, string(k))
			return
		}
		run.clog[string(k)] = append([]byte(nil), st...)
	})
	// The commit may lag behind the states written (a crash between the
	// two): a restore then replays records the states have applied.
	if run.g.r.IntN(2) == 0 && run.next > run.commit {
		run.commit += run.g.r.Int64N(run.next - run.commit)
		return
	}
	run.commit = run.next
}

type fillDevice struct {
	fill   uint64
	device string
	recs   []HistoryRecord
}

// historyOf reads what the fills ask for from the store, a device at a
// time, in offset order, as the history store gives it.
func (run *fillRun) historyOf(fills []Fill) []fillDevice {
	var out []fillDevice
	for _, f := range fills {
		q := f.Query
		by := map[string][]HistoryRecord{}
		for _, s := range run.store {
			if s.r.AppID != q.App || s.offset >= q.Before || !q.Wants(s.r) || (!q.Since.IsZero() && s.r.Time.Before(q.Since)) {
				continue
			}
			by[s.r.DeviceID] = append(by[s.r.DeviceID], HistoryRecord{Record: s.r, Offset: s.offset, Arrived: s.arrived})
		}
		devs := make([]string, 0, len(by))
		for d := range by {
			devs = append(devs, d)
		}
		sort.Strings(devs)
		for _, d := range devs {
			recs := by[d]
			sort.SliceStable(recs, func(i, j int) bool { return recs[i].Offset < recs[j].Offset })
			out = append(out, fillDevice{fill: f.ID, device: d, recs: recs})
		}
	}
	run.g.r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// crash replaces the engine with one restored from the changelog as last
// flushed, replays the input from the last commit and starts the fills
// over.
func (run *fillRun) crash(clock time.Time) ([]Fill, []fillDevice) {
	e := New(Options{Fill: true})
	keys := make([]string, 0, len(run.clog))
	for k := range run.clog {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := e.Restore([]byte(k), run.clog[k]); err != nil {
			run.t.Fatal(err)
		}
	}
	e.SetPosition(run.commit)
	if _, _, err := e.SetSegments(run.final, clock); err != nil {
		run.t.Fatal(err)
	}
	run.e = e
	fills, _ := e.Fills(clock, nil)
	if len(fills) == 0 {
		run.t.Fatal("no fill after the restore: the fill under way was lost")
	}
	// The input from the last commit comes again.
	for _, s := range run.log {
		if s.offset >= run.commit {
			e.Apply(s.r, s.offset, clock, nil)
		}
	}
	return fills, run.historyOf(fills)
}

func (run *fillRun) checkAll(clock time.Time) {
	run.e.Advance(clock, nil)
	now := run.e.now
	for _, d := range run.ref.devs {
		for name, s := range run.ref.segs[d.app] {
			want := run.ref.member(d, name, now)
			if got := run.e.Member(d.app, name, d.id); got != want {
				x, _ := run.e.Explain(d.app, name, d.id, time.Unix(now, 0))
				var recs []string
				for _, rr := range d.recs {
					recs = append(recs, fmt.Sprintf("%s %s %q t=%s %v %v", rr.r.Kind, rr.r.MessageID, rr.r.Name, time.Unix(rr.t, 0).UTC().Format(time.RFC3339), rr.r.Extras, rr.r.AppInfo))
				}
				run.t.Fatalf("%s/%s in %s at %s: engine %t, reference %t\nsegment: %s\n%s\nrecords:\n%s", d.app, d.id, name,
					time.Unix(now, 0).UTC().Format(time.RFC3339), got, want, segments.Format(s.Expr), x, joinLines(recs))
			}
		}
	}
	for _, s := range run.final {
		n, _ := run.e.Size(s.App, s.Name)
		want := 0
		for _, d := range run.ref.devs {
			if d.app == s.App && run.ref.member(d, s.Name, now) {
				want++
			}
		}
		if n != want {
			run.t.Fatalf("size of %s/%s: %d, reference %d", s.App, s.Name, n, want)
		}
	}
}
