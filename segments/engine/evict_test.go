package engine

import (
	"fmt"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

func evictSegments(t *testing.T, app string, texts map[string]string) []*segments.Segment {
	t.Helper()
	var segs []*segments.Segment
	for name, text := range texts {
		n, err := segments.Parse(text)
		if err != nil {
			t.Fatalf("parse %q: %v", text, err)
		}
		segs = append(segs, &segments.Segment{App: app, Name: name, Text: text, Expr: n, Version: 1})
	}
	sort.Slice(segs, func(i, j int) bool { return segs[i].Name < segs[j].Name })
	return segs
}

// tombstones returns the keys Dirty hands out as deleted, and the number
// of states.
func tombstones(e *Engine) (dead []string, states int) {
	e.Dirty(func(key, state []byte) {
		if state == nil {
			dead = append(dead, string(key))
		} else {
			states++
		}
	})
	sort.Strings(dead)
	return dead, states
}

func changeLines(cs []Change) string {
	var l []string
	for _, c := range cs {
		l = append(l, c.String())
	}
	return strings.Join(l, "\n")
}

// Devices no longer seen are evicted at last_seen + horizon (the longest
// window of the app's segments plus the margin), not before: the
// memberships they held exit with cause "evicted", then their states are
// deleted with a tombstone. A device that comes back starts afresh.
func TestEvictAfterHorizon(t *testing.T) {
	segs := evictSegments(t, "news", map[string]string{
		"readers": `did event "read" in last 7d`,
		"lapsed":  `not did event "read" in last 7d`,
		"new":     `first_session between 0d and 2d ago`,
	})
	e := New(Options{EvictAfter: 400 * 24 * time.Hour, EvictMargin: 3 * 24 * time.Hour})
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	if _, _, err := e.SetSegments(segs, t0); err != nil {
		t.Fatal(err)
	}
	if h, ok := e.Horizon("news"); !ok || h != 10*24*3600 {
		t.Fatalf("horizon %d %v, want 10 days (7d window + 3d margin)", h, ok)
	}
	var off int64
	rec := func(dev string, at time.Time, kind tag.Kind, name string) []Change {
		off++
		r := &tag.Record{AppID: "news", DeviceID: dev, MessageID: fmt.Sprintf("m%d", off), Kind: kind, Name: name, Time: at}
		return e.Apply(r, off, at, nil)
	}
	for _, d := range []string{"d1", "d2", "d3"} {
		rec(d, t0, tag.KindSessionStart, "")
		rec(d, t0, tag.KindEvent, "read")
	}
	// d1 keeps reading every day; d2 and d3 stop.
	for day := 1; day <= 9; day++ {
		rec("d1", t0.Add(time.Duration(day)*24*time.Hour), tag.KindEvent, "read")
	}
	tombstones(e)
	before := t0.Add(10*24*time.Hour - time.Second)
	out := e.Advance(before, nil)
	for _, c := range out {
		if c.Cause == CauseEvicted {
			t.Fatalf("evicted before the horizon: %v", c)
		}
	}
	if e.Devices() != 3 {
		t.Fatalf("%d devices before the horizon, want 3", e.Devices())
	}
	if dead, _ := tombstones(e); len(dead) != 0 {
		t.Fatalf("tombstones before the horizon: %v", dead)
	}
	if !e.Member("news", "lapsed", "d2") || !e.Member("news", "lapsed", "d3") {
		t.Fatal("d2 and d3 should be lapsed after 7 days without reading")
	}
	at := t0.Add(10 * 24 * time.Hour)
	out = e.Advance(at, nil)
	want := []string{
		"exit news/lapsed d2 at 2026-05-11T12:00:00Z (evicted)",
		"exit news/lapsed d3 at 2026-05-11T12:00:00Z (evicted)",
	}
	var got []string
	for _, c := range out {
		got = append(got, c.String())
	}
	sort.Strings(got)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("changes at the horizon:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if e.Devices() != 1 || e.Stats().Evicted != 2 {
		t.Fatalf("%d devices, %d evicted; want 1 and 2", e.Devices(), e.Stats().Evicted)
	}
	if n, _ := e.Size("news", "lapsed"); n != 0 {
		t.Fatalf("lapsed has %d members after the evictions", n)
	}
	dead, _ := tombstones(e)
	if strings.Join(dead, " ") != "news/d2 news/d3" {
		t.Fatalf("tombstones %v, want news/d2 news/d3", dead)
	}
	// d1 was seen on day 9: evicted on day 19, not before.
	if out := e.Advance(t0.Add(19*24*time.Hour-time.Second), nil); e.Devices() != 1 {
		t.Fatalf("d1 evicted early: %v", out)
	}
	// d2 comes back on day 20: a new device, its first session the new one.
	back := t0.Add(20 * 24 * time.Hour)
	out = rec("d2", back, tag.KindSessionStart, "")
	if s := changeLines(out); !strings.Contains(s, "enter news/new d2") || !strings.Contains(s, "enter news/lapsed d2") {
		t.Fatalf("a device back after its eviction should enter new and lapsed as a new device: %s", s)
	}
	if d := e.device("news", "d2"); d == nil || unix(d.first) != back.Unix() {
		t.Fatalf("the returning device's first session should be the new one")
	}
}

// A device is not evicted while a timer of its conditions is pending: it
// waits for the timer (and the membership it brings), then goes.
func TestEvictWaitsForPendingTimer(t *testing.T) {
	segs := evictSegments(t, "subs", map[string]string{
		"expired": `app_info "expires" <= now - 1d`,
	})
	e := New(Options{EvictAfter: 10 * 24 * time.Hour, EvictMargin: time.Hour})
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	if _, _, err := e.SetSegments(segs, t0); err != nil {
		t.Fatal(err)
	}
	if h, ok := e.Horizon("subs"); !ok || h != 10*24*3600 {
		t.Fatalf("an app_info condition has no window: the horizon is the retention, got %d %v", h, ok)
	}
	exp := t0.Add(30 * 24 * time.Hour)
	e.Apply(&tag.Record{AppID: "subs", DeviceID: "d", MessageID: "a", Kind: tag.KindAppInfo, Time: t0,
		AppInfo: []tag.Extra{{Key: "expires", Value: tag.Date(exp)}}}, 1, t0, nil)
	e.Apply(&tag.Record{AppID: "subs", DeviceID: "other", MessageID: "b", Kind: tag.KindAppInfo, Time: t0,
		AppInfo: []tag.Extra{{Key: "expires", Value: tag.Date(t0.Add(-48 * time.Hour))}}}, 2, t0, nil)
	tombstones(e)
	out := e.Advance(t0.Add(20*24*time.Hour), nil)
	if s := changeLines(out); s != "exit subs/expired other at 2026-05-11T12:00:00Z (evicted)" {
		t.Fatalf("at day 20: %q; want only the device without a timer evicted, at the retention", s)
	}
	if e.device("subs", "d") == nil {
		t.Fatal("a device with a pending timer was evicted")
	}
	if dead, _ := tombstones(e); len(dead) != 1 || dead[0] != "subs/other" {
		t.Fatalf("tombstones %v", dead)
	}
	out = e.Advance(t0.Add(40*24*time.Hour), nil)
	want := "enter subs/expired d at 2026-06-01T12:00:00Z (timer)\nexit subs/expired d at 2026-06-01T12:00:00Z (evicted)"
	if s := changeLines(out); s != want {
		t.Fatalf("changes:\n%s\nwant:\n%s", s, want)
	}
	if dead, _ := tombstones(e); len(dead) != 1 || dead[0] != "subs/d" {
		t.Fatalf("tombstones %v", dead)
	}
}

// Without EvictAfter nothing is evicted; a condition without a window
// makes the horizon the retention.
func TestEvictHorizons(t *testing.T) {
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		text string
		days int64 // horizon with a retention of 400d and a margin of 30d
	}{
		{`did event "a" in last 30d`, 60},
		{`first_session between 15d and 16d ago`, 46},
		{`did event "a" in last 7d and segment "x"`, 37},
		{`did event "a"`, 400},
		{`first_session more than 14d ago`, 400},
		{`last_seen more than 14d ago`, 400},
		{`app_info "level" unchanged for 3d`, 400},
		{`platform = "ios"`, 400},
		{`did event "a" in last 500d`, 400},
	}
	for _, c := range cases {
		segs := evictSegments(t, "app", map[string]string{"s": c.text, "x": `sample 50%`})
		e := New(Options{EvictAfter: 400 * 24 * time.Hour})
		if _, _, err := e.SetSegments(segs, t0); err != nil {
			t.Fatal(err)
		}
		h, ok := e.Horizon("app")
		// A bounded look-back is the window, a relative range's far end
		// (plus the second it includes).
		if !ok || h/86400 != c.days {
			t.Errorf("%s: horizon %.2f days, want %d", c.text, float64(h)/86400, c.days)
		}
		off := New(Options{})
		off.SetSegments(segs, t0)
		if _, ok := off.Horizon("app"); ok {
			t.Errorf("%s: a horizon without EvictAfter", c.text)
		}
	}
}

// Eviction is deterministic: an engine restored from its changelog midway
// evicts the same devices at the same instants, with the same change ids,
// as one that ran in one go; a tombstone restores as absent.
func TestEvictRestoreDeterministic(t *testing.T) {
	segs := evictSegments(t, "news", map[string]string{
		"readers": `did event "read" at least 2 times in last 5d`,
		"lapsed":  `not did event "read" in last 3d`,
	})
	opts := Options{EvictAfter: 400 * 24 * time.Hour, EvictMargin: 2 * 24 * time.Hour}
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	type step struct {
		r   *tag.Record
		off int64
		now time.Time
	}
	var steps []step
	for i := range 400 {
		dev := fmt.Sprintf("d%d", i%40)
		at := t0.Add(time.Duration(i) * time.Duration(i%7+1) * 47 * time.Minute)
		steps = append(steps, step{&tag.Record{AppID: "news", DeviceID: dev, MessageID: fmt.Sprintf("m%d", i), Kind: tag.KindEvent, Name: "read", Time: at}, int64(i), at})
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].now.Before(steps[j].now) })
	for i := range steps {
		steps[i].off = int64(i)
	}
	run := func(restoreAt int) ([]string, *Engine) {
		e := New(opts)
		e.SetSegments(segs, t0)
		log := map[string][]byte{}
		var changes []string
		for i, s := range steps {
			if i == restoreAt {
				r := New(opts)
				for k, v := range log {
					if err := r.Restore([]byte(k), v); err != nil {
						t.Fatal(err)
					}
				}
				r.SetSegments(segs, s.now)
				e = r
			}
			for _, c := range e.Advance(s.now, nil) {
				changes = append(changes, c.ID.String()+" "+c.String())
			}
			for _, c := range e.Apply(s.r, s.off, s.now, nil) {
				changes = append(changes, c.ID.String()+" "+c.String())
			}
			e.Dirty(func(k, v []byte) {
				if v == nil {
					log[string(k)] = nil
				} else {
					log[string(k)] = append([]byte(nil), v...)
				}
			})
		}
		for _, c := range e.Advance(steps[len(steps)-1].now.Add(60*24*time.Hour), nil) {
			changes = append(changes, c.ID.String()+" "+c.String())
		}
		return changes, e
	}
	want, e := run(-1)
	if e.Stats().Evicted == 0 || e.Devices() != 0 {
		t.Fatalf("the scenario evicted %d devices and keeps %d: it should evict every one in the end", e.Stats().Evicted, e.Devices())
	}
	evicted := 0
	for _, c := range want {
		if strings.HasSuffix(c, "(evicted)") {
			evicted++
		}
	}
	if evicted == 0 {
		t.Fatal("no exit with cause evicted")
	}
	for _, at := range []int{50, 200, 333} {
		got, _ := run(at)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("restored at step %d: the changes differ from one run in one go (%d vs %d)", at, len(got), len(want))
		}
	}
}

// A fill from the history store does not bring back a device whose last
// record is past its app's horizon: only the devices a live engine would
// still hold are created.
func TestEvictFillSkipsGoneDevices(t *testing.T) {
	e := New(Options{Fill: true, EvictAfter: 10 * 24 * time.Hour, EvictMargin: time.Hour})
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	// The partition had records before the app had segments: a fill.
	e.Apply(&tag.Record{AppID: "news", DeviceID: "x", Kind: tag.KindEvent, Name: "read", Time: t0}, 9, t0, nil)
	now := t0.Add(30 * 24 * time.Hour)
	segs := evictSegments(t, "news", map[string]string{"readers": `did event "read"`})
	if _, _, err := e.SetSegments(segs, now); err != nil {
		t.Fatal(err)
	}
	fills, _ := e.Fills(now, nil)
	if len(fills) != 1 {
		t.Fatalf("%d fills", len(fills))
	}
	hist := func(dev string, at time.Time, off int64) {
		r := &tag.Record{AppID: "news", DeviceID: dev, MessageID: dev, Kind: tag.KindEvent, Name: "read", Time: at}
		if _, err := e.ApplyHistory(fills[0].ID, dev, []HistoryRecord{{Record: r, Offset: off}}, nil); err != nil {
			t.Fatal(err)
		}
	}
	hist("old", t0, 1)                          // last seen 30 days ago: gone
	hist("recent", now.Add(-5*24*time.Hour), 2) // 5 days ago: held
	out, err := e.FinishFill(fills[0].ID, now, nil)
	if err != nil {
		t.Fatal(err)
	}
	if s := changeLines(out); !strings.Contains(s, "enter news/readers recent") || strings.Contains(s, " old ") {
		t.Fatalf("changes of the fill: %s", s)
	}
	if e.device("news", "old") != nil || e.device("news", "recent") == nil {
		t.Fatal("the fill brought back a device past its horizon, or not the recent one")
	}
	// The recent one goes at its horizon.
	e.Advance(now.Add(5*24*time.Hour), nil)
	if e.device("news", "recent") != nil {
		t.Fatal("a device created by a fill is not evicted at its horizon")
	}
}
