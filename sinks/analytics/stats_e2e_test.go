package analytics_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openengage/engage/delivery/dispatcher"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/sinks/clickhouse/chtest"
	"github.com/openengage/engage/triggers"
	"github.com/openengage/engage/triggers/scheduler"
)

// TestStatsThroughKafka: a campaign history produced to topics of the real
// broker as the services produce it — the scheduler's and the dispatcher's
// decisions (scheduler.DecisionMessage), the dispatcher's results
// (dispatcher.Feedback) with producer retries and results written again, a
// message that does not decode and one without a delivery id, and the
// devices' tag records, some twice — is written by one `engage sink`
// process (its three streams); the stats endpoint answers as the reference
// says, and the two bad results are in the dead-letter topic with their
// reasons.
func TestStatsThroughKafka(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	conn, cfg, _ := chtest.Database(t)
	ctx := context.Background()
	tagsTopic, decTopic, fbTopic, deadTopic := kafkatest.NewTopic(t, brokers, 4), kafkatest.NewTopic(t, brokers, 4), kafkatest.NewTopic(t, brokers, 4), kafkatest.NewTopic(t, brokers, 1)
	s := genStats(11, 60, false)

	produce := func(topic string, msgs []bus.Message) {
		t.Helper()
		p, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, topic), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer p.Close()
		for i := 0; i < len(msgs); i += 300 { // one batch after another: a device's messages stay in order
			if err := p.Produce(ctx, msgs[i:min(i+300, len(msgs))]); err != nil {
				t.Fatal(err)
			}
		}
	}
	var decs []bus.Message
	for _, r := range s.decisions { // in production order
		d := triggers.Decision{ID: r.ID, App: r.App, Campaign: r.Campaign, Version: r.Version, DeviceID: r.DeviceID, Occurrence: r.Occurrence,
			Outcome: triggers.Outcome(r.Outcome), Reason: r.Reason, Time: r.Time, SendAt: r.SendAt, Variant: r.Variant}
		v, err := json.Marshal(scheduler.FromDecision(&d))
		if err != nil {
			t.Fatal(err)
		}
		decs = append(decs, bus.Message{Key: []byte(r.App + "/" + r.DeviceID), Value: v})
	}
	var fbs []bus.Message
	for i, r := range s.results {
		v, err := json.Marshal(dispatcher.Feedback{ID: r.ID, DeliveryID: r.DeliveryID, App: r.App, Campaign: r.Campaign, Version: r.Version, Variant: r.Variant,
			DeviceID: r.DeviceID, Channel: triggers.Channel(r.Channel), Provider: r.Provider, Outcome: triggers.Outcome(r.Outcome), Reason: r.Reason,
			ProviderID: r.ProviderID, Attempts: int(r.Attempts), Time: r.Time})
		if err != nil {
			t.Fatal(err)
		}
		fbs = append(fbs, bus.Message{Key: []byte(r.App + "/" + r.DeviceID), Value: v})
		switch i {
		case len(s.results) / 3:
			fbs = append(fbs, bus.Message{Key: []byte("news/dev-001"), Value: []byte(`{"id":"cut-short","delivery_id":`)})
		case 2 * len(s.results) / 3:
			bad := strings.Replace(string(v), `"delivery_id":"`+r.DeliveryID+`"`, `"delivery_id":""`, 1)
			fbs = append(fbs, bus.Message{Key: []byte("news/dev-002"), Value: []byte(bad)})
		}
	}
	var tags []bus.Message
	for _, r := range s.tags {
		tags = append(tags, bus.Message{Key: r.Key(), Value: r.AppendBinary(nil)})
	}
	produce(decTopic, decs)
	produce(fbTopic, fbs)
	produce(tagsTopic, tags)

	bin := engageBin(t)
	fbGroup := "g-fb-" + cfg.Database
	logFile := filepath.Join(t.TempDir(), "sink.log")
	out, err := os.Create(logFile)
	if err != nil {
		t.Fatal(err)
	}
	sink := exec.Command(bin, "sink", "-kafka.brokers", strings.Join(brokers, ","), "-clickhouse.addr", strings.Join(cfg.Addr, ","),
		"-clickhouse.http-addr", chtest.HTTPAddr(t), "-clickhouse.database", cfg.Database,
		"-sink.topic", tagsTopic, "-sink.group", "g-tags-"+cfg.Database, "-sink.decisions-topic", decTopic, "-sink.decisions-group", "g-dec-"+cfg.Database,
		"-sink.feedback-topic", fbTopic, "-sink.feedback-group", fbGroup,
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
		var ids, deliveries, records uint64
		err1 := conn.QueryRow(ctx, "SELECT uniqExact(id) FROM "+cfg.Database+".decisions").Scan(&ids)
		err2 := conn.QueryRow(ctx, "SELECT uniqExact(delivery_id) FROM "+cfg.Database+".delivery_results").Scan(&deliveries)
		err3 := conn.QueryRow(ctx, "SELECT uniqExact(app, device_id, message_id) FROM "+cfg.Database+".tags").Scan(&records)
		lag, err4 := kafkabus.GroupLag(ctx, brokers, fbGroup, fbTopic)
		if err := errors.Join(err1, err2, err3, err4); err == nil && ids == uint64(len(s.keptDec)) && deliveries == uint64(len(s.keptRes)) && records == uint64(len(s.events)) && lag == 0 {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("after 2 minutes: %d of %d decisions, %d of %d deliveries, %d of %d tag records, feedback lag %d (%v)",
				ids, len(s.keptDec), deliveries, len(s.keptRes), records, len(s.events), lag, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var rows uint64
	if err := conn.QueryRow(ctx, "SELECT count() FROM "+cfg.Database+".delivery_results").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d decisions, %d deliveries (%d feedback messages, %d rows stored), %d tag records sunk in %s",
		len(s.keptDec), len(s.keptRes), len(fbs), rows, len(s.events), time.Since(start).Round(time.Millisecond))
	if rows <= uint64(len(s.keptRes)) {
		t.Errorf("%d result rows for %d deliveries: the copies did not reach the table, the test shows nothing about them", rows, len(s.keptRes))
	}

	h := newAPI(t, conn, cfg.Database)
	for _, app := range []string{newsApp, oddApp} {
		for _, camp := range statsCampaigns {
			for _, q := range statsQueries[:5] {
				check(t, h, q.path(app, camp), q.want(s, app, camp))
			}
		}
	}

	dead := kafkatest.ReadAsGroup(t, brokers, "audit-"+cfg.Database, deadTopic, time.Minute)
	var reasons []string
	for _, m := range dead {
		hdr := map[string]string{}
		for _, x := range m.Headers {
			hdr[x.Key] = string(x.Value)
		}
		if hdr["source_topic"] != fbTopic {
			t.Errorf("dead letter %q from %q, want %q", m.Key, hdr["source_topic"], fbTopic)
		}
		reasons = append(reasons, string(m.Key)+": "+hdr["reason"])
	}
	slices.Sort(reasons)
	if len(reasons) != 2 || !strings.HasPrefix(reasons[0], "news/dev-001: undecodable feedback: ") || reasons[1] != "news/dev-002: invalid feedback: no delivery_id" {
		t.Errorf("dead letters %q, want the undecodable one and the one without a delivery id", reasons)
	}
}
