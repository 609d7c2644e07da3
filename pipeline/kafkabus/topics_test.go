package kafkabus_test

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
)

var topicSeq atomic.Int64

// createTopic creates a topic the way a tool or an older engage did,
// with the given configs, and returns its name.
func createTopic(t *testing.T, brokers []string, partitions int, configs map[string]string) string {
	t.Helper()
	name := fmt.Sprintf("test.%s.%d.%d", strings.ReplaceAll(t.Name(), "/", "-"), time.Now().UnixNano()%1e9, topicSeq.Add(1))
	tc := kafka.TopicConfig{Topic: name, NumPartitions: partitions, ReplicationFactor: 1}
	for k, v := range configs {
		tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: v})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
	resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: []kafka.TopicConfig{tc}})
	if err == nil {
		err = resp.Errors[name]
	}
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	return name
}

// timestampType asks the broker for a topic's message.timestamp.type.
func timestampType(t *testing.T, brokers []string, topic string) string {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
	resp, err := client.DescribeConfigs(context.Background(), &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{kafkabus.ConfigTimestampType}}}})
	if err != nil || len(resp.Resources) != 1 || resp.Resources[0].Error != nil || len(resp.Resources[0].ConfigEntries) != 1 {
		t.Fatalf("describe %s: %v %+v", topic, err, resp)
	}
	return resp.Resources[0].ConfigEntries[0].ConfigValue
}

// Topics are created with log-append time; an existing one on CreateTime
// is reported, and fixed by FixTimestampType.
func timestampTypeContract(t *testing.T, brokers []string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	fresh := kafkatest.NewTopic(t, brokers, 2) // through EnsureTopics
	if got := timestampType(t, brokers, fresh); got != kafkabus.LogAppendTime {
		t.Fatalf("created topic has %s=%s", kafkabus.ConfigTimestampType, got)
	}
	old := createTopic(t, brokers, 2, map[string]string{kafkabus.ConfigTimestampType: "CreateTime"})
	specs := []kafkabus.TopicSpec{{Name: fresh, Partitions: 2, ReplicationFactor: 1}, {Name: old, Partitions: 2, ReplicationFactor: 1}}
	res, err := kafkabus.EnsureTopics(ctx, brokers, specs)
	if err != nil {
		t.Fatal(err)
	}
	if res[0].TimestampType != kafkabus.LogAppendTime || res[0].Problem != "" {
		t.Errorf("good topic: %+v", res[0])
	}
	if res[1].TimestampType != "CreateTime" || !strings.Contains(res[1].Problem, "message.timestamp.type=CreateTime") || !strings.Contains(res[1].Problem, "-fix-timestamp-type") {
		t.Errorf("CreateTime topic not reported as it should: %+v", res[1])
	}
	if got := timestampType(t, brokers, old); got != "CreateTime" {
		t.Fatalf("EnsureTopics changed %s to %s: it must only report", old, got)
	}
	if err := kafkabus.FixTimestampType(ctx, brokers, []string{old}); err != nil {
		t.Fatal(err)
	}
	if got := timestampType(t, brokers, old); got != kafkabus.LogAppendTime {
		t.Fatalf("after the fix %s has %s", old, got)
	}
	res, err = kafkabus.EnsureTopics(ctx, brokers, specs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Created || r.Problem != "" || r.TimestampType != kafkabus.LogAppendTime {
			t.Errorf("after the fix: %+v", r)
		}
	}
	if err := kafkabus.FixTimestampType(ctx, brokers, []string{"test.no-such-topic." + fresh}); err == nil {
		t.Error("fixing a topic that does not exist succeeded")
	}
}

func TestTimestampTypeKfake(t *testing.T) { timestampTypeContract(t, kafkatest.Fake(t, 2)) }

func TestTimestampTypeRealKafka(t *testing.T) {
	timestampTypeContract(t, kafkatest.RealBrokers(t))
}
