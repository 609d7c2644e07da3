package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"time"

	"github.com/openengage/engage/pipeline/backoff"

	"github.com/segmentio/kafka-go"
)

// TopicSpec describes one topic the platform uses.
type TopicSpec struct {
	Name              string
	Partitions        int
	ReplicationFactor int
	// MinInSync is the topic's min.insync.replicas: how many replicas,
	// the leader included, must have a record before an acks=all write
	// of it is acknowledged. 0 leaves the broker's default.
	MinInSync int
	Compacted bool              // cleanup.policy=compact (state and configuration)
	Configs   map[string]string // further topic configs
	Purpose   string
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
// topic (a device is on the same partition number everywhere). Each has
// min.insync.replicas DefaultMinInSync(replication); WithMinInSync sets
// another.
func PlatformTopics(partitions, replication int) []TopicSpec {
	specs := platformTopics(partitions, replication)
	return WithMinInSync(specs, DefaultMinInSync(replication))
}

// DefaultMinInSync is the min.insync.replicas that goes with a replication
// factor: one less, at least 1. With 3 replicas and 2 in sync, an acks=all
// write is on two brokers before it is acknowledged, and writes go on with
// one broker down; with 1 (a development broker) there is nothing to wait
// for.
func DefaultMinInSync(replication int) int { return max(1, replication-1) }

// WithMinInSync returns specs with min.insync.replicas n on every topic.
func WithMinInSync(specs []TopicSpec, n int) []TopicSpec {
	out := make([]TopicSpec, len(specs))
	for i, s := range specs {
		s.MinInSync = n
		out[i] = s
	}
	return out
}

// ConfigMinInSync is the topic config that says how many in-sync replicas
// an acks=all write needs.
const ConfigMinInSync = "min.insync.replicas"

// CheckDurability refuses settings that no write could satisfy: a
// replication factor above the cluster's broker count (brokers == 0: not
// checked), a min.insync.replicas above the replication factor, and
// values below 1. The message says how to ask for a single-broker
// development cluster.
func CheckDurability(brokers, replication, minInSync int) error {
	if replication < 1 || minInSync < 1 {
		return fmt.Errorf("replication factor %d and min.insync.replicas %d: both must be at least 1", replication, minInSync)
	}
	if minInSync > replication {
		return fmt.Errorf("min.insync.replicas %d is more than the replication factor %d: no acks=all write could ever be acknowledged; use at most %d (production: replication 3, min.insync 2)", minInSync, replication, replication)
	}
	if brokers > 0 && replication > brokers {
		return fmt.Errorf("replication factor %d needs %d brokers; this cluster has %d: use -kafka.replication %d for a %s development cluster",
			replication, replication, brokers, brokers, map[bool]string{true: "single-broker", false: strconv.Itoa(brokers) + "-broker"}[brokers == 1])
	}
	return nil
}

// BrokerCount returns how many brokers the cluster has (those alive, as
// its metadata lists them).
func BrokerCount(ctx context.Context, brokers []string) (int, error) {
	client := NewClient(brokers, 30*time.Second)
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{}})
	if err != nil {
		return 0, fmt.Errorf("read cluster metadata: %w", err)
	}
	return len(md.Brokers), nil
}

func platformTopics(partitions, replication int) []TopicSpec {
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
	Replication   int    // replicas of each partition (the fewest), as found or created
	MinInSync     int    // min.insync.replicas, as found or created; 0: unknown
	// LowMinInSync: the topic's min.insync.replicas is below the spec's
	// and its replicas allow the spec's (FixMinInSync can raise it).
	LowMinInSync bool
	Problem      string
}

// EnsureTopics creates the topics that do not exist and checks those that
// do; running it again changes nothing. A topic that exists with another
// partition count is reported, not changed: repartitioning moves devices.
// One whose timestamp type is not LogAppendTime is reported too;
// FixTimestampType changes it.
//
// Durability: a topic to create whose replication factor is above the
// cluster's broker count, or whose min.insync.replicas is above its
// replication factor, is refused before anything is created
// (CheckDurability says why). An existing topic with fewer replicas than
// its spec asks, or a lower min.insync.replicas, is reported (LowMinInSync:
// FixMinInSync raises it; more replicas means moving data, which is
// kafka-reassign-partitions' work, not this function's).
func EnsureTopics(ctx context.Context, brokers []string, specs []TopicSpec) ([]TopicResult, error) {
	if len(brokers) == 0 {
		return nil, errors.New("ensure topics: no brokers")
	}
	client := NewClient(brokers, 30*time.Second)
	md, err := readMetadata(ctx, client)
	if err != nil {
		return nil, err
	}
	var create []kafka.TopicConfig
	var found []string
	results := make([]TopicResult, len(specs))
	for i, s := range specs {
		results[i] = TopicResult{Name: s.Name, Partitions: s.Partitions, TimestampType: LogAppendTime, Replication: s.ReplicationFactor, MinInSync: s.MinInSync}
		if t, ok := md.topics[s.Name]; ok {
			results[i].Partitions = t.partitions
			results[i].Replication = t.replication
			results[i].MinInSync = 0
			if t.partitions != s.Partitions {
				results[i].Problem = fmt.Sprintf("has %d partitions, the platform expects %d: co-partitioned topics must match", t.partitions, s.Partitions)
			}
			if t.replication < s.ReplicationFactor {
				results[i].Problem = joinProblem(results[i].Problem, fmt.Sprintf("has %d replicas of each partition, %d asked: adding replicas moves data (kafka-reassign-partitions); engage does not", t.replication, s.ReplicationFactor))
			}
			found = append(found, s.Name)
			continue
		}
		if err := CheckDurability(md.brokers, s.ReplicationFactor, max(1, s.MinInSync)); err != nil {
			return nil, fmt.Errorf("topic %s: %w", s.Name, err)
		}
		tc := kafka.TopicConfig{Topic: s.Name, NumPartitions: s.Partitions, ReplicationFactor: s.ReplicationFactor}
		cfg := map[string]string{ConfigTimestampType: LogAppendTime}
		if s.MinInSync > 0 {
			cfg[ConfigMinInSync] = strconv.Itoa(s.MinInSync)
		}
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
	if err := checkConfigs(ctx, client, found, specs, results); err != nil {
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

// checkConfigs fills in the timestamp type and min.insync.replicas of the
// existing topics and reports those that are not what their specs ask.
func checkConfigs(ctx context.Context, client *kafka.Client, names []string, specs []TopicSpec, results []TopicResult) error {
	if len(names) == 0 {
		return nil
	}
	configs, err := topicConfigs(ctx, client, names, ConfigTimestampType, ConfigMinInSync)
	if err != nil {
		return err
	}
	for i := range results {
		cfg, ok := configs[results[i].Name]
		if !ok {
			continue
		}
		if tt, ok := cfg[ConfigTimestampType]; ok {
			results[i].TimestampType = tt
			if tt != LogAppendTime {
				results[i].Problem = joinProblem(results[i].Problem, fmt.Sprintf("%s=%s: retention follows the timestamps producers set (clients' event times, in records of older versions), not when Kafka received the records; run `engage topics -fix-timestamp-type`", ConfigTimestampType, tt))
			}
		}
		n, err := strconv.Atoi(cfg[ConfigMinInSync])
		if err != nil {
			continue // not reported (an embedded broker may not say)
		}
		r := &results[i]
		r.MinInSync = n
		want := specs[i].MinInSync
		switch {
		case n > r.Replication:
			r.Problem = joinProblem(r.Problem, fmt.Sprintf("%s=%d with %d replicas: no acks=all write can be acknowledged", ConfigMinInSync, n, r.Replication))
		case n < want && want <= r.Replication:
			r.LowMinInSync = true
			r.Problem = joinProblem(r.Problem, fmt.Sprintf("%s=%d, %d asked: an acknowledged record may be on fewer brokers than asked; run `engage topics -fix-durability`", ConfigMinInSync, n, want))
		case n < want:
			r.Problem = joinProblem(r.Problem, fmt.Sprintf("%s=%d, %d asked, which needs %d replicas first", ConfigMinInSync, n, want, want))
		}
	}
	return nil
}

func joinProblem(a, b string) string {
	if a == "" {
		return b
	}
	return a + "; " + b
}

// timestampTypes returns the message.timestamp.type in force on each topic.
func timestampTypes(ctx context.Context, client *kafka.Client, names []string) (map[string]string, error) {
	configs, err := topicConfigs(ctx, client, names, ConfigTimestampType)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for n, cfg := range configs {
		if v, ok := cfg[ConfigTimestampType]; ok {
			out[n] = v
		}
	}
	return out, nil
}

// topicConfigs returns the values in force of some configs of each topic.
func topicConfigs(ctx context.Context, client *kafka.Client, names []string, keys ...string) (map[string]map[string]string, error) {
	req := &kafka.DescribeConfigsRequest{}
	for _, n := range names {
		req.Resources = append(req.Resources, kafka.DescribeConfigRequestResource{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: n, ConfigNames: keys})
	}
	resp, err := client.DescribeConfigs(ctx, req)
	if err != nil {
		return nil, fmt.Errorf("describe topic configs: %w", err)
	}
	out := map[string]map[string]string{}
	for _, r := range resp.Resources {
		if r.Error != nil {
			return nil, fmt.Errorf("describe configs of topic %s: %w", r.ResourceName, r.Error)
		}
		cfg := map[string]string{}
		for _, e := range r.ConfigEntries {
			cfg[e.ConfigName] = e.ConfigValue
		}
		out[r.ResourceName] = cfg
	}
	return out, nil
}

// FixTimestampType sets message.timestamp.type=LogAppendTime on existing
// topics and waits until the broker reports it. Records already written
// keep the timestamps they have: a segment holding a future one is kept
// until that time passes retention (kafka-delete-records removes it
// sooner), one holding old ones is deleted at the next retention check.
func FixTimestampType(ctx context.Context, brokers []string, topics []string) error {
	return setTopicConfig(ctx, brokers, topics, ConfigTimestampType, LogAppendTime)
}

// FixMinInSync sets min.insync.replicas=n on existing topics and waits
// until the broker reports it. It refuses n above a topic's replicas (no
// acks=all write could then be acknowledged).
func FixMinInSync(ctx context.Context, brokers []string, topics []string, n int) error {
	if len(topics) == 0 {
		return nil
	}
	client := NewClient(brokers, 30*time.Second)
	md, err := readMetadata(ctx, client)
	if err != nil {
		return err
	}
	for _, name := range topics {
		if t, ok := md.topics[name]; ok && t.replication < n {
			return fmt.Errorf("topic %s: %w", name, CheckDurability(0, t.replication, n))
		}
	}
	return setTopicConfig(ctx, brokers, topics, ConfigMinInSync, strconv.Itoa(n))
}

// setTopicConfig sets one config on existing topics and waits until it is
// in force: the change reaches the brokers through the metadata log, and
// what is produced next must find it.
func setTopicConfig(ctx context.Context, brokers []string, topics []string, key, value string) error {
	if len(topics) == 0 {
		return nil
	}
	client := NewClient(brokers, 30*time.Second)
	req := &kafka.IncrementalAlterConfigsRequest{}
	for _, n := range topics {
		req.Resources = append(req.Resources, kafka.IncrementalAlterConfigsRequestResource{
			ResourceType: kafka.ResourceTypeTopic, ResourceName: n,
			Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: key, Value: value, ConfigOperation: kafka.ConfigOperationSet}},
		})
	}
	resp, err := client.IncrementalAlterConfigs(ctx, req)
	if err != nil {
		return fmt.Errorf("alter topic configs: %w", err)
	}
	for _, r := range resp.Resources {
		if r.Error != nil {
			return fmt.Errorf("set %s=%s on topic %s: %w", key, value, r.ResourceName, r.Error)
		}
	}
	deadline := time.Now().Add(30 * time.Second)
	poll := backoff.New(settleWait)
	for {
		configs, err := topicConfigs(ctx, client, topics, key)
		if err == nil {
			done := true
			for _, n := range topics {
				done = done && configs[n][key] == value
			}
			if done {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s=%s is not in force on %v after 30s (last error: %v): check the broker log", key, value, topics, err)
		}
		if err := poll.Wait(ctx); err != nil {
			return err
		}
	}
}

// clusterMetadata is what EnsureTopics reads of the cluster: how many
// brokers it has and, for each topic, its partitions and the fewest
// replicas of a partition.
type clusterMetadata struct {
	brokers int
	topics  map[string]topicMetadata
}

type topicMetadata struct{ partitions, replication int }

func readMetadata(ctx context.Context, client *kafka.Client) (clusterMetadata, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{})
	if err != nil {
		return clusterMetadata{}, fmt.Errorf("read cluster metadata: %w", err)
	}
	out := clusterMetadata{brokers: len(md.Brokers), topics: map[string]topicMetadata{}}
	for _, t := range md.Topics {
		if t.Error != nil {
			continue
		}
		tm := topicMetadata{partitions: len(t.Partitions)}
		for i, p := range t.Partitions {
			if i == 0 || len(p.Replicas) < tm.replication {
				tm.replication = len(p.Replicas)
			}
		}
		out.topics[t.Name] = tm
	}
	return out, nil
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
	poll := backoff.New(settleWait)
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
		if err := poll.Wait(ctx); err != nil {
			return err
		}
	}
}

// Partitions returns the partition count of each of the topics that exist.
func Partitions(ctx context.Context, brokers []string) (map[string]int, error) {
	return topicPartitions(ctx, NewClient(brokers, 30*time.Second))
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

// settleWait is the policy of the polls that wait for the cluster to apply
// a change (topics' leaders, a configuration in force): from 100 ms to 1 s,
// half of each wait random.
var settleWait = backoff.Policy{Min: 100 * time.Millisecond, Max: time.Second, Floor: 0.5}
