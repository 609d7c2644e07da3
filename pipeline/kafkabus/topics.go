package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/segmentio/kafka-go"
)

// TopicSpec describes one topic the platform uses.
type TopicSpec struct {
	Name              string
	Partitions        int
	ReplicationFactor int
	Compacted         bool              // cleanup.policy=compact (state and configuration)
	Configs           map[string]string // further topic configs
	Purpose           string
}

// Topic names.
const (
	TopicTags           = "engage.tags"
	TopicTagsDead       = "engage.tags.dead"
	TopicSegmentChanges = "engage.segment-changes"
	TopicTriggers       = "engage.triggers"
	TopicDeliveries     = "engage.deliveries"
	TopicFeedback       = "engage.feedback"
	TopicConfig         = "engage.config"
	TopicStateChangelog = "engage.processor-state"
)

// PlatformTopics returns every topic the platform uses. Partitioned topics
// share one partition count so that they stay co-partitioned with the tags
// topic (a device is on the same partition number everywhere).
func PlatformTopics(partitions, replication int) []TopicSpec {
	day := strconv.Itoa(int((24 * time.Hour).Milliseconds()))
	week := strconv.Itoa(int((7 * 24 * time.Hour).Milliseconds()))
	return []TopicSpec{
		{Name: TopicTags, Partitions: partitions, ReplicationFactor: replication, Configs: map[string]string{"retention.ms": week}, Purpose: "tag records from the collector, keyed app/device"},
		{Name: TopicTagsDead, Partitions: partitions, ReplicationFactor: replication, Configs: map[string]string{"retention.ms": week}, Purpose: "records no consumer could process, with the reason"},
		{Name: TopicSegmentChanges, Partitions: partitions, ReplicationFactor: replication, Configs: map[string]string{"retention.ms": week}, Purpose: "segment enter/exit transitions"},
		{Name: TopicTriggers, Partitions: partitions, ReplicationFactor: replication, Configs: map[string]string{"retention.ms": week}, Purpose: "fired triggers"},
		{Name: TopicDeliveries, Partitions: partitions, ReplicationFactor: replication, Configs: map[string]string{"retention.ms": week}, Purpose: "scheduled deliveries for the dispatcher"},
		{Name: TopicFeedback, Partitions: partitions, ReplicationFactor: replication, Configs: map[string]string{"retention.ms": week}, Purpose: "delivery results and push feedback"},
		{Name: TopicStateChangelog, Partitions: partitions, ReplicationFactor: replication, Compacted: true, Configs: map[string]string{"min.compaction.lag.ms": day}, Purpose: "per-device processor state"},
		{Name: TopicConfig, Partitions: 1, ReplicationFactor: replication, Compacted: true, Purpose: "versioned configuration: apps, keys, tag plans, segments, campaigns"},
	}
}

// TopicResult says what EnsureTopics did with one topic.
type TopicResult struct {
	Name       string
	Created    bool
	Partitions int // as found or created
	Problem    string
}

// EnsureTopics creates the topics that do not exist and checks those that
// do; running it again changes nothing. A topic that exists with another
// partition count is reported, not changed: repartitioning moves devices.
func EnsureTopics(ctx context.Context, brokers []string, specs []TopicSpec) ([]TopicResult, error) {
	if len(brokers) == 0 {
		return nil, errors.New("ensure topics: no brokers")
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
	existing, err := topicPartitions(ctx, client)
	if err != nil {
		return nil, err
	}
	var create []kafka.TopicConfig
	results := make([]TopicResult, len(specs))
	for i, s := range specs {
		results[i] = TopicResult{Name: s.Name, Partitions: s.Partitions}
		if n, ok := existing[s.Name]; ok {
			results[i].Partitions = n
			if n != s.Partitions {
				results[i].Problem = fmt.Sprintf("has %d partitions, the platform expects %d: co-partitioned topics must match", n, s.Partitions)
			}
			continue
		}
		tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: s.Partitions, ReplicationFactor: s.ReplicationFactor}
		cfg := map[string]string{}
		for k, v := range s.Configs {
			cfg[k] = v
		}
		if s.Compacted {
			cfg["cleanup.policy"] = "compact"
		}
		keys := make([]string, 0, len(cfg))
		for k := range cfg {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			tc.ConfigEntries = append(tc.ConfigEntries, kafka.ConfigEntry{ConfigName: k, ConfigValue: cfg[k]})
		}
		create = append(create, tc)
	}
	if len(create) > 0 {
		resp, err := client.CreateTopics(ctx, &kafka.CreateTopicsRequest{Topics: create})
		if err != nil {
			return results, fmt.Errorf("create topics: %w", err)
		}
		for i := range results {
			err, asked := resp.Errors[results[i].Name]
			switch {
			case !asked:
			case err == nil:
				results[i].Created = true
			case errors.Is(err, kafka.TopicAlreadyExists):
			default:
				return results, fmt.Errorf("create topic %s: %w", results[i].Name, err)
			}
		}
	}
	return results, waitForLeaders(ctx, client, specs)
}

func topicPartitions(ctx context.Context, client *kafka.Client) (map[string]int, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return nil, fmt.Errorf("read cluster metadata: %w", err)
	}
	out := map[string]int{}
	for _, t := range md.Topics {
		if t.Error == nil {
			out[t.Name] = len(t.Partitions)
		}
	}
	return out, nil
}

// waitForLeaders waits until every partition of the topics has a leader, so
// that the first produce after EnsureTopics does not fail.
func waitForLeaders(ctx context.Context, client *kafka.Client, specs []TopicSpec) error {
	names := make([]string, len(specs))
	for i, s := range specs {
		names[i] = s.Name
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: names})
		ready := err == nil
		if ready {
			for _, t := range md.Topics {
				if t.Error != nil || len(t.Partitions) == 0 {
					ready = false
				}
				for _, p := range t.Partitions {
					if p.Error != nil || p.Leader.ID < 0 || p.Leader.Host == "" {
						ready = false
					}
				}
			}
		}
		if ready {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("topics have no leaders after 30s (last error: %v): check the broker log", err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Partitions returns the partition count of each of the topics that exist.
func Partitions(ctx context.Context, brokers []string) (map[string]int, error) {
	return topicPartitions(ctx, &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second})
}

// KeyPartition returns the partition of a topic of n partitions that the
// producer (murmur2, as Java clients) puts a key on.
func KeyPartition(key []byte, n int) int {
	parts := make([]int, n)
	for i := range parts {
		parts[i] = i
	}
	return kafka.Murmur2Balancer{}.Balance(kafka.Message{Key: key}, parts...)
}

// PartitionKey returns a key that the producer (murmur2, as Java clients)
// puts on the given partition of a topic of n partitions: prefix followed
// by the first counter that lands there. For records a stateful consumer
// keeps per partition in a co-partitioned changelog.
func PartitionKey(prefix string, partition, n int) []byte {
	for i := 0; ; i++ {
		k := []byte(prefix + strconv.Itoa(i))
		if KeyPartition(k, n) == partition {
			return k
		}
	}
}
