package triggers

import (
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

func evictTombs(s *Scheduler) (dead []string) {
	s.Dirty(func(key, state []byte) {
		if state == nil {
			dead = append(dead, string(key))
		}
	})
	sort.Strings(dead)
	return dead
}

// The scheduler forgets a device once nothing it keeps can decide
// anything: in no segment, nothing waiting, its caps and repeat history
// past, and no input for the margin after the processor evicted it (or
// for the retention otherwise); a once: true campaign's send keeps it for
// the retention. Not before; with a tombstone; a device that comes back
// is new.
func TestSchedulerEviction(t *testing.T) {
	hello := push("app", "hello", "active")
	vip := push("app", "vip", "vip")
	vip.Limit.Once = true
	s := New()
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	s.SetCampaigns([]*Campaign{hello, vip}, nil, t0, nil)
	s.SetEviction(400*24*time.Hour, 3*24*time.Hour)
	day := func(n float64) time.Time { return t0.Add(time.Duration(n * 24 * float64(time.Hour))) }
	apply := func(dev, seg string, enter, evicted bool, at time.Time) []Delivery {
		_, dels := s.Apply(SegmentChange{App: "app", Segment: seg, DeviceID: dev, Enter: enter, Evicted: evicted, Time: at,
			ID: strings.Repeat("0", 24) + dev + seg[:1] + map[bool]string{true: "1", false: "0"}[enter] + "0000"[:6-len(dev)-1]}, at, nil, nil)
		return dels
	}
	// a: sent hello, then evicted by the processor a day later.
	if dels := apply("a", "active", true, false, t0); len(dels) != 1 {
		t.Fatalf("a: %d sends", len(dels))
	}
	apply("a", "active", false, true, day(1))
	// b: stays in its segment.
	apply("b", "active", true, false, t0)
	// c: sent a once campaign, then evicted by the processor.
	apply("c", "vip", true, false, t0)
	apply("c", "vip", false, true, day(1))
	// e: only a device record, never in a segment.
	s.ApplyRecord(&tag.Record{Kind: tag.KindDevice, AppID: "app", DeviceID: "e", Time: t0, Device: &tag.DeviceInfo{TimeZone: "Europe/Paris", PushToken: "tok", PushProvider: tag.ProviderAPNs}}, 0)
	evictTombs(s)

	// a's last send counts for the caps for a week: kept until the week
	// and the margin have passed (day 10), not before.
	s.Advance(day(10).Add(-time.Second), nil, nil)
	if dead := evictTombs(s); len(dead) != 0 || len(s.devs) != 4 {
		t.Fatalf("evicted before their time: %v (%d devices)", dead, len(s.devs))
	}
	s.Advance(day(10), nil, nil)
	if dead := evictTombs(s); strings.Join(dead, " ") != "app/a" {
		t.Fatalf("day 10: tombstones %v, want app/a", dead)
	}
	// c got a once campaign: kept for the retention after its last input,
	// e (no sign the processor forgot it) for the retention too; b is in a
	// segment: kept.
	s.Advance(day(400), nil, nil)
	if dead := evictTombs(s); len(dead) != 0 {
		t.Fatalf("day 400: tombstones %v", dead)
	}
	s.Advance(day(401), nil, nil)
	if dead := evictTombs(s); strings.Join(dead, " ") != "app/c app/e" {
		t.Fatalf("day 401: tombstones %v, want app/c app/e", dead)
	}
	if _, ok := s.devs["app/b"]; !ok || s.Stats().Evicted != 3 {
		t.Fatalf("b (a member) should be kept; evicted %d", s.Stats().Evicted)
	}
	// a comes back: a new device, its repeat history gone with it.
	if dels := apply("a", "active", true, false, day(402)); len(dels) != 1 || dels[0].PushToken != "" {
		t.Fatalf("a back: %+v", dels)
	}
}

// The state keeps the device's last input: a restored scheduler evicts
// when the original does; a tombstone restores as absent.
func TestSchedulerEvictionRestore(t *testing.T) {
	hello := push("app", "hello", "active")
	hello.Limit.ReentryAfter = 20 * 24 * time.Hour
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	mk := func() *Scheduler {
		s := New()
		s.SetCampaigns([]*Campaign{hello}, nil, t0, nil)
		s.SetEviction(400*24*time.Hour, 3*24*time.Hour)
		return s
	}
	a := mk()
	a.Apply(SegmentChange{App: "app", Segment: "active", DeviceID: "d", Enter: true, Time: t0, ID: strings.Repeat("1", 32)}, t0, nil, nil)
	a.Apply(SegmentChange{App: "app", Segment: "active", DeviceID: "d", Evicted: true, Time: t0.Add(time.Hour), ID: strings.Repeat("2", 32)}, t0.Add(time.Hour), nil, nil)
	log := map[string][]byte{}
	keep := func(k, v []byte) {
		if v == nil {
			log[string(k)] = nil
		} else {
			log[string(k)] = append([]byte(nil), v...)
		}
	}
	a.Dirty(keep)
	b := mk()
	for k, v := range log {
		if err := b.Restore([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	// reentry_after 20d + margin 3d after the send.
	for _, s := range []*Scheduler{a, b} {
		s.Advance(t0.Add(23*24*time.Hour-time.Second), nil, nil)
		if len(s.devs) != 1 {
			t.Fatal("evicted before reentry_after and the margin passed")
		}
		s.Advance(t0.Add(23*24*time.Hour), nil, nil)
		if len(s.devs) != 0 {
			t.Fatal("not evicted after reentry_after and the margin")
		}
	}
	a.Dirty(keep)
	if v, ok := log["app/d"]; !ok || v != nil {
		t.Fatal("no tombstone")
	}
	c := mk()
	for k, v := range log {
		if err := c.Restore([]byte(k), v); err != nil {
			t.Fatal(err)
		}
	}
	if len(c.devs) != 0 {
		t.Fatal("a tombstone restored as a device")
	}
}
