package triggers

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
)

// BenchmarkChurn cycles 10 million devices (ENGAGE_CHURN_DEVICES) through
// one scheduler, as the processor's output would bring them: a new device
// every simulated second sends a device record (time zone, push token) and
// enters the segment "active"; one in fifty enters "promo" too, whose
// on_entry campaign sends at once; two hours later the processor evicts it
// (exits with cause "evicted"). With a margin of a day, a device is kept
// 26 hours, or a week and a day after a send (the caps count it): about
// 108,000 devices are held at any time. The heap in use after a
// collection is read at ten points after the first tenth; max/min is their
// ratio (flat: about 1). The changelog is drained every 1,000 seconds.
func BenchmarkChurn(b *testing.B) {
	total := 10_000_000
	if v := os.Getenv("ENGAGE_CHURN_DEVICES"); v != "" {
		var err error
		if total, err = strconv.Atoi(v); err != nil || total < 1_000_000 {
			b.Fatalf("ENGAGE_CHURN_DEVICES=%q: give at least 1000000", v)
		}
	}
	promo := push("app", "promo", "promo")
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	for range b.N {
		s := New()
		s.SetCampaigns([]*Campaign{promo}, map[string]map[Channel]Caps{"app": {ChannelPush: {PerDay: 3, PerWeek: 10}}}, t0, nil)
		s.SetEviction(400*24*time.Hour, 24*time.Hour)
		var decs []Decision
		var dels []Delivery
		var lo, hi uint64
		every := total / 10
		var seq int64
		rec := &tag.Record{Kind: tag.KindDevice, AppID: "app", Device: &tag.DeviceInfo{TimeZone: "Europe/Paris", PushProvider: tag.ProviderFCM}}
		b.ResetTimer()
		start := time.Now()
		for sec := 0; sec < total+7200; sec++ {
			now := t0.Add(time.Duration(sec) * time.Second)
			if dev := sec; dev < total {
				id := "d" + strconv.Itoa(dev)
				seq++
				rec.DeviceID, rec.Time, rec.Device.PushToken = id, now, "tok-"+id
				s.ApplyRecord(rec, seq)
				for _, seg := range []string{"active", "promo"} {
					if seg == "promo" && dev%50 != 0 {
						continue
					}
					seq++
					decs, dels = s.Apply(SegmentChange{App: "app", Segment: seg, DeviceID: id, Enter: true, Time: now,
						ID: fmt.Sprintf("%016x%016x", dev, 1+len(seg)), Seq: seq}, now, decs[:0], dels[:0])
				}
			}
			if dev := sec - 7200; dev >= 0 && dev < total {
				id := "d" + strconv.Itoa(dev)
				for _, seg := range []string{"active", "promo"} {
					if seg == "promo" && dev%50 != 0 {
						continue
					}
					seq++
					decs, dels = s.Apply(SegmentChange{App: "app", Segment: seg, DeviceID: id, Evicted: true, Time: now,
						ID: fmt.Sprintf("%016x%016x", dev, 100+len(seg)), Seq: seq}, now, decs[:0], dels[:0])
				}
			}
			if sec%1000 == 999 {
				decs, dels = s.Advance(now, decs[:0], dels[:0])
				s.Dirty(func(key, state []byte) {})
			}
			if d := sec + 1; d%every == 0 && d <= total {
				h := heap()
				if d > every {
					if lo == 0 {
						lo = h
					}
					lo, hi = min(lo, h), max(hi, h)
				}
				b.Logf("%d devices through, %d held, %d evicted, heap in use %.1f MB (%s)", d, len(s.devs), s.Stats().Evicted, float64(h)/(1<<20), time.Since(start).Round(time.Second))
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(hi)/float64(lo), "max/min-heap")
		b.ReportMetric(float64(lo)/(1<<20), "min-heap-MB")
		b.ReportMetric(float64(hi)/(1<<20), "max-heap-MB")
		b.ReportMetric(float64(len(s.devs)), "devices-held")
		if s.Stats().Evicted < uint64(total)*9/10 {
			b.Fatalf("evicted %d of %d devices", s.Stats().Evicted, total)
		}
	}
}
