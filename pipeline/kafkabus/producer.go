package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/pipeline/bus"
)

// ProducerConfig configures a Producer.
type ProducerConfig struct {
	Brokers      []string      // host:port of the bootstrap brokers
	Topic        string        // default topic of messages that name none
	BatchSize    int           // messages per partition batch
	BatchBytes   int64         // bytes per partition batch
	BatchTimeout time.Duration // how long a batch waits to fill
	MaxAttempts  int           // attempts per batch before Produce fails
	WriteTimeout time.Duration
	Compression  string // none, gzip, snappy, lz4, zstd
}

// Default producer settings.
const (
	DefaultBatchSize    = 500
	DefaultBatchBytes   = 8 << 20
	DefaultBatchTimeout = 2 * time.Millisecond
	DefaultMaxAttempts  = 3
	DefaultWriteTimeout = 10 * time.Second
	DefaultCompression  = "lz4"
)

// DefaultProducerConfig returns the defaults for the given brokers and topic.
func DefaultProducerConfig(brokers []string, topic string) ProducerConfig {
	return ProducerConfig{
		Brokers: brokers, Topic: topic, BatchSize: DefaultBatchSize, BatchBytes: DefaultBatchBytes,
		BatchTimeout: DefaultBatchTimeout, MaxAttempts: DefaultMaxAttempts, WriteTimeout: DefaultWriteTimeout,
		Compression: DefaultCompression,
	}
}

// Validate checks the configuration.
func (c ProducerConfig) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafka producer: no brokers: set -kafka.brokers or ENGAGE_KAFKA_BROKERS")
	}
	if c.Topic == "" {
		return errors.New("kafka producer: no topic")
	}
	if c.BatchSize < 1 || c.BatchBytes < 1024 || c.BatchTimeout <= 0 || c.MaxAttempts < 1 || c.WriteTimeout <= 0 {
		return fmt.Errorf("kafka producer: batch size %d, bytes %d, timeout %s, attempts %d and write timeout %s must all be positive",
			c.BatchSize, c.BatchBytes, c.BatchTimeout, c.MaxAttempts, c.WriteTimeout)
	}
	if _, err := compression(c.Compression); err != nil {
		return err
	}
	return nil
}

func compression(name string) (kafka.Compression, error) {
	switch name {
	case "", "none":
		return 0, nil
	case "gzip":
		return kafka.Gzip, nil
	case "snappy":
		return kafka.Snappy, nil
	case "lz4":
		return kafka.Lz4, nil
	case "zstd":
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("kafka producer: unknown compression %q: use none, gzip, snappy, lz4 or zstd", name)
}

// Producer writes to Kafka and returns only when every message is acknowledged
// by all in-sync replicas. Each record's Kafka timestamp is the time of the
// Produce call (bus.Message.Time is ignored). Safe for concurrent use;
// concurrent calls share batches.
type Producer struct {
	w     *kafka.Writer
	topic string
}

var _ bus.Producer = (*Producer)(nil)

// NewProducer returns a producer; it connects lazily.
func NewProducer(cfg ProducerConfig, log *slog.Logger) (*Producer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	codec, _ := compression(cfg.Compression)
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	w := &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Balancer:     &kafka.Murmur2Balancer{}, // where Java clients put the same keys
		RequiredAcks: kafka.RequireAll,
		BatchSize:    cfg.BatchSize,
		BatchBytes:   cfg.BatchBytes,
		BatchTimeout: cfg.BatchTimeout,
		MaxAttempts:  cfg.MaxAttempts,
		WriteTimeout: cfg.WriteTimeout,
		Compression:  codec,
		// An own transport: kafka-go's shared default caches metadata
		// across writers, so a topic created since would look unknown.
		Transport: Transport(&kafka.Transport{MetadataTTL: 10 * time.Second, IdleTimeout: time.Minute, ClientID: "engage"}),
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Warn("kafka writer", "detail", fmt.Sprintf(msg, args...))
		}),
	}
	return &Producer{w: w, topic: cfg.Topic}, nil
}

// Produce implements bus.Producer.
func (p *Producer) Produce(ctx context.Context, msgs []bus.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	// The Kafka timestamp is the time of producing, never m.Time: an
	// event's own time is in the value, and retention compares the
	// timestamp with the broker's clock (the platform's topics replace it
	// with log-append time anyway; this keeps a topic still on CreateTime
	// safe, where kafka-go would otherwise send 0, the epoch).
	now := time.Now()
	km := make([]kafka.Message, len(msgs))
	for i, m := range msgs {
		topic := m.Topic
		if topic == "" {
			topic = p.topic
		}
		km[i] = kafka.Message{Topic: topic, Key: m.Key, Value: m.Value, Time: now}
		for _, h := range m.Headers {
			km[i].Headers = append(km[i].Headers, kafka.Header{Key: h.Key, Value: h.Value})
		}
	}
	if err := p.w.WriteMessages(ctx, km...); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("kafka produce: %w (%w)", ctx.Err(), bus.ErrUnavailable)
		}
		return fmt.Errorf("kafka produce: %s: %w", summarize(err), bus.ErrUnavailable)
	}
	return nil
}

// summarize shortens kafka-go's WriteErrors (one error per message) to the
// distinct causes.
func summarize(err error) string {
	var we kafka.WriteErrors
	if !errors.As(err, &we) {
		return err.Error()
	}
	seen := map[string]int{}
	var order []string
	for _, e := range we {
		if e == nil {
			continue
		}
		s := e.Error()
		if seen[s] == 0 {
			order = append(order, s)
		}
		seen[s]++
	}
	parts := make([]string, len(order))
	for i, s := range order {
		parts[i] = fmt.Sprintf("%d× %s", seen[s], s)
	}
	return fmt.Sprintf("%d of %d messages not written: %s", we.Count(), len(we), strings.Join(parts, "; "))
}

// Close flushes and closes the writer.
func (p *Producer) Close() error { return p.w.Close() }
