package bench

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"

	"net/http"
	"net/http/httptest"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/collector"
	"github.com/openengage/engage/pipeline/tagplan"
)

// What one request may cost at the collector (docs/collector.md, Limits):
// the worst bodies we could build at the size limits against typical
// bodies of the same size, and a load of large concurrent requests against
// the memory budget. Both run on an in-memory log that keeps nothing.

const (
	dosWarnKey    = "dos-warn-write-key"
	dosEnforceKey = "dos-enforce-write-key"
)

const dosWarnPlan = `
app: warn
mode: warn
activities: {home: {}, article: {extras: {category: string}}}
events:
  article_read: {extras: {category: string, words: number, premium: bool}}
  shared: {extras: {network: string}}
app_info: {logged_in: bool, plan: string, age: number}
`

const dosEnforcePlan = `
app: enforce
mode: enforce
activities: {home: {}, article: {extras: {category: string}}}
events:
  article_read: {extras: {category: string, words: number, premium: bool}}
  shared: {extras: {network: string}}
app_info: {logged_in: bool, plan: string, age: number}
`

// discardLog acknowledges every write and keeps nothing, so that a long
// run holds no more than the requests in flight.
type discardLog struct{ records atomic.Int64 }

func (d *discardLog) Produce(_ context.Context, msgs []bus.Message) error {
	d.records.Add(int64(len(msgs)))
	return nil
}
func (d *discardLog) Close() error { return nil }

func dosServer(tb testing.TB, mutate func(*collector.Config)) (*collector.Server, *discardLog) {
	tb.Helper()
	warn, err := tagplan.Parse("warn.yaml", []byte(dosWarnPlan))
	if err != nil {
		tb.Fatal(err)
	}
	enforce, err := tagplan.Parse("enforce.yaml", []byte(dosEnforcePlan))
	if err != nil {
		tb.Fatal(err)
	}
	apps, err := collector.NewApps(
		&collector.App{ID: "warn", WriteKeys: []string{dosWarnKey}, Plan: warn},
		&collector.App{ID: "enforce", WriteKeys: []string{dosEnforceKey}, Plan: enforce},
	)
	if err != nil {
		tb.Fatal(err)
	}
	cfg := collector.DefaultConfig()
	if mutate != nil {
		mutate(&cfg)
	}
	log := &discardLog{}
	s, err := collector.New(cfg, apps, log, nil, nil)
	if err != nil {
		tb.Fatal(err)
	}
	return s, log
}

// fillTo writes elements made by elem(i), separated by sep, between open
// and close, as many as fit in size bytes up to the collector's limit of
// records per request; then pads with spaces before close to exactly size
// bytes.
func fillTo(size int, open, sep, close string, elem func(i int) string) []byte {
	var b bytes.Buffer
	b.Grow(size)
	b.WriteString(open)
	for i := 0; i < collector.DefaultMaxRecords; i++ {
		e := elem(i)
		if i > 0 {
			e = sep + e
		}
		if b.Len()+len(e)+len(close) > size {
			break
		}
		b.WriteString(e)
	}
	b.WriteString(strings.Repeat(" ", size-b.Len()-len(close)))
	b.WriteString(close)
	return b.Bytes()
}

func gz(body []byte) []byte {
	var b bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&b, gzip.BestSpeed)
	zw.Write(body)
	zw.Close()
	return b.Bytes()
}

const dosTime = "2026-11-28T09:02:10.120Z"

// typicalRecord is a record as an app sends it: events, screens and app
// info of many devices, with client times.
func typicalRecord(i int) string {
	switch i % 4 {
	case 0:
		return fmt.Sprintf(`{"type":"activity_start","deviceId":"device-%06d","session":"s-%d","name":"article","extras":{"category":"sport"},"time":%q}`, i%5000, i/50, dosTime)
	case 3:
		return fmt.Sprintf(`{"type":"event","deviceId":"device-%06d","name":"shared","activity":"article","extras":{"network":"mastodon"},"time":%q,"messageId":"m-%d"}`, i%5000, dosTime, i)
	default:
		return fmt.Sprintf(`{"type":"event","deviceId":"device-%06d","userId":"user-%06d","name":"article_read","activity":"article","extras":{"category":"sport","words":%d,"premium":false},"time":%q}`, i%5000, i%5000, 300+i%1000, dosTime)
	}
}

// The worst native records we found, each as costly as we could make it
// per byte.
var nativeWorst = map[string]func(i int) string{
	// The tag plan refuses the first records, the decoder the rest: the
	// insertion sort of the rejections was quadratic in this body.
	"refused-then-invalid": func(i int) string {
		if i < 2000 {
			return fmt.Sprintf(`{"type":"event","deviceId":"d%d","name":"not_planned"}`, i)
		}
		return "1"
	},
	// As many records as a request may hold, valid and as short as they
	// can be: per-record work with little to read.
	"tiny-valid": func(i int) string {
		return fmt.Sprintf(`{"type":"event","deviceId":"d%d","name":"shared","time":%q}`, i, dosTime)
	},
	// 64 extras, none planned: every key is marked, sorted and encoded.
	"64-unplanned-extras": func(i int) string {
		var b strings.Builder
		fmt.Fprintf(&b, `{"type":"event","deviceId":"d%d","name":"x%d","time":%q,"extras":{`, i%100, i%7, dosTime)
		for k := range 64 {
			if k > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"k%02d":%d`, 63-k, k)
		}
		b.WriteString("}}")
		return b.String()
	},
	// Strings made of escapes, decoded the slow way, then refused as too
	// long.
	"escaped-strings": func(i int) string {
		return fmt.Sprintf(`{"type":"event","deviceId":"d%d","name":"shared","activity":"%s"}`, i, strings.Repeat(`\u00e9\"`, 2000))
	},
	// Nesting as deep as the decoder allows, in an extras value.
	"deep-nesting": func(i int) string {
		return fmt.Sprintf(`{"type":"event","deviceId":"d%d","name":"shared","extras":{"a":%s%s}}`, i, strings.Repeat("[", 60), strings.Repeat("]", 60))
	},
	// Numbers of thousands of digits.
	"long-numbers": func(i int) string {
		return fmt.Sprintf(`{"type":"job","deviceId":"d%d","name":"login","durationMs":1%s}`, i, strings.Repeat("7", 8000))
	},
	// Long keys: refused after reading.
	"long-keys": func(i int) string {
		return fmt.Sprintf(`{"type":"event","deviceId":"d%d","name":"shared","extras":{"%s":1}}`, i, strings.Repeat("k", 4000))
	},
}

// segmentContext is the context a mobile SDK sends with every message.
func segmentContext(device string) string {
	return `{"device":{"id":"` + device + `","model":"iPhone15,2","type":"ios","token":"a3f1c2d4e5b60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"},"os":{"name":"iOS","version":"17.2"},"app":{"version":"2.3.1","build":"231"},"locale":"fr-FR","timezone":"Europe/Paris","ip":"203.0.113.7","library":{"name":"analytics-ios","version":"4.1.8"},"network":{"wifi":true},"screen":{"width":390,"height":844}}`
}

// typicalMessage is a message of a mobile SDK's batch: one device's
// context, mostly track and screen calls.
func typicalMessage(i int) string {
	ctx := segmentContext("dev-0001")
	switch i % 4 {
	case 0:
		return fmt.Sprintf(`{"type":"screen","name":"article","properties":{"category":"sport"},"context":%s,"anonymousId":"dev-0001","userId":"user-42","timestamp":%q,"messageId":"m-%d"}`, ctx, dosTime, i)
	default:
		return fmt.Sprintf(`{"type":"track","event":"article_read","properties":{"category":"sport","words":%d,"premium":false},"context":%s,"anonymousId":"dev-0001","userId":"user-42","timestamp":%q,"messageId":"m-%d"}`, 300+i, ctx, dosTime, i)
	}
}

var segmentWorst = map[string]func(i int) string{
	// As many messages as fit, as short as they can be.
	"tiny-messages": func(i int) string {
		return fmt.Sprintf(`{"type":"track","event":"shared","userId":"u%d"}`, i)
	},
	// A context of its own for every message: decoded each time, and a
	// device record each time.
	"distinct-contexts": func(i int) string {
		return fmt.Sprintf(`{"type":"track","event":"shared","context":%s,"anonymousId":"dev-%d","timestamp":%q}`, segmentContext(fmt.Sprintf("dev-%d", i)), i, dosTime)
	},
	// Properties of many keys, nested: flattened, sorted, most dropped
	// with a warning each.
	"wide-properties": func(i int) string {
		var b strings.Builder
		fmt.Fprintf(&b, `{"type":"track","event":"shared","userId":"u%d","timestamp":%q,"properties":{`, i, dosTime)
		for k := range 40 {
			if k > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, `"p%d":{"a":1,"b":null,"c":[1]}`, 40-k)
		}
		b.WriteString("}}")
		return b.String()
	},
	// 200 first-level keys: sorted, 64 kept and 136 dropped with a
	// warning each.
	"many-keys": func(i int) string {
		return segmentProps(i, 200, "", func(k int) string { return fmt.Sprintf(`"k%d":%d`, 200-k, k%10) })
	},
	// The same in one nested object: every key flattened.
	"nested-many-keys": func(i int) string {
		return segmentProps(i, 200, `"p":`, func(k int) string { return fmt.Sprintf(`"k%d":%d`, 200-k, k%10) })
	},
	// 200 keys of null: a warning each, nothing else.
	"nulls": func(i int) string {
		return segmentProps(i, 200, "", func(k int) string { return fmt.Sprintf(`"k%d":null`, 200-k) })
	},
	// The same key 200 times: 199 clashes.
	"same-key": func(i int) string {
		return segmentProps(i, 200, "", func(k int) string { return fmt.Sprintf(`"k":%d`, k%10) })
	},
	// Nested objects of an empty array and an empty object: two warnings
	// each, as short as they can be.
	"nested-empties": func(i int) string {
		return segmentProps(i, 100, "", func(k int) string { return fmt.Sprintf(`"p%d":{"a":1,"b":[],"c":{}}`, 100-k) })
	},
	// Keys written with escapes: each one decoded.
	"escaped-keys": func(i int) string {
		return segmentProps(i, 200, "", func(k int) string { return fmt.Sprintf(`"\u00%x%d":1`, 0x41+k%26, k) })
	},
	// 200 keys that all rename to one (k_): clashes ordered by source.
	"renamed-clash": func(i int) string {
		return segmentProps(i, 200, "", func(k int) string { return fmt.Sprintf(`"k%c":%d`, "-. /"[k%4], k%10) })
	},
	// The same key 200 times in one nested object: flattened clashes.
	"nested-same-key": func(i int) string {
		return segmentProps(i, 200, `"p":`, func(k int) string { return fmt.Sprintf(`"a":%d`, k%10) })
	},
	// 200 short keys that are all renamed (x_0_, x_1_…).
	"renamed-keys": func(i int) string {
		return segmentProps(i, 200, "", func(k int) string { return fmt.Sprintf(`"%d.":1`, k) })
	},
	// String values written with escapes.
	"escaped-values": func(i int) string {
		return segmentProps(i, 60, "", func(k int) string { return fmt.Sprintf(`"k%d":"\u00e9"`, k) })
	},
	// The plan refuses the first messages, the decoder the rest.
	"refused-then-invalid": func(i int) string {
		if i < 500 {
			return fmt.Sprintf(`{"type":"track","event":"not_planned","userId":"u%d"}`, i)
		}
		return `{"type":"track"}`
	},
}

// segmentProps is a track message whose properties (nested under parent
// when it is not empty) are n members made by member(k).
func segmentProps(i, n int, parent string, member func(k int) string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `{"type":"track","event":"shared","userId":"u%d","timestamp":%q,"properties":{%s`, i, dosTime, parent)
	if parent != "" {
		b.WriteByte('{')
	}
	for k := range n {
		if k > 0 {
			b.WriteByte(',')
		}
		b.WriteString(member(k))
	}
	if parent != "" {
		b.WriteByte('}')
	}
	b.WriteString("}}")
	return b.String()
}

type dosEndpoint struct {
	name, path, contentType, key string
	gzip                         bool
	typical                      []byte
	worst                        map[string][]byte
}

func dosEndpoints() []dosEndpoint {
	const limit = collector.DefaultMaxBodyBytes
	const segLimit = collector.DefaultMaxSegmentBatch
	array := func(elem func(int) string) []byte { return fillTo(limit, "[", ",", "]", elem) }
	lines := func(elem func(int) string) []byte { return fillTo(limit, "", "\n", "\n", elem) }
	batch := func(elem func(int) string) []byte {
		return fillTo(segLimit, `{"batch":[`, ",", `],"sentAt":"2026-11-28T09:02:11Z"}`, elem)
	}
	eps := []dosEndpoint{
		{name: "native-json", path: "/v1/tags", contentType: "application/json", typical: array(typicalRecord), worst: map[string][]byte{}},
		{name: "ndjson", path: "/v1/tags", contentType: "application/x-ndjson", typical: lines(typicalRecord), worst: map[string][]byte{}},
		{name: "gzip", path: "/v1/tags", contentType: "application/json", gzip: true, typical: gz(array(typicalRecord)), worst: map[string][]byte{}},
		{name: "segment-batch", path: "/v1/batch", contentType: "application/json", typical: batch(typicalMessage), worst: map[string][]byte{}},
	}
	for name, elem := range nativeWorst {
		eps[0].worst[name] = array(elem)
		eps[1].worst[name] = lines(elem)
		eps[2].worst[name] = gz(array(elem))
	}
	// NDJSON only: lines that are not JSON, and empty lines.
	eps[1].worst["malformed-lines"] = lines(func(int) string { return "x" })
	eps[1].worst["empty-lines"] = fillTo(limit, "", "\n", "\n", func(int) string { return "" })
	// gzip only: a bomb that decompresses past the limit.
	eps[2].worst["bomb"] = gz(append(append([]byte("["), bytes.Repeat([]byte(" "), 64<<20)...), ']'))
	for name, elem := range segmentWorst {
		eps[3].worst[name] = batch(elem)
	}
	return eps
}

// serve posts body to h and returns the status.
func serve(h http.Handler, ep dosEndpoint, key string, body []byte) int {
	req := httptest.NewRequest(http.MethodPost, ep.path, bytes.NewReader(body))
	req.Header.Set("Content-Type", ep.contentType)
	if ep.gzip {
		req.Header.Set("Content-Encoding", "gzip")
	}
	req.Header.Set("X-Write-Key", key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code
}

// cpuTime is the CPU time the process has used, in every thread: the
// garbage collector's work counts, the other processes of the machine do
// not.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkCollectorWorstVsTypical: for each endpoint, what the collector
// spends on each of the worst bodies we could build at the size limit
// against a typical body of the same size (decompressed size for gzip), all
// in the same run. Each iteration serves every body once, round robin, reps
// times; a body's cost is its least over the run, in CPU time of the
// process (the machine is shared: wall time measures the neighbours too)
// and in wall time. Reports, per endpoint, the typical body's times, the
// CPU ratio of each worst body and the largest ratios (target: at most 3).
func BenchmarkCollectorWorstVsTypical(b *testing.B) {
	const reps = 7
	for _, ep := range dosEndpoints() {
		b.Run(ep.name, func(b *testing.B) {
			srv, _ := dosServer(b, nil)
			h := srv.Handler()
			names := []string{"typical"}
			for n := range ep.worst {
				names = append(names, n)
			}
			slices.Sort(names[1:])
			body := func(n string) []byte {
				if n == "typical" {
					return ep.typical
				}
				return ep.worst[n]
			}
			if code := serve(h, ep, dosWarnKey, ep.typical); code != http.StatusOK {
				b.Fatalf("typical body: status %d", code)
			}
			cpu, wall := map[string]time.Duration{}, map[string]time.Duration{}
			least := func(m map[string]time.Duration, n string, d time.Duration) {
				if v, ok := m[n]; !ok || d < v {
					m[n] = d
				}
			}
			for b.Loop() {
				for range reps {
					for _, n := range names {
						key := dosWarnKey
						if strings.HasPrefix(n, "refused") {
							key = dosEnforceKey
						}
						c0, w0 := cpuTime(), time.Now()
						serve(h, ep, key, body(n))
						least(wall, n, time.Since(w0))
						least(cpu, n, cpuTime()-c0)
					}
				}
			}
			worstCPU, worstWall, worstName := 0.0, 0.0, ""
			for _, n := range names[1:] {
				r := float64(cpu[n]) / float64(cpu["typical"])
				b.ReportMetric(r, n+"/typical")
				if r > worstCPU {
					worstCPU, worstName = r, n
				}
				worstWall = max(worstWall, float64(wall[n])/float64(wall["typical"]))
			}
			b.ReportMetric(float64(cpu["typical"].Microseconds())/1000, "typical-cpu-ms")
			b.ReportMetric(float64(wall["typical"].Microseconds())/1000, "typical-wall-ms")
			b.ReportMetric(worstCPU, "worst/typical")
			b.ReportMetric(worstWall, "worst/typical-wall")
			b.Logf("%s: typical %v CPU (%v wall); worst %s %v CPU (%.2fx; worst wall ratio %.2fx)", ep.name, cpu["typical"], wall["typical"], worstName, cpu[worstName], worstCPU, worstWall)
			b.ReportMetric(0, "ns/op")
		})
	}
}

// TestCollectorMemoryBudgetUnderLoad fires many concurrent large requests
// (native bodies at the size limit, typical and worst, plain and gzipped,
// and Segment batches) at a collector with a small memory budget for a few
// seconds, sampling the heap: it stays within the budget plus a fixed
// overhead, and the requests beyond the budget get a quick 503 (the clients
// then wait a little, as they would for Retry-After).
//
// The budget bounds what the requests in flight hold; the garbage they
// leave is the garbage collector's, which lets it pile up to the live heap
// again (GOGC=100) unless a memory limit tells it otherwise. engage collect
// sets that limit to the budget plus 64 MiB (unless GOMEMLIMIT is set); the
// test does the same above its own baseline (the bodies it sends).
func TestCollectorMemoryBudgetUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("load test")
	}
	const budget = 96 << 20
	const clients = 48
	const headroom = 64 << 20
	duration := 3 * time.Second
	srv, log := dosServer(t, func(c *collector.Config) { c.MemoryBudget = budget })
	h := srv.Handler()
	eps := dosEndpoints()
	type job struct {
		ep   dosEndpoint
		key  string
		body []byte
	}
	var jobs []job
	for _, ep := range eps {
		jobs = append(jobs, job{ep, dosWarnKey, ep.typical})
		for n, body := range ep.worst {
			key := dosWarnKey
			if strings.HasPrefix(n, "refused") {
				key = dosEnforceKey
			}
			jobs = append(jobs, job{ep, key, body})
		}
	}
	runtime.GC()
	var base runtime.MemStats
	runtime.ReadMemStats(&base)
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(int64(base.HeapInuse) + budget + headroom))

	var peak atomic.Uint64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				if m.HeapInuse > peak.Load() {
					peak.Store(m.HeapInuse)
				}
			}
		}
	}()
	var codes sync.Map
	var served atomic.Int64
	deadline := time.Now().Add(duration)
	var wg sync.WaitGroup
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := c; time.Now().Before(deadline); i++ {
				j := jobs[i%len(jobs)]
				code := serve(h, j.ep, j.key, j.body)
				n, _ := codes.LoadOrStore(code, new(atomic.Int64))
				n.(*atomic.Int64).Add(1)
				served.Add(1)
				if code == http.StatusServiceUnavailable {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	wg.Wait()
	close(stop)
	<-sampled

	counts := map[int]int64{}
	codes.Range(func(k, v any) bool { counts[k.(int)] = v.(*atomic.Int64).Load(); return true })
	// The bodies themselves live in the test: the baseline holds them.
	overhead := uint64(headroom)
	p := peak.Load()
	var end runtime.MemStats
	runtime.ReadMemStats(&end)
	t.Logf("%d requests in %v from %d clients: statuses %v; %d records acknowledged; %d collections", served.Load(), duration, clients, counts, log.records.Load(), end.NumGC-base.NumGC)
	t.Logf("heap in use: %.1f MiB before the load (the test's bodies), peak %.1f MiB under it: %.1f MiB above; budget %d MiB, allowed above: %d MiB", mib(base.HeapInuse), mib(p), mib(p-min(p, base.HeapInuse)), budget>>20, (budget+overhead)>>20)
	if counts[http.StatusOK] == 0 {
		t.Fatal("no request was accepted")
	}
	if counts[http.StatusServiceUnavailable] == 0 {
		t.Fatal("no request met the budget: the load is too light to show it")
	}
	if above := p - min(p, base.HeapInuse); above > budget+overhead {
		t.Fatalf("heap in use rose %.1f MiB above the baseline: more than the budget (%d MiB) and %d MiB", mib(above), budget>>20, overhead>>20)
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }
