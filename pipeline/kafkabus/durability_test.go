package kafkabus_test

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
)

func TestCheckDurability(t *testing.T) {
	for _, c := range []struct {
		brokers, replication, minInSync int
		want                            string // "" when accepted
	}{
		{1, 1, 1, ""},
		{3, 3, 2, ""},
		{5, 3, 2, ""},
		{0, 3, 2, ""}, // broker count unknown: not checked
		{3, 3, 3, ""},
		{1, 3, 2, "replication factor 3 needs 3 brokers; this cluster has 1: use -kafka.replication 1 for a single-broker development cluster"},
		{2, 3, 2, "replication factor 3 needs 3 brokers; this cluster has 2: use -kafka.replication 2 for a 2-broker development cluster"},
		{3, 2, 3, "min.insync.replicas 3 is more than the replication factor 2"},
		{3, 1, 2, "min.insync.replicas 2 is more than the replication factor 1"},
		{3, 0, 1, "must be at least 1"},
		{3, 3, 0, "must be at least 1"},
	} {
		err := kafkabus.CheckDurability(c.brokers, c.replication, c.minInSync)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%d brokers, replication %d, min.insync %d: refused: %v", c.brokers, c.replication, c.minInSync, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%d brokers, replication %d, min.insync %d: %v, want %q", c.brokers, c.replication, c.minInSync, err, c.want)
		}
	}
	for r, want := range map[int]int{1: 1, 2: 1, 3: 2, 5: 4} {
		if got := kafkabus.DefaultMinInSync(r); got != want {
			t.Errorf("DefaultMinInSync(%d) = %d, want %d", r, got, want)
		}
	}
	for _, s := range kafkabus.PlatformTopics(8, 3) {
		if s.ReplicationFactor != 3 || s.MinInSync != 2 {
			t.Errorf("%s: replication %d, min.insync %d; want 3 and 2", s.Name, s.ReplicationFactor, s.MinInSync)
		}
	}
	for _, s := range kafkabus.WithMinInSync(kafkabus.PlatformTopics(8, 3), 3) {
		if s.MinInSync != 3 {
			t.Errorf("%s: WithMinInSync(3) gave %d", s.Name, s.MinInSync)
		}
	}
}

// minInSync asks the broker for a topic's min.insync.replicas.
func minInSync(t *testing.T, brokers []string, topic string) int {
	t.Helper()
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
	resp, err := client.DescribeConfigs(context.Background(), &kafka.DescribeConfigsRequest{Resources: []kafka.DescribeConfigRequestResource{
		{ResourceType: kafka.ResourceTypeTopic, ResourceName: topic, ConfigNames: []string{kafkabus.ConfigMinInSync}}}})
	if err != nil || len(resp.Resources) != 1 || resp.Resources[0].Error != nil || len(resp.Resources[0].ConfigEntries) != 1 {
		t.Fatalf("describe %s: %v %+v", topic, err, resp)
	}
	n, err := strconv.Atoi(resp.Resources[0].ConfigEntries[0].ConfigValue)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// On the single development broker: a replication factor of 3 is refused
// with the message that says what to do, and nothing is created; 1 with
// min.insync 1 is created so; a min.insync above a topic's replicas is
// refused by the fix.
func TestDurabilityRefusedOnOneBrokerRealKafka(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if n, err := kafkabus.BrokerCount(ctx, brokers); err != nil || n != 1 {
		t.Fatalf("the development broker: %d brokers, %v", n, err)
	}
	name := "test.durability." + strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	_, err := kafkabus.EnsureTopics(ctx, brokers, []kafkabus.TopicSpec{{Name: name, Partitions: 2, ReplicationFactor: 3, MinInSync: 2}})
	want := "replication factor 3 needs 3 brokers; this cluster has 1: use -kafka.replication 1 for a single-broker development cluster"
	if err == nil || !strings.Contains(err.Error(), want) {
		t.Fatalf("replication 3 on one broker: %v, want %q", err, want)
	}
	if parts, err := kafkabus.Partitions(ctx, brokers); err != nil || parts[name] != 0 {
		t.Fatalf("refused, yet %s has %d partitions (%v)", name, parts[name], err)
	}
	res, err := kafkabus.EnsureTopics(ctx, brokers, []kafkabus.TopicSpec{{Name: name, Partitions: 2, ReplicationFactor: 1, MinInSync: 1}})
	if err != nil || !res[0].Created || res[0].Replication != 1 || res[0].MinInSync != 1 {
		t.Fatalf("replication 1: %+v, %v", res, err)
	}
	if got := minInSync(t, brokers, name); got != 1 {
		t.Fatalf("%s created with min.insync.replicas %d", name, got)
	}
	res, err = kafkabus.EnsureTopics(ctx, brokers, []kafkabus.TopicSpec{{Name: name, Partitions: 2, ReplicationFactor: 3, MinInSync: 2}})
	if err != nil || res[0].Created || !strings.Contains(res[0].Problem, "has 1 replicas of each partition, 3 asked") || res[0].LowMinInSync {
		t.Fatalf("an existing topic with fewer replicas than asked: %+v, %v", res, err)
	}
	if err := kafkabus.FixMinInSync(ctx, brokers, []string{name}, 2); err == nil || !strings.Contains(err.Error(), "min.insync.replicas 2 is more than the replication factor 1") {
		t.Fatalf("min.insync 2 on a topic of one replica: %v", err)
	}
}

// On a cluster of three (kfake's): topics are created with the replicas
// and min.insync.replicas asked; a topic whose min.insync.replicas is
// lower is reported, and FixMinInSync raises it.
func TestDurabilityConfigsKfake(t *testing.T) {
	c, err := kfake.NewCluster(kfake.NumBrokers(3), kfake.DefaultNumPartitions(2))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	brokers := c.ListenAddrs()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if n, err := kafkabus.BrokerCount(ctx, brokers); err != nil || n != 3 {
		t.Fatalf("%d brokers, %v", n, err)
	}
	specs := kafkabus.PlatformTopics(2, 3)
	res, err := kafkabus.EnsureTopics(ctx, brokers, specs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if !r.Created || r.Replication != 3 || r.MinInSync != 2 || r.Problem != "" {
			t.Errorf("created: %+v", r)
		}
		if got := minInSync(t, brokers, r.Name); got != 2 {
			t.Errorf("%s: min.insync.replicas %d on the broker", r.Name, got)
		}
	}
	// Lowered by hand (or made so by an older version): reported.
	client := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 30 * time.Second}
	if _, err := client.IncrementalAlterConfigs(ctx, &kafka.IncrementalAlterConfigsRequest{Resources: []kafka.IncrementalAlterConfigsRequestResource{{
		ResourceType: kafka.ResourceTypeTopic, ResourceName: kafkabus.TopicFeedback,
		Configs: []kafka.IncrementalAlterConfigsRequestConfig{{Name: kafkabus.ConfigMinInSync, Value: "1", ConfigOperation: kafka.ConfigOperationSet}}}}}); err != nil {
		t.Fatal(err)
	}
	res, err = kafkabus.EnsureTopics(ctx, brokers, specs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		low := r.Name == kafkabus.TopicFeedback
		if r.Created || r.LowMinInSync != low || (r.Problem != "") != low {
			t.Errorf("after lowering %s: %+v", kafkabus.TopicFeedback, r)
		}
		if low && (r.MinInSync != 1 || !strings.Contains(r.Problem, "min.insync.replicas=1, 2 asked") || !strings.Contains(r.Problem, "-fix-durability")) {
			t.Errorf("the lowered topic: %+v", r)
		}
	}
	if err := kafkabus.FixMinInSync(ctx, brokers, []string{kafkabus.TopicFeedback}, 2); err != nil {
		t.Fatal(err)
	}
	if got := minInSync(t, brokers, kafkabus.TopicFeedback); got != 2 {
		t.Fatalf("after the fix: %d", got)
	}
	res, err = kafkabus.EnsureTopics(ctx, brokers, specs)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res {
		if r.Problem != "" || r.MinInSync != 2 {
			t.Errorf("after the fix: %+v", r)
		}
	}
	// Asking for more replicas than the cluster has refuses before
	// creating anything.
	_, err = kafkabus.EnsureTopics(ctx, brokers, []kafkabus.TopicSpec{{Name: "test.four", Partitions: 1, ReplicationFactor: 4, MinInSync: 3}})
	if err == nil || !strings.Contains(err.Error(), "replication factor 4 needs 4 brokers; this cluster has 3") {
		t.Fatalf("replication 4 on 3 brokers: %v", err)
	}
}
