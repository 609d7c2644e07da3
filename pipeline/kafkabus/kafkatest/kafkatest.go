// Package kafkatest gives tests a Kafka broker: the real one that
// `make services` starts (ENGAGE_KAFKA_BROKERS), or an in-process kfake
// cluster for fast unit-level tests.
package kafkatest

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/openengage/engage/pipeline/kafkabus"
)

// RealBrokers returns the brokers of the real Kafka that `make services`
// started. Without ENGAGE_KAFKA_BROKERS the test is skipped, loudly; with
// ENGAGE_REQUIRE_SERVICES=1 (as `make test` sets) it fails instead.
func RealBrokers(t testing.TB) []string {
	t.Helper()
	v := os.Getenv("ENGAGE_KAFKA_BROKERS")
	if v == "" {
		msg := "NO REAL KAFKA: integration test not run. Start one with `make services` and export ENGAGE_KAFKA_BROKERS (`make test` does both)"
		if os.Getenv("ENGAGE_REQUIRE_SERVICES") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return strings.Split(v, ",")
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

// ServicesScript returns the path of deploy/services/services.sh when the
// test may start and stop its own services (`make test` sets
// ENGAGE_SERVICES_SCRIPT); otherwise the test is skipped, loudly, or fails
// under ENGAGE_REQUIRE_SERVICES=1.
func ServicesScript(t testing.TB) string {
	t.Helper()
	v := os.Getenv("ENGAGE_SERVICES_SCRIPT")
	if v == "" {
		msg := "NO SERVICES SCRIPT: this test starts and stops its own broker; run it through `make test` (or set ENGAGE_SERVICES_SCRIPT=deploy/services/services.sh)"
		if os.Getenv("ENGAGE_REQUIRE_SERVICES") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return v
}
