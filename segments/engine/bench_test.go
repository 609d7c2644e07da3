package engine

import (
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
)

// benchSegments is a realistic mix of 50 segments of one app (news,
// commerce and gaming features): windows, all-history counts, first and
// last times, attributes, device fields, unchanged values, references
// and samples.
var benchSegments = []string{
	`did event "article_read" at least 3 times in the last 7d`,
	`did event "article_read" where category = "sport" at least 2 times in the last 30d`,
	`did event "article_read" where category = "politics" in the last 7d`,
	`did event "video_play" at least 5 times in the last 30d`,
	`did event "video_play" where seconds > 60 in the last 1d`,
	`did event "share" where network in ["facebook", "twitter"] at least 5 times in the last 30d`,
	`did event "share" in the last 1d`,
	`did event "add_to_cart" in the last 7d and not did event "purchase" in the last 7d`,
	`did event "purchase" at least 2 times in the last 30d`,
	`did activity "category" where name = "shoes" at least 2 times in the last 30d`,
	`did activity "category" where name = "bags" at least 2 times in the last 30d`,
	`did activity "product" at least 10 times in the last 7d`,
	`did session at least 3 times in the last 7d`,
	`did session fewer than 2 times in the last 14d`,
	`did error "connection_failure" at least 3 times in the last 1d`,
	`did crash "oom" in the last 7d`,
	`did job "upload" taking more than 5s in the last 7d`,
	`did event "search" at least 3 times in the last 1h`,
	`did activity "settings" in the last 30d`,
	`did event "level_up" exactly once in the last 7d`,
	`did event "subscribe"`,
	`did not event "rate_app"`,
	`did activity "login" and did not event "logged_in"`,
	`did event "tutorial_done"`,
	`did session more than 20 times`,
	`first_session within 1d`,
	`first_session between 2d and 3d ago`,
	`first_session between 3d and 4d ago and did activity "login" and did not event "logged_in"`,
	`last_seen more than 14d ago`,
	`last_seen more than 30d ago`,
	`last event "purchase" more than 30d ago`,
	`app_info "logged_in" = true`,
	`not app_info "logged_in" = true`,
	`app_info "favorite_topic" in ["football", "tennis"]`,
	`app_info "plan" = "premium"`,
	`app_info "subscription_expiry" between now and now + 7d`,
	`app_info "level" >= 10`,
	`app_info "birthday" < now - 18y`,
	`app_info "newsletter" = true and app_info "plan" != "premium"`,
	`platform = "ios" and app_version >= "3.2"`,
	`country in ["FR", "BE", "CH"]`,
	`locale starts with "en"`,
	`app_info "level" unchanged for 3d and last_seen within 1d`,
	`app_info "plan" unchanged for 30d`,
	`segment "s00" and sample 10%`,
	`segment "s05" and sample 1%`,
	`segment "s28" and did session at least 5 times`,
	`sample 50% salt "ab-test-1"`,
	`segment "s31" and segment "s12"`,
	`segment "s03" or segment "s04"`,
}

// typicalSegments is the "typical rule set" of the state-size target: 4
// did with a window, 2 since, 2 app_info, 1 unchanged, 1 sample.
var typicalSegments = []string{
	`did event "article_read" at least 3 times in the last 7d`,
	`did event "share" where network in ["facebook", "twitter"] at least 2 times in the last 30d`,
	`did activity "category" where name = "shoes" at least 2 times in the last 30d`,
	`did session at least 3 times in the last 7d`,
	`first_session between 3d and 4d ago`,
	`last_seen more than 14d ago`,
	`app_info "logged_in" = true`,
	`app_info "favorite_topic" in ["football", "tennis"]`,
	`app_info "level" unchanged for 3d`,
	`sample 1%`,
}

func parseSegments(tb testing.TB, app string, texts []string) []*segments.Segment {
	var segs []*segments.Segment
	for i, text := range texts {
		n, err := segments.Parse(text)
		if err != nil {
			tb.Fatalf("%s: %v", text, err)
		}
		segs = append(segs, &segments.Segment{App: app, Name: fmt.Sprintf("s%02d", i), Text: text, Expr: n, Version: 1})
	}
	return segs
}

// benchStream generates a realistic stream: mostly events and screens,
// some sessions, a few app_info and device records, over many devices.
type benchStream struct {
	r     *rand.Rand
	n     int // devices
	idbuf []byte
	ids   []byte // device ids of a batch
	msgs  []string
	pool  []tag.Record
	devs  []int32
	i     int
	clock time.Time
}

const benchPool = 1 << 20

func newBenchStream(devices int, seed uint64, start time.Time) *benchStream {
	s := &benchStream{r: rand.New(rand.NewPCG(seed, 1)), clock: start, n: devices}
	s.msgs = make([]string, benchPool)
	for i := range s.msgs {
		s.msgs[i] = "msg-" + strconv.Itoa(int(seed)) + "-" + strconv.Itoa(i)
	}
	str := func(k, v string) tag.Extra { return tag.Extra{Key: k, Value: tag.String(v)} }
	num := func(k string, v float64) tag.Extra { return tag.Extra{Key: k, Value: tag.Number(v)} }
	s.pool = make([]tag.Record, benchPool)
	s.devs = make([]int32, benchPool)
	cats := []string{"sport", "politics", "culture", "tech"}
	nets := []string{"facebook", "twitter", "email"}
	for i := range s.pool {
		r := &s.pool[i]
		r.AppID = "news"
		switch x := s.r.IntN(1000); {
		case x < 250:
			r.Kind, r.Name = tag.KindEvent, "article_read"
			r.Extras = []tag.Extra{str("category", cats[s.r.IntN(len(cats))])}
		case x < 350:
			r.Kind, r.Name = tag.KindEvent, "video_play"
			r.Extras = []tag.Extra{num("seconds", float64(s.r.IntN(300)))}
		case x < 400:
			r.Kind, r.Name = tag.KindEvent, "share"
			r.Extras = []tag.Extra{str("network", nets[s.r.IntN(len(nets))])}
		case x < 480:
			r.Kind, r.Name = tag.KindEvent, "search"
		case x < 500:
			r.Kind, r.Name = tag.KindEvent, []string{"add_to_cart", "purchase", "level_up", "subscribe", "logged_in", "tutorial_done"}[s.r.IntN(6)]
		case x < 650:
			r.Kind, r.Name = tag.KindEvent, []string{"scroll", "tap", "like", "comment"}[s.r.IntN(4)]
		case x < 850:
			r.Kind = tag.KindActivityStart
			r.Name = []string{"home", "category", "product", "settings", "login", "article"}[s.r.IntN(6)]
			if r.Name == "category" {
				r.Extras = []tag.Extra{str("name", []string{"shoes", "bags", "hats"}[s.r.IntN(3)])}
			}
		case x < 930:
			r.Kind = tag.KindSessionStart
		case x < 960:
			r.Kind = tag.KindAppInfo
			r.AppInfo = []tag.Extra{
				{Key: "favorite_topic", Value: tag.String([]string{"football", "tennis", "cooking"}[s.r.IntN(3)])},
				{Key: "level", Value: tag.Number(float64(s.r.IntN(20)))},
				{Key: "logged_in", Value: tag.Bool(s.r.IntN(2) == 0)},
			}
		case x < 970:
			r.Kind = tag.KindDevice
			r.Device = &tag.DeviceInfo{Platform: []string{"ios", "android"}[s.r.IntN(2)], AppVersion: []string{"3.1", "3.2", "3.10"}[s.r.IntN(3)],
				Locale: []string{"en-US", "fr-FR"}[s.r.IntN(2)], Country: []string{"US", "FR", "BE"}[s.r.IntN(3)]}
		case x < 990:
			r.Kind, r.Name = tag.KindError, "connection_failure"
		case x < 995:
			r.Kind, r.Name = tag.KindJob, "upload"
			r.Duration = time.Duration(s.r.IntN(10000)) * time.Millisecond
		default:
			r.Kind, r.Name = tag.KindCrash, "oom"
		}
		s.devs[i] = int32(s.r.IntN(devices))
	}
	return s
}

// nextCopy is next for a batch: the record keeps its own device id.
func (s *benchStream) nextCopy(step time.Duration) *tag.Record {
	i := s.i & (benchPool - 1)
	r := &s.pool[i]
	s.clock = s.clock.Add(step)
	dev := (int(s.devs[i]) + s.i>>20) % s.n
	s.ids = slices.Grow(s.ids, 16)
	start := len(s.ids)
	s.ids = strconv.AppendInt(append(s.ids, "device-"...), int64(dev), 10)
	if len(s.ids) > 1<<16 {
		s.ids = make([]byte, 0, 1<<16) // the old buffer stays with the records that alias it
		start = 0
		s.ids = strconv.AppendInt(append(s.ids, "device-"...), int64(dev), 10)
	}
	r.DeviceID = unsafe.String(&s.ids[start], len(s.ids)-start)
	r.MessageID = s.msgs[i]
	r.Time = s.clock
	s.i++
	return r
}

// next returns the next record, at the clock advanced by step. Its device
// id is written to a buffer that the next record reuses, the way a record
// decoded with tag's shared decoding aliases its message.
func (s *benchStream) next(step time.Duration) *tag.Record {
	i := s.i & (benchPool - 1)
	r := &s.pool[i]
	s.clock = s.clock.Add(step)
	dev := (int(s.devs[i]) + s.i>>20) % s.n
	s.idbuf = strconv.AppendInt(append(s.idbuf[:0], "device-"...), int64(dev), 10)
	r.DeviceID = unsafe.String(&s.idbuf[0], len(s.idbuf))
	r.MessageID = s.msgs[i]
	r.Time = s.clock
	s.i++
	return r
}

// cpuTime returns the CPU time the process has used (user and system).
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func heapBytes() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}

// BenchmarkApply measures the engine's throughput in process: 1M devices
// with some history (5 records each over 30 days), 50 segments, a
// realistic stream with a simulated clock (1 ms of event time per record)
// and Advance every 4096 records. BenchmarkApplyChangelog also encodes the
// changed states for the changelog (Dirty) every 4096 records, as the
// processor does.
func BenchmarkApply(b *testing.B) { benchApply(b, 1) }

// BenchmarkApplyBatch is BenchmarkApply with ApplyBatch, 256 records at
// a time.
func BenchmarkApplyBatch(b *testing.B) { benchApply(b, 256) }

func benchApply(b *testing.B, batch int) {
	devices := 1_000_000
	if testing.Short() {
		devices = 100_000
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	s := newBenchStream(devices, 1, start)
	base := heapBytes()
	e := New(Options{})
	if _, _, err := e.SetSegments(parseSegments(b, "news", benchSegments), start); err != nil {
		b.Fatal(err)
	}
	var out []Change
	var offset int64
	warm := 5 * devices
	step := 30 * 24 * time.Hour / time.Duration(warm)
	for range warm {
		offset++
		out = e.Apply(s.next(step), offset, s.clock, out[:0])
	}
	out = e.Advance(s.clock, out[:0])
	e.Dirty(func(k, st []byte) {})
	heap := float64(heapBytes()-base) / float64(e.Devices())
	state := stateBytes(e)
	changes, timers0 := 0, e.Stats().Timers
	if path := os.Getenv("ENGINE_BENCH_CPUPROFILE"); path != "" {
		// A profile of the measured phase only (go test -cpuprofile
		// includes building the history).
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		defer pprof.StopCPUProfile()
	}
	b.ReportAllocs()
	cpu0 := cpuTime()
	n := 0
	recs := make([]*tag.Record, 0, batch)
	offsets := make([]int64, 0, batch)
	for b.Loop() {
		offset++
		if batch == 1 {
			out = e.Apply(s.next(time.Millisecond), offset, s.clock, out[:0])
		} else if recs, offsets = append(recs, s.nextCopy(time.Millisecond)), append(offsets, offset); len(recs) == batch {
			out = e.ApplyBatch(recs, offsets, s.clock, out[:0])
			recs, offsets = recs[:0], offsets[:0]
		}
		changes += len(out)
		out = out[:0]
		if n++; n&4095 == 0 {
			out = e.Advance(s.clock, out[:0])
			changes += len(out)
			e.Dirty(func(k, st []byte) {})
		}
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "events/s")
	// Per CPU-second of the whole process: the engine's goroutine and the
	// garbage collector's work on the other core.
	b.ReportMetric(float64(n)/cpu.Seconds(), "events/cpu-s")
	b.ReportMetric(float64(changes)/float64(n), "changes/event")
	b.ReportMetric(float64(e.Stats().Timers-timers0)/float64(n), "timers/event")
	b.ReportMetric(float64(e.Devices()), "devices")
	b.ReportMetric(heap, "heap-bytes/device")
	b.ReportMetric(state, "state-bytes/device")
}

// stateBytes returns the mean size of the states of a sample of devices.
func stateBytes(e *Engine) float64 {
	var total, n int
	e.Snapshot(func(k, st []byte) {
		if k[0] != 0 && n < 100_000 {
			total += len(st)
			n++
		}
	})
	return float64(total) / float64(n)
}

// BenchmarkStateBytes reports the changelog state size per device for the
// typical rule set, after 30 days of a realistic history per device; each
// iteration encodes one device's state.
func BenchmarkStateBytes(b *testing.B) {
	e := New(Options{})
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, _, err := e.SetSegments(parseSegments(b, "news", typicalSegments), start); err != nil {
		b.Fatal(err)
	}
	devices := 20_000
	s := newBenchStream(devices, 2, start)
	var out []Change
	var offset int64
	records := 40 * devices // 40 records a device over 30 days
	step := 30 * 24 * time.Hour / time.Duration(records)
	for range records {
		offset++
		out = e.Apply(s.next(step), offset, s.clock, out[:0])
	}
	size := stateBytes(e)
	// The loop measures encoding one state.
	devs := e.apps["news"].devs
	var buf []byte
	i := 0
	for b.Loop() {
		buf = e.appendState(buf[:0], devs[i%len(devs)])
		i++
	}
	b.ReportMetric(size, "state-bytes/device")
}

// BenchmarkRestore measures restoring device states from the changelog
// (the 50-segment set, 200k devices with 30 days of history).
func BenchmarkRestore(b *testing.B) {
	segs := parseSegments(b, "news", benchSegments)
	e := New(Options{})
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, _, err := e.SetSegments(segs, start); err != nil {
		b.Fatal(err)
	}
	devices := 200_000
	s := newBenchStream(devices, 3, start)
	var out []Change
	var offset int64
	records := 10 * devices
	step := 30 * 24 * time.Hour / time.Duration(records)
	for range records {
		offset++
		out = e.Apply(s.next(step), offset, s.clock, out[:0])
	}
	type kv struct{ k, v []byte }
	var log []kv
	e.Snapshot(func(k, st []byte) { log = append(log, kv{append([]byte(nil), k...), append([]byte(nil), st...)}) })
	b.ResetTimer()
	n := 0
	for b.Loop() {
		r := New(Options{})
		if _, _, err := r.SetSegments(segs, s.clock); err != nil {
			b.Fatal(err)
		}
		for _, x := range log {
			if err := r.Restore(x.k, x.v); err != nil {
				b.Fatal(err)
			}
		}
		n += len(log)
	}
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkAdvance measures timers: 200k devices with a week of history
// under the 50 segments; each iteration advances the clock by a minute and
// fires what is due (run it with -benchtime 20000x: two weeks).
func BenchmarkAdvance(b *testing.B) {
	e := New(Options{})
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	if _, _, err := e.SetSegments(parseSegments(b, "news", benchSegments), start); err != nil {
		b.Fatal(err)
	}
	devices := 200_000
	s := newBenchStream(devices, 4, start)
	var out []Change
	var offset int64
	records := 10 * devices
	step := 7 * 24 * time.Hour / time.Duration(records)
	for range records {
		offset++
		out = e.Apply(s.next(step), offset, s.clock, out[:0])
	}
	e.Dirty(func(k, st []byte) {})
	clock := s.clock
	fired0 := e.Stats().Timers
	changes := 0
	for b.Loop() {
		clock = clock.Add(time.Minute)
		out = e.Advance(clock, out[:0])
		changes += len(out)
		e.Dirty(func(k, st []byte) {})
	}
	fired := e.Stats().Timers - fired0
	b.ReportMetric(float64(fired)/b.Elapsed().Seconds(), "timers/s")
	b.ReportMetric(float64(fired), "timers")
	b.ReportMetric(float64(changes), "changes")
}

// BenchmarkFill measures a fill: an engine holding 100k devices under half
// of the 50 segments gets the other half (new features: counts, attributes,
// device fields), and the history of the 30 days before is handed to it a
// device at a time, as the history store gives it. It reports records of
// history applied per second, and the cost of FinishFill (the evaluation of
// every device for the segments that waited).
func BenchmarkFill(b *testing.B) {
	devices := 100_000
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	all := parseSegments(b, "news", benchSegments)
	var first []*segments.Segment
	for _, s := range all {
		if !refersAny(s.Expr) && len(first) < 25 {
			first = append(first, s)
		}
	}
	// The history: 20 records a device over 30 days, by device in offset order.
	s := newBenchStream(devices, 3, start)
	n := 20 * devices
	step := 30 * 24 * time.Hour / time.Duration(n)
	byDev := map[string][]HistoryRecord{}
	for i := range n {
		r := *s.next(step)
		r.DeviceID = strings.Clone(r.DeviceID)
		byDev[r.DeviceID] = append(byDev[r.DeviceID], HistoryRecord{Record: &r, Offset: int64(i), Arrived: r.Time})
	}
	ids := make([]string, 0, len(byDev))
	for id := range byDev {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	now := s.clock
	b.ReportAllocs()
	var applied, finish time.Duration
	records := 0
	for b.Loop() {
		b.StopTimer()
		e := New(Options{Fill: true})
		if _, _, err := e.SetSegments(first, start); err != nil {
			b.Fatal(err)
		}
		for _, id := range ids {
			for _, hr := range byDev[id] {
				e.Apply(hr.Record, hr.Offset, hr.Record.Time, nil)
			}
		}
		if _, _, err := e.SetSegments(all, now); err != nil {
			b.Fatal(err)
		}
		fills, _ := e.Fills(now, nil)
		if len(fills) != 1 {
			b.Fatalf("%d fills, want 1", len(fills))
		}
		b.StartTimer()
		t0 := time.Now()
		var out []Change
		var err error
		for _, id := range ids {
			if out, err = e.ApplyHistory(fills[0].ID, id, byDev[id], out[:0]); err != nil {
				b.Fatal(err)
			}
			records += len(byDev[id])
		}
		t1 := time.Now()
		if _, err := e.FinishFill(fills[0].ID, now, nil); err != nil {
			b.Fatal(err)
		}
		applied += t1.Sub(t0)
		finish += time.Since(t1)
	}
	b.ReportMetric(float64(records)/applied.Seconds(), "history-records/s")
	b.ReportMetric(float64(finish.Milliseconds())/float64(b.N), "finish-ms")
	b.ReportMetric(float64(devices), "devices")
}

func refersAny(n segments.Node) bool {
	switch n := n.(type) {
	case *segments.Ref:
		return true
	case *segments.And:
		return slices.ContainsFunc(n.Args, refersAny)
	case *segments.Or:
		return slices.ContainsFunc(n.Args, refersAny)
	case *segments.Not:
		return refersAny(n.X)
	}
	return false
}
