package triggers

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"
)

// BenchmarkPendingState holds a deferred send for each of N devices
// (TRIGGERS_BENCH_PENDING, default 1M; the target is stated for 10M): a
// welcome push waiting 2 days for 10:00 local time. It reports the bytes a
// waiting send adds to a device's changelog state, the whole state, and
// how fast the states restore.
func BenchmarkPendingState(b *testing.B) {
	n := 1_000_000
	if v, err := strconv.Atoi(os.Getenv("TRIGGERS_BENCH_PENDING")); err == nil && v > 0 {
		n = v
	}
	c := push("app", "welcome_d2", "new")
	c.When.Delay = 48 * time.Hour
	c.When.AlignTo = &TimeOfDay{Hour: 10}
	camps := []*Campaign{c}
	t0 := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	s := New()
	s.SetCampaigns(camps, nil, t0, nil)
	for i := range n {
		dev := "device-" + strconv.Itoa(i)
		s.SetProfile("app", dev, Profile{TimeZone: "Europe/Paris", Locale: "fr-FR"})
		s.Apply(SegmentChange{App: "app", Segment: "new", DeviceID: dev, Enter: true, Time: t0, ID: fmt.Sprintf("%032x", i)}, t0, nil, nil)
	}
	if s.Stats().Pending != n {
		b.Fatalf("%d waiting sends, want %d", s.Stats().Pending, n)
	}
	var keys, states [][]byte
	total := 0
	s.Snapshot(func(k, st []byte) {
		keys = append(keys, append([]byte(nil), k...))
		states = append(states, append([]byte(nil), st...))
		total += len(st)
	})
	// The same devices without the waiting send.
	bare := New()
	bare.SetProfile("app", "device-0", Profile{TimeZone: "Europe/Paris", Locale: "fr-FR"})
	bare.Apply(SegmentChange{App: "app", Segment: "new", DeviceID: "device-0", Enter: true, Time: t0}, t0, nil, nil)
	var without int
	bare.Snapshot(func(_, st []byte) { without = len(st) })
	b.ResetTimer()
	restored := 0
	for b.Loop() {
		r := New()
		r.SetCampaigns(camps, nil, t0, nil)
		for i := range keys {
			if err := r.Restore(keys[i], states[i]); err != nil {
				b.Fatal(err)
			}
		}
		restored += len(keys)
	}
	b.ReportMetric(float64(restored)/b.Elapsed().Seconds(), "restored-states/s")
	b.ReportMetric(float64(total)/float64(n)-float64(without), "bytes/waiting-send")
	b.ReportMetric(float64(total)/float64(n), "state-bytes/device")
	b.ReportMetric(float64(n), "waiting-sends")
}
