package triggers

import (
	"encoding/hex"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

var update = flag.Bool("update", false, "rewrite the golden changelog in testdata/golden")

// stateCampaigns is a mix of every kind of send, caps and quiet hours.
func stateCampaigns() ([]*Campaign, map[string]map[Channel]Caps) {
	welcome := push("app", "welcome", "new")
	welcome.When.Delay = 36 * time.Hour
	welcome.When.AlignTo = &TimeOfDay{Hour: 10}
	welcome.When.Expiry = 5 * 24 * time.Hour
	welcome.What.Content = map[string]*Message{"en": {Title: "Hi {{app_info.name | default \"you\"}}", Body: "on {{device.platform}}"},
		"fr": {Title: "Salut {{app_info.name | default \"toi\"}}"}}
	welcome.What.Missing = MissingDefault
	stalled := push("app", "stalled", "stuck")
	stalled.Limit.Quiet = &QuietHours{From: TimeOfDay{Hour: 21}, To: TimeOfDay{Hour: 9}}
	stalled.Limit.ReentryAfter = 3 * 24 * time.Hour
	stalled.Limit.Priority = 3
	stalled.Who.Control = 20
	stalled.Who.Variants = []Variant{{Name: "bonus", Weight: 1}, {Name: "gems", Weight: 1}}
	stalled.What.Content = map[string]*Message{"en": {Title: "Level {{trigger.level}}, {{app_info.name | default \"hero\"}}"}}
	lapsed := push("app", "lapsed", "lapsed")
	lapsed.Who.Exclude = []string{"new"}
	lapsed.When.Delay = 6 * time.Hour
	lapsed.Limit.Once = true
	digest := push("app", "digest", "readers")
	digest.When = When{Kind: Recurring, Every: &TimeOfDay{Hour: 8}, Weekdays: []time.Weekday{time.Monday, time.Thursday}}
	xmas := push("app", "xmas", "readers")
	xmas.When = When{Kind: Once, At: time.Date(2026, 3, 20, 18, 0, 0, 0, time.UTC), LocalTime: true}
	inapp := push("app", "tutorial", "stuck")
	inapp.What.Channel = ChannelInApp
	return []*Campaign{welcome, stalled, lapsed, digest, xmas, inapp}, map[string]map[Channel]Caps{"app": {ChannelPush: {PerDay: 2, PerWeek: 5}}}
}

// A scheduler restored midway from its changelog decides from then on
// exactly what the original does: the same decisions and deliveries, in
// the same order.
func TestRestoreMidwayDecidesAlike(t *testing.T) {
	for seed := range uint64(60) {
		t.Run(strconv.FormatUint(seed, 10), func(t *testing.T) {
			r := rand.New(rand.NewPCG(seed, 5))
			camps, caps := stateCampaigns()
			t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
			a := New()
			a.SetCampaigns(camps, caps, t0, nil)
			var b *Scheduler
			clog := map[string][]byte{}
			flush := func() {
				a.Dirty(func(k, st []byte) { clog[string(k)] = append([]byte(nil), st...) })
			}
			zones := []string{"Europe/Paris", "America/New_York", "Australia/Sydney", "Asia/Kolkata", ""}
			segs := []string{"new", "stuck", "lapsed", "readers"}
			clock := t0
			restoreAt := 50 + r.IntN(200)
			// Each input is an op, kept so that a restored scheduler can be
			// given again what followed the last commit: it must apply none
			// of it twice (the positions in its state say what it applied).
			var ops []func(s *Scheduler) ([]Decision, []Delivery)
			commitAt := 0
			ids := map[string]Decision{} // every decision has an id of its own
			for step := range 400 {
				clock = clock.Add(time.Duration(r.IntN(4*3600)) * time.Second)
				dev := "d" + strconv.Itoa(r.IntN(12))
				seq := int64(step + 1)
				var op func(s *Scheduler) ([]Decision, []Delivery)
				switch x := r.IntN(10); {
				case x == 0:
					var rec *tag.Record
					if r.IntN(2) == 0 {
						rec = &tag.Record{Kind: tag.KindDevice, AppID: "app", DeviceID: dev, Time: clock.Add(-time.Duration(r.IntN(7200)) * time.Second),
							Device: &tag.DeviceInfo{Platform: []string{"ios", "android"}[r.IntN(2)], TimeZone: zones[r.IntN(len(zones))], Locale: []string{"fr-FR", "en"}[r.IntN(2)]}}
						if r.IntN(3) > 0 { // a token, sometimes a new one
							rec.Device.PushToken, rec.Device.PushProvider = fmt.Sprintf("tok-%s-%d", dev, r.IntN(3)), []tag.PushProvider{tag.ProviderAPNs, tag.ProviderFCM}[r.IntN(2)]
						}
					} else {
						rec = &tag.Record{Kind: tag.KindAppInfo, AppID: "app", DeviceID: dev, Time: clock.Add(-time.Duration(r.IntN(7200)) * time.Second),
							AppInfo: []tag.Extra{{Key: "name", Value: tag.String([]string{"Ana", "Bo", "Kim"}[r.IntN(3)])}, {Key: "score", Value: tag.Number(3)}}}
					}
					op = func(s *Scheduler) ([]Decision, []Delivery) { s.ApplyRecord(rec, seq); return nil, nil }
				case x < 3:
					at := clock
					op = func(s *Scheduler) ([]Decision, []Delivery) { return s.Advance(at, nil, nil) }
				default:
					ch := SegmentChange{App: "app", Segment: segs[r.IntN(len(segs))], DeviceID: dev, Enter: r.IntN(3) > 0, Time: clock,
						ID: fmt.Sprintf("%032x", r.Uint64()), Seq: seq}
					if r.IntN(2) == 0 {
						ch.Extras = []tag.Extra{{Key: "level", Value: tag.Number(float64(r.IntN(40)))}, {Key: "world", Value: tag.String("w2")}}
					}
					at := clock
					op = func(s *Scheduler) ([]Decision, []Delivery) { return s.Apply(ch, at, nil, nil) }
				}
				ops = append(ops, op)
				da, la := op(a)
				for _, d := range da {
					if prev, ok := ids[d.ID]; ok {
						t.Fatalf("step %d: decision id %s twice:\n%+v\n%+v", step, d.ID, prev, d)
					}
					ids[d.ID] = d
				}
				var db []Decision
				var lb []Delivery
				if b != nil {
					db, lb = op(b)
				}
				if step%37 == 0 && step < restoreAt {
					commitAt = step + 1
				}
				if step == 150 {
					// A campaign saved midway: it waits for the members of the moment.
					promo := push("app", "promo", "readers")
					promo.When = When{Kind: Once, At: clock.Add(48 * time.Hour), LocalTime: true}
					camps = append(camps, promo)
					a.SetCampaigns(camps, caps, clock, nil)
					if b != nil {
						b.SetCampaigns(camps, caps, clock, nil)
					}
				}
				flush()
				if b != nil && (!reflect.DeepEqual(da, db) || !reflect.DeepEqual(la, lb)) {
					t.Fatalf("step %d: the restored scheduler differs:\noriginal: %v %v\nrestored: %v %v", step, da, la, db, lb)
				}
				if step == restoreAt {
					b = New()
					b.SetCampaigns(camps, caps, a.Clock(), nil)
					for k, st := range clog {
						if err := b.Restore([]byte(k), st); err != nil {
							t.Fatal(err)
						}
					}
					for i, op := range ops[commitAt:] {
						if d, l := op(b); len(d) > 0 || len(l) > 0 {
							t.Fatalf("step %d replayed after the restore decided again: %v %v", commitAt+i, d, l)
						}
					}
					if a.Stats().Pending != b.Stats().Pending {
						for k, d := range a.devs {
							var x, y []string
							for _, p := range d.pending {
								x = append(x, p.camp.Name+"@"+time.Unix(p.due, 0).UTC().Format(time.RFC3339))
							}
							if e := b.devs[k]; e != nil {
								for _, p := range e.pending {
									y = append(y, p.camp.Name+"@"+time.Unix(p.due, 0).UTC().Format(time.RFC3339))
								}
							}
							t.Logf("%s: %v | %v", k, x, y)
						}
						t.Fatalf("step %d: restored %d waiting sends, the original holds %d", step, b.Stats().Pending, a.Stats().Pending)
					}
				}
			}
			if a.Stats().Pending != b.Stats().Pending {
				t.Errorf("waiting sends: original %d, restored %d", a.Stats().Pending, b.Stats().Pending)
			}
		})
	}
}

// The changelog outlives processes: today's encoding of a scenario must
// equal the golden file byte for byte, and the file must restore.
func TestStateGolden(t *testing.T) {
	const path = "testdata/golden/scheduler_state_v2.txt"
	camps, caps := stateCampaigns()
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	s := New()
	s.SetCampaigns(camps, caps, t0, nil)
	s.SetProfile("app", "ana", Profile{TimeZone: "Europe/Paris", Locale: "fr-FR"})
	s.ApplyRecord(&tag.Record{Kind: tag.KindAppInfo, AppID: "app", DeviceID: "ana", Time: t0, AppInfo: []tag.Extra{{Key: "name", Value: tag.String("Ana")}}}, 7)
	s.ApplyRecord(&tag.Record{Kind: tag.KindDevice, AppID: "app", DeviceID: "ana", Time: t0, Device: &tag.DeviceInfo{Platform: "ios", TimeZone: "Europe/Paris", Locale: "fr-FR", PushToken: "a3f1c2d4e5b6", PushProvider: tag.ProviderAPNs}}, 8)
	for i, seg := range []string{"readers", "new", "stuck"} {
		s.Apply(SegmentChange{App: "app", Segment: seg, DeviceID: "ana", Enter: true, Time: t0.Add(time.Duration(i) * time.Hour),
			ID: fmt.Sprintf("%032x", i+1), Extras: []tag.Extra{{Key: "level", Value: tag.Number(7)}}, Seq: int64(300 + i)}, t0.Add(time.Duration(i)*time.Hour), nil, nil)
	}
	s.Apply(SegmentChange{App: "app", Segment: "lapsed", DeviceID: "bo", Enter: true, Time: t0, ID: "not-hex"}, t0.Add(3*time.Hour), nil, nil)
	// Monday's digest is sent (a recurring send: the state keeps its day).
	if _, dels := s.Advance(time.Date(2026, 3, 2, 7, 0, 0, 0, time.UTC), nil, nil); len(dels) == 0 {
		t.Fatal("the golden scenario sent nothing: it no longer covers the sends kept per campaign")
	}
	var lines []string
	s.Snapshot(func(k, st []byte) { lines = append(lines, hex.EncodeToString(k)+" "+hex.EncodeToString(st)) })
	got := strings.Join(lines, "\n") + "\n"
	if *update {
		if err := os.MkdirAll("testdata/golden", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to write it)", err)
	}
	if got != string(want) {
		t.Fatalf("the scheduler's state encoding changed: bump stateVersion, keep %s, add a new golden file\ngot:\n%s\nwant:\n%s", path, got, want)
	}
	// Every version's file restores, and the restored sends go out as the
	// original's, messages included (app-info, device fields and trigger
	// extras restored).
	da, la := s.Advance(t0.Add(30*24*time.Hour), nil, nil)
	for _, file := range []string{"testdata/golden/scheduler_state_v1.txt", path} {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		r := New()
		r.SetCampaigns(camps, caps, t0, nil)
		for i, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
			k, v, _ := strings.Cut(line, " ")
			key, _ := hex.DecodeString(k)
			st, _ := hex.DecodeString(v)
			if err := r.Restore(key, st); err != nil {
				t.Fatalf("%s:%d: %v", file, i+1, err)
			}
		}
		if r.Stats().Pending == 0 {
			t.Errorf("%s: restored no waiting sends", file)
		}
		db, lb := r.Advance(t0.Add(30*24*time.Hour), nil, nil)
		if !reflect.DeepEqual(da, db) || !reflect.DeepEqual(la, lb) || len(la) == 0 {
			t.Errorf("after restoring %s, the sends differ:\noriginal: %+v\nrestored: %+v", file, la, lb)
		}
	}
	for _, d := range la {
		if d.Campaign == "welcome" && d.Message.Title != "Salut Ana" || d.Campaign == "stalled" && d.Message.Title != "Level 7, Ana" {
			t.Errorf("%s: message %+v", d.Campaign, d.Message)
		}
	}
}

// Restore refuses what it cannot read, with an error, and never panics.
func FuzzRestore(f *testing.F) {
	camps, caps := stateCampaigns()
	s := New()
	s.SetCampaigns(camps, caps, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), nil)
	s.Apply(SegmentChange{App: "app", Segment: "new", DeviceID: "d", Enter: true, Time: time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), ID: fmt.Sprintf("%032x", 7)},
		time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), nil, nil)
	s.Snapshot(func(k, st []byte) { f.Add(append([]byte(nil), st...)) })
	f.Add([]byte{1})
	f.Add([]byte{9, 0})
	f.Fuzz(func(t *testing.T, state []byte) {
		r := New()
		r.SetCampaigns(camps, caps, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), nil)
		if err := r.Restore([]byte("app/d"), state); err != nil {
			return
		}
		// What restored encodes and restores again the same.
		var again []byte
		r.Snapshot(func(k, st []byte) { again = append([]byte(nil), st...) })
		r2 := New()
		r2.SetCampaigns(camps, caps, time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC), nil)
		if err := r2.Restore([]byte("app/d"), again); err != nil {
			t.Fatalf("a state this package wrote does not restore: %v", err)
		}
		var third []byte
		r2.Snapshot(func(k, st []byte) { third = append([]byte(nil), st...) })
		if string(again) != string(third) {
			t.Fatalf("restore and encode are not stable:\n%x\n%x", again, third)
		}
	})
}
