package bench

import (
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openengage/engage/delivery/mock"
	"github.com/openengage/engage/delivery/mock/gorush"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
)

// gorushTokensPerNotification is how many device tokens each gorush
// notification carries: gorush's best case is at least
// ios.max_concurrent_pushes / core.worker_num (100 / cores) tokens per
// notification, since a worker waits for all the tokens of its notification
// before taking the next (deploy/gorush/README.md).
const gorushTokensPerNotification = 100

// gorushMaxQueued is how many notifications may wait in gorush's queue
// (capacity 8192; past it v1.22.0 answers 500 and drops the rest of the
// request).
const gorushMaxQueued = 4000

// BenchmarkDeliverVsGorush sends b.N notifications with engage's dispatcher
// and then b.N with gorush v1.22, in one run, to one APNs mock answering
// after a simulated 40 ms round trip (like Apple's), and reports both rates
// and their ratio.
//
//   - engage: as BenchmarkDeliverToAPNs, the dispatcher in process on the
//     real broker (8 partitions, attempts and results written), b.N
//     deliveries already in its topic, to the mock's TLS port.
//   - gorush: the unmodified binary ($ENGAGE_GORUSH_BIN, default
//     ~/.cache/openengage/bin/gorush-1.22; built by deploy/gorush/build.sh)
//     with its default configuration but for what reaches the mock and
//     authenticates (core.http_proxy to the mock's CONNECT port, SSL_CERT_FILE
//     its CA, ios token key, key id, team id; android off; API on
//     127.0.0.1), fed b.N device tokens through /api/push, 100 per
//     notification, 100 notifications per request, at most 4000
//     notifications queued.
//
// Each side authenticates as its own team; the mock's records (OnRecord)
// are split by team. A rate is notifications accepted over the time from
// the arrival of the first accepted request to the answer of the last.
// Use -benchtime Nx with N large enough for a few seconds on each side
// (gorush does about 2,400/s at 40 ms).
func BenchmarkDeliverVsGorush(b *testing.B) {
	bin, err := gorush.Binary()
	if err != nil {
		// go test shows a benchmark's skip message only with -v: say it anyway.
		fmt.Fprintf(os.Stderr, "BenchmarkDeliverVsGorush skipped: %v\n", err)
		b.Skipf("gorush side: %v", err)
	}
	brokers := kafkatest.RealBrokers(b)
	const lat = 40 * time.Millisecond
	engageApp := apnsApp{team: "TEAMENGAGE", key: "KEYENGAGE1", topic: "com.example.engage"}
	gorushApp := apnsApp{team: "TEAMGORUSH", key: "KEYGORUSH1", topic: "com.example.gorush"}
	var engageSide, gorushSide, otherSide sideCount
	m, err := mock.StartAPNs(mock.APNsConfig{Latency: lat, KeepRecords: -1, Connect: true, OnRecord: func(r mock.APNsRecord) {
		switch r.TeamID {
		case engageApp.team:
			engageSide.record(r)
		case gorushApp.team:
			gorushSide.record(r)
		default:
			otherSide.record(r)
		}
	}})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	b.ResetTimer()

	// (a) engage deliver.
	run := prepareDeliver(b, brokers, m, engageApp, b.N)
	cpu0 := selfCPU(b)
	stop := run()
	wait := time.Minute + time.Duration(b.N)*time.Millisecond // at least 1000/s
	deadline := time.Now().Add(wait)
	for engageSide.answered() < int64(b.N) {
		if time.Now().After(deadline) {
			stop()
			b.Fatalf("engage: %d of %d answered after %v (the mock: %+v, %d from neither side)", engageSide.answered(), b.N, wait, m.Stats(), otherSide.answered())
		}
		time.Sleep(2 * time.Millisecond)
	}
	stop()
	engageCPU := selfCPU(b) - cpu0

	// (b) gorush.
	p8, err := m.NewKey(gorushApp.team, gorushApp.key, gorushApp.topic)
	if err != nil {
		b.Fatal(err)
	}
	budget := 2*time.Minute + time.Duration(b.N)*2*time.Millisecond // at least 500/s
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	g, err := gorush.Start(ctx, gorush.Config{Bin: bin, Dir: b.TempDir(), Proxy: m.ConnectURL(), CAPEM: m.CAPEM(), KeyP8: p8, KeyID: gorushApp.key, TeamID: gorushApp.team})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		if err := g.Stop(); err != nil {
			b.Error(err)
		}
	}()
	tokens := make([]string, b.N)
	for i := range tokens {
		tokens[i] = fmt.Sprintf("ee%062x", i) // 64 hex digits, not engage's tokens
	}
	tmpl := gorush.Notification{Topic: gorushApp.topic, Title: "20% off this week", Message: "The styles you looked at are on sale until Sunday.", Sound: "default"}
	sent := make(chan error, 1)
	cpu0 = selfCPU(b)
	go func() { sent <- g.SendTokens(ctx, tmpl, tokens, gorushTokensPerNotification, gorushMaxQueued) }()
	for gorushSide.answered() < int64(b.N) {
		select {
		case err := <-sent:
			if err != nil {
				b.Fatalf("gorush: feeding /api/push: %v; log:\n%s", err, g.LogTail(20))
			}
			sent = nil
		case <-ctx.Done():
			st, _ := g.Stats(context.Background())
			b.Fatalf("gorush: %d of %d answered after %v; gorush stats %+v; log:\n%s", gorushSide.answered(), b.N, budget, st, g.LogTail(20))
		case <-time.After(2 * time.Millisecond):
		}
	}
	if sent != nil {
		if err := <-sent; err != nil {
			b.Fatalf("gorush: feeding /api/push: %v", err)
		}
	}
	mockCPU := selfCPU(b) - cpu0
	b.StopTimer()
	// gorush counts a push when it has read the answer, just after the mock
	// recorded it.
	var gst gorush.AppStats
	for {
		if gst, err = g.Stats(ctx); err != nil {
			b.Fatal(err)
		}
		if gst.IOS.PushSuccess+gst.IOS.PushError >= int64(b.N) || ctx.Err() != nil {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}

	for _, c := range []struct {
		name     string
		s        *sideCount
		tunneled int64
	}{{"engage", &engageSide, 0}, {"gorush", &gorushSide, int64(b.N)}} {
		if a, r := c.s.accepted.Load(), c.s.refused.Load(); a != int64(b.N) || r != 0 {
			b.Errorf("%s: the mock accepted %d and refused %d, want %d accepted (each once)", c.name, a, r, b.N)
		}
		if t := c.s.tunneled.Load(); t != c.tunneled {
			b.Errorf("%s: %d requests came through the CONNECT port, want %d", c.name, t, c.tunneled)
		}
	}
	if n := otherSide.answered(); n != 0 {
		b.Errorf("the mock answered %d requests from neither side", n)
	}
	if gst.IOS.PushSuccess != int64(b.N) || gst.IOS.PushError != 0 {
		b.Errorf("gorush counts %d successes and %d errors, want %d successes", gst.IOS.PushSuccess, gst.IOS.PushError, b.N)
	}
	if err := g.Stop(); err != nil {
		b.Error(err)
	}
	er, gr := engageSide.rate(), gorushSide.rate()
	b.ReportMetric(er, "engage-notifications/s")
	b.ReportMetric(gr, "gorush-notifications/s")
	b.ReportMetric(er/gr, "engage/gorush")
	// Little's law: the requests each side kept in flight on average.
	b.ReportMetric(er*lat.Seconds(), "engage-in-flight")
	b.ReportMetric(gr*lat.Seconds(), "gorush-in-flight")
	// Processor time per 1000 notifications: this process (dispatcher,
	// Kafka client and mock) while engage sent; this process (the mock
	// alone) while gorush sent; gorush's own, start to stop. The broker's is
	// not counted.
	perK := func(d time.Duration) float64 { return d.Seconds() * 1e6 / float64(b.N) }
	b.ReportMetric(perK(engageCPU), "engage+mock-cpu-ms/1k")
	b.ReportMetric(perK(mockCPU), "mock-cpu-ms/1k")
	b.ReportMetric(perK(g.CPUTime()), "gorush-cpu-ms/1k")
	b.ReportMetric(0, "ns/op")
}

// selfCPU is the processor time this process has used.
func selfCPU(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// sideCount is what the mock answered one side; safe for concurrent use.
type sideCount struct {
	accepted, refused, tunneled atomic.Int64
	first, last                 atomic.Int64 // unix ns: first accepted request's arrival, last accepted answer
}

func (s *sideCount) record(r mock.APNsRecord) {
	now := time.Now().UnixNano() // OnRecord runs after the latency, before the answer
	if r.Tunnel != "" {
		s.tunneled.Add(1)
	}
	if r.Status != 200 {
		s.refused.Add(1)
		return
	}
	s.accepted.Add(1)
	for t := r.Time.UnixNano(); ; {
		v := s.first.Load()
		if (v != 0 && v <= t) || s.first.CompareAndSwap(v, t) {
			break
		}
	}
	for {
		v := s.last.Load()
		if v >= now || s.last.CompareAndSwap(v, now) {
			break
		}
	}
}

func (s *sideCount) answered() int64 { return s.accepted.Load() + s.refused.Load() }

// rate is notifications accepted per second, from the first accepted
// request's arrival to the last one's answer.
func (s *sideCount) rate() float64 {
	span := time.Duration(s.last.Load() - s.first.Load())
	if span <= 0 {
		return 0
	}
	return float64(s.accepted.Load()) / span.Seconds()
}
