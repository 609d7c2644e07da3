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
	TopicTags            = "engage.tags"
	TopicTagsDead        = "engage.tags.dead"
	TopicSegmentChanges  = "engage.segment-changes"
	TopicDecisions       = "engage.decisions"
	TopicDeliveries      = "engage.deliveries"
	TopicFeedback        = "engage.feedback"
	TopicConfig          = "engage.config"
	TopicStateChangelog  = "engage.processor-state"
	TopicSchedulerState  = "engage.scheduler-state"
	TopicDispatcherState = "engage.dispatcher-state"
	TopicInbox           = "engage.inbox"
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
		{Name: TopicDecisions, Partitions: partitions, ReplicationFactor: replication, Configs: map[string]string{"retention.ms": week}, Purpose: "every decision of the scheduler, with its reason"},
		{Name: TopicDeliveries, Partitions: partitions, ReplicationFactor: replication, Configs: map[string]string{"retention.ms": week}, Purpose: "scheduled deliveries for the dispatcher"},
		{Name: TopicFeedback, Partitions: partitions, ReplicationFactor: replication, Configs: map[string]string{"retention.ms": week}, Purpose: "delivery results and push feedback"},
		{Name: TopicStateChangelog, Partitions: partitions, ReplicationFactor: replication, Compacted: true, Configs: map[string]string{"min.compaction.lag.ms": day}, Purpose: "per-device processor state"},
		{Name: TopicSchedulerState, Partitions: partitions, ReplicationFactor: replication, Compacted: true, Configs: map[string]string{"min.compaction.lag.ms": day}, Purpose: "per-device scheduler state: memberships, caps, waiting sends"},
		{Name: TopicDispatcherState, Partitions: partitions, ReplicationFactor: replication, Compacted: true, Configs: map[string]string{"min.compaction.lag.ms": day}, Purpose: "the dispatcher's attempts (at most once) and dead push tokens"},
		{Name: TopicInbox, Partitions: partitions, ReplicationFactor: replication, Compacted: true, Configs: map[string]string{"min.compaction.lag.ms": day}, Purpose: "each device's in-app messages waiting, for the collector to serve"},
		{Name: TopicConfig, Partitions: 1, ReplicationFactor: replication, Compacted: true, Purpose: "versioned configuration: apps, keys, tag plans, segments, campaigns"},
	}
}

// The log's time of every topic EnsureTopics creates or checks is the time
// Kafka appended the record (message.timestamp.type=LogAppendTime), never a
// producer's: retention (retention.ms, segment.ms) and compaction lags
// (min.compaction.lag.ms, delete.retention.ms) compare record timestamps
// with the broker's clock. With CreateTime, a record carrying a time weeks
// old is deleted at the next retention check, before lagging consumers read
// it; one carrying a future time pins its segment, and every later one,
// past retention; and Kafka 4 refuses records more than an hour ahead
// (message.timestamp.after.max.ms). Every topic, not only the tags: any
// producer (a tool, a Java client replaying old data, kafka-go's zero time,
// which is the epoch) could otherwise bring a client's clock into the log.
const (
	ConfigTimestampType = "message.timestamp.type"
	LogAppendTime       = "LogAppendTime"
)

// TopicResult says what EnsureTopics did with one topic.
type TopicResult struct {
	Name          string
	Created       bool
	Partitions    int    // as found or created
	TimestampType string // message.timestamp.type, as found or created
	Problem       string
}

// EnsureTopics creates the topics that do not exist and checks those that
// do; running it again changes nothing. A topic that exists with another
// partition count is reported, not changed: repartitioning moves devices.
// One whose timestamp type is not LogAppendTime is reported too;
// FixTimestampType changes it.
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
	var found []string
	results := make([]TopicResult, len(specs))
	for i, s := range specs {
		results[i] = TopicResult{Name: s.Name, Partitions: s.Partitions, TimestampType: LogAppendTime}
		if n, ok := existing[s.Name]; ok {
			results[i].Partitions = n
			if n != s.Partitions {
				results[i].Problem = fmt.Sprintf("has %d partitions, the platform expects %d: co-partitioned topics must match", n, s.Partitions)
			}
			found = append(found, s.Name)
			continue
		}
		tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: s.Partitions, ReplicationFactor: s.ReplicationFactor}
		cfg := map[string]string{ConfigTimestampType: LogAppendTime}
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
	if err := checkTimestampTypes(ctx, client, found, results); err != nil {
		return results, err
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

// checkTimestampTypes fills in the timestamp type of the existing topics
// and reports those that are not LogAppendTime.
func checkTimestampTypes(ctx context.Context, client *kafka.Client, names []string, results []TopicResult) error {
	if len(names) == 0 {
		return nil
	}
	types, err := timestampTypes(ctx, client, names)
	if err != nil {
		return err
	}
	for i := range results {
		tt, ok := types[results[i].Name]
		if !ok {
			continue
		}
		results[i].TimestampType = tt
		if tt != LogAppendTime {
			p := fmt.Sprintf("%s=%s: retention follows the timestamps producers set (clients' event times, in records of older versions), not when Kafka received the records; run `engage topics -fix-timestamp-type`", ConfigTimestampType, tt)
			if results[i].Problem != "" {
				p = results[i].Problem + "; " + p
			}
			results[i].Problem = p
		}
	}
	return nil
}

// timestampTypes returns the message.timestamp.type in force on each topic.
func timestampTypes(ctx context.Context, client *kafka.Client, names []string) (map[string]string, error) {
	req := &kafka.DescribeConfigsRequest{}
	for _, n := range names {
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: n, ConfigNames: []string{ConfigTimestampType}})
	}
	resp, err := client.DescribeConfigs(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("describe topic configs: %w", err)
	}
	out := map[string]string{}
	for _, r := range resp.Resources {
		if r.Error != nil {
			return nil, fmt.Errorf("describe configs of topic %s: %w", r.ResourceName, r.Error)
		}
		for _, e := range r.ConfigEntries {
			if e.ConfigName == ConfigTimestampType {
				out[r.ResourceName] = e.ConfigValue
			}
		}
	}
	return out, nil
}

// FixTimestampType sets message.timestamp.type=LogAppendTime on existing
// topics and waits until the broker reports it. Records already written
// keep the timestamps they have: a segment holding a future one is kept
// until that time passes retention (kafka-delete-records removes it
// sooner), one holding old ones is deleted at the next retention check.
func FixTimestampType(ctx context.Context, brokers []string, topics []string) error {
	if len(topics) == 0 {
		return nil
	}
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
	req := &kafka.IncrementalAlterConfigsRequest{}
	for _, n := range topics {
		req.Resources = append(req.Resources, kafka.IncrementalAlterConfigsRequestResource{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: n,
			Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: ConfigTimestampType, Value: LogAppendTime, ConfigOperation: kafka.ConfigOperationSet}},
		})
	}
	resp, err := client.IncrementalAlterConfigs(ctx, req)
	if err != nil {
		return fmt.Errorf("alter topic configs: %w", err)
	}
	for _, r := range resp.Resources {
		if r.Error != nil {
			return fmt.Errorf("set %s=%s on topic %s: %w", ConfigTimestampType, LogAppendTime, r.ResourceName, r.Error)
		}
	}
	// The change reaches the brokers through the metadata log: wait until
	// it is in force, so that what is produced next gets log-append time.
	deadline := time.Now().Add(30 * time.Second)
	for {
		types, err := timestampTypes(ctx, client, topics)
		if err == nil {
			done := true
			for _, n := range topics {
				done = done && types[n] == LogAppendTime
			}
			if done {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s=%s is not in force on %v after 30s (last error: %v): check the broker log", ConfigTimestampType, LogAppendTime, topics, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
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
