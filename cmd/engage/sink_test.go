package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
)

// The decisions sink waits for a topic that does not exist yet, without
// creating it (joining a group on it would, with the broker's default
// partition count), and goes on once it exists.
func TestWaitForTopic(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	topic := fmt.Sprintf("test.wait-for-topic.%d", time.Now().UnixNano())
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	if err := waitForTopic(ctx, brokers, topic, "-sink.feedback", 100*time.Millisecond, log); err == nil {
		t.Fatal("returned for a topic that does not exist")
	}
	parts, err := kafkabus.Partitions(context.Background(), brokers)
	if err != nil {
		t.Fatal(err)
	}
	if parts[topic] != 0 {
		t.Fatalf("waiting created %s with %d partitions", topic, parts[topic])
	}
	if n := strings.Count(logs.String(), "topic does not exist: run engage topics (or set -sink.feedback=false)"); n != 1 {
		t.Errorf("said %d times that it waits:\n%s", n, logs.String())
	}
	if _, err := kafkabus.EnsureTopics(context.Background(), brokers, []kafkabus.TopicSpec{{Name: topic, Partitions: 2, ReplicationFactor: 1}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := waitForTopic(ctx, brokers, topic, "-sink.feedback", 100*time.Millisecond, log); err != nil {
		t.Fatalf("topic exists: %v", err)
	}
}
