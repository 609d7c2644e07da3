package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"syscall"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/pipeline/backoff"
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
	r   *kafka.Reader
	log *slog.Logger
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
		StartOffset: kafka.FirstOffset, Dialer: Dialer(),
		CommitInterval:    0, // synchronous commits, only when asked
		HeartbeatInterval: time.Second, SessionTimeout: 10 * time.Second, RebalanceTimeout: 10 * time.Second,
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Warn("kafka reader", "detail", fmt.Sprintf(msg, args...))
		}),
	})
	return &Consumer{r: r, log: log}, nil
}

// Fetch returns the next message, waiting for one. While brokers are
// unreachable or a partition's leadership moves (a broker stopped), it
// waits too: the reader reconnects to the new leaders by itself and only
// reports what it met, so Fetch logs it and asks again until ctx ends. It
// returns the errors that are not transient, and ctx's.
func (c *Consumer) Fetch(ctx context.Context) (bus.Message, error) {
	m, err := fetchRetrying(ctx, c.r, c.log)
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

// fetchRetrying returns r's next message. A kafka-go reader reconnects by
// itself when a broker goes away or a partition's leadership moves, and
// reports what it met meanwhile; those reports are logged (the first, then
// every twentieth) and the fetch asked again, after a wait of fetchRetry,
// until ctx ends. Errors that are not transient, and ctx's, are returned.
func fetchRetrying(ctx context.Context, r *kafka.Reader, log *slog.Logger) (kafka.Message, error) {
	var since time.Time
	var wait *backoff.Backoff
	for failures := 0; ; failures++ {
		m, err := r.FetchMessage(ctx)
		if err == nil || ctx.Err() != nil || !Transient(err) {
			if err == nil && failures > 0 && log != nil {
				log.Info("kafka fetch recovered", "topic", m.Topic, "partition", m.Partition, "failures", failures, "after", time.Since(since).Round(time.Millisecond).String())
			}
			return m, err
		}
		if failures == 0 {
			since, wait = time.Now(), backoff.New(fetchRetry)
		}
		if log != nil && (failures == 0 || (failures+1)%20 == 0) {
			log.Warn("kafka fetch failed; retrying", "failures", failures+1, "since", time.Since(since).Round(time.Millisecond).String(), "err", err)
		}
		if err := wait.Wait(ctx); err != nil {
			return kafka.Message{}, err
		}
	}
}

// fetchRetry paces a consumer's fetches while the cluster fails them:
// 100 ms doubling to 2 s, half of each wait jittered (the members of a
// group, which lost the same broker, do not come back in step).
var fetchRetry = backoff.Policy{Min: 100 * time.Millisecond, Max: 2 * time.Second, Floor: 0.5}

// Transient says whether err, met talking to Kafka, may go away by itself:
// a broker that cannot be reached or closed the connection, a timeout, or
// a Kafka error that says to retry (a leader or coordinator moving, not
// enough replicas in sync). A TLS handshake or SASL authentication that
// failed is not transient (see AuthError), even when it comes as a
// network error.
func Transient(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) || isAuthError(err) {
		return false
	}
	var ke kafka.Error
	if errors.As(err, &ke) {
		return ke.Temporary()
	}
	var ne net.Error
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, net.ErrClosed) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}
