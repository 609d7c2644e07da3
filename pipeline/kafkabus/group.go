package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/openengage/engage/pipeline/backoff"

	"github.com/segmentio/kafka-go"

	"github.com/openengage/engage/pipeline/bus"
)

// GroupConfig configures a member of a consumer group that owns whole
// partitions (the stateful processor's way of consuming).
type GroupConfig struct {
	Brokers []string
	Group   string
	Topic   string
	// SessionTimeout: how long the group waits for a member that stopped
	// heart-beating (one killed with SIGKILL) before giving its partitions
	// to the others.
	SessionTimeout time.Duration
	MaxBytes       int
}

// Claim is one partition assigned to this member for one generation of
// the group. Its context ends when the group rebalances or the member
// stops; the function given to RunGroup must then return.
type Claim struct {
	Partition int
	// Offset is where consumption starts: the group's committed offset, or
	// kafka.FirstOffset (-2) if none.
	Offset int64

	gen   *kafka.Generation
	topic string
	r     *kafka.Reader
	log   *slog.Logger
}

// Fetch returns the partition's next message, waiting for one, also while
// its leader moves to another broker (see fetchRetrying).
func (c *Claim) Fetch(ctx context.Context) (bus.Message, error) {
	m, err := fetchRetrying(ctx, c.r, c.log)
	if err != nil {
		return bus.Message{}, err
	}
	return toBus(m), nil
}

// Commit commits next as the offset the group resumes the partition from
// (the offset after the last message processed).
func (c *Claim) Commit(next int64) error {
	if err := c.gen.CommitOffsets(map[string]map[int]int64{c.topic: {c.Partition: next}}); err != nil {
		return fmt.Errorf("commit partition %d at %d: %w", c.Partition, next, err)
	}
	return nil
}

// RunGroup joins the group and, for each generation, runs fn once per
// partition assigned to this member, each in its own goroutine, until ctx
// ends. fn returning an error (other than because its context ended) stops
// RunGroup with that error. A new member starts partitions with no
// committed offset at their oldest message.
func RunGroup(ctx context.Context, cfg GroupConfig, log *slog.Logger, fn func(ctx context.Context, c *Claim) error) error {
	if len(cfg.Brokers) == 0 || cfg.Group == "" || cfg.Topic == "" {
		return errors.New("kafka group: brokers, group and topic are required")
	}
	if cfg.SessionTimeout == 0 {
		cfg.SessionTimeout = 10 * time.Second
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = 16 << 20
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	group, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID: cfg.Group, Brokers: cfg.Brokers, Topics: []string{cfg.Topic},
		HeartbeatInterval: time.Second, SessionTimeout: cfg.SessionTimeout, RebalanceTimeout: cfg.SessionTimeout,
		JoinGroupBackoff: 500 * time.Millisecond, StartOffset: kafka.FirstOffset, WatchPartitionChanges: true, Dialer: Dialer(),
		ErrorLogger: kafka.LoggerFunc(func(msg string, args ...any) {
			log.Warn("kafka group", "detail", fmt.Sprintf(msg, args...))
		}),
	})
	if err != nil {
		return fmt.Errorf("kafka group %s: %w", cfg.Group, err)
	}
	defer group.Close()
	var (
		mu    sync.Mutex
		fatal error
	)
	stop, cancel := context.WithCancel(ctx)
	defer cancel()
	for {
		gen, err := group.Next(stop)
		if err != nil {
			mu.Lock()
			f := fatal
			mu.Unlock()
			switch {
			case f != nil:
				return f
			case stop.Err() != nil:
				return nil
			case errors.Is(err, kafka.ErrGroupClosed):
				return fmt.Errorf("kafka group %s: %w", cfg.Group, err)
			}
			// Joining failed (no coordinator yet on a new cluster, a
			// rebalance, a broker restarting): the group retries with a
			// backoff; so do we.
			log.Warn("kafka group: joining failed; retrying", "group", cfg.Group, "err", err)
			continue
		}
		assigned := gen.Assignments[cfg.Topic]
		log.Info("group generation", "generation", gen.ID, "partitions", len(assigned))
		for _, a := range assigned {
			claim := &Claim{Partition: a.ID, Offset: a.Offset, gen: gen, topic: cfg.Topic, log: log}
			gen.Start(func(gctx context.Context) {
				var err error
				claim.r, err = partitionReader(cfg.Brokers, cfg.Topic, a.ID, a.Offset, cfg.MaxBytes)
				if err != nil {
					mu.Lock()
					fatal = errors.Join(fatal, err)
					mu.Unlock()
					cancel()
					return
				}
				defer claim.r.Close()
				// The generation's context ends at a rebalance; stop ends
				// it at shutdown or on another partition's failure.
				pctx, pcancel := context.WithCancel(gctx)
				defer pcancel()
				go func() {
					select {
					case <-stop.Done():
						pcancel()
					case <-pctx.Done():
					}
				}()
				if err := fn(pctx, claim); err != nil && pctx.Err() == nil {
					mu.Lock()
					fatal = errors.Join(fatal, fmt.Errorf("partition %d: %w", a.ID, err))
					mu.Unlock()
					cancel()
				}
			})
		}
	}
}

// ReadPartition calls fn with every message of one partition of topic,
// from its oldest up to the end it had when ReadPartition started (for
// restoring state from a changelog). It returns how many messages it read.
func ReadPartition(ctx context.Context, brokers []string, topic string, partition int, fn func(bus.Message) error) (int64, error) {
	return ReadPartitionFrom(ctx, brokers, topic, partition, -1, fn)
}

// PartitionEnd returns the offset the next message of a partition will get.
func PartitionEnd(ctx context.Context, brokers []string, topic string, partition int) (int64, error) {
	_, last, err := partitionBounds(ctx, brokers, topic, partition)
	return last, err
}

// PartitionBounds returns the offset of the oldest message a partition
// still has (retention moves it) and the offset its next message will get.
func PartitionBounds(ctx context.Context, brokers []string, topic string, partition int) (first, end int64, err error) {
	return partitionBounds(ctx, brokers, topic, partition)
}

// ReadPartitionFrom is ReadPartition from offset from (or the oldest, if
// from is negative or older).
func ReadPartitionFrom(ctx context.Context, brokers []string, topic string, partition int, from int64, fn func(bus.Message) error) (int64, error) {
	first, last, err := partitionBounds(ctx, brokers, topic, partition)
	if err != nil {
		return 0, err
	}
	first = max(first, from)
	if last <= first {
		return 0, nil
	}
	r, err := partitionReader(brokers, topic, partition, first, 32<<20)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	var n int64
	for {
		m, err := fetchRetrying(ctx, r, nil)
		if err != nil {
			return n, fmt.Errorf("read %s/%d at %d: %w", topic, partition, r.Offset(), err)
		}
		n++
		if err := fn(toBus(m)); err != nil {
			return n, err
		}
		if m.Offset+1 >= last {
			return n, nil
		}
	}
}

// FollowPartition calls fn with every message of one partition of topic,
// from its oldest, and goes on with new ones until ctx ends (for following
// the configuration topic). caughtUp is true for the message that reaches
// the end the partition had when FollowPartition started; if the partition
// was empty, fn is first called once with a zero message and caughtUp.
func FollowPartition(ctx context.Context, brokers []string, topic string, partition int, fn func(m bus.Message, caughtUp bool) error) error {
	first, last, err := partitionBounds(ctx, brokers, topic, partition)
	if err != nil {
		return err
	}
	if last <= first {
		if err := fn(bus.Message{}, true); err != nil {
			return err
		}
	}
	r, err := partitionReader(brokers, topic, partition, first, 8<<20)
	if err != nil {
		return err
	}
	defer r.Close()
	for {
		m, err := fetchRetrying(ctx, r, nil)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("follow %s/%d: %w", topic, partition, err)
		}
		if err := fn(toBus(m), m.Offset+1 == last); err != nil {
			return err
		}
	}
}

// partitionBounds returns a partition's first and next offsets, retrying
// for up to 30 s while its leader is moving or not elected yet (a new
// topic, a broker restarting). Each attempt asks the next of the brokers
// for the leader: any one of them may be the one that is down.
func partitionBounds(ctx context.Context, brokers []string, topic string, partition int) (first, last int64, err error) {
	deadline := time.Now().Add(30 * time.Second)
	b := backoff.New(leaderWait)
	for i := 0; ; i++ {
		var conn *kafka.Conn
		conn, err = Dialer().DialLeader(ctx, "tcp", brokers[i%len(brokers)], topic, partition)
		if err == nil {
			first, last, err = conn.ReadOffsets()
			conn.Close()
			if err == nil {
				return first, last, nil
			}
		}
		var ke kafka.Error
		if ctx.Err() != nil || time.Now().After(deadline) || errors.As(err, &ke) && !ke.Temporary() {
			return 0, 0, fmt.Errorf("offsets of %s/%d: %w", topic, partition, err)
		}
		_ = b.Wait(ctx) // ctx's end is seen by the next try
	}
}

// partitionReader reads one partition (no group) from offset on.
func partitionReader(brokers []string, topic string, partition int, offset int64, maxBytes int) (*kafka.Reader, error) {
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: brokers, Topic: topic, Partition: partition,
		MinBytes: 1, MaxBytes: maxBytes, MaxWait: 100 * time.Millisecond, QueueCapacity: 10000, Dialer: Dialer()})
	if err := r.SetOffset(offset); err != nil {
		r.Close()
		return nil, fmt.Errorf("read %s/%d from %d: %w", topic, partition, offset, err)
	}
	return r, nil
}

// toBus converts a message read from Kafka (headers left out).
func toBus(m kafka.Message) bus.Message {
	return bus.Message{Topic: m.Topic, Key: m.Key, Value: m.Value, Time: m.Time, Partition: m.Partition, Offset: m.Offset}
}

// Feed fetches the claim's messages on a goroutine of its own into a
// channel of size buffer, so that the partition's owner can also wake for
// flushes, timers and requests. The channel closes when ctx ends or a
// fetch fails; the failure (not the end of ctx) is sent on errc.
func (c *Claim) Feed(ctx context.Context, buffer int) (msgs <-chan bus.Message, errc <-chan error) {
	out := make(chan bus.Message, buffer)
	errs := make(chan error, 1)
	go func() {
		defer close(out)
		for {
			m, err := c.Fetch(ctx)
			if err != nil {
				if ctx.Err() == nil {
					errs <- err
				}
				return
			}
			select {
			case out <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	return out, errs
}

// GroupReady says whether a member of a consumer group that restores each
// partition's state from a changelog can do its work (for /readyz): nil
// once it owns partitions of topic and has restored them all, else what it
// is still doing. A member that owns no partition (joining the group, or
// more members than partitions) is not ready: it does no work.
func GroupReady(topic string, owned int, restoring int32) error {
	if restoring > 0 {
		return fmt.Errorf("restoring the state of %d partitions from the changelog", restoring)
	}
	if owned == 0 {
		return fmt.Errorf("owns no partition of %s yet (joining the group, or more instances than partitions)", topic)
	}
	return nil
}
