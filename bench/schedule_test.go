package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments/processor"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

// The campaigns of the schedule benchmark: immediate sends on entry into
// three segments, one rendering the trigger's extras, one with a control
// group and two variants.
var scheduleCampaigns = map[string]string{
	"welcome": `
app: bench
name: welcome
what:
  content:
    en: {title: "Welcome", body: "Here is a gift for your first day."}
  default_locale: en
who:
  segments: [new_users]
when:
  on_entry: {}
`,
	"level": `
app: bench
name: level
what:
  missing: default
  content:
    en: {title: "Stuck on level {{trigger.level | default \"1\"}}?", body: "Three boosters for you."}
  default_locale: en
who:
  segments: [stalled]
when:
  on_entry: {}
`,
	"promo": `
app: bench
name: promo
what:
  content:
    en: {title: "A deal for you", body: "20% off today."}
  default_locale: en
who:
  segments: [buyers]
  control: 10%
  variants:
    - {name: a, weight: 50%}
    - {name: b, weight: 50%, content: {en: {title: "Half price", body: "Today only."}}}
when:
  on_entry: {}
`,
}

// scheduleSegments are the segments the changes enter, in the order a
// device enters them; the first has a campaign without control group, so
// that change 0 (the only one of the framework's b.N = 1 run) delivers.
var scheduleSegments = []string{"new_users", "stalled", "buyers"}

var scheduleSeq atomic.Int64

// scheduleTopics creates fresh co-partitioned topics and stores the
// campaigns and the app's caps (high enough that no device reaches them).
func scheduleTopics(b *testing.B, brokers []string, parts int) scheduler.Config {
	b.Helper()
	id := fmt.Sprintf("bs%d-%d", time.Now().UnixNano()%1e9, scheduleSeq.Add(1))
	cfg := scheduler.DefaultConfig(brokers)
	cfg.Group, cfg.Topic, cfg.ChangelogTopic, cfg.DeliveriesTopic, cfg.DecisionsTopic, cfg.ConfigTopic =
		"g-"+id, id+".changes", id+".state", id+".deliveries", id+".decisions", id+".config"
	specs := []kafkabus.TopicSpec{
		{Name: cfg.Topic, Partitions: parts, ReplicationFactor: 1},
		{Name: cfg.ChangelogTopic, Partitions: parts, ReplicationFactor: 1, Compacted: true},
		{Name: cfg.DeliveriesTopic, Partitions: parts, ReplicationFactor: 1},
		{Name: cfg.DecisionsTopic, Partitions: parts, ReplicationFactor: 1},
		{Name: cfg.ConfigTopic, Partitions: 1, ReplicationFactor: 1, Compacted: true},
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := kafkabus.EnsureTopics(ctx, brokers, specs); err != nil {
		b.Fatal(err)
	}
	names := make([]string, 0, len(scheduleCampaigns))
	for n := range scheduleCampaigns {
		names = append(names, n)
	}
	sort.Strings(names)
	var msgs []bus.Message
	for _, n := range names {
		if _, err := triggers.Parse(n+".yaml", []byte(scheduleCampaigns[n])); err != nil {
			b.Fatalf("campaign %s: %v", n, err)
		}
		v, _ := json.Marshal(scheduler.Stored{App: "bench", Name: n, File: n + ".yaml", Source: scheduleCampaigns[n], UpdatedAt: time.Now().UTC()})
		msgs = append(msgs, bus.Message{Key: scheduler.CampaignKey("bench", n), Value: v})
	}
	caps, _ := json.Marshal(scheduler.AppCaps{triggers.ChannelPush: {PerDay: 10, PerWeek: 50}})
	msgs = append(msgs, bus.Message{Key: scheduler.CapsKey("bench"), Value: caps})
	produceAll(b, brokers, cfg.ConfigTopic, valuesOf(msgs), keysOf(msgs))
	return cfg
}

// hex32 is a distinct 32-hex-digit id for each (salt, i): splitmix64 is a
// bijection of the 64-bit integers.
func hex32(salt, i uint64) string {
	mix := func(x uint64) uint64 {
		x += 0x9e3779b97f4a7c15
		x = (x ^ x>>30) * 0xbf58476d1ce4e5b9
		x = (x ^ x>>27) * 0x94d049bb133111eb
		return x ^ x>>31
	}
	return fmt.Sprintf("%016x%016x", mix(salt<<40^i), mix(^(salt<<40 ^ i)))
}

// scheduleChanges returns n segment entries, as the processor writes them,
// over 2n/5 devices: a device enters two or three segments (a different
// one each time), so that every change triggers one campaign.
// Half the entries into "stalled" carry the level that caused them. Time
// is left for the sender to stamp.
func scheduleChanges(n int) (keys [][]byte, changes []processor.ChangeMessage) {
	devices := max(2*n/5, 1)
	keys, changes = make([][]byte, n), make([]processor.ChangeMessage, n)
	for i := range n {
		d, k := i%devices, i/devices
		dev := hex32(1, uint64(d))
		cm := processor.ChangeMessage{ID: hex32(2, uint64(i)), App: "bench", Segment: scheduleSegments[(d+k)%len(scheduleSegments)],
			Version: 1, DeviceID: dev, Enter: true, Cause: "record"}
		if cm.Segment == "stalled" && i%2 == 0 {
			cm.Extras = processor.AppendExtrasJSON(nil, []tag.Extra{{Key: "level", Value: tag.Number(float64(1 + i%40))}})
		}
		keys[i], changes[i] = []byte("bench/"+dev), cm
	}
	return keys, changes
}

// startScheduler runs a scheduler service until stop.
func startScheduler(b *testing.B, cfg scheduler.Config) (s *scheduler.Service, stop func()) {
	b.Helper()
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(cfg.Brokers, cfg.DeliveriesTopic), nil)
	if err != nil {
		b.Fatal(err)
	}
	s, err = scheduler.New(cfg, scheduler.NewStore(), prod, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return s, func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
		prod.Close()
	}
}

// waitOwned waits until s owns all parts partitions of its input (joined
// the group, states restored).
func waitOwned(b *testing.B, s *scheduler.Service, parts int) {
	b.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		owned := 0
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := s.Each(ctx, func(*triggers.Scheduler, time.Time) { owned++ })
		cancel()
		if err == nil && owned == parts {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("the scheduler owns %d of %d partitions after a minute (%v)", owned, parts, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLag waits until the group has committed the whole input: every
// change applied, its deliveries and decisions produced (they precede the
// commit).
func waitLag(b *testing.B, cfg scheduler.Config, limit time.Duration) {
	b.Helper()
	deadline := time.Now().Add(limit)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		lag, err := kafkabus.GroupLag(ctx, cfg.Brokers, cfg.Group, cfg.Topic)
		cancel()
		if err == nil && lag == 0 {
			return
		}
		if time.Now().After(deadline) {
			b.Fatalf("lag %d after %s (%v)", lag, limit, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func countDeliveries(b *testing.B, cfg scheduler.Config) int64 {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := kafkabus.CountMessages(ctx, cfg.Brokers, cfg.DeliveriesTopic)
	if err != nil {
		b.Fatal(err)
	}
	return n
}

// BenchmarkScheduleEndToEnd runs engage's scheduler (in process, wall
// clock) against the real broker, 8 partitions, three campaigns that
// send on entry (one with a template over the trigger's extras, one with
// a control group and two variants).
//
// "latency": segment entries produced at a fixed rate (ENGAGE_BENCH_RATE,
// default 50000/s) for b.N changes; for every delivery a change caused,
// the time from the change's append to the input topic
// (scheduler.HeaderChangeTime) to the delivery's arrival at a consumer of
// the deliveries topic: p50, p99, max, and the rate actually sent.
//
// "throughput": b.N changes already in the input topic; changes/s and
// deliveries/s from the first change read until the group's lag is 0
// (deliveries, decisions and states produced, offsets committed), as in
// BenchmarkProcessEndToEnd; startup-s is the time from Run to that first
// read (joining the group, reading the campaigns, restoring).
func BenchmarkScheduleEndToEnd(b *testing.B) {
	b.Run("throughput", benchScheduleThroughput)
	b.Run("latency", benchScheduleLatency)
}

func benchScheduleThroughput(b *testing.B) {
	const parts = 8
	brokers := kafkatest.RealBrokers(b)
	cfg := scheduleTopics(b, brokers, parts)
	keys, changes := scheduleChanges(b.N)
	values := make([][]byte, b.N)
	now := time.Now()
	for i := range changes {
		changes[i].Time = now
		values[i], _ = json.Marshal(&changes[i])
	}
	produceAll(b, brokers, cfg.Topic, values, keys)
	b.ResetTimer()
	start := time.Now()
	s, stop := startScheduler(b, cfg)
	defer stop()
	first := time.Time{} // the first change read: joining the group is not throughput
	deadline := start.Add(10 * time.Minute)
	for {
		if first.IsZero() && s.Records() > 0 {
			first = time.Now()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		lag, err := kafkabus.GroupLag(ctx, brokers, cfg.Group, cfg.Topic)
		cancel()
		if err == nil && lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			b.Fatalf("lag %d after 10 minutes (%v)", lag, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if first.IsZero() {
		first = start
	}
	took := time.Since(first)
	b.StopTimer()
	dels := countDeliveries(b, cfg)
	if dels == 0 {
		b.Fatal("no delivery produced")
	}
	b.ReportMetric(float64(b.N)/took.Seconds(), "changes/s")
	b.ReportMetric(float64(dels)/took.Seconds(), "deliveries/s")
	b.ReportMetric(first.Sub(start).Seconds(), "startup-s")
	b.ReportMetric(0, "ns/op")
}

// deliveryReaders reads every partition of the deliveries topic from its
// end and notes, for each delivery, how long ago its change was appended.
type deliveryReaders struct {
	wg     sync.WaitGroup
	cancel context.CancelFunc
	n      atomic.Int64      // deliveries read
	lat    [][]time.Duration // per partition: written by its reader until stop
	bare   atomic.Int64      // deliveries without the change-time header
}

func readDeliveries(b *testing.B, cfg scheduler.Config, parts int) *deliveryReaders {
	b.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dr := &deliveryReaders{cancel: cancel, lat: make([][]time.Duration, parts)}
	for p := range parts {
		ectx, ecancel := context.WithTimeout(ctx, 10*time.Second)
		end, err := kafkabus.PartitionEnd(ectx, cfg.Brokers, cfg.DeliveriesTopic, p)
		ecancel()
		if err != nil {
			cancel()
			b.Fatal(err)
		}
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: cfg.Brokers, Topic: cfg.DeliveriesTopic, Partition: p, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 10 * time.Millisecond})
		if err := r.SetOffset(end); err != nil {
			cancel()
			b.Fatal(err)
		}
		dr.wg.Go(func() {
			defer r.Close()
			for {
				m, err := r.FetchMessage(ctx)
				if err != nil {
					return
				}
				at := time.Now()
				i := slices.IndexFunc(m.Headers, func(h kafka.Header) bool { return h.Key == scheduler.HeaderChangeTime })
				if i < 0 {
					dr.bare.Add(1)
				} else if ns, err := strconv.ParseInt(string(m.Headers[i].Value), 10, 64); err == nil {
					dr.lat[p] = append(dr.lat[p], at.Sub(time.Unix(0, ns)))
				}
				dr.n.Add(1)
			}
		})
	}
	return dr
}

// stop waits until want deliveries are read (or limit passes), stops the
// readers and returns the latencies, sorted.
func (dr *deliveryReaders) stop(b *testing.B, want int64, limit time.Duration) []time.Duration {
	b.Helper()
	deadline := time.Now().Add(limit)
	for dr.n.Load() < want && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	dr.cancel()
	dr.wg.Wait()
	if n := dr.n.Load(); n < want {
		b.Errorf("read %d of the %d deliveries in %s", n, want, limit)
	}
	if n := dr.bare.Load(); n > 0 {
		b.Errorf("%d deliveries without the %s header", n, scheduler.HeaderChangeTime)
	}
	ds := slices.Concat(dr.lat...)
	slices.Sort(ds)
	return ds
}

func benchScheduleLatency(b *testing.B) {
	const parts = 8
	brokers := kafkatest.RealBrokers(b)
	cfg := scheduleTopics(b, brokers, parts)
	rate := 50000
	if v, err := strconv.Atoi(getenv("ENGAGE_BENCH_RATE")); err == nil && v > 0 {
		rate = v
	}
	keys, changes := scheduleChanges(b.N)
	s, stop := startScheduler(b, cfg)
	defer stop()
	waitOwned(b, s, parts)
	dr := readDeliveries(b, cfg, parts)
	defer dr.cancel()
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, cfg.Topic), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	b.ResetTimer()
	// Batches every 10 ms, at the rate, each change stamped when its batch
	// is made; up to four batches waiting for their acknowledgements, so
	// that one slow acknowledgement does not stall the rate (a producer
	// that cannot keep it shows in sent-changes/s).
	const tickEvery = 10 * time.Millisecond
	per := max(rate/100, 1)
	start := time.Now()
	sem := make(chan struct{}, 4)
	for i, tick := 0, 0; i < b.N; tick++ {
		time.Sleep(time.Until(start.Add(time.Duration(tick) * tickEvery)))
		end := min(i+per, b.N)
		now := time.Now()
		msgs := make([]bus.Message, 0, end-i)
		for j := i; j < end; j++ {
			changes[j].Time = now
			v, _ := json.Marshal(&changes[j])
			msgs = append(msgs, bus.Message{Key: keys[j], Value: v})
		}
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			if err := prod.Produce(context.Background(), msgs); err != nil {
				b.Error(err)
			}
		}()
		i = end
	}
	for range cap(sem) {
		sem <- struct{}{}
	}
	sent := time.Since(start)
	// Every change applied and its deliveries produced, then every
	// delivery read.
	waitLag(b, cfg, 5*time.Minute)
	ds := dr.stop(b, countDeliveries(b, cfg), time.Minute)
	b.StopTimer()
	if len(ds) == 0 {
		b.Fatal("no delivery arrived")
	}
	q := func(f float64) float64 { return float64(ds[int(f*float64(len(ds)-1))].Milliseconds()) }
	b.ReportMetric(float64(b.N)/sent.Seconds(), "sent-changes/s")
	b.ReportMetric(float64(len(ds)), "deliveries")
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(ds[len(ds)-1].Milliseconds()), "max-ms")
	b.ReportMetric(0, "ns/op")
}
