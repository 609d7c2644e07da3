package kafkabus_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/openengage/engage/pipeline/bus"
	"github.com/openengage/engage/pipeline/kafkabus"
	"github.com/openengage/engage/pipeline/kafkabus/kafkatest"
)

// Ends answers what PartitionEnd answers, for several topics at once, as
// messages arrive.
func TestEndsAgreeWithPartitionEnd(t *testing.T) {
	brokers := kafkatest.RealBrokers(t)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	id := fmt.Sprintf("ends%d", time.Now().UnixNano()%1e9)
	a, b := id+".a", id+".b"
	if _, err := kafkabus.EnsureTopics(ctx, brokers, []kafkabus.TopicSpec{{Name: a, Partitions: 3, ReplicationFactor: 1}, {Name: b, Partitions: 3, ReplicationFactor: 1}}); err != nil {
		t.Fatal(err)
	}
	prod, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, a), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer prod.Close()
	ends := kafkabus.NewEnds(brokers)
	defer ends.Close()
	for round := range 3 {
		var msgs []bus.Message
		for i := range 10 * (round + 1) {
			msgs = append(msgs, bus.Message{Topic: a, Key: []byte(fmt.Sprintf("k%d", i))})
			if i%3 == 0 {
				msgs = append(msgs, bus.Message{Topic: b, Key: []byte(fmt.Sprintf("k%d", i))})
			}
		}
		if err := prod.Produce(ctx, msgs); err != nil {
			t.Fatal(err)
		}
		for p := range 3 {
			got, err := ends.Of(ctx, p, a, b)
			if err != nil {
				t.Fatal(err)
			}
			for i, topic := range []string{a, b} {
				want, err := kafkabus.PartitionEnd(ctx, brokers, topic, p)
				if err != nil {
					t.Fatal(err)
				}
				if got[i] != want {
					t.Errorf("round %d, %s/%d: Ends %d, PartitionEnd %d", round, topic, p, got[i], want)
				}
			}
		}
	}
	short, stop := context.WithTimeout(ctx, 2*time.Second)
	defer stop()
	if _, err := ends.Of(short, 7, a); err == nil {
		t.Error("a partition that does not exist: no error")
	}
}
