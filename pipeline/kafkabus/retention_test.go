package kafkabus_test

// Retention against the real broker: records whose event times are weeks
// old or hours ahead, posted through the collector, are all read by a
// consumer that starts after several retention checks.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sort"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/collector"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
	"github.com/openengage/engage/pipeline/tag"
)

// Retention settings of the test's own broker and topics: checks every
// 200 ms (Kafka's default is 5 min), records kept 20 s after they arrive,
// segments rolled every 500 ms so that old ones can go while new ones
// are written.
const (
	retentionCheck = "200"
	retentionMs    = 20000
	segmentMs      = 500
	segmentBytes   = 1 << 20 // Kafka 4's minimum
)

func TestRetentionKeepsEveryAcknowledgedRecord(t *testing.T) {
	broker := servicetest.Start(t, "kafka", "ENGAGE_KAFKA_RETENTION_CHECK_MS="+retentionCheck)
	brokers := []string{broker.Addr()}
	configs := map[string]string{"retention.ms": strconv.Itoa(retentionMs), "segment.ms": strconv.Itoa(segmentMs), "segment.bytes": strconv.Itoa(segmentBytes)}

	// The fix: the topic as EnsureTopics creates engage.tags (log-append
	// time), the collector and its producer as they are.
	t.Run("LogAppendTime", func(t *testing.T) {
		t.Parallel()
		spec := kafkabus.PlatformTopics(4, 1)[0]
		spec.Name = "engage.tags.retention-test"
		for k, v := range configs {
			spec.Configs[k] = v
		}
		if _, err := kafkabus.EnsureTopics(context.Background(), brokers, []kafkabus.TopicSpec{spec}); err != nil {
			t.Fatal(err)
		}
		prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, spec.Name), nil)
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		start := time.Now().Truncate(time.Millisecond)
		acked := postStream(t, prod, streamDevices(60, 10))
		done := time.Now()
		kafkatest.WaitRetentionChecks(t, brokers, 3, 60*time.Second)

		got := kafkatest.ReadAsGroup(t, brokers, "late-"+spec.Name, spec.Name, 60*time.Second)
		missing, extra := diffIDs(t, acked, got)
		if len(missing) > 0 || len(extra) > 0 {
			t.Fatalf("%d records acknowledged, %d read by a consumer started after 3 retention checks: %d missing (e.g. %v), %d not acknowledged or read twice (e.g. %v)",
				len(acked), len(got), len(missing), first(missing), len(extra), first(extra))
		}
		for _, m := range got {
			if m.Time.Before(start) || m.Time.After(done) {
				t.Fatalf("record %s/%d has log time %s, outside the %s..%s it was sent in", m.Key, m.Offset, m.Time.UTC(), start.UTC(), done.UTC())
			}
		}
		t.Logf("%d records acknowledged, %d read by a consumer started after 3 retention checks", len(acked), len(got))

		// Retention follows when the records arrived: all of them, those
		// with future event times included, go once retention.ms has
		// passed; none pins its segment.
		deadline := done.Add(retentionMs*time.Millisecond + 30*time.Second)
		for {
			n, err := kafkabus.CountMessages(context.Background(), brokers, spec.Name)
			if err == nil && n == 0 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("%d records still in the topic %s after its retention of %d ms (%v)", n, time.Since(done).Round(time.Second), retentionMs, err)
			}
			time.Sleep(250 * time.Millisecond)
		}
		if since := time.Since(start); since < retentionMs*time.Millisecond {
			t.Fatalf("records deleted %s after they arrived, before the retention of %d ms", since, retentionMs)
		}
	})

	// The old behaviour, kept to show that this test catches it: the topic
	// on CreateTime and the event time as the Kafka timestamp. Acknowledged
	// records with old event times are gone before a late consumer reads
	// them. (Only the past here: Kafka 4 refuses CreateTime records more
	// than an hour ahead, so the future stream would get 503s.)
	t.Run("EventTimeAsLogTimeLosesRecords", func(t *testing.T) {
		t.Parallel()
		topic := createTopic(t, brokers, 4, mergeConfigs(configs, map[string]string{kafkabus.ConfigTimestampType: "CreateTime"}))
		prod := newEventTimeProducer(brokers, topic)
		defer prod.Close()
		acked := postStream(t, prod, streamDevices(60, 0))
		kafkatest.WaitRetentionChecks(t, brokers, 3, 60*time.Second)
		got := kafkatest.ReadAsGroup(t, brokers, "late-"+topic, topic, 60*time.Second)
		missing, extra := diffIDs(t, acked, got)
		if len(missing) == 0 || len(extra) > 0 {
			t.Fatalf("event times as Kafka timestamps: %d acknowledged, %d read, %d missing, %d extra; the test should see records lost", len(acked), len(got), len(missing), len(extra))
		}
		t.Logf("event times as Kafka timestamps: %d records acknowledged, %d read by the late consumer: %d lost", len(acked), len(got), len(missing))
	})
}

func mergeConfigs(a, b map[string]string) map[string]string {
	out := map[string]string{}
	for _, m := range []map[string]string{a, b} {
		for k, v := range m {
			out[k] = v
		}
	}
	return out
}

func first(ids []string) []string { return ids[:min(3, len(ids))] }

// device is one device's requests to the collector, each a JSON array.
type device struct {
	id       string
	requests [][]byte
	ids      []string
}

// streamDevices returns offline devices whose events lie 2 to 8 weeks in
// the past (a queue flushed late, an import) and skewed ones whose clocks
// are 2 to 22 hours ahead (the collector accepts up to 24 h), 3 requests
// of 25 records each.
func streamDevices(offline, skewed int) []device {
	now := time.Now().UTC()
	var out []device
	for d := range offline + skewed {
		dv := device{id: fmt.Sprintf("dev-%03d", d)}
		base := now.Add(-time.Duration(14+d%43) * 24 * time.Hour)
		if d >= offline {
			base = now.Add(time.Duration(2+d%21) * time.Hour)
		}
		for r := range 3 {
			var recs []map[string]any
			for i := range 25 {
				id := fmt.Sprintf("%s-%02d-%02d", dv.id, r, i)
				recs = append(recs, map[string]any{"type": "event", "deviceId": dv.id, "messageId": id, "name": "article_read",
					"time": base.Add(time.Duration(r*25+i) * time.Second).Format(time.RFC3339Nano), "extras": map[string]any{"n": i}})
				dv.ids = append(dv.ids, id)
			}
			b, _ := json.Marshal(recs)
			dv.requests = append(dv.requests, b)
		}
		out = append(out, dv)
	}
	return out
}

// postStream posts every device's requests to a collector producing
// through prod, 8 devices at a time, and returns the message ids it
// acknowledged. Every request must be accepted whole.
func postStream(t *testing.T, prod bus.Producer, devices []device) map[string]bool {
	t.Helper()
	app := &collector.App{ID: "news", WriteKeys: []string{"wk-retention"}}
	apps, err := collector.NewApps(app)
	if err != nil {
		t.Fatal(err)
	}
	s, err := collector.New(collector.DefaultConfig(), apps, prod, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(s.Handler())
	defer srv.Close()
	client := &http.Client{Timeout: 30 * time.Second}
	var mu sync.Mutex
	acked := map[string]bool{}
	work := make(chan device)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for dv := range work {
				for i, body := range dv.requests {
					req, _ := http.NewRequest(http.MethodPost, srv.URL+"/v1/tags", bytes.NewReader(body))
					req.Header.Set("Content-Type", "application/json")
					req.SetBasicAuth("wk-retention", "")
					resp, err := client.Do(req)
					if err != nil {
						t.Errorf("%s request %d: %v", dv.id, i, err)
						continue
					}
					var r collector.Response
					err = json.NewDecoder(resp.Body).Decode(&r)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK || err != nil || r.Accepted != 25 {
						t.Errorf("%s request %d: status %d, %+v, %v", dv.id, i, resp.StatusCode, r, err)
						continue
					}
					mu.Lock()
					for _, id := range dv.ids[i*25 : (i+1)*25] {
						acked[id] = true
					}
					mu.Unlock()
				}
			}
		}()
	}
	for _, dv := range devices {
		work <- dv
	}
	close(work)
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	return acked
}

// diffIDs compares the message ids read with those acknowledged: missing
// were acknowledged and not read, extra were read and not acknowledged, or
// read twice.
func diffIDs(t *testing.T, acked map[string]bool, got []bus.Message) (missing, extra []string) {
	t.Helper()
	seen := map[string]bool{}
	for _, m := range got {
		var r tag.Record
		if err := r.UnmarshalBinary(m.Value); err != nil {
			t.Fatalf("%d/%d: %v", m.Partition, m.Offset, err)
		}
		if !acked[r.MessageID] || seen[r.MessageID] {
			extra = append(extra, r.MessageID)
		}
		seen[r.MessageID] = true
	}
	for id := range acked {
		if !seen[id] {
			missing = append(missing, id)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	return missing, extra
}

// eventTimeProducer is the producer as it was: each record's Kafka
// timestamp is its event time.
type eventTimeProducer struct{ w *kafka.Writer }

func newEventTimeProducer(brokers []string, topic string) *eventTimeProducer {
	return &eventTimeProducer{w: &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: topic, Balancer: &kafka.Murmur2Balancer{},
		RequiredAcks: kafka.RequireAll, BatchTimeout: 2 * time.Millisecond, Transport: &kafka.Transport{MetadataTTL: time.Second}}}
}

func (p *eventTimeProducer) Produce(ctx context.Context, msgs []bus.Message) error {
	km := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		var r tag.Record
		if err := r.UnmarshalBinary(m.Value); err != nil {
			return err
		}
		km[i] = kafka.Message{Key: m.Key, Value: m.Value, Time: r.Time}
	}
	if err := p.w.WriteMessages(ctx, km...); err != nil {
		return fmt.Errorf("%w: %w", err, bus.ErrUnavailable)
	}
	return nil
}

func (p *eventTimeProducer) Close() error { return p.w.Close() }
