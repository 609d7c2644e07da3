package engine

import (
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// The changelog outlives the processes that write it: a new engine must
// read the states and meta records that older ones left in the topic. The
// golden files in testdata/golden/ hold the changelog of one scenario as
// each version of the format wrote it (hex key, hex value, a line each).
// The current version's file must match what the engine writes today, byte
// for byte; every older file must still restore, to the same memberships.
// Rewrite the current one with -update when the format changes on purpose
// (and bump the version: the old file stays as it is).

const goldenCurrent = "testdata/golden/changelog_v2.txt"

// goldenScenario builds an engine with a typical rule set and a few devices.
func goldenScenario(t *testing.T) (*Engine, []*segments.Segment, time.Time) {
	t.Helper()
	texts := []string{
		`did event "share" where network = "facebook" at least 2 times in last 7d`,
		`first_session between 3d and 4d ago and did activity "login" and not app_info "logged_in" = true`,
		`last_seen more than 14d ago`,
		`app_info "level" unchanged for 3d`,
		`platform = "ios" and app_version >= "2.1"`,
		`did job "video" taking more than 30s`,
	}
	var segs []*segments.Segment
	for i, text := range texts {
		n, err := segments.Parse(text)
		if err != nil {
			t.Fatalf("parse %q: %v", text, err)
		}
		segs = append(segs, &segments.Segment{App: "game", Name: fmt.Sprintf("s%d", i), Text: text, Expr: n, Version: int64(i + 1)})
	}
	e := New(Options{})
	start := time.Date(2026, 11, 1, 9, 0, 0, 0, time.UTC)
	if _, _, err := e.SetSegments(segs, start); err != nil {
		t.Fatal(err)
	}
	var off int64
	apply := func(dev string, at time.Duration, r tag.Record) {
		r.AppID, r.DeviceID = "game", dev
		r.MessageID = fmt.Sprintf("%s-m%d", dev, off)
		r.Time = start.Add(at)
		e.Apply(&r, off, r.Time, nil)
		off++
	}
	for _, dev := range []string{"d1", "d2", "d3"} {
		apply(dev, 0, tag.Record{Kind: tag.KindSessionStart, SessionID: "s1"})
		apply(dev, time.Minute, tag.Record{Kind: tag.KindActivityStart, Name: "login"})
		apply(dev, 2*time.Minute, tag.Record{Kind: tag.KindDevice, Device: &tag.DeviceInfo{Platform: "ios", AppVersion: "2.3"}})
		apply(dev, 3*time.Minute, tag.Record{Kind: tag.KindAppInfo, AppInfo: []tag.Extra{{Key: "level", Value: tag.Number(4)}}})
	}
	apply("d1", time.Hour, tag.Record{Kind: tag.KindEvent, Name: "share", Extras: []tag.Extra{{Key: "network", Value: tag.String("facebook")}}})
	apply("d1", 2*time.Hour, tag.Record{Kind: tag.KindEvent, Name: "share", Extras: []tag.Extra{{Key: "network", Value: tag.String("facebook")}}})
	apply("d2", 3*time.Hour, tag.Record{Kind: tag.KindJob, Name: "video", Duration: 45 * time.Second})
	apply("d2", 4*time.Hour, tag.Record{Kind: tag.KindAppInfo, AppInfo: []tag.Extra{{Key: "logged_in", Value: tag.Bool(true)}, {Key: "level", Value: tag.Number(5)}}})
	now := start.Add(80 * time.Hour)
	e.Advance(now, nil)
	return e, segs, now
}

func snapshotLines(e *Engine) []string {
	var lines []string
	e.Snapshot(func(key, state []byte) {
		lines = append(lines, hex.EncodeToString(key)+" "+hex.EncodeToString(state))
	})
	sort.Strings(lines)
	return lines
}

func TestChangelogGolden(t *testing.T) {
	e, segs, now := goldenScenario(t)
	got := strings.Join(snapshotLines(e), "\n") + "\n"
	if *update {
		if err := os.MkdirAll(filepath.Dir(goldenCurrent), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(goldenCurrent, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(goldenCurrent)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Errorf("the changelog of the golden scenario differs from %s: the format changed; bump its version, keep the old file, add a new one with -update\ngot:\n%s\nwant:\n%s", goldenCurrent, got, want)
	}

	files, err := filepath.Glob("testdata/golden/changelog_v*.txt")
	if err != nil || len(files) < 2 {
		t.Fatalf("want the golden changelog of every format version in testdata/golden, found %v (%v)", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			e, _, _ := goldenScenario(t)
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			r := New(Options{})
			if _, _, err := r.SetSegments(segs, now); err != nil {
				t.Fatal(err)
			}
			for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
				k, v, ok := strings.Cut(line, " ")
				key, err1 := hex.DecodeString(k)
				state, err2 := hex.DecodeString(v)
				if !ok || err1 != nil || err2 != nil {
					t.Fatalf("%s:%d: want hex key, space, hex state", f, i+1)
				}
				if err := r.Restore(key, state); err != nil {
					t.Fatalf("%s:%d: %v", f, i+1, err)
				}
			}
			r.Advance(now, nil)
			for _, s := range segs {
				for _, dev := range []string{"d1", "d2", "d3"} {
					if w, g := e.Member("game", s.Name, dev), r.Member("game", s.Name, dev); w != g {
						t.Errorf("%s: device %s segment %s (%s): member %v after restore, want %v", f, dev, s.Name, s.Text, g, w)
					}
				}
				ws, _ := e.Size("game", s.Name)
				gs, _ := r.Size("game", s.Name)
				if ws != gs {
					t.Errorf("%s: segment %s: size %d after restore, want %d", f, s.Name, gs, ws)
				}
			}
			// The restored engine goes on as the original does.
			rec := &tag.Record{AppID: "game", DeviceID: "d3", MessageID: "late-share", Kind: tag.KindEvent, Name: "share",
				Time: now.Add(-time.Hour), Extras: []tag.Extra{{Key: "network", Value: tag.String("facebook")}}}
			a := e.Apply(rec, 1000, now, nil)
			b := r.Apply(rec, 1000, now, nil)
			if len(a) != len(b) {
				t.Errorf("%s: a record after restore gave %d changes, the original engine %d", f, len(b), len(a))
			}
		})
	}
}
