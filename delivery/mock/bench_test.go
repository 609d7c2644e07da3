package mock_test

import (
	"runtime"
	"testing"
	"time"

	"github.com/openengage/engage/delivery/mock"
)

// BenchmarkAPNsMock pushes through apns2 to the mock with Apple's round trip
// of about 40 ms from 2000 goroutines (RunParallel: b.Loop has no concurrent
// form): what the mock sustains on this machine, the client included.
func BenchmarkAPNsMock(b *testing.B) {
	const workers, lat = 2000, 40 * time.Millisecond
	m, err := mock.StartAPNs(mock.APNsConfig{Latency: lat, KeepRecords: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	p8, err := m.NewKey(team, keyID)
	if err != nil {
		b.Fatal(err)
	}
	c, _ := tokenClient(b, m, p8, team, keyID)
	b.ReportAllocs()
	b.SetParallelism(workers/runtime.GOMAXPROCS(0) + 1)
	start := time.Now()
	b.RunParallel(func(pb *testing.PB) {
		n := alert(devToken(1))
		for pb.Next() {
			res, err := c.Push(n)
			if err != nil || !res.Sent() {
				b.Errorf("push: %v %v", res, err)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "pushes/s")
	b.ReportMetric(float64(m.Stats().MaxInFlight), "max-in-flight")
}
