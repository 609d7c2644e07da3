package engine

import (
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// churnDevices is how many devices BenchmarkChurn cycles through
// (ENGAGE_CHURN_DEVICES, default 10 million).
func churnDevices(b *testing.B) int {
	n := 10_000_000
	if v := os.Getenv("ENGAGE_CHURN_DEVICES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1_000_000 {
			b.Fatalf("ENGAGE_CHURN_DEVICES=%q: give at least 1000000", v)
		}
	}
	return n
}

// heapInUse returns the heap in use after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// BenchmarkChurn cycles 10 million devices through one engine: a new
// device every simulated second, a session and a read an hour apart, then
// never again. The app's segments read at most the last day, so that with
// a margin of an hour a device is evicted 25 hours after its last record:
// about 93,600 devices are held at any time. The heap in use (after a
// collection) is read at ten points after the first million devices; the
// metric max/min is their ratio (flat: about 1). Every 1,000 simulated
// seconds the changes are taken and the changelog (states and tombstones)
// is drained, as the processor's flushes do.
func BenchmarkChurn(b *testing.B) {
	total := churnDevices(b)
	texts := map[string]string{
		"engaged": `did event "read" at least 2 times in last 1d`,
		"lapsed":  `not did event "read" in last 1d`,
		"new":     `first_session between 0s and 12h ago`,
	}
	var segs []*segments.Segment
	for name, text := range texts {
		n, err := segments.Parse(text)
		if err != nil {
			b.Fatal(err)
		}
		segs = append(segs, &segments.Segment{App: "news", Name: name, Text: text, Expr: n, Version: 1})
	}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for range b.N {
		e := New(Options{EvictAfter: 400 * 24 * time.Hour, EvictMargin: time.Hour})
		if _, _, err := e.SetSegments(segs, t0); err != nil {
			b.Fatal(err)
		}
		if h, ok := e.Horizon("news"); !ok || h != 25*3600 {
			b.Fatalf("horizon %d", h)
		}
		const chunk = 1000 // simulated seconds between flushes
		recs := make([]tag.Record, 2*chunk)
		ptrs := make([]*tag.Record, 0, 2*chunk)
		offs := make([]int64, 0, 2*chunk)
		var out []Change
		var off int64
		var lo, hi uint64
		var held int
		every := total / 10
		b.ResetTimer()
		start := time.Now()
		// Second s: device s's session, device s-3600's read.
		for base := 0; base < total+3600; base += chunk {
			ptrs, offs = ptrs[:0], offs[:0]
			for s := base; s < base+chunk; s++ {
				now := t0.Add(time.Duration(s) * time.Second)
				for k, dev := range [2]int{s, s - 3600} {
					if dev < 0 || dev >= total {
						continue
					}
					id := "d" + strconv.Itoa(dev)
					r := &recs[len(ptrs)]
					*r = tag.Record{AppID: "news", DeviceID: id, MessageID: id + "-" + strconv.Itoa(k), Time: now, Kind: tag.KindEvent, Name: "read"}
					if k == 0 {
						r.Kind, r.Name = tag.KindSessionStart, ""
					}
					ptrs = append(ptrs, r)
					offs = append(offs, off)
					off++
				}
			}
			now := t0.Add(time.Duration(base+chunk-1) * time.Second)
			out = e.ApplyBatch(ptrs, offs, now, out[:0])
			out = e.Advance(now, out)
			e.Dirty(func(key, state []byte) {})
			if d := base + chunk; d >= every && d/every != (d-chunk)/every && d <= total {
				h := heapInUse()
				if d > every { // after the first point: the population has settled
					lo, hi = min(lo, h), max(hi, h)
					if lo == 0 {
						lo = h
					}
				}
				held = e.Devices()
				b.Logf("%d devices through, %d held, %d evicted, heap in use %.1f MB (%s)", d, held, e.Stats().Evicted, float64(h)/(1<<20), time.Since(start).Round(time.Second))
			}
		}
		b.StopTimer()
		b.ReportMetric(float64(hi)/float64(lo), "max/min-heap")
		b.ReportMetric(float64(lo)/(1<<20), "min-heap-MB")
		b.ReportMetric(float64(hi)/(1<<20), "max-heap-MB")
		b.ReportMetric(float64(held), "devices-held")
		b.ReportMetric(float64(time.Since(start).Nanoseconds())/float64(2*total), "ns/record")
		if e.Stats().Evicted < uint64(total)*9/10 {
			b.Fatalf("evicted %d of %d devices", e.Stats().Evicted, total)
		}
	}
}
