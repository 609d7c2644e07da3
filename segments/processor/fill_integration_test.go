package processor_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tag"
	"github.com/openengage/engage/segments/processor"
	"github.com/openengage/engage/sinks/clickhouse"
)

// New segments count the past at once: the README's walkthrough (an event
// is sent, then a segment that matches it is saved: size 1, complete), and
// a population whose records lie up to 30 days back, with segments saved
// while more records keep coming: the sizes are exactly those a plain
// evaluation of every record gives. The real broker, the real `engage
// sink` writing the real ClickHouse, and the processor reading it back.
// A processor without the history store says the same segments are
// incomplete and since when they count.
const fillToken = "fill-test-token-0123456789"

func TestFillFromHistory(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	chAddr := servicetest.Env(t, "ENGAGE_CLICKHOUSE_ADDR", "CLICKHOUSE")[0]
	chHTTP := servicetest.Env(t, "ENGAGE_CLICKHOUSE_HTTP_ADDR", "CLICKHOUSE HTTP")[0]
	cfg := topics(t, brokers, 4)
	cfg.FlushInterval = 20 * time.Millisecond
	cfg.SimulatedClock = false // "in the last 14d" is relative to the wall clock
	db := "fill_" + strings.ReplaceAll(cfg.Group, "-", "_")
	cfg.SinkGroup = cfg.Group + "-sink"

	// The sink, as users run it, into a database of the test's own.
	bin := buildEngage(t)
	sink := exec.Command(bin, "sink", "-kafka.brokers", strings.Join(brokers, ","), "-sink.topic", cfg.Topic, "-sink.group", cfg.SinkGroup,
		"-sink.dead-topic", cfg.Topic+".dead", "-clickhouse.addr", chAddr, "-clickhouse.http-addr", chHTTP, "-clickhouse.database", db,
		"-sink.flush-interval", "50ms", "-metrics.addr", "", "-log.level", "warn")
	sink.Stderr = os.Stderr
	if err := sink.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = sink.Process.Kill()
		_ = sink.Wait()
	})
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	chCfg := clickhouse.DefaultConfig(chAddr)
	chCfg.Database = db
	conn, _, err := clickhouse.Open(ctx, chCfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Cleanup(func() { _ = conn.Exec(context.Background(), "DROP DATABASE IF EXISTS "+db) })
	cfg.History = clickhouse.NewHistoryReader(conn, db)

	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, cfg.ChangesTopic), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	tokens := fillToken + ":*"
	in := startInstance(t, cfg, prod, tokens)
	defer in.stop(t)
	put := func(in *instance, name, text string) {
		t.Helper()
		req, _ := http.NewRequest("PUT", in.srv.URL+"/v1/segments/news/"+name, strings.NewReader(text))
		req.Header.Set("Authorization", "Bearer "+fillToken)
		req.Header.Set("Content-Type", "text/plain")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("put %s: %d %s", name, resp.StatusCode, b)
		}
	}
	now := time.Now().UTC().Truncate(time.Second)
	var offset int
	rec := func(dev string, at time.Time, r tag.Record) bus.Message {
		offset++
		r.AppID, r.DeviceID, r.MessageID = "news", dev, fmt.Sprintf("m%06d", offset)
		r.Time, r.ReceivedAt = at, now
		return bus.Message{Key: r.Key(), Value: r.AppendBinary(nil)}
	}
	sport := func(dev string, at time.Time) bus.Message {
		return rec(dev, at, tag.Record{Kind: tag.KindEvent, Name: "article_read", Extras: []tag.Extra{{Key: "category", Value: tag.String("sport")}}})
	}

	// The walkthrough: one event, then the segment.
	produce(t, brokers, cfg.Topic, []bus.Message{sport("d1", now.Add(-time.Minute))})
	waitCommitted(t, brokers, cfg.SinkGroup, cfg.Topic, 1)
	put(in, "sport", `did event "article_read" where category = "sport"`)
	st := waitComplete(t, in, "sport", time.Minute)
	if *st.Size != 1 {
		t.Fatalf("walkthrough: segment %q has size %d, want 1 (the event sent before it was saved): %+v", "sport", *st.Size, st)
	}
	x := explainText(t, in, "sport", "d1")
	if !strings.Contains(x, "filled from the history store") {
		t.Errorf("explain does not say what the history covers:\n%s", x)
	}

	// A population over the past 30 days, some of it sent again (the sink
	// collapses nothing here: the history store holds it twice).
	r := rand.New(rand.NewPCG(8, 8))
	type devData struct {
		sport   []time.Time
		topic   string
		topicAt time.Time
		first   time.Time
	}
	data := map[string]*devData{}
	var msgs []bus.Message
	gen := func(n int) {
		for range n {
			dev := fmt.Sprintf("u%03d", r.IntN(400))
			d := data[dev]
			if d == nil {
				d = &devData{}
				data[dev] = d
			}
			// Times on whole hours away from the 14-day edge, so that the
			// clock moving during the test changes no window.
			at := now.Add(-time.Duration(1+r.IntN(30*24)) * time.Hour)
			if e := now.Add(-14 * 24 * time.Hour); at.Sub(e).Abs() < 2*time.Hour {
				at = at.Add(4 * time.Hour)
			}
			var m bus.Message
			switch x := r.IntN(10); {
			case x < 5:
				m = sport(dev, at)
				d.sport = append(d.sport, at)
			case x < 7:
				m = rec(dev, at, tag.Record{Kind: tag.KindEvent, Name: "article_read", Extras: []tag.Extra{{Key: "category", Value: tag.String("politics")}}})
			case x < 9:
				m = rec(dev, at, tag.Record{Kind: tag.KindSessionStart, SessionID: fmt.Sprint(offset)})
				if d.first.IsZero() || at.Before(d.first) {
					d.first = at
				}
			default:
				v := []string{"sport", "culture"}[r.IntN(2)]
				m = rec(dev, at, tag.Record{Kind: tag.KindAppInfo, AppInfo: []tag.Extra{{Key: "topic", Value: tag.String(v)}}})
				if !at.Before(d.topicAt) {
					d.topic, d.topicAt = v, at
				}
			}
			msgs = append(msgs, m)
		}
	}
	gen(6000)
	produce(t, brokers, cfg.Topic, msgs)
	segs := map[string]string{
		"sport3":       `did event "article_read" where category = "sport" at least 3 times in last 14d`,
		"topic_sport":  `app_info "topic" = "sport"`,
		"week_old":     `first_session more than 7d ago`,
		"sport3_loyal": `segment "sport3" and first_session more than 7d ago`,
	}
	for _, name := range []string{"sport3", "topic_sport", "week_old", "sport3_loyal"} {
		put(in, name, segs[name])
		// More records keep coming while the fills run.
		msgs = msgs[:0]
		gen(500)
		produce(t, brokers, cfg.Topic, msgs)
	}
	total := 1 + 6000 + 4*500
	waitCommitted(t, brokers, cfg.SinkGroup, cfg.Topic, int64(total))
	waitCommitted(t, brokers, cfg.Group, cfg.Topic, int64(total))
	want := map[string]int{}
	for _, d := range data {
		n := 0
		for _, at := range d.sport {
			if at.After(now.Add(-14 * 24 * time.Hour)) {
				n++
			}
		}
		old := !d.first.IsZero() && d.first.Before(now.Add(-7*24*time.Hour))
		if n >= 3 {
			want["sport3"]++
			if old {
				want["sport3_loyal"]++
			}
		}
		if d.topic == "sport" {
			want["topic_sport"]++
		}
		if old {
			want["week_old"]++
		}
	}
	for name := range segs {
		st := waitComplete(t, in, name, time.Minute)
		if *st.Size != want[name] {
			t.Errorf("segment %s (%s): size %d, a plain evaluation of every record gives %d (%+v)", name, segs[name], *st.Size, want[name], st)
		}
	}
	if t.Failed() {
		return
	}
	t.Logf("sizes after the fills: %v over %d devices and %d records", want, len(data), total)

	// Without the history store: the same segments say they are not
	// complete, and since when they count.
	cfg2 := cfg
	cfg2.Group, cfg2.ChangelogTopic, cfg2.History = cfg.Group+"-nohist", cfg.ChangelogTopic+"2", nil
	if _, err := kafkabus.EnsureTopics(ctx, brokers, []kafkabus.TopicSpec{{Name: cfg2.ChangelogTopic, Partitions: 4, ReplicationFactor: 1, Compacted: true}}); err != nil {
		t.Fatal(err)
	}
	// A new group starts at the first offset: to see the segments as saved
	// after the records, it must start past them.
	for p := range 4 {
		end, err := kafkabus.PartitionEnd(ctx, brokers, cfg.Topic, p)
		if err != nil {
			t.Fatal(err)
		}
		commitOffset(t, brokers, cfg2.Group, cfg.Topic, p, end)
	}
	in2 := startInstance(t, cfg2, prod, tokens)
	defer in2.stop(t)
	deadline := time.Now().Add(time.Minute)
	for {
		var resp struct{ Segments []processor.SegmentInfo }
		getJSON(t, in2.srv.URL+"/v1/segments?app=news", fillToken, &resp)
		var got *processor.SegmentInfo
		for i := range resp.Segments {
			if resp.Segments[i].Name == "sport3" {
				got = &resp.Segments[i]
			}
		}
		if got != nil && got.Complete != nil && len(got.Partitions) == 4 {
			if *got.Complete || got.CountsFrom == nil || !strings.Contains(got.Why, "no history store") {
				t.Fatalf("without a history store, %s says complete %v, counts from %v, why %q", got.Name, *got.Complete, got.CountsFrom, got.Why)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no status from the processor without history: %+v", resp)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitComplete waits until a segment is complete on every partition.
func waitComplete(t *testing.T, in *instance, name string, limit time.Duration) processor.SegmentInfo {
	t.Helper()
	deadline := time.Now().Add(limit)
	var last processor.SegmentInfo
	for time.Now().Before(deadline) {
		last = processor.SegmentInfo{} // fields absent from the answer are zero
		if getJSON(t, in.srv.URL+"/v1/segments/news/"+name, fillToken, &last) == 200 &&
			last.Complete != nil && *last.Complete && !last.Filling && last.Size != nil && len(last.MissingPartitions) == 0 {
			return last
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("segment %s not complete after %s: %+v", name, limit, last)
	return last
}

func explainText(t *testing.T, in *instance, seg, dev string) string {
	t.Helper()
	var x struct{ Text, History string }
	if code := getJSON(t, in.srv.URL+"/v1/segments/news/"+seg+"/explain?device="+dev, fillToken, &x); code != 200 {
		t.Fatalf("explain %s %s: %d", seg, dev, code)
	}
	return x.Text
}

// waitCommitted waits until a group has committed n records of a topic
// (offsets summed over partitions).
func waitCommitted(t *testing.T, brokers []string, group, topic string, n int64) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		parts, err := kafkabus.Partitions(ctx, brokers)
		var sum int64
		for p := range parts[topic] {
			if c, e := kafkabus.CommittedOffset(ctx, brokers, group, topic, p); e == nil && c > 0 {
				sum += c
			}
		}
		cancel()
		if err == nil && sum >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("group %s committed %d of %d records of %s (%v)", group, sum, n, topic, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// commitOffset commits an offset for a group that has no members (as
// kafka-consumer-groups --reset-offsets does).
func commitOffset(t *testing.T, brokers []string, group, topic string, partition int, offset int64) {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	resp, err := client.OffsetCommit(context.Background(), &kafka.OffsetCommitRequest{GroupID: group, GenerationID: -1,
		Topics: map[string][]kafka.OffsetCommit{topic: {{Partition: partition, Offset: offset}}}})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Error != nil {
			t.Fatalf("commit %s/%d for %s: %v", topic, partition, group, p.Error)
		}
	}
}
