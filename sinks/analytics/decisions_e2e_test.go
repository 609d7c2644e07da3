package analytics_test

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

// TestDecisionsThroughKafka: decisions produced to a topic of the real
// broker as the scheduler produces them (scheduler.DecisionMessage, key
// app/device), with producer retries, decisions made again and an
// undecodable message; one `engage sink` process writes them next to a tags
// stream; the API answers as the reference says, and the undecodable
// message is in the dead-letter topic with its reason.
func TestDecisionsThroughKafka(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	conn, cfg, _ := chtest.Database(t)
	ctx := context.Background()
	tagsTopic, decTopic, deadTopic := kafkatest.NewTopic(t, brokers, 4), kafkatest.NewTopic(t, brokers, 4), kafkatest.NewTopic(t, brokers, 1)

	// Copies in the order they were produced: each copy's offset in the
	// set is its place in that order, which Kafka keeps per device.
	s := genDecisionSet(7, 15, false)
	msgs := make([]bus.Message, 0, len(s.copies)+1)
	for i, r := range s.copies {
		d := triggers.Decision{ID: r.ID, App: r.App, Campaign: r.Campaign, Version: r.Version, DeviceID: r.DeviceID, Occurrence: r.Occurrence,
			Outcome: triggers.Outcome(r.Outcome), Reason: r.Reason, Time: r.Time, SendAt: r.SendAt, Variant: r.Variant}
		v, err := json.Marshal(scheduler.FromDecision(&d))
		if err != nil {
			t.Fatal(err)
		}
		if r.Offset != int64(i) {
			t.Fatalf("copy %d has offset %d: the set is not in production order", i, r.Offset)
		}
		msgs = append(msgs, bus.Message{Key: []byte(r.App + "/" + r.DeviceID), Value: v})
		if i == len(s.copies)/2 {
			msgs = append(msgs, bus.Message{Key: []byte("news/dev-001"), Value: []byte(`{"id":"cut-short","app":"news"`)})
		}
	}
	p, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, decTopic), nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < len(msgs); i += 300 { // one batch after another: a device's messages stay in order
		if err := p.Produce(ctx, msgs[i:min(i+300, len(msgs))]); err != nil {
			t.Fatal(err)
		}
	}
	_ = p.Close()
	tp, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, tagsTopic), nil)
	if err != nil {
		t.Fatal(err)
	}
	var tags []bus.Message
	for i := range 3 {
		r := tag.Record{Kind: tag.KindEvent, AppID: newsApp, DeviceID: "dev-001", MessageID: "e2e-" + string(rune('a'+i)), Name: "article_read", Time: day0}
		tags = append(tags, bus.Message{Key: r.Key(), Value: r.AppendBinary(nil)})
	}
	if err := tp.Produce(ctx, tags); err != nil {
		t.Fatal(err)
	}
	_ = tp.Close()

	bin := engageBin(t)
	decGroup := "g-dec-" + cfg.Database
	logFile := filepath.Join(t.TempDir(), "sink.log")
	out, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	sink := exec.Command(bin, "sink", "-kafka.brokers", strings.Join(brokers, ","), "-clickhouse.addr", strings.Join(cfg.Addr, ","),
		"-clickhouse.http-addr", chtest.HTTPAddr(t), "-clickhouse.database", cfg.Database,
		"-sink.topic", tagsTopic, "-sink.group", "g-tags-"+cfg.Database, "-sink.decisions-topic", decTopic, "-sink.decisions-group", decGroup,
		"-sink.dead-topic", deadTopic, "-sink.flush-interval", "100ms", "-metrics.addr", "", "-log.level", "info")
	sink.Stdout, sink.Stderr = out, out
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		_ = sink.Process.Signal(syscall.SIGTERM)
		_ = sink.Wait()
		_ = out.Close()
		if t.Failed() {
			data, _ := os.ReadFile(logFile)
			t.Logf("engage sink log:\n%s", data)
		}
	}()

	start := time.Now()
	for deadline := time.Now().Add(2 * time.Minute); ; {
		var ids, events uint64
		err1 := conn.QueryRow(ctx, "SELECT uniqExact(id) FROM "+cfg.Database+".decisions").Scan(&ids)
		err2 := conn.QueryRow(ctx, "SELECT uniqExact(message_id) FROM "+cfg.Database+".tags").Scan(&events)
		lag, err3 := kafkabus.GroupLag(ctx, brokers, decGroup, decTopic)
		if err1 == nil && err2 == nil && err3 == nil && ids == uint64(len(s.kept)) && events == 3 && lag == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes: %d of %d decisions (%v), %d of 3 tag records (%v), decisions lag %d (%v)", ids, len(s.kept), err1, events, err2, lag, err3)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var rows uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+cfg.Database+".decisions").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d decisions (%d messages, %d rows stored) and 3 tag records sunk in %s", len(s.kept), len(msgs), rows, time.Since(start).Round(time.Millisecond))

	h := newAPI(t, conn, cfg.Database)
	for app, devs := range s.devices {
		for _, camp := range s.campaigns {
			for _, dev := range devs {
				check(t, h, devicePath(app, camp, dev), s.device(app, camp, dev))
			}
			check(t, h, campaignPath(app, camp, "2026-03-01", "2026-05-01"), s.counts(app, camp, date("2026-03-01"), date("2026-05-01")))
		}
	}

	dead := kafkatest.ReadAsGroup(t, brokers, "audit-"+cfg.Database, deadTopic, time.Minute)
	if len(dead) != 1 {
		t.Fatalf("%d dead letters, want 1", len(dead))
	}
	hdr := map[string]string{}
	for _, x := range dead[0].Headers {
		hdr[x.Key] = string(x.Value)
	}
	if !strings.HasPrefix(hdr["reason"], "undecodable decision: ") || hdr["source_topic"] != decTopic || string(dead[0].Key) != "news/dev-001" {
		t.Errorf("dead letter %q, headers %v", dead[0].Key, hdr)
	}
}
