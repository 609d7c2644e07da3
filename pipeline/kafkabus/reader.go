package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"time"

	"github.com/openengage/engage/pipeline/backoff"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/pipeline/bus"
)

// ReadTopic returns every message of a topic from its first offset up to the
// end offsets it finds, partition by partition, in offset order. When want is
// positive it polls until at least want messages are there or ctx ends,
// retrying errors (a broker that just restarted answers some requests with
// errors until its partitions are loaded). It is for tools, the demo and
// tests; services use consumer groups.
func ReadTopic(ctx context.Context, brokers []string, topic string, want int) ([]bus.Message, error) {
	client := NewClient(brokers, 10*time.Second)
	b := backoff.New(backoff.Policy{Min: 100 * time.Millisecond, Max: time.Second, Floor: 0.5})
	for {
		msgs, err := readOnce(ctx, client, brokers, topic)
		if err == nil && len(msgs) >= want {
			return msgs, nil
		}
		if b.Wait(ctx) != nil {
			return msgs, err
		}
		if err != nil && want <= 0 {
			return nil, err
		}
	}
}

func readOnce(ctx context.Context, client *kafka.Client, brokers []string, topic string) ([]bus.Message, error) {
	offsets, err := partitionOffsets(ctx, client, topic)
	if err != nil {
		return nil, err
	}
	var out []bus.Message
	for _, po := range offsets {
		if po.LastOffset <= po.FirstOffset {
			continue
		}
		msgs, err := readPartition(ctx, brokers, topic, po.Partition, po.FirstOffset, po.LastOffset)
		if err != nil {
			return nil, err
		}
		out = append(out, msgs...)
	}
	return out, nil
}

// partitionOffsets returns the first and end offsets of every partition.
func partitionOffsets(ctx context.Context, client *kafka.Client, topic string) ([]kafka.PartitionOffsets, error) {
	md, err := client.Metadata(ctx, &kafka.MetadataRequest{Topics: []string{topic}})
	if err != nil {
		return nil, fmt.Errorf("metadata of %s: %w", topic, err)
	}
	if len(md.Topics) != 1 || md.Topics[0].Error != nil {
		return nil, fmt.Errorf("topic %s: not found", topic)
	}
	var reqs []kafka.OffsetRequest
	for _, p := range md.Topics[0].Partitions {
		reqs = append(reqs, kafka.FirstOffsetOf(p.ID), kafka.LastOffsetOf(p.ID))
	}
	offs, err := client.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{topic: reqs}})
	if err != nil {
		return nil, fmt.Errorf("offsets of %s: %w", topic, err)
	}
	for _, po := range offs.Topics[topic] {
		if po.Error != nil {
			return nil, fmt.Errorf("offsets of %s/%d: %w", topic, po.Partition, po.Error)
		}
	}
	return offs.Topics[topic], nil
}

func readPartition(ctx context.Context, brokers []string, topic string, partition int, first, end int64) ([]bus.Message, error) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: partition, MinBytes: 1, MaxBytes: 16 << 20, MaxWait: 200 * time.Millisecond, Dialer: Dialer()})
	defer r.Close()
	if err := r.SetOffset(first); err != nil {
		return nil, err
	}
	var out []bus.Message
	for {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			if errors.Is(err, io.EOF) {
				return out, nil
			}
			return out, fmt.Errorf("read %s/%d: %w", topic, partition, err)
		}
		out = append(out, bus.Message{Topic: topic, Key: m.Key, Value: m.Value, Time: m.Time, Partition: m.Partition, Offset: m.Offset})
		if m.Offset+1 >= end {
			return out, nil
		}
	}
}

// CountMessages returns how many messages the topic holds (the sum over its
// partitions of end offset minus start offset).
func CountMessages(ctx context.Context, brokers []string, topic string) (int64, error) {
	client := NewClient(brokers, 10*time.Second)
	offsets, err := partitionOffsets(ctx, client, topic)
	if err != nil {
		return 0, err
	}
	var n int64
	for _, po := range offsets {
		n += po.LastOffset - po.FirstOffset
	}
	return n, nil
}

// GroupLag returns how many messages of the topic the consumer group has not
// committed yet (end offset minus committed offset, summed over partitions;
// a partition with no commit counts from its first offset).
func GroupLag(ctx context.Context, brokers []string, group, topic string) (int64, error) {
	client := NewClient(brokers, 10*time.Second)
	offsets, err := partitionOffsets(ctx, client, topic)
	if err != nil {
		return 0, err
	}
	parts := make([]int, len(offsets))
	for i, po := range offsets {
		parts[i] = po.Partition
	}
	resp, err := client.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{topic: parts}})
	if err != nil {
		return 0, fmt.Errorf("committed offsets of group %s: %w", group, err)
	}
	committed := map[int]int64{}
	for _, p := range resp.Topics[topic] {
		committed[p.Partition] = p.CommittedOffset
	}
	var lag int64
	for _, po := range offsets {
		from := po.FirstOffset
		if c, ok := committed[po.Partition]; ok && c >= 0 {
			from = c
		}
		lag += max(0, po.LastOffset-from)
	}
	return lag, nil
}
