package kafkabus_test

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/bus/bustest"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
)

func contract(t *testing.T, brokers []string) {
	bustest.TestProducer(t, func(t *testing.T) bustest.Log {
		topic := kafkatest.NewTopic(t, brokers, 4)
		cfg := kafkabus.DefaultProducerConfig(brokers, topic)
		p, err := kafkabus.NewProducer(cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = p.Close() })
		return bustest.Log{Producer: p, Topic: topic, ReadAll: func(ctx context.Context, want int) ([]bus.Message, error) {
			return kafkabus.ReadTopic(ctx, brokers, topic, want)
		}}
	})
}

func TestProducerContractKfake(t *testing.T) { contract(t, kafkatest.Fake(t, 4)) }

func TestProducerContractRealKafka(t *testing.T) { contract(t, kafkatest.RealBrokers(t)) }

// The partition of a key must be the one Java clients choose (Murmur2), so
// that Kafka Streams, ksqlDB or the ClickHouse Kafka engine agree with us.
func TestMurmur2Partitioning(t *testing.T) {
	brokers := kafkatest.Fake(t, 8)
	topic := kafkatest.NewTopic(t, brokers, 8)
	p, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, topic), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Partitions computed with the Java client's
	// Utils.toPositive(Utils.murmur2(key)) % 8 for these keys.
	want := map[string]int{}
	var msgs []bus.Message
	for _, k := range []string{"news/dev-1", "news/dev-2", "shop/a", "game/xyz-42", ""} {
		want[k] = javaPartition([]byte(k), 8)
		msgs = append(msgs, bus.Message{Key: []byte(k), Value: []byte("v")})
	}
	if err := p.Produce(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	got, err := kafkabus.ReadTopic(ctx, brokers, topic, len(msgs))
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range got {
		if len(m.Key) == 0 {
			continue // kafka-go sends a nil key round-robin
		}
		if m.Partition != want[string(m.Key)] {
			t.Errorf("key %q on partition %d, Java clients use %d", m.Key, m.Partition, want[string(m.Key)])
		}
	}
}

// javaPartition is the Java client's default partitioner, written out from
// org.apache.kafka.common.utils.Utils.murmur2 so the test does not trust
// kafka-go's own implementation.
func javaPartition(data []byte, n int) int {
	const seed, m, r = uint32(0x9747b28c), uint32(0x5bd1e995), 24
	length := uint32(len(data))
	h := seed ^ length
	l4 := len(data) / 4
	for i := 0; i < l4; i++ {
		k := uint32(data[i*4]) | uint32(data[i*4+1])<<8 | uint32(data[i*4+2])<<16 | uint32(data[i*4+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	switch len(data) % 4 {
	case 3:
		h ^= uint32(data[(len(data)&^3)+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[(len(data)&^3)+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[len(data)&^3])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return int(int32(h)&0x7fffffff) % n
}

func TestEnsureTopicsIdempotent(t *testing.T) {
	brokers := kafkatest.Fake(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	specs := kafkabus.PlatformTopics(3, 1)
	first, err := kafkabus.EnsureTopics(ctx, brokers, specs)
	if err != nil {
		t.Fatal(err)
	}
	second, err := kafkabus.EnsureTopics(ctx, brokers, specs)
	if err != nil {
		t.Fatal(err)
	}
	for i := range specs {
		if !first[i].Created || second[i].Created || second[i].Problem != "" {
			t.Errorf("%s: first %+v, second %+v", specs[i].Name, first[i], second[i])
		}
	}
	// A mismatch is reported, not "fixed".
	specs[0].Partitions = 5
	third, err := kafkabus.EnsureTopics(ctx, brokers, specs[:1])
	if err != nil {
		t.Fatal(err)
	}
	if third[0].Problem == "" {
		t.Fatal("partition mismatch not reported")
	}
	_ = kafka.TopicAlreadyExists
}
