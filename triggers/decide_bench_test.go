package triggers

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkDecide feeds segment changes of 100k devices to a scheduler
// with 20 campaigns (on entry with delays, alignment and quiet hours,
// control groups, variants, caps) and advances its clock, as `engage
// schedule` does: it reports decisions per second on one goroutine.
func BenchmarkDecide(b *testing.B) {
	const devices = 100_000
	var camps []*Campaign
	for i := range 20 {
		c := push("app", fmt.Sprintf("c%02d", i), fmt.Sprintf("s%02d", i%10))
		c.Limit.Priority = i % 3
		switch i % 4 {
		case 0:
			c.When.Delay = time.Hour
		case 1:
			c.When.AlignTo = &TimeOfDay{Hour: 10}
		case 2:
			c.Limit.Quiet = &QuietHours{From: TimeOfDay{Hour: 22}, To: TimeOfDay{Hour: 8}}
			c.Who.Control = 10
		case 3:
			c.Who.Variants = []Variant{{Name: "a", Weight: 1}, {Name: "b", Weight: 1}}
			c.Limit.ReentryAfter = 24 * time.Hour
		}
		camps = append(camps, c)
	}
	caps := map[string]map[Channel]Caps{"app": {ChannelPush: {PerDay: 3, PerWeek: 10}}}
	s := New()
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	s.SetCampaigns(camps, caps, t0, nil)
	zones := []string{"Europe/Paris", "America/New_York", "Asia/Tokyo", "Asia/Kolkata"}
	ids := make([]string, devices)
	for i := range ids {
		ids[i] = fmt.Sprintf("device-%d", i)
		s.SetProfile("app", ids[i], Profile{TimeZone: zones[i%len(zones)], Locale: "en"})
	}
	segs := make([]string, 10)
	for i := range segs {
		segs[i] = fmt.Sprintf("s%02d", i)
	}
	var decs []Decision
	var dels []Delivery
	n, decided := 0, 0
	clock := t0
	b.ReportAllocs()
	for b.Loop() {
		clock = clock.Add(50 * time.Millisecond)
		ch := SegmentChange{App: "app", Segment: segs[n%10], DeviceID: ids[(n*7919)%devices], Enter: n%3 != 2, Time: clock, ID: "c" + ids[n%devices]}
		decs, dels = s.Apply(ch, clock, decs[:0], dels[:0])
		decided += len(decs)
		n++
		if n%1024 == 0 {
			decs, dels = s.Advance(clock, decs[:0], dels[:0])
			decided += len(decs)
			s.Dirty(func(k, st []byte) {})
		}
	}
	b.ReportMetric(float64(decided)/b.Elapsed().Seconds(), "decisions/s")
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "changes/s")
	b.ReportMetric(float64(decided)/float64(n), "decisions/change")
}
