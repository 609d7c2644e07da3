package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/pipeline/bus"
)

// ConsumerConfig configures a consumer-group member.
type ConsumerConfig struct {
	Brokers  []string
	Group    string
	Topic    string
	MaxBytes int           // largest fetch
	MaxWait  time.Duration // how long a fetch waits for data
}

// Validate checks the configuration.
func (c ConsumerConfig) Validate() error {
	if len(c.Brokers) == 0 || c.Group == "" || c.Topic == "" {
		return errors.New("kafka consumer: brokers, group and topic are required")
	}
	return nil
}

// Consumer reads a topic as a member of a consumer group. Offsets are
// committed only by Commit, never automatically: a message is redelivered
// unless it was committed. Fetch and Commit are called from one goroutine.
type Consumer struct {
	r *kafka.Reader
}

// NewConsumer joins the group (lazily, at the first Fetch). A new group
// starts at the oldest messages.
func NewConsumer(cfg ConsumerConfig, log *slog.Logger) (*Consumer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 16 << 20
	}
	if cfg.MaxWait == 0 {
		cfg.MaxWait = 250 * time.Millisecond
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: cfg.Brokers, GroupID: cfg.Group, Topic: cfg.Topic,
		MinBytes: 1, MaxBytes: cfg.MaxBytes, MaxWait: cfg.MaxWait, QueueCapacity: 10000,
		StartOffset:       kafka.FirstOffset,
		CommitInterval:    0, // synchronous commits, only when asked
		HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Warn("kafka reader", "detail", fmt.Sprintf(msg, args...))
		}),
	})
	return &Consumer{r: r}, nil
}

// Fetch returns the next message.
func (c *Consumer) Fetch(ctx context.Context) (bus.Message, error) {
	m, err := c.r.FetchMessage(ctx)
	if err != nil {
		return bus.Message{}, err
	}
	out := toBus(m)
	for _, h := range m.Headers {
		out.Headers = append(out.Headers, bus.Header{Key: h.Key, Value: h.Value})
	}
	return out, nil
}

// Commit commits the offsets after the given messages (per partition, the
// highest offset counts).
func (c *Consumer) Commit(ctx context.Context, msgs []bus.Message) error {
	last := map[int]bus.Message{}
	for _, m := range msgs {
		if l, ok := last[m.Partition]; !ok || m.Offset > l.Offset {
			last[m.Partition] = m
		}
	}
	km := make([]kafka.Message, 0, len(last))
	for _, m := range last {
		km = append(km, kafka.Message{Topic: m.Topic, Partition: m.Partition, Offset: m.Offset})
	}
	if err := c.r.CommitMessages(ctx, km...); err != nil {
		return fmt.Errorf("commit offsets: %w", err)
	}
	return nil
}

// Close leaves the group.
func (c *Consumer) Close() error { return c.r.Close() }
