package bus

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"
)

// Memory is an in-memory log with partitioned topics. It is a real
// implementation of Producer: messages with the same key go to the same
// partition, in order, and Produce returns only once they are stored.
// Safe for concurrent use.
type Memory struct {
	mu         sync.Mutex
	partitions int
	topic      string
	topics     map[string][][]Message
	down       bool
	closed     bool
}

// NewMemory returns a log whose topics have the given number of partitions;
// defaultTopic receives messages whose Topic is empty.
func NewMemory(defaultTopic string, partitions int) *Memory {
	if partitions < 1 {
		partitions = 1
	}
	return &Memory{partitions: partitions, topic: defaultTopic, topics: map[string][][]Message{}}
}

// SetDown makes Produce fail with ErrUnavailable until called with false,
// like a broker that stopped.
func (m *Memory) SetDown(down bool) {
	m.mu.Lock()
	m.down = down
	m.mu.Unlock()
}

// Produce implements Producer.
func (m *Memory) Produce(ctx context.Context, msgs []Message) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return errors.New("produce on a closed log")
	}
	if m.down {
		return fmt.Errorf("memory log is down: %w", ErrUnavailable)
	}
	now := time.Now()
	for _, msg := range msgs {
		topic := msg.Topic
		if topic == "" {
			topic = m.topic
		}
		parts := m.topics[topic]
		if parts == nil {
			parts = make([][]Message, m.partitions)
			m.topics[topic] = parts
		}
		p := partitionOf(msg.Key, m.partitions)
		msg.Topic, msg.Partition, msg.Offset, msg.Time = topic, p, int64(len(parts[p])), now
		msg.Key = append([]byte(nil), msg.Key...)
		msg.Value = append([]byte(nil), msg.Value...)
		parts[p] = append(parts[p], msg)
	}
	return nil
}

func partitionOf(key []byte, n int) int {
	h := fnv.New32a()
	_, _ = h.Write(key)
	return int(h.Sum32() % uint32(n))
}

// Messages returns a copy of every message of the topic, partition by
// partition, each partition in offset order.
func (m *Memory) Messages(topic string) []Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Message
	for _, p := range m.topics[topic] {
		out = append(out, p...)
	}
	return out
}

// Close implements Producer.
func (m *Memory) Close() error {
	m.mu.Lock()
	m.closed = true
	m.mu.Unlock()
	return nil
}
