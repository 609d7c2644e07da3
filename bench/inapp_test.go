package bench

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/openengage/engage/delivery/inbox"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/collector"
)

// BenchmarkInAppFetch is the apps asking the collector for their in-app
// messages (GET /v1/inapp, write key, device, screen) over loopback HTTP,
// with 1M devices holding messages in the
// inbox the collector follows: the latency of each request (p50, p99,
// max) at a fixed rate, and the most requests per second.
func BenchmarkInAppFetch(b *testing.B) {
	devices := 1_000_000
	if v, err := strconv.Atoi(getenv("ENGAGE_BENCH_DEVICES")); err == nil && v > 0 {
		devices = v
	}
	apps, err := collector.NewApps(&collector.App{ID: "news", WriteKeys: []string{"bench-write-key"}})
	if err != nil {
		b.Fatal(err)
	}
	s, err := collector.New(collector.DefaultConfig(), apps, bus.NewMemory("tags", 1), nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	store := inbox.NewStore()
	now := time.Now()
	for i := range devices {
		msgs := []inbox.Message{{DeliveryID: fmt.Sprintf("%032x", i), Campaign: "tutorial", Title: "Swipe left", Body: "to see more articles", Layout: "modal",
			Buttons: []inbox.Button{{Label: "OK"}}, Activities: []string{"home"}, Time: now, Expires: now.Add(time.Hour)}}
		if i%3 == 0 {
			msgs = append(msgs, inbox.Message{DeliveryID: fmt.Sprintf("%032x", devices+i), Campaign: "promo", Title: "20% off", Layout: "banner", Time: now, Expires: now.Add(time.Hour)})
		}
		if err := store.Apply([]byte(fmt.Sprintf("news/d%07d", i)), inbox.Encode(msgs)); err != nil {
			b.Fatal(err)
		}
	}
	s.SetInbox(store)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{Handler: s.Handler()}
	go func() { _ = srv.Serve(ln) }()
	defer srv.Close()
	url := "http://" + ln.Addr().String() + "/v1/inapp"
	tr := &http.Transport{MaxIdleConnsPerHost: 512, MaxConnsPerHost: 512}
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	fetch := func(i int) (time.Duration, error) {
		req, _ := http.NewRequest(http.MethodGet, fmt.Sprintf("%s?device=d%07d&activity=home", url, (i*7919)%devices), nil)
		req.SetBasicAuth("bench-write-key", "")
		t0 := time.Now()
		resp, err := client.Do(req)
		if err != nil {
			return 0, err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return 0, fmt.Errorf("status %d", resp.StatusCode)
		}
		return time.Since(t0), nil
	}
	report := func(b *testing.B, all []time.Duration, took time.Duration) {
		slices.Sort(all)
		q := func(f float64) float64 { return float64(all[int(f*float64(len(all)-1))].Microseconds()) / 1000 }
		b.ReportMetric(float64(len(all))/took.Seconds(), "requests/s")
		b.ReportMetric(q(0.5), "p50-ms")
		b.ReportMetric(q(0.99), "p99-ms")
		b.ReportMetric(float64(all[len(all)-1].Microseconds())/1000, "max-ms")
		b.ReportMetric(0, "ns/op")
	}
	// "rate": requests at a fixed rate (ENGAGE_BENCH_RATE, default 5000/s),
	// each on time whatever the ones before (an open loop, as apps
	// opening sessions are).
	b.Run("rate", func(b *testing.B) {
		rate := 5000
		if v, err := strconv.Atoi(getenv("ENGAGE_BENCH_RATE")); err == nil && v > 0 {
			rate = v
		}
		var mu sync.Mutex
		var all []time.Duration
		var wg sync.WaitGroup
		sem := make(chan struct{}, 2048)
		b.ResetTimer()
		start := time.Now()
		for i := range b.N {
			time.Sleep(time.Until(start.Add(time.Duration(i) * time.Second / time.Duration(rate))))
			sem <- struct{}{}
			wg.Add(1)
			go func() {
				defer func() { <-sem; wg.Done() }()
				d, err := fetch(i)
				if err != nil {
					b.Error(err)
					return
				}
				mu.Lock()
				all = append(all, d)
				mu.Unlock()
			}()
		}
		wg.Wait()
		took := time.Since(start)
		b.StopTimer()
		report(b, all, took)
	})
	// "max": 64 clients asking as fast as they can: the most the collector
	// answers, and the latency when it is saturated.
	b.Run("max", func(b *testing.B) {
		const clients = 64
		lat := make([][]time.Duration, clients)
		next := make(chan int, 1024)
		var wg sync.WaitGroup
		b.ResetTimer()
		start := time.Now()
		go func() {
			for i := range b.N {
				next <- i
			}
			close(next)
		}()
		for c := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					d, err := fetch(i)
					if err != nil {
						b.Error(err)
						return
					}
					lat[c] = append(lat[c], d)
				}
			}()
		}
		wg.Wait()
		took := time.Since(start)
		b.StopTimer()
		report(b, slices.Concat(lat...), took)
	})
}
