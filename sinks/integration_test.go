package sinks_test

// Integration tests against the real Kafka and ClickHouse that `make test`
// starts.

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/sinks"
	"github.com/openengage/engage/sinks/clickhouse"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
)

// produce writes n records over devices to the topic, plus dups records
// sent again with the same message id (a client retry). It returns the
// number of distinct message ids.
func produce(t *testing.T, brokers []string, topic string, n, dups int, seed uint64) int {
	t.Helper()
	p, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, topic), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	rng := rand.New(rand.NewPCG(seed, 7))
	t0 := time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)
	var batch []bus.Message
	var recs []tag.Record
	flush := func() {
		if err := p.Produce(context.Background(), batch); err != nil {
			t.Fatal(err)
		}
		batch = batch[:0]
	}
	for i := 0; i < n+dups; i++ {
		var r tag.Record
		if i < n {
			r = tag.Record{Kind: tag.KindEvent, AppID: "news", DeviceID: fmt.Sprintf("dev-%04d", rng.IntN(2000)), MessageID: fmt.Sprintf("%d-%07d", seed, i),
				Name: "article_read", Time: t0.Add(time.Duration(rng.IntN(20*86400)) * time.Second), AppVersion: "2.3.1",
				Extras: []tag.Extra{{Key: "words", Value: tag.Number(float64(rng.IntN(2000)))}}}
			recs = append(recs, r)
		} else {
			r = recs[rng.IntN(len(recs))]
		}
		batch = append(batch, bus.Message{Key: r.Key(), Value: r.AppendBinary(nil)})
		if len(batch) == 5000 {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
	return n
}

func countDistinct(t *testing.T, conn driver.Conn, db string) (distinct, raw uint64) {
	t.Helper()
	if err := conn.QueryRow(context.Background(), "SELECT uniqExact(message_id), count() FROM "+db+".tags").Scan(&distinct, &raw); err != nil {
		t.Fatal(err)
	}
	return distinct, raw
}

// The sink is killed with SIGKILL in the middle of a batch and restarted:
// every record is counted exactly once (no loss, no double count).
func TestSinkSIGKILLMidBatch(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	conn, cfg, _ := chtest.Database(t)
	topic := kafkatest.NewTopic(t, brokers, 4)
	deadTopic := kafkatest.NewTopic(t, brokers, 1)
	const n, dups = 300000, 3000
	want := produce(t, brokers, topic, n, dups, 1)

	bin := filepath.Join(t.TempDir(), "engage")
	if out, err := exec.Command("go", "build", "-o", bin, "../cmd/engage").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	start := func() *exec.Cmd {
		cmd := exec.Command(bin, "sink", "-kafka.brokers", strings.Join(brokers, ","), "-clickhouse.addr", strings.Join(cfg.Addr, ","),
			"-clickhouse.http-addr", chtest.HTTPAddr(t), "-clickhouse.database", cfg.Database, "-sink.topic", topic, "-sink.dead-topic", deadTopic, "-sink.group", "g-"+cfg.Database,
			"-sink.batch-rows", "20000", "-metrics.addr", "", "-log.level", "warn")
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd
	}
	first := start()
	// Kill it once some batches are in and more are on their way.
	deadline := time.Now().Add(2 * time.Minute)
	for {
		d, _ := countDistinct(t, conn, cfg.Database)
		if d >= uint64(want)/5 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the sink wrote nothing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err := first.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.Wait()
	atKill, rawAtKill := countDistinct(t, conn, cfg.Database)
	t.Logf("killed with %d of %d records written (%d rows)", atKill, want, rawAtKill)
	if atKill >= uint64(want) {
		t.Fatal("the sink had finished before it was killed: raise n")
	}
	second := start()
	defer func() { _ = second.Process.Signal(syscall.SIGTERM); _ = second.Wait() }()
	deadline = time.Now().Add(3 * time.Minute)
	for {
		d, _ := countDistinct(t, conn, cfg.Database)
		if d == uint64(want) {
			break
		}
		if d > uint64(want) || time.Now().After(deadline) {
			t.Fatalf("distinct records %d, want %d", d, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
	d, raw := countDistinct(t, conn, cfg.Database)
	t.Logf("after restart: %d distinct records, %d rows stored (redelivered rows collapse on merge)", d, raw)
	// The answers a user sees: event counts and active devices are exact.
	var events uint64
	if err := conn.QueryRow(context.Background(), "SELECT uniqExactMerge(records) FROM "+cfg.Database+".counts_daily WHERE name = 'article_read'").Scan(&events); err != nil {
		t.Fatal(err)
	}
	if events != uint64(want) {
		t.Fatalf("counts_daily says %d events, want %d", events, want)
	}
	if err := conn.Exec(context.Background(), "OPTIMIZE TABLE "+cfg.Database+".tags FINAL"); err != nil {
		t.Fatal(err)
	}
	if _, raw := countDistinct(t, conn, cfg.Database); raw != uint64(want) {
		t.Fatalf("after merging, %d rows, want %d", raw, want)
	}
}

// ClickHouse stops for 30 s while records keep arriving: the sink backs off,
// lag grows, nothing is lost, and it catches up when ClickHouse returns.
// The test runs its own ClickHouse server so that stopping it disturbs no
// other test.
func TestSinkClickHouseDown30s(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	server := servicetest.Start(t, "clickhouse")
	cfg := clickhouse.DefaultConfig(server.Addr())
	ctx := context.Background()
	conn, f, err := clickhouse.Open(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := clickhouse.Migrate(ctx, conn, cfg, f); err != nil {
		t.Fatal(err)
	}
	topic := kafkatest.NewTopic(t, brokers, 4)
	dead := bus.NewMemory("dead", 1)
	consumer, err := kafkabus.NewConsumer(kafkabus.ConsumerConfig{Brokers: brokers, Group: "g-" + topic, Topic: topic}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer consumer.Close()
	scfg := sinks.DefaultConfig("dead")
	scfg.BatchRows, scfg.FlushInterval, scfg.BackoffMax = 5000, 200*time.Millisecond, 2*time.Second
	rows, err := clickhouse.NewHTTPWriter(ctx, conn, cfg, server.SecondAddr())
	if err != nil {
		t.Fatal(err)
	}
	s, err := sinks.New(scfg, consumer, sinks.TagWriter{Rows: rows, Permanent: clickhouse.IsPermanent}, dead, "tags", nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(sctx) }()
	defer func() { stop(); <-done }()

	// Load: 40 rounds of 2500 records, one every second; ClickHouse is
	// down from round 5 to round 35.
	total := 0
	var lagDuringOutage int64
	for round := 0; round < 40; round++ {
		total += produce(t, brokers, topic, 2500, 0, uint64(100+round))
		switch round {
		case 5:
			server.Run("down", "clickhouse")
		case 34:
			if lagDuringOutage, err = kafkabus.GroupLag(ctx, brokers, "g-"+topic, topic); err != nil {
				t.Fatal(err)
			}
			server.Run("up", "clickhouse")
		}
		time.Sleep(time.Second)
	}
	t.Logf("lag just before ClickHouse returned: %d messages", lagDuringOutage)
	if lagDuringOutage < 2500*20 {
		t.Fatalf("lag %d during a 30 s outage: the sink did not hold the records back", lagDuringOutage)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var d uint64
		err := conn.QueryRow(ctx, "SELECT uniqExact(message_id) FROM "+cfg.Database+".tags").Scan(&d)
		if err == nil && d == uint64(total) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the outage: %d distinct records, want %d (%v)", d, total, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if n := len(dead.Messages("dead")); n != 0 {
		t.Fatalf("%d records went to the dead-letter topic", n)
	}
}
