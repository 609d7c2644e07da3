package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"
	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/sinks"
	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// sinkRecords returns n typical records: events with extras over devices.
func sinkRecords(n int) []tag.Record {
	rng := rand.New(rand.NewPCG(3, 4))
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	recs := make([]tag.Record, n)
	for i := range recs {
		recs[i] = tag.Record{Kind: tag.KindEvent, AppID: "bench", DeviceID: fmt.Sprintf("device-%06d", rng.IntN(100000)),
			UserID: "", MessageID: fmt.Sprintf("m-%09d", i), Time: t0.Add(time.Duration(rng.IntN(30*86400)) * time.Second),
			ReceivedAt: t0.Add(30 * 86400 * time.Second), AppVersion: "2.3.1", Name: "article_read", Activity: "article",
			Extras: []tag.Extra{{Key: "category", Value: tag.String("sport")}, {Key: "premium", Value: tag.Bool(false)}, {Key: "words", Value: tag.Number(float64(rng.IntN(2000)))}}}
	}
	return recs
}

func produceAll(b *testing.B, brokers []string, topic string, values [][]byte, keys [][]byte) {
	b.Helper()
	p, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, topic), nil)
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	for i := 0; i < len(values); i += 10000 {
		end := min(i+10000, len(values))
		msgs := make([]bus.Message, 0, end-i)
		for j := i; j < end; j++ {
			msgs = append(msgs, bus.Message{Key: keys[j], Value: values[j]})
		}
		if err := p.Produce(context.Background(), msgs); err != nil {
			b.Fatal(err)
		}
	}
}

// waitRows waits until the tags table of database db holds want rows, and
// returns when it did. It reads the parts' row counts (metadata): count()
// would read a column on servers without the trivial-count optimization,
// and charge both contestants' CPU for the polling.
func waitRows(b *testing.B, conn driver.Conn, db string, want uint64, limit time.Duration) time.Time {
	b.Helper()
	deadline := time.Now().Add(limit)
	for {
		var n uint64
		if err := conn.QueryRow(context.Background(), "SELECT toUInt64(sum(rows)) FROM system.parts WHERE database = ? AND table = 'tags' AND active", db).Scan(&n); err != nil {
			b.Fatal(err)
		}
		if n >= want {
			return time.Now()
		}
		if time.Now().After(deadline) {
			b.Fatalf("%s.tags: %d rows of %d after %s", db, n, want, limit)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// BenchmarkSinkVsKafkaEngine writes b.N tag records from Kafka into the
// ClickHouse tags table twice: with engage's sink, and with ClickHouse's own
// Kafka table engine and a materialized view into a table of the same layout
// (reading the same records as JSONEachRow, the engine's fastest text
// format). Reports rows/s of each and their ratio. Run with -benchtime Nx,
// e.g. 1000000x. "raw": the tags table alone; "with-rollups": with the
// schema's materialized views (sessions, active devices, counts, job
// durations) fed by every insert, for both.
func BenchmarkSinkVsKafkaEngine(b *testing.B) {
	b.Run("raw", func(b *testing.B) { benchSinkVsEngine(b, false) })
	b.Run("with-rollups", func(b *testing.B) { benchSinkVsEngine(b, true) })
}

func dropRollups(b *testing.B, conn driver.Conn, db string) {
	b.Helper()
	for _, mv := range clickhouse.RollupViews {
		if err := conn.Exec(context.Background(), "DROP TABLE "+db+"."+mv); err != nil {
			b.Fatal(err)
		}
	}
}

func benchSinkVsEngine(b *testing.B, rollups bool) {
	brokers := kafkatest.RealBrokers(b)
	conn, cfg, _ := chtest.Database(b)
	_, engineCfg, _ := chtest.Database(b) // the engine writes into a database of its own, migrated the same way
	if !rollups {
		dropRollups(b, conn, cfg.Database)
		dropRollups(b, conn, engineCfg.Database)
	}
	ctx := context.Background()
	n := b.N
	recs := sinkRecords(n)
	keys, bin, js := make([][]byte, n), make([][]byte, n), make([][]byte, n)
	for i := range recs {
		keys[i], bin[i], js[i] = recs[i].Key(), recs[i].AppendBinary(nil), engineJSON(&recs[i])
	}
	binTopic := kafkatest.NewTopic(b, brokers, 8)
	jsonTopic := kafkatest.NewTopic(b, brokers, 8)
	produceAll(b, brokers, binTopic, bin, keys)
	produceAll(b, brokers, jsonTopic, js, keys)

	b.ResetTimer()
	// engage sink.
	consumer, err := kafkabus.NewConsumer(kafkabus.ConsumerConfig{Brokers: brokers, Group: "bench-" + binTopic, Topic: binTopic}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer consumer.Close()
	src := &firstFetch{Source: consumer}
	rows, err := clickhouse.NewHTTPWriter(ctx, conn, cfg, chtest.HTTPAddr(b))
	if err != nil {
		b.Fatal(err)
	}
	scfg := sinks.DefaultConfig("dead")
	if v, err := strconv.Atoi(os.Getenv("ENGAGE_BENCH_BATCH_ROWS")); err == nil {
		scfg.BatchRows = v
	}
	s, err := sinks.New(scfg, src, sinks.TagWriter{Rows: rows, Permanent: clickhouse.IsPermanent},
		bus.NewMemory("dead", 1), "tags", nil, nil)
	if err != nil {
		b.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	chPID := servicetest.ClickHousePID()
	goCPU, chCPU := servicetest.ProcCPU(os.Getpid()), servicetest.ProcCPU(chPID)
	if path := os.Getenv("ENGAGE_BENCH_SINK_CPUPROFILE"); path != "" { // the sink's run alone
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer f.Close()
	}
	go func() { done <- s.Run(sctx) }()
	end := waitRows(b, conn, cfg.Database, uint64(n), 10*time.Minute)
	pprof.StopCPUProfile()
	goCPU, chCPU = servicetest.ProcCPU(os.Getpid())-goCPU, servicetest.ProcCPU(chPID)-chCPU
	stop()
	<-done
	// From the first record fetched: joining the consumer group is not
	// throughput (and the engine's start is left out the same way).
	sinkRate := float64(n) / end.Sub(src.at).Seconds()

	// ClickHouse's Kafka engine into a table of the same layout. A new group
	// of the engine starts at the end of the topic: commit offset 0 for it
	// first, so that it reads the records already there, as the sink did.
	engineGroup := "ch-" + jsonTopic
	commits := make([]kafka.OffsetCommit, 8)
	for p := range commits {
		commits[p] = kafka.OffsetCommit{Partition: p, Offset: 0}
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...)}
	cresp, err := client.OffsetCommit(ctx, &kafka.OffsetCommitRequest{GroupID: engineGroup, GenerationID: -1, Topics: map[string][]kafka.OffsetCommit{jsonTopic: commits}})
	if err != nil {
		b.Fatal(err)
	}
	for _, ps := range cresp.Topics[jsonTopic] {
		if ps.Error != nil {
			b.Fatalf("commit for the engine's group: %v", ps.Error)
		}
	}
	for _, q := range []string{
		"CREATE TABLE " + cfg.Database + ".tags_queue AS " + cfg.Database + ".tags ENGINE = Kafka SETTINGS kafka_broker_list = '" + strings.Join(brokers, ",") +
			"', kafka_topic_list = '" + jsonTopic + "', kafka_group_name = '" + engineGroup + "', kafka_format = 'JSONEachRow', kafka_row_delimiter = '\\n', kafka_num_consumers = 2",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			b.Fatalf("%s: %v", q, err)
		}
	}
	engineCPU := servicetest.ProcCPU(chPID)
	if err := conn.Exec(ctx, "CREATE MATERIALIZED VIEW "+cfg.Database+".tags_engine_mv TO "+engineCfg.Database+".tags AS SELECT * FROM "+cfg.Database+".tags_queue"); err != nil {
		b.Fatal(err)
	}
	start := waitRows(b, conn, engineCfg.Database, 1, 10*time.Minute)
	end = waitRows(b, conn, engineCfg.Database, uint64(n), 10*time.Minute)
	engineRate := float64(n) / end.Sub(start).Seconds()
	engineCPU = servicetest.ProcCPU(chPID) - engineCPU
	_ = conn.Exec(ctx, "DROP TABLE "+cfg.Database+".tags_engine_mv")
	_ = conn.Exec(ctx, "DROP TABLE "+cfg.Database+".tags_queue")
	b.StopTimer()
	// Where the CPU went (the processes share the machine's cores, so rates
	// move with whatever else runs; CPU per row much less): µs per row in
	// the sink (Go) and in ClickHouse while the sink ran, and in ClickHouse
	// while its Kafka engine ran. (The Kafka broker's share is left out of
	// both.)
	b.ReportMetric(goCPU.Seconds()*1e6/float64(n), "sink-cpu-µs/row")
	b.ReportMetric(chCPU.Seconds()*1e6/float64(n), "clickhouse-cpu-µs/row")
	b.ReportMetric(engineCPU.Seconds()*1e6/float64(n), "engine-cpu-µs/row")
	b.ReportMetric(sinkRate, "sink-rows/s")
	b.ReportMetric(engineRate, "engine-rows/s")
	b.ReportMetric(sinkRate/engineRate, "ratio")
	b.ReportMetric(0, "ns/op")
}

// engineJSON is a record as one JSONEachRow line of the tags table.
func engineJSON(r *tag.Record) []byte {
	// Types as numbers: encoding/json would write a []uint8 as base64.
	keys, types, strs, nums := make([]string, len(r.Extras)), make([]int, len(r.Extras)), make([]string, len(r.Extras)), make([]float64, len(r.Extras))
	for i, x := range r.Extras {
		keys[i], types[i], strs[i] = x.Key, int(x.Value.Type), x.Value.Text()
		if x.Value.Type == tag.TypeNumber {
			nums[i] = x.Value.Num
		}
	}
	ts := func(t time.Time) string { return t.UTC().Format("2006-01-02 15:04:05") }
	row := map[string]any{
		"app": r.AppID, "kind": r.Kind.String(), "device_id": r.DeviceID, "user_id": r.UserID, "message_id": r.MessageID,
		"event_date": r.Time.UTC().Format("2006-01-02"), "event_time": ts(r.Time), "sent_at": ts(time.Unix(0, 0)), "received_at": ts(r.ReceivedAt),
		"app_version": r.AppVersion, "name": r.Name, "activity": r.Activity, "duration_ms": 0,
		"extra_keys": keys, "extra_types": types, "extra_strings": strs, "extra_numbers": nums,
		"info_keys": []string{}, "info_types": []int{}, "info_strings": []string{}, "info_numbers": []float64{}, "unplanned": []string{},
	}
	b, _ := json.Marshal(row)
	return b
}

// firstFetch notes when the first message arrived.
type firstFetch struct {
	sinks.Source
	at time.Time
}

func (f *firstFetch) Fetch(ctx context.Context) (bus.Message, error) {
	m, err := f.Source.Fetch(ctx)
	if err == nil && f.at.IsZero() {
		f.at = time.Now()
	}
	return m, err
}
