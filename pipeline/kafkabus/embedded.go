package kafkabus

import (
	"fmt"

	"github.com/twmb/franz-go/pkg/kfake"
)

// Embedded is an in-process Kafka-protocol broker (franz-go's kfake): the
// zero-setup default of `engage demo` and of services started without
// brokers. It keeps everything in memory; it is not for production.
type Embedded struct {
	c *kfake.Cluster
}

// StartEmbedded starts an embedded broker on a loopback port.
func StartEmbedded(partitions int) (*Embedded, error) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.DefaultNumPartitions(partitions))
	if err != nil {
		return nil, fmt.Errorf("start embedded broker: %w", err)
	}
	return &Embedded{c: c}, nil
}

// Brokers returns the broker addresses.
func (e *Embedded) Brokers() []string { return e.c.ListenAddrs() }

// Close stops the broker; its data is gone.
func (e *Embedded) Close() { e.c.Close() }
