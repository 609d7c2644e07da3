package kafkabus

import (
	"context"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"
)

// CommittedOffset returns the offset a consumer group has committed on one
// partition of a topic: the next offset it will read. A group that has
// committed nothing there gives -1.
func CommittedOffset(ctx context.Context, brokers []string, group, topic string, partition int) (int64, error) {
	client := NewClient(brokers, 10*time.Second)
	resp, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: {partition}}})
	if err != nil {
		return 0, fmt.Errorf("committed offset of group %s on %s/%d: %w", group, topic, partition, err)
	}
	if resp.Error != nil {
		return 0, fmt.Errorf("committed offset of group %s on %s/%d: %w", group, topic, partition, resp.Error)
	}
	for _, p := range resp.Topics[topic] {
		if p.Partition != partition {
			continue
		}
		if p.Error != nil {
			return 0, fmt.Errorf("committed offset of group %s on %s/%d: %w", group, topic, partition, p.Error)
		}
		return p.CommittedOffset, nil
	}
	return -1, nil
}

// PartitionStart returns the first offset a partition still holds (the log
// start offset: records below it were deleted by retention).
func PartitionStart(ctx context.Context, brokers []string, topic string, partition int) (int64, error) {
	first, _, err := partitionBounds(ctx, brokers, topic, partition)
	return first, err
}
