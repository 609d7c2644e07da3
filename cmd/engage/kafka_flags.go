package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/openengage/engage/pipeline/kafkabus"
)

// kafkaFlags are the Kafka settings every service shares.
type kafkaFlags struct {
	brokers      string
	partitions   int
	replication  int
	batchTimeout time.Duration
	compression  string
}

func (k *kafkaFlags) register(fs interface {
	StringVar(*string, string, string, string)
	IntVar(*int, string, int, string)
	DurationVar(*time.Duration, string, time.Duration, string)
}) {
	fs.StringVar(&k.brokers, "kafka.brokers", "", "comma-separated Kafka bootstrap brokers; empty: an embedded in-process broker (demo only, nothing persists)")
	fs.IntVar(&k.partitions, "kafka.partitions", 8, "partitions of the platform's topics when they are created")
	fs.IntVar(&k.replication, "kafka.replication", 1, "replication factor of the platform's topics when they are created (3 in production)")
	fs.DurationVar(&k.batchTimeout, "kafka.batch-timeout", kafkabus.DefaultBatchTimeout, "how long a producer batch waits to fill")
	fs.StringVar(&k.compression, "kafka.compression", kafkabus.DefaultCompression, "producer compression: none, gzip, snappy, lz4, zstd")
}

// connect returns the brokers, starting the embedded one when none are set,
// and makes sure the platform's topics exist.
func (k *kafkaFlags) connect(ctx context.Context, log *slog.Logger) (brokers []string, stop func(), err error) {
	stop = func() {}
	brokers = splitList(k.brokers)
	if len(brokers) == 0 {
		e, err := kafkabus.StartEmbedded(k.partitions)
		if err != nil {
			return nil, nil, err
		}
		brokers, stop = e.Brokers(), e.Close
		log.Warn("no -kafka.brokers: using an embedded in-process broker; data lives only as long as this process", "brokers", brokers)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	results, err := kafkabus.EnsureTopics(ctx, brokers, kafkabus.PlatformTopics(k.partitions, k.replication))
	if err != nil {
		stop()
		return nil, nil, fmt.Errorf("topics: %w", err)
	}
	for _, r := range results {
		if r.Problem != "" {
			log.Warn("topic", "topic", r.Name, "problem", r.Problem)
		}
	}
	return brokers, stop, nil
}
