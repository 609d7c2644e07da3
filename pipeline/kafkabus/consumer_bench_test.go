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

// BenchmarkConsumerFetch: messages/s a consumer-group member reads from the
// real broker (b.N messages of 120 bytes, produced beforehand).
func BenchmarkConsumerFetch(b *testing.B) {
	brokers := kafkatest.RealBrokers(b)
	topic := kafkatest.NewTopic(b, brokers, 8)
	p, err := kafkabus.NewProducer(kafkabus.DefaultProducerConfig(brokers, topic), nil)
	if err != nil {
		b.Fatal(err)
	}
	value := make([]byte, 120)
	for i := 0; i < b.N; i += 10000 {
		var msgs []bus.Message
		for j := i; j < min(i+10000, b.N); j++ {
			msgs = append(msgs, bus.Message{Key: fmt.Appendf(nil, "k%d", j%1000), Value: value})
		}
		if err := p.Produce(context.Background(), msgs); err != nil {
			b.Fatal(err)
		}
	}
	p.Close()
	c, err := kafkabus.NewConsumer(kafkabus.ConsumerConfig{Brokers: brokers, Group: "bench-" + topic, Topic: topic}, nil)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	b.ResetTimer()
	start := time.Now()
	for i := 0; i < b.N; i++ {
		if _, err := c.Fetch(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "msgs/s")
}
