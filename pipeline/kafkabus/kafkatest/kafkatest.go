// Package kafkatest gives tests a Kafka broker: the real one that
// `make services` starts (ENGAGE_KAFKA_BROKERS), or an in-process kfake
// cluster for fast unit-level tests.
package kafkatest

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/openengage/engage/deploy/servicetest"
	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
)

// RealBrokers returns the brokers of the real Kafka that `make services`
// started (ENGAGE_KAFKA_BROKERS); see servicetest.Env.
func RealBrokers(t testing.TB) []string {
	t.Helper()
	return servicetest.Env(t, "ENGAGE_KAFKA_BROKERS", "KAFKA")
}

// Fake starts an in-process kfake cluster and returns its brokers.
func Fake(t testing.TB, partitions int) []string {
	t.Helper()
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(partitions))
	if err != nil {
		t.Fatalf("start kfake: %v", err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()
}

var seq atomic.Int64

// NewTopic creates a topic with a unique name for one test.
func NewTopic(t testing.TB, brokers []string, partitions int) string {
	t.Helper()
	name := fmt.Sprintf("test.%s.%d.%d", sanitize(t.Name()), time.Now().UnixNano()%1e9, seq.Add(1))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := kafkabus.EnsureTopics(ctx, brokers, []kafkabus.TopicSpec{{Name: name, Partitions: partitions, ReplicationFactor: 1}}); err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	return name
}

// ReadAsGroup reads topic as the only member of a new consumer group,
// group, which starts at the oldest message the topic still has (as a
// consumer that lags, a new group or a replay does). It reads until it has
// reached, on every partition, the end the partition had when it started,
// and fails the test when that takes longer than timeout.
func ReadAsGroup(t testing.TB, brokers []string, group, topic string, timeout time.Duration) []bus.Message {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	parts, err := kafkabus.Partitions(ctx, brokers)
	if err != nil || parts[topic] == 0 {
		t.Fatalf("partitions of %s: %d, %v", topic, parts[topic], err)
	}
	left := map[int]int64{} // partition → its end, while not reached
	for p := range parts[topic] {
		first, end, err := kafkabus.PartitionBounds(ctx, brokers, topic, p)
		if err != nil {
			t.Fatal(err)
		}
		if end > first {
			left[p] = end
		}
	}
	c, err := kafkabus.NewConsumer(kafkabus.ConsumerConfig{Brokers: brokers, Group: group, Topic: topic}, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var out []bus.Message
	for len(left) > 0 {
		m, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("group %s read %d messages of %s, partitions %v not read to their end: %v", group, len(out), topic, left, err)
		}
		out = append(out, m)
		if end, ok := left[m.Partition]; ok && m.Offset+1 >= end {
			delete(left, m.Partition)
		}
	}
	return out
}

// WaitRetentionChecks returns once the broker has run n retention checks
// since the call, or fails the test after timeout. Each round writes a
// record stamped 30 days ago to a probe topic on CreateTime (retention 1 h)
// and waits until a retention check has deleted it. For tests on a broker
// of their own started with a small ENGAGE_KAFKA_RETENTION_CHECK_MS.
func WaitRetentionChecks(t testing.TB, brokers []string, n int, timeout time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	probe := fmt.Sprintf("test.retention-probe.%d.%d", time.Now().UnixNano()%1e9, seq.Add(1))
	client := kafkabus.NewClient(brokers, 30*time.Second)
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{{Topic: probe, NumPartitions: 1, ReplicationFactor: 1,
		ConfigEntries: []kafka.ConfigEntry{{ConfigName: kafkabus.ConfigTimestampType, ConfigValue: "CreateTime"}, {ConfigName: "retention.ms", ConfigValue: "3600000"}}}}})
	if err == nil {
		err = resp.Errors[probe]
	}
	if err != nil {
		t.Fatalf("create probe topic: %v", err)
	}
	w := &kafka.Writer{Addr: kafka.TCP(brokers...), Topic: probe, RequiredAcks: kafka.RequireAll, BatchTimeout: time.Millisecond,
		Transport: kafkabus.Transport(&kafka.Transport{MetadataTTL: time.Second})}
	defer w.Close()
	for i := range n {
		if err := w.WriteMessages(ctx, kafka.Message{Value: []byte("probe"), Time: time.Now().Add(-30 * 24 * time.Hour)}); err != nil {
			t.Fatalf("retention probe %d: %v", i, err)
		}
		for {
			count, err := kafkabus.CountMessages(ctx, brokers, probe)
			if err == nil && count == 0 {
				break
			}
			if ctx.Err() != nil {
				t.Fatalf("%d of %d retention checks seen in %s: is the broker's log.retention.check.interval.ms small (ENGAGE_KAFKA_RETENTION_CHECK_MS)? (%v)", i, n, timeout, err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	if len(b) > 80 {
		b = b[:80]
	}
	return string(b)
}
