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

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/openengage/engage/deploy/servicetest"
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
