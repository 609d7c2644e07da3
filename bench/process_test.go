package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments"
	"github.com/openengage/engage/segments/engine"
	"github.com/openengage/engage/segments/processor"
)

var processSeq atomic.Int64

// processTopics creates fresh co-partitioned topics and defines segments.
func processTopics(b *testing.B, brokers []string, parts int) processor.Config {
	b.Helper()
	id := fmt.Sprintf("bp%d-%d", time.Now().UnixNano()%1e9, processSeq.Add(1))
	cfg := processor.DefaultConfig(brokers)
	cfg.Group, cfg.Topic, cfg.ChangelogTopic, cfg.ChangesTopic, cfg.ConfigTopic = "g-"+id, id+".tags", id+".state", id+".changes", id+".config"
	specs := []kafkabus.TopicSpec{
		{Name: cfg.Topic, Partitions: parts, ReplicationFactor: 1},
		{Name: cfg.ChangelogTopic, Partitions: parts, ReplicationFactor: 1, Compacted: true},
		{Name: cfg.ChangesTopic, Partitions: parts, ReplicationFactor: 1},
		{Name: cfg.ConfigTopic, Partitions: 1, ReplicationFactor: 1, Compacted: true},
	}
	if _, err := kafkabus.EnsureTopics(context.Background(), brokers, specs); err != nil {
		b.Fatal(err)
	}
	segs := map[string]string{
		"readers":   `did event "article_read" at least 2 times in last 1h`,
		"sport":     `did event "article_read" where category = "sport" at least 3 times in last 1d`,
		"sharers":   `did event "share"`,
		"new_users": `first_session within 1d`,
		"lapsing":   `last_seen more than 30m ago and did event "article_read"`,
	}
	var msgs []bus.Message
	for n, text := range segs {
		v, _ := json.Marshal(processor.Definition{App: "bench", Name: n, Text: text, UpdatedAt: time.Now().UTC()})
		msgs = append(msgs, bus.Message{Key: processor.ConfigKey("bench", n), Value: v})
	}
	produceAll(b, brokers, cfg.ConfigTopic, valuesOf(msgs), keysOf(msgs))
	return cfg
}

func valuesOf(ms []bus.Message) [][]byte {
	out := make([][]byte, len(ms))
	for i, m := range ms {
		out[i] = m.Value
	}
	return out
}

func keysOf(ms []bus.Message) [][]byte {
	out := make([][]byte, len(ms))
	for i, m := range ms {
		out[i] = m.Key
	}
	return out
}

// processRecords returns n event records over devices, times now-ish.
func processRecords(n, devices int, start time.Time) (keys, values [][]byte) {
	keys, values = make([][]byte, n), make([][]byte, n)
	for i := range n {
		r := tag.Record{Kind: tag.KindEvent, AppID: "bench", DeviceID: fmt.Sprintf("dev-%07d", (i*7919)%devices), MessageID: "m" + strconv.Itoa(i),
			Time: start.Add(time.Duration(i) * time.Microsecond), Name: []string{"article_read", "article_read", "share", "home"}[i%4]}
		if r.Name == "article_read" {
			r.Extras = []tag.Extra{{Key: "category", Value: tag.String([]string{"sport", "news", "tech"}[i%3])}}
		}
		if i%10 == 0 {
			r.Kind, r.Name, r.Extras, r.SessionID = tag.KindSessionStart, "", nil, "s"+strconv.Itoa(i)
		}
		keys[i], values[i] = r.Key(), r.AppendBinary(nil)
	}
	return keys, values
}

func startProcessor(b *testing.B, cfg processor.Config) (p *processor.Processor, stop func()) {
	b.Helper()
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(cfg.Brokers, cfg.ChangesTopic), nil)
	if err != nil {
		b.Fatal(err)
	}
	p, err = processor.New(cfg, processor.NewStore(), prod, nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	return p, func() {
		cancel()
		if err := <-done; err != nil {
			b.Error(err)
		}
		prod.Close()
	}
}

// BenchmarkProcessEndToEnd runs engage's processor (in process, wall
// clock) against the real broker, 8 partitions, 5 segments.
//
// "throughput": b.N records already in the input topic; records/s from the
// first fetch until the group's lag is 0 (state changelog and changes
// produced, offsets committed).
//
// "latency": records produced at a fixed rate (ENGAGE_BENCH_RATE, default
// 50000/s) for b.N records; for every segment change caused by a record,
// the time from the record's append to the input topic to the change's
// arrival at a consumer of the changes topic: p50, p99, max.
func BenchmarkProcessEndToEnd(b *testing.B) {
	b.Run("throughput", benchProcessThroughput)
	b.Run("latency", benchProcessLatency)
}

func benchProcessThroughput(b *testing.B) {
	brokers := kafkatest.RealBrokers(b)
	cfg := processTopics(b, brokers, 8)
	keys, values := processRecords(b.N, max(b.N/10, 1), time.Now())
	produceAll(b, brokers, cfg.Topic, values, keys)
	b.ResetTimer()
	start := time.Now()
	p, stop := startProcessor(b, cfg)
	defer stop()
	var first time.Time // the first record read: joining the group is not throughput
	for {
		if first.IsZero() && p.Records() > 0 {
			first = time.Now()
		}
		lag, err := kafkabus.GroupLag(context.Background(), brokers, cfg.Group, cfg.Topic)
		if err == nil && lag == 0 {
			break
		}
		if time.Since(start) > 10*time.Minute {
			b.Fatalf("lag %d after 10 minutes (%v)", lag, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if first.IsZero() {
		first = start
	}
	b.ReportMetric(float64(b.N)/time.Since(first).Seconds(), "records/s")
	b.ReportMetric(0, "ns/op")
}

func benchProcessLatency(b *testing.B) {
	brokers := kafkatest.RealBrokers(b)
	cfg := processTopics(b, brokers, 8)
	rate := 50000
	if v, err := strconv.Atoi(getenv("ENGAGE_BENCH_RATE")); err == nil && v > 0 {
		rate = v
	}
	_, stop := startProcessor(b, cfg)
	defer stop()
	time.Sleep(3 * time.Second) // joined and restored
	// A reader of the changes topic, from its end.
	lat := make(chan time.Duration, 1<<20)
	rctx, rcancel := context.WithCancel(context.Background())
	defer rcancel()
	parts := make([]int, 8)
	for p := range parts {
		go func(p int) {
			r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: cfg.ChangesTopic, Partition: p, MinBytes: 1, MaxBytes: 10 << 20, MaxWait: 10 * time.Millisecond})
			defer r.Close()
			for {
				m, err := r.ReadMessage(rctx)
				if err != nil {
					return
				}
				for _, h := range m.Headers {
					if h.Key == processor.HeaderInputTime {
						ns, _ := strconv.ParseInt(string(h.Value), 10, 64)
						lat <- time.Since(time.Unix(0, ns))
					}
				}
			}
		}(p)
	}
	keys, values := processRecords(b.N, max(b.N/5, 1), time.Now())
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, cfg.Topic), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer prod.Close()
	b.ResetTimer()
	// Batches every 10 ms, at the rate, from two producers' worth of
	// goroutines so that one slow acknowledgement does not stall the rate.
	const tickEvery = 10 * time.Millisecond
	per := max(rate/100, 1)
	start := time.Now()
	sem := make(chan struct{}, 4)
	for i, tick := 0, 0; i < b.N; tick++ {
		next := start.Add(time.Duration(tick) * tickEvery)
		time.Sleep(time.Until(next))
		end := min(i+per, b.N)
		msgs := make([]bus.Message, 0, end-i)
		for j := i; j < end; j++ {
			msgs = append(msgs, bus.Message{Key: keys[j], Value: values[j], Time: time.Now()})
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
	// Collect until no change has arrived for 2 s.
	var ds []time.Duration
	for quiet := false; !quiet; {
		select {
		case d := <-lat:
			ds = append(ds, d)
		case <-time.After(2 * time.Second):
			quiet = true
		}
	}
	b.StopTimer()
	if len(ds) == 0 {
		b.Fatal("no segment change arrived")
	}
	slices.Sort(ds)
	q := func(f float64) float64 { return float64(ds[int(f*float64(len(ds)-1))].Milliseconds()) }
	b.ReportMetric(float64(b.N)/sent.Seconds(), "sent-records/s")
	b.ReportMetric(float64(len(ds)), "changes")
	b.ReportMetric(q(0.5), "p50-ms")
	b.ReportMetric(q(0.99), "p99-ms")
	b.ReportMetric(float64(ds[len(ds)-1].Milliseconds()), "max-ms")
	b.ReportMetric(0, "ns/op")
}

func getenv(k string) string { return os.Getenv(k) }

// BenchmarkChangelogRestore: b.N device states (5 segments' features) in
// one partition of a compacted changelog topic on the real broker, read
// back and restored into a fresh engine, as a partition's new owner does.
// Reports records/s of the restore.
func BenchmarkChangelogRestore(b *testing.B) {
	brokers := kafkatest.RealBrokers(b)
	cfg := processTopics(b, brokers, 1)
	set := []*segments.Segment{}
	for i, text := range []string{
		`did event "article_read" at least 2 times in last 1h`,
		`did event "article_read" where category = "sport" at least 3 times in last 1d`,
		`did event "share"`,
		`first_session within 1d`,
		`last_seen more than 30m ago and did event "article_read"`,
	} {
		expr, err := segments.Parse(text)
		if err != nil {
			b.Fatal(err)
		}
		set = append(set, &segments.Segment{App: "bench", Name: fmt.Sprintf("s%d", i), Text: text, Expr: expr})
	}
	now := time.Now()
	src := engine.New(engine.Options{})
	if _, _, err := src.SetSegments(set, now); err != nil {
		b.Fatal(err)
	}
	_, values := processRecords(3*b.N, b.N, now)
	var r tag.Record
	for i := range values {
		if err := r.UnmarshalBinary(values[i]); err != nil {
			b.Fatal(err)
		}
		src.Apply(&r, int64(i), now, nil)
	}
	var sk, sv [][]byte
	src.Snapshot(func(k, v []byte) {
		sk, sv = append(sk, append([]byte(nil), k...)), append(sv, append([]byte(nil), v...))
	})
	produceAll(b, brokers, cfg.ChangelogTopic, sv, sk)
	bytes := 0
	for _, v := range sv {
		bytes += len(v)
	}
	b.ResetTimer()
	start := time.Now()
	dst := engine.New(engine.Options{})
	if _, _, err := dst.SetSegments(set, now); err != nil {
		b.Fatal(err)
	}
	n, err := kafkabus.ReadPartition(context.Background(), brokers, cfg.ChangelogTopic, 0, func(m bus.Message) error {
		return dst.Restore(m.Key, m.Value)
	})
	if err != nil {
		b.Fatal(err)
	}
	took := time.Since(start)
	b.StopTimer()
	if int(n) != len(sk) || dst.Devices() != src.Devices() {
		b.Fatalf("restored %d records, %d devices; wrote %d records, %d devices", n, dst.Devices(), len(sk), src.Devices())
	}
	b.ReportMetric(float64(n)/took.Seconds(), "records/s")
	b.ReportMetric(float64(bytes)/float64(len(sv)), "state-bytes/record")
	b.ReportMetric(0, "ns/op")
}
